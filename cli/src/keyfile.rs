//! The key file (`--key-file`): the key ring, read from a file an operator keeps outside
//! the repository, in the format of [`KeyRing::from_key_file`]. Errors name the file and
//! the line, never a key.

use std::path::Path;

use chronicle::KeyRing;

use crate::fail::CliError;

/// Reads the key ring from `path`.
pub fn read(path: &Path) -> Result<KeyRing, CliError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CliError::Usage(format!(
            "cannot read the key file {}: {error}",
            path.display()
        ))
    })?;
    warn_if_readable_by_others(path);
    KeyRing::from_key_file(&text)
        .map_err(|problem| CliError::Usage(format!("{} ({problem})", path.display())))
}

/// Says so on stderr when others than the owner may read the key file.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: the key file {} can be read by others than its owner (chmod 600 it)",
                path.display()
            );
        }
    }
}
