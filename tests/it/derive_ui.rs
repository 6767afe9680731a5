//! Compile-fail cases of the derive macros: each file in `tests/ui/` must fail to compile
//! with the error in the `.stderr` file beside it. After changing a message, regenerate
//! them with `TRYBUILD=overwrite cargo test --test it derive_ui` and read the diff.

#[test]
fn derive_errors_are_reported_at_the_users_tokens() {
    // trybuild runs from the crate root, so the glob is relative to it.
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
