//! `#[derive(Aggregate)]`: implements `chronicle::AggregateType` for the struct that holds
//! an aggregate's state, from its `#[aggregate(...)]` attribute:
//!
//! - `event = AccountEvent` (required): the type, deriving `DomainEvent`, that the
//!   aggregate's stream holds;
//! - `name = "account"`: the stream name prefix (streams are `{name}-{id}`); by default the
//!   struct's name in snake_case. It may not be empty or contain `-`, since the category of
//!   a stream is the part of its id before the first `-`;
//! - `snapshot_every = N`: take a snapshot every `N` events (none by default);
//! - `snapshot_version = N`: the snapshot's shape version (1 by default).
//!
//! The `Event` type is emitted with the span of the user's `event = ...` tokens, so that
//! "`DomainEvent` is not implemented" points at the attribute.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::{Attribute, Data, DeriveInput, LitStr, Type};

use crate::attrs::{self, Errors, Spanned};
use crate::naming;

/// The attribute's name.
const AGGREGATE: &str = "aggregate";

/// The keys `#[aggregate(...)]` accepts.
const KEYS: &[&str] = &["name", "event", "snapshot_every", "snapshot_version"];

/// What `#[aggregate(...)]` says.
#[derive(Default)]
struct AggregateAttrs {
    name: Option<Spanned<LitStr>>,
    event: Option<Spanned<Type>>,
    snapshot_every: Option<Spanned<u64>>,
    snapshot_version: Option<Spanned<u32>>,
}

/// The implementation of `AggregateType` for `input`, or the errors that prevent it.
pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let ident = &input.ident;
    match &input.data {
        Data::Struct(_) => {}
        Data::Enum(data) => {
            let enum_token = data.enum_token;
            return Err(not_a_struct(quote!(#enum_token #ident)));
        }
        Data::Union(data) => {
            let union_token = data.union_token;
            return Err(not_a_struct(quote!(#union_token #ident)));
        }
    }
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "derive(Aggregate) does not support generic types: an aggregate has one stream \
             name and one event type; write a concrete struct",
        ));
    }

    let found = read(&input.attrs)?;
    let event = found.event.as_ref().ok_or_else(|| missing_event(input))?;

    let name = found.name.as_ref().map_or_else(
        || naming::snake_case(&ident.unraw().to_string()),
        |name| name.value.value(),
    );
    let snapshot_every = match &found.snapshot_every {
        Some(every) => {
            let every = every.value;
            quote!(::core::option::Option::Some(#every))
        }
        None => quote!(::core::option::Option::None),
    };
    let snapshot_version = found.snapshot_version.as_ref().map_or(1, |v| v.value);
    let event_type = &event.value;
    // With the user's span, an event type that is not a `DomainEvent` is reported at the
    // `event = ...` tokens rather than at the derive.
    let event_item = quote_spanned! {event.span=>
        type Event = #event_type;
    };

    Ok(quote! {
        #[automatically_derived]
        impl ::chronicle::AggregateType for #ident {
            const NAME: &'static str = #name;
            const SNAPSHOT_EVERY: ::core::option::Option<u64> = #snapshot_every;
            const SNAPSHOT_VERSION: u32 = #snapshot_version;
            #event_item
        }
    })
}

/// The error for a struct without `event`: at its `#[aggregate]` attribute when it has one,
/// else at its name.
fn missing_event(input: &DeriveInput) -> syn::Error {
    let message = "missing `event`: write #[aggregate(event = YourEventEnum)] naming the enum \
                   that derives DomainEvent";
    let attribute = input
        .attrs
        .iter()
        .rfind(|attribute| attribute.path().is_ident(AGGREGATE));
    match attribute {
        Some(attribute) => syn::Error::new_spanned(attribute, message),
        None => syn::Error::new_spanned(&input.ident, message),
    }
}

fn not_a_struct(tokens: TokenStream) -> syn::Error {
    syn::Error::new_spanned(
        tokens,
        "derive(Aggregate) goes on a struct holding the aggregate's state; derive \
         DomainEvent on the enum of its events",
    )
}

/// Reads every `#[aggregate(...)]` on the struct, checking each value as it goes.
fn read(attributes: &[Attribute]) -> syn::Result<AggregateAttrs> {
    let mut found = AggregateAttrs::default();
    let mut errors = Errors::default();
    for attribute in attributes.iter().filter(|a| a.path().is_ident(AGGREGATE)) {
        let result = attribute.parse_nested_meta(|meta| match attrs::key_name(&meta).as_str() {
            "name" => {
                let name = attrs::string(&meta, "name = \"account\"")?;
                check_name(&name.value)?;
                attrs::set_once(&mut found.name, &meta, name)
            }
            "event" => attrs::set_once(
                &mut found.event,
                &meta,
                attrs::type_value(&meta, "event = AccountEvent")?,
            ),
            "snapshot_every" => attrs::set_once(
                &mut found.snapshot_every,
                &meta,
                attrs::positive(&meta, "snapshot_every = 100")?,
            ),
            "snapshot_version" => attrs::set_once(
                &mut found.snapshot_version,
                &meta,
                attrs::positive(&meta, "snapshot_version = 2")?,
            ),
            _ => Err(attrs::unknown_key(&meta, AGGREGATE, KEYS)),
        });
        errors.take(result);
    }
    errors.finish()?;
    Ok(found)
}

/// A stream name prefix must be usable as the category of `{name}-{id}`.
fn check_name(name: &LitStr) -> syn::Result<()> {
    let text = name.value();
    let problem = if text.is_empty() {
        "the aggregate `name` cannot be empty"
    } else if text.contains('-') {
        "the aggregate `name` cannot contain `-`: streams are named `{name}-{id}` and a \
         stream's category is the part before the first `-`; use `_` or `.` instead"
    } else if text.chars().any(char::is_control) {
        "the aggregate `name` cannot contain control characters"
    } else {
        return Ok(());
    };
    Err(syn::Error::new(name.span(), problem))
}
