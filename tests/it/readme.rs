//! README's promises about setup: its dependency block is what `examples/app` (a crate
//! CI compiles and runs) depends on, so the block is complete.

/// The lines of the first TOML code block after `## Quickstart` in README.md.
fn readme_dependencies() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let quickstart = readme
        .split_once("## Quickstart")
        .expect("README has a Quickstart section")
        .1;
    let block = quickstart
        .split_once("```toml\n")
        .expect("the Quickstart has a TOML block")
        .1
        .split_once("```")
        .expect("the TOML block ends")
        .0;
    block.lines().map(str::to_owned).collect()
}

/// The `[dependencies]` section of examples/app/Cargo.toml, header included.
fn app_dependencies() -> Vec<String> {
    let manifest = include_str!("../../examples/app/Cargo.toml");
    let section = manifest
        .split_once("[dependencies]\n")
        .expect("the app has dependencies")
        .1;
    let mut lines = vec!["[dependencies]".to_owned()];
    lines.extend(
        section
            .lines()
            .take_while(|line| !line.starts_with('['))
            .filter(|line| !line.trim().is_empty())
            .map(str::to_owned),
    );
    lines
}

#[test]
fn readme_dependency_block_is_the_example_apps() {
    let readme = readme_dependencies();
    let app = app_dependencies();
    // chronicle comes from crates.io in README and from this repository in the app.
    let without_chronicle = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|line| !line.starts_with("chronicle "))
            .cloned()
            .collect()
    };
    assert!(readme.iter().any(|line| line.starts_with("chronicle = ")));
    assert!(app.iter().any(|line| line.starts_with("chronicle = ")));
    assert_eq!(without_chronicle(&readme), without_chronicle(&app));
}
