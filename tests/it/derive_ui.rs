//! Compile-fail cases of the derive macros: each file in `tests/ui/` must fail to compile
//! with the error in the `.stderr` file beside it. After changing a message, regenerate
//! them with `TRYBUILD=overwrite cargo test --test it derive_ui` (and, for
//! `tests/ui/cloudevents/`, the same with `--all-features`) and read the diff.

/// The case whose expected output depends on the build: rustc lists the types that do
/// implement the missing trait and shortens paths by what the crates in the build
/// export, and the `cloudevents` feature adds axum, reqwest and hyper to the build. Its
/// twin under `tests/ui/cloudevents/` holds the output with that feature.
const BY_BUILD: &str = "struct_event_without_serde.rs";

#[test]
fn derive_errors_are_reported_at_the_users_tokens() {
    let cases = trybuild::TestCases::new();
    // trybuild runs from the crate root, so the paths are relative to it.
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir("tests/ui")
        .expect("tests/ui")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    for file in files {
        let by_build = file.file_name().is_some_and(|name| name == BY_BUILD);
        if !by_build || cfg!(not(feature = "cloudevents")) {
            cases.compile_fail(file);
        }
    }
    if cfg!(feature = "cloudevents") {
        cases.compile_fail(format!("tests/ui/cloudevents/{BY_BUILD}"));
    }
}
