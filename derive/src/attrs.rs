//! Reading helper attributes of the form `#[name(key = value, ...)]`.
//!
//! Both derives walk their attributes with syn 2's `Attribute::parse_nested_meta` and read
//! each value with the parsers here, so every key reports problems the same way: an unknown
//! key lists the accepted ones, a repeated key is refused, and a value of the wrong kind
//! (`version = "2"`) says what it should look like. Every error is spanned at the user's
//! tokens. [`Errors`] gathers the errors of several attributes so that one compilation
//! reports them all.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprLit, Lit, LitStr, Token, Type};

/// The errors found so far; [`Errors::finish`] reports them together.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Records one more error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Records the error of `result`, if any, and returns its value otherwise.
    pub(crate) fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// `Ok` when nothing was recorded, otherwise every recorded error.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.combined.map_or(Ok(()), Err)
    }
}

/// A value read from an attribute, with the span of the tokens it was written as.
#[derive(Clone)]
pub(crate) struct Spanned<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// The key being read, as written (`version`, or `a::b` for a path).
pub(crate) fn key_name(meta: &ParseNestedMeta) -> String {
    meta.path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

/// The error for a key that `attribute` does not know, listing the keys it accepts.
pub(crate) fn unknown_key(
    meta: &ParseNestedMeta,
    attribute: &str,
    accepted: &[&str],
) -> syn::Error {
    meta.error(format_args!(
        "unknown `{attribute}` attribute `{}`; expected one of: {}",
        key_name(meta),
        accepted.join(", ")
    ))
}

/// Stores `value` in `slot`, refusing a key given twice.
pub(crate) fn set_once<T>(
    slot: &mut Option<Spanned<T>>,
    meta: &ParseNestedMeta,
    value: Spanned<T>,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error(format_args!("`{}` is given twice", key_name(meta))));
    }
    *slot = Some(value);
    Ok(())
}

/// Checks that the key is followed by `=`, with a message showing the expected form.
fn expect_value<'a>(
    meta: &ParseNestedMeta<'a>,
    example: &str,
) -> syn::Result<syn::parse::ParseStream<'a>> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format_args!(
            "`{}` takes a value: write {example}",
            key_name(meta)
        )));
    }
    meta.value()
}

/// Reads `key = "text"`.
pub(crate) fn string(meta: &ParseNestedMeta, example: &str) -> syn::Result<Spanned<LitStr>> {
    let input = expect_value(meta, example)?;
    let value: Expr = input.parse()?;
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(text),
            ..
        }) => Ok(Spanned {
            span: text.span(),
            value: text,
        }),
        other => Err(syn::Error::new_spanned(
            other,
            format_args!(
                "`{}` takes a string literal: write {example}",
                key_name(meta)
            ),
        )),
    }
}

/// Reads `key = N` for an integer `N` of at least 1 that fits in `T`.
pub(crate) fn positive<T>(meta: &ParseNestedMeta, example: &str) -> syn::Result<Spanned<T>>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    let key = key_name(meta);
    let input = expect_value(meta, example)?;
    let value: Expr = input.parse()?;
    let Expr::Lit(ExprLit {
        lit: Lit::Int(number),
        ..
    }) = &value
    else {
        return Err(syn::Error::new_spanned(
            &value,
            format_args!("`{key}` takes a whole number of at least 1: write {example}"),
        ));
    };
    let parsed: T = number.base10_parse().map_err(|error| {
        syn::Error::new(
            number.span(),
            format_args!("`{key}` is out of range: {error}"),
        )
    })?;
    if parsed < T::from(1) {
        return Err(syn::Error::new(
            number.span(),
            format_args!("`{key}` must be at least 1"),
        ));
    }
    Ok(Spanned {
        value: parsed,
        span: number.span(),
    })
}

/// Reads `key = SomeType`.
pub(crate) fn type_value(meta: &ParseNestedMeta, example: &str) -> syn::Result<Spanned<Type>> {
    let input = expect_value(meta, example)?;
    if input.peek(LitStr) {
        let text: LitStr = input.parse()?;
        return Err(syn::Error::new(
            text.span(),
            format_args!(
                "`{}` takes a type, not a string: write {example}",
                key_name(meta)
            ),
        ));
    }
    let value: Type = input.parse()?;
    Ok(Spanned {
        span: value.span(),
        value,
    })
}
