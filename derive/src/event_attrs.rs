//! The `#[event(...)]` attribute of `#[derive(DomainEvent)]`, in each place it may appear.
//!
//! - On an enum: `prefix = "account."`, put before every variant's default name.
//! - On a variant, or on a struct that is a single event: `rename = "..."` (the full stored
//!   name; no prefix is added to it) and `version = N` (the schema version, at least 1).
//! - On a field: nothing; a field's stored shape is serde's business (`#[serde(...)]`).
//!
//! A key written in the wrong place gets an error saying where it belongs.

use syn::{Attribute, Fields, LitStr};

use crate::attrs::{self, Errors, Spanned};

/// The attribute's name.
const EVENT: &str = "event";

/// What `#[event(...)]` says about one event type (a variant, or a struct).
#[derive(Default)]
pub(crate) struct EventAttrs {
    /// `rename = "..."`: the full stored name.
    pub(crate) rename: Option<Spanned<LitStr>>,
    /// `version = N`.
    pub(crate) version: Option<Spanned<u32>>,
}

impl EventAttrs {
    /// The schema version written: 1 unless `version` says otherwise.
    pub(crate) fn version(&self) -> u32 {
        self.version.as_ref().map_or(1, |version| version.value)
    }
}

/// Where an attribute was found, which decides the keys it accepts.
#[derive(Clone, Copy)]
enum Place {
    Variant,
    Struct,
}

const RENAME_EXAMPLE: &str = "rename = \"account.opened\"";
const VERSION_EXAMPLE: &str = "version = 2";
const PREFIX_EXAMPLE: &str = "prefix = \"account.\"";

/// Reads the enum-level attributes: the `prefix`, if any.
pub(crate) fn enum_prefix(attributes: &[Attribute]) -> syn::Result<Option<Spanned<LitStr>>> {
    let mut prefix = None;
    read(attributes, |key, meta| match key {
        "prefix" => attrs::set_once(&mut prefix, meta, attrs::string(meta, PREFIX_EXAMPLE)?),
        "rename" | "version" => Err(meta.error(format_args!(
            "`{key}` goes on a variant: write #[event({key} = ...)] above the variant it is for"
        ))),
        _ => Err(attrs::unknown_key(meta, EVENT, &["prefix"])),
    })?;
    Ok(prefix)
}

/// Reads a variant's attributes.
pub(crate) fn variant(attributes: &[Attribute]) -> syn::Result<EventAttrs> {
    event_type(attributes, Place::Variant)
}

/// Reads the attributes of a struct that is a single event type.
pub(crate) fn single_struct(attributes: &[Attribute]) -> syn::Result<EventAttrs> {
    event_type(attributes, Place::Struct)
}

/// Refuses `#[event]` on fields.
pub(crate) fn reject_on_fields(fields: &Fields) -> syn::Result<()> {
    let mut errors = Errors::default();
    for attribute in fields.iter().flat_map(|field| &field.attrs) {
        if attribute.path().is_ident(EVENT) {
            errors.push(syn::Error::new_spanned(
                attribute,
                "#[event] does not go on fields; use #[serde(...)] to shape a field's JSON",
            ));
        }
    }
    errors.finish()
}

fn event_type(attributes: &[Attribute], place: Place) -> syn::Result<EventAttrs> {
    let mut found = EventAttrs::default();
    read(attributes, |key, meta| match key {
        "rename" => {
            let name = attrs::string(meta, RENAME_EXAMPLE)?;
            if name.value.value().is_empty() {
                return Err(syn::Error::new(
                    name.span,
                    "an event type name cannot be empty",
                ));
            }
            attrs::set_once(&mut found.rename, meta, name)
        }
        "version" => attrs::set_once(
            &mut found.version,
            meta,
            attrs::positive(meta, VERSION_EXAMPLE)?,
        ),
        "prefix" => Err(match place {
            Place::Struct => {
                meta.error("`prefix` applies to enums; use `rename` for a struct's event type")
            }
            _ => meta.error("`prefix` goes on the enum, not on a variant"),
        }),
        _ => Err(attrs::unknown_key(meta, EVENT, &["rename", "version"])),
    })?;
    Ok(found)
}

/// Calls `on_key` for every key of every `#[event(...)]` in `attributes`, gathering the
/// errors of all of them.
fn read(
    attributes: &[Attribute],
    mut on_key: impl FnMut(&str, &syn::meta::ParseNestedMeta) -> syn::Result<()>,
) -> syn::Result<()> {
    let mut errors = Errors::default();
    for attribute in attributes.iter().filter(|a| a.path().is_ident(EVENT)) {
        let result = attribute.parse_nested_meta(|meta| {
            let key = attrs::key_name(&meta);
            on_key(&key, &meta)
        });
        errors.take(result);
    }
    errors.finish()
}
