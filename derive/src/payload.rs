//! The payload of one enum variant: how its fields become JSON and come back.
//!
//! The payload holds only the variant's fields, so the generated code serializes a private
//! *mirror* of them rather than the enum:
//!
//! - a struct variant `Deposited { amount: u64 }` mirrors as a struct with the same named
//!   fields (`{"amount":5}`);
//! - a newtype variant `Opened(OpenedData)` mirrors as a newtype struct, which serde writes
//!   as the inner value itself;
//! - a tuple variant with two or more fields mirrors as a tuple struct (a JSON array);
//! - a variant without fields is written as `{}`, and its payload is ignored when read.
//!
//! The encoding mirror borrows the fields (`&'a u64`), the decoding mirror owns them. Both
//! carry the user's `#[serde(...)]` attributes: the field's on each mirror field and the
//! variant's on the mirror struct, so `rename`, `default`, `skip_serializing_if`, `with` and
//! the like keep their meaning. Everything is reached through `::chronicle::__private`, so
//! users need not depend on serde themselves.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Fields, Type, Variant};

/// The generated code for one variant.
pub(crate) struct VariantPayload {
    /// The `pattern => expression` arm of `encode`'s `match self`.
    pub(crate) encode_arm: TokenStream,
    /// The expression `decode` evaluates once the event type names this variant; it has
    /// `payload: &[u8]` in scope and evaluates to `Result<Self, DecodeError>`.
    pub(crate) decode: TokenStream,
}

/// The code that encodes and decodes `variant` of the enum `enum_ident`.
pub(crate) fn variant(enum_ident: &Ident, variant: &Variant) -> VariantPayload {
    let ident = &variant.ident;
    let variant_serde = serde_attributes(&variant.attrs);
    let fields = mirrored_fields(enum_ident, &variant.fields);
    let binding: Vec<Ident> = (0..fields.len())
        .map(|index| format_ident!("__field{}", index))
        .collect();
    let types: Vec<&Type> = fields.iter().map(|field| &field.ty).collect();
    let attrs: Vec<&Vec<Attribute>> = fields.iter().map(|field| &field.serde).collect();
    let serialize = mirror_attributes(
        quote!(::chronicle::__private::serde::Serialize),
        &variant_serde,
    );
    let deserialize = mirror_attributes(
        quote!(::chronicle::__private::serde::Deserialize),
        &variant_serde,
    );
    let to_vec = quote!(::chronicle::__private::serde_json::to_vec);
    let from_slice = quote!(::chronicle::__private::serde_json::from_slice);

    if fields.is_empty() {
        let construct = match &variant.fields {
            Fields::Named(_) => quote!(Self::#ident {}),
            Fields::Unnamed(_) => quote!(Self::#ident()),
            Fields::Unit => quote!(Self::#ident),
        };
        return VariantPayload {
            encode_arm: quote! {
                Self::#ident { .. } => ::core::result::Result::Ok(::std::vec![b'{', b'}'])
            },
            decode: quote!(::core::result::Result::Ok(#construct)),
        };
    }

    match &variant.fields {
        Fields::Named(_) => {
            let names: Vec<&Ident> = fields.iter().filter_map(|field| field.name).collect();
            VariantPayload {
                encode_arm: quote! {
                    Self::#ident { #(#names: #binding),* } => {
                        #serialize
                        struct __Payload<'__payload> {
                            #( #(#attrs)* #names: &'__payload #types, )*
                        }
                        #to_vec(&__Payload { #(#names: #binding),* })
                    }
                },
                decode: quote! {{
                    #deserialize
                    struct __Payload {
                        #( #(#attrs)* #names: #types, )*
                    }
                    let __payload: __Payload = #from_slice(payload)?;
                    ::core::result::Result::Ok(Self::#ident { #(#names: __payload.#names),* })
                }},
            }
        }
        _ => {
            let index = (0..fields.len()).map(syn::Index::from);
            VariantPayload {
                encode_arm: quote! {
                    Self::#ident( #(#binding),* ) => {
                        #serialize
                        struct __Payload<'__payload>( #( #(#attrs)* &'__payload #types ),* );
                        #to_vec(&__Payload( #(#binding),* ))
                    }
                },
                decode: quote! {{
                    #deserialize
                    struct __Payload( #( #(#attrs)* #types ),* );
                    let __payload: __Payload = #from_slice(payload)?;
                    ::core::result::Result::Ok(Self::#ident( #(__payload.#index),* ))
                }},
            }
        }
    }
}

/// The attributes of a mirror struct: the serde derive, where serde lives, and the user's
/// variant-level `#[serde(...)]`.
fn mirror_attributes(derive: TokenStream, user: &[Attribute]) -> TokenStream {
    quote! {
        #[derive(#derive)]
        #[serde(crate = "::chronicle::__private::serde")]
        #(#user)*
        // A field the user skips is never read by the derived code.
        #[allow(dead_code)]
    }
}

/// One field as the mirrors see it.
struct MirroredField<'a> {
    /// The name, for a named field.
    name: Option<&'a Ident>,
    /// The type, with `Self` spelled as the enum's name (the mirrors are separate items,
    /// where `Self` would mean something else).
    ty: Type,
    /// The field's `#[serde(...)]` attributes.
    serde: Vec<Attribute>,
}

fn mirrored_fields<'a>(enum_ident: &Ident, fields: &'a Fields) -> Vec<MirroredField<'a>> {
    fields
        .iter()
        .map(|field| {
            let mut ty = field.ty.clone();
            ReplaceSelf { enum_ident }.visit_type_mut(&mut ty);
            MirroredField {
                name: field.ident.as_ref(),
                ty,
                serde: serde_attributes(&field.attrs),
            }
        })
        .collect()
}

/// The `#[serde(...)]` attributes among `attributes`.
fn serde_attributes(attributes: &[Attribute]) -> Vec<Attribute> {
    attributes
        .iter()
        .filter(|attribute| attribute.path().is_ident("serde"))
        .cloned()
        .collect()
}

/// Rewrites `Self` in a type to the enum's name.
struct ReplaceSelf<'a> {
    enum_ident: &'a Ident,
}

impl VisitMut for ReplaceSelf<'_> {
    fn visit_ident_mut(&mut self, ident: &mut Ident) {
        if ident == "Self" {
            let mut renamed = self.enum_ident.clone();
            renamed.set_span(ident.span());
            *ident = renamed;
        }
        visit_mut::visit_ident_mut(self, ident);
    }
}
