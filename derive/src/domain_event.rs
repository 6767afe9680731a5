//! `#[derive(DomainEvent)]`: implements `chronicle::DomainEvent` for an enum with one
//! variant per event, or for a struct that is a single event type.
//!
//! For an enum, each variant gets an event type name (the enum's `prefix` followed by the
//! variant's name, or its `rename`) and a schema version; `EVENT_TYPES` lists them in
//! declaration order, and `encode`/`decode` go through the per-variant payload code of
//! [`crate::payload`]. For a struct, the struct itself is the payload, so it must implement
//! serde's `Serialize` and `Deserialize`.
//!
//! Two variants with the same name, generics, and unions are refused at compile time.

use std::collections::HashMap;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::{Data, DataEnum, DataStruct, DeriveInput, Generics, Variant};

use crate::attrs::Errors;
use crate::event_attrs;
use crate::payload;

/// The implementation of `DomainEvent` for `input`, or the errors that prevent it.
pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    reject_generics(&input.generics)?;
    match &input.data {
        Data::Enum(data) => for_enum(input, data),
        Data::Struct(data) => for_struct(input, data),
        Data::Union(data) => {
            let (union_token, ident) = (data.union_token, &input.ident);
            Err(syn::Error::new_spanned(
                quote!(#union_token #ident),
                "DomainEvent cannot be derived for a union: use an enum with one variant \
                 per event, or a struct for a single event type",
            ))
        }
    }
}

fn reject_generics(generics: &Generics) -> syn::Result<()> {
    if generics.params.is_empty() {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        generics,
        "DomainEvent cannot be derived for generic types: each event type needs one fixed \
         name and payload shape; write the event enum with concrete types",
    ))
}

/// One variant and the event type it is stored as.
struct VariantEvent<'a> {
    variant: &'a Variant,
    name: String,
    version: u32,
}

fn for_enum(input: &DeriveInput, data: &DataEnum) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let prefix = errors
        .take(event_attrs::enum_prefix(&input.attrs))
        .flatten()
        .map(|prefix| prefix.value.value())
        .unwrap_or_default();

    let mut events = Vec::with_capacity(data.variants.len());
    let mut seen: HashMap<String, &Ident> = HashMap::new();
    for variant in &data.variants {
        errors.take(event_attrs::reject_on_fields(&variant.fields));
        let Some(attrs) = errors.take(event_attrs::variant(&variant.attrs)) else {
            continue;
        };
        let (name, span) = match &attrs.rename {
            Some(rename) => (rename.value.value(), rename.span),
            None => (
                format!("{prefix}{}", variant.ident.unraw()),
                variant.ident.span(),
            ),
        };
        if let Some(first) = seen.get(&name) {
            errors.push(duplicate_name(&name, first, span));
            continue;
        }
        seen.insert(name.clone(), &variant.ident);
        events.push(VariantEvent {
            variant,
            name,
            version: attrs.version(),
        });
    }
    errors.finish()?;

    let ident = &input.ident;
    let names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();
    let versions: Vec<u32> = events.iter().map(|event| event.version).collect();
    let variants: Vec<&Ident> = events.iter().map(|event| &event.variant.ident).collect();
    let payloads: Vec<payload::VariantPayload> = events
        .iter()
        .map(|event| payload::variant(ident, event.variant))
        .collect();
    let encode_arms = payloads.iter().map(|payload| &payload.encode_arm);
    let decodes = payloads.iter().map(|payload| &payload.decode);
    // `match self {}` on a reference is not exhaustive for an empty enum; `*self` is.
    let encode_scrutinee = if events.is_empty() {
        quote!(*self)
    } else {
        quote!(self)
    };

    Ok(quote! {
        #[automatically_derived]
        impl ::chronicle::DomainEvent for #ident {
            const EVENT_TYPES: &'static [::chronicle::EventType] = &[
                #( ::chronicle::EventType { name: #names, version: #versions }, )*
            ];

            fn event_type(&self) -> &'static str {
                match *self {
                    #( Self::#variants { .. } => #names, )*
                }
            }

            fn schema_version(&self) -> u32 {
                match *self {
                    #( Self::#variants { .. } => #versions, )*
                }
            }

            fn encode(
                &self,
            ) -> ::core::result::Result<
                ::std::vec::Vec<u8>,
                ::chronicle::__private::serde_json::Error,
            > {
                match #encode_scrutinee {
                    #( #encode_arms, )*
                }
            }

            fn decode(
                event_type: &str,
                payload: &[u8],
            ) -> ::core::result::Result<Self, ::chronicle::DecodeError> {
                // Variants without fields ignore the payload.
                let _ = payload;
                match event_type {
                    #( #names => #decodes, )*
                    _ => ::core::result::Result::Err(::chronicle::DecodeError::UnknownType),
                }
            }
        }
    })
}

fn duplicate_name(name: &str, first: &Ident, span: Span) -> syn::Error {
    syn::Error::new(
        span,
        format_args!(
            "duplicate event type `{name}`: variant `{first}` is already stored under this \
             name; give one of them another name with #[event(rename = \"...\")]"
        ),
    )
}

fn for_struct(input: &DeriveInput, data: &DataStruct) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    errors.take(event_attrs::reject_on_fields(&data.fields));
    let attrs = errors.take(event_attrs::single_struct(&input.attrs));
    errors.finish()?;
    let attrs = attrs.unwrap_or_default();

    let ident = &input.ident;
    let name = attrs
        .rename
        .as_ref()
        .map_or_else(|| ident.unraw().to_string(), |rename| rename.value.value());
    let version = attrs.version();
    // Spanned at the struct's name, so a struct without serde's derives is reported there.
    let to_vec = quote_spanned! {ident.span()=>
        ::chronicle::__private::serde_json::to_vec::<Self>(self)
    };
    let from_slice = quote_spanned! {ident.span()=>
        ::chronicle::__private::serde_json::from_slice::<Self>(payload)
    };

    Ok(quote! {
        #[automatically_derived]
        impl ::chronicle::DomainEvent for #ident {
            const EVENT_TYPES: &'static [::chronicle::EventType] =
                &[::chronicle::EventType { name: #name, version: #version }];

            fn event_type(&self) -> &'static str {
                #name
            }

            fn schema_version(&self) -> u32 {
                #version
            }

            fn encode(
                &self,
            ) -> ::core::result::Result<
                ::std::vec::Vec<u8>,
                ::chronicle::__private::serde_json::Error,
            > {
                #to_vec
            }

            fn decode(
                event_type: &str,
                payload: &[u8],
            ) -> ::core::result::Result<Self, ::chronicle::DecodeError> {
                if event_type == #name {
                    ::core::result::Result::Ok(#from_slice?)
                } else {
                    ::core::result::Result::Err(::chronicle::DecodeError::UnknownType)
                }
            }
        }
    })
}
