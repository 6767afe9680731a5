//! Derive macros for chronicle, re-exported by it as `chronicle::DomainEvent` and
//! `chronicle::Aggregate`; use them through chronicle, which documents the traits they
//! implement.
//!
//! Each derive reads its helper attribute, reports every problem it finds as a compile
//! error spanned at the user's tokens, and otherwise emits one trait implementation that
//! names everything through `::chronicle` (serde through `::chronicle::__private`, so a
//! user crate needs no serde dependency of its own for enum events).
//!
//! - `lib.rs` — the entry points and their documentation.
//! - `attrs.rs` — reading `key = value` helper attributes, shared error reporting.
//! - `event_attrs.rs` — the `#[event(...)]` keys, by place (enum, variant, struct).
//! - `domain_event.rs` — `#[derive(DomainEvent)]`.
//! - `payload.rs` — one variant's payload: the serde mirrors behind `encode`/`decode`.
//! - `aggregate.rs` — `#[derive(Aggregate)]`.
//! - `naming.rs` — snake_case for default aggregate names.

mod aggregate;
mod attrs;
mod domain_event;
mod event_attrs;
mod naming;
mod payload;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `chronicle::DomainEvent`.
///
/// On an **enum**, each variant is one event type:
///
/// ```text
/// #[derive(DomainEvent)]
/// #[event(prefix = "account.")]                 // optional; put before each variant's name
/// enum AccountEvent {
///     Opened { owner: String },                 // "account.Opened", version 1, {"owner":…}
///     #[event(rename = "account.deposited", version = 2)]   // full name, no prefix added
///     Deposited { #[serde(rename = "amt")] amount: u64 },
///     Renamed(Name),                            // newtype: the payload is the inner value
///     Moved(u32, u32),                          // tuple: a JSON array
///     Closed,                                   // no fields: the payload is {}
/// }
/// ```
///
/// The payload is only the variant's fields (the event type is stored beside it), written
/// by serde with the `#[serde(...)]` attributes of the variant and of its fields. Names
/// must be unique within the enum; generic enums are not supported.
///
/// On a **struct**, the struct is a single event type named after the struct unless
/// `#[event(rename = "...")]` says otherwise, with `#[event(version = N)]` as for a
/// variant; the struct itself is the payload and must derive serde's `Serialize` and
/// `Deserialize`.
#[proc_macro_derive(DomainEvent, attributes(event, serde))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    domain_event::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `chronicle::AggregateType` (not `chronicle::Aggregate`, which you write) for
/// the struct that holds an aggregate's state.
///
/// ```text
/// #[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
/// #[aggregate(
///     event = AccountEvent,     // required: the type deriving DomainEvent
///     name = "account",         // stream name prefix; default: the struct's name in snake_case
///     snapshot_every = 100,     // optional: snapshot every 100 events (default: none)
///     snapshot_version = 1,     // optional: the snapshot's shape version (default: 1)
/// )]
/// struct Account { balance: u64 }
/// ```
///
/// The name may not be empty or contain `-` (a stream `account-42` has category
/// `account`). Generic structs are not supported.
///
/// **The derive does not implement `chronicle::Aggregate`**, the domain logic: write that
/// trait by hand (`type Command`, `type Error`, `apply`, `handle`). The derive only writes
/// the facts from the attribute (`AggregateType`), which `Aggregate` builds on.
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    aggregate::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
