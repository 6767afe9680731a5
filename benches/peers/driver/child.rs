//! The peers binary: building it, and running one phase of it as a child process.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::shared::record::Message;
use crate::shared::settings::{Phase, Settings, Workload};
use crate::shared::workload::Res;

/// The peers project's directory.
fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("peers")
}

/// Builds the peers project in release mode with its committed lock file, and returns its
/// binary.
pub fn build() -> Res<PathBuf> {
    let project = project();
    let target = project.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "building the peers: cargo build --release --locked --manifest-path {}",
        project.join("Cargo.toml").display()
    );
    let mut command = std::process::Command::new(cargo);
    // What cargo set for this bench's process describes the main crate; left in place,
    // build scripts that watch it (ring's watches CARGO_MANIFEST_DIR) would rebuild.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let ours = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "CARGO_TARGET_TMPDIR";
        if ours {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--manifest-path")
        .arg(project.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()?;
    if !status.success() {
        return Err(format!("building the peers project failed ({status})").into());
    }
    Ok(target.join("release").join("peers"))
}

/// Runs `phase` of `workload` on the peer `system` in a process of its own and returns its
/// answer. The child's stderr goes to ours.
pub async fn phase(
    binary: &Path,
    settings: &Settings,
    system: &str,
    workload: &Workload,
    phase: Phase,
    round: u32,
) -> Res<Message> {
    let output = tokio::process::Command::new(binary)
        .arg("--phase")
        .arg(phase.name())
        .arg("--system")
        .arg(system)
        .arg("--workload")
        .arg(workload.name())
        .arg("--round")
        .arg(round.to_string())
        .arg("--settings")
        .arg(serde_json::to_string(settings)?)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.lines().rev().find(|line| line.starts_with('{')) {
        Some(line) => Ok(serde_json::from_str(line)?),
        None => Err(format!(
            "{system} {} gave no answer ({}); stdout: {}",
            phase.name(),
            output.status,
            stdout.trim()
        )
        .into()),
    }
}
