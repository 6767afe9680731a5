//! How a command fails: a message for stderr and an exit code.

use std::fmt::Write as _;
use std::process::ExitCode;

use chronicle::{CodecError, Error, ErrorKind};

/// A command's failure, by exit code.
#[derive(Debug)]
pub enum CliError {
    /// 1: the operation failed (database, decoding, a wrong key file).
    Failed(String),
    /// 2: bad input: arguments, the URL, the key file, an invalid id.
    Usage(String),
    /// 3: what was named does not exist.
    NotFound(String),
    /// 4: a destructive command was not confirmed.
    NotConfirmed(String),
    /// stdout was closed (`chronicle … | head`): stop quietly, successfully.
    ClosedOutput,
}

impl CliError {
    /// Prints the message to stderr and returns the exit code.
    pub fn exit(self) -> ExitCode {
        let (code, message) = match self {
            CliError::Failed(message) => (1, message),
            CliError::Usage(message) => (2, message),
            CliError::NotFound(message) => (3, message),
            CliError::NotConfirmed(message) => (4, message),
            CliError::ClosedOutput => return ExitCode::SUCCESS,
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

impl From<Error> for CliError {
    fn from(error: Error) -> Self {
        let message = describe(&error);
        match error.kind() {
            ErrorKind::Validation => CliError::Usage(message),
            ErrorKind::NotFound => CliError::NotFound(message),
            _ => CliError::Failed(message),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::ClosedOutput
        } else {
            CliError::Failed(format!("cannot write the output: {error}"))
        }
    }
}

/// The error with its chain of sources, and a hint where a key is the likely cause.
pub fn describe(error: &Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            let _ = write!(message, ": {text}");
        }
        source = cause.source();
    }
    if let Some(hint) = key_hint(error) {
        let _ = write!(message, " ({hint})");
    }
    message
}

/// What to say about a key problem.
fn key_hint(error: &Error) -> Option<&'static str> {
    match error {
        Error::StreamKey { .. } => Some("does the key file hold the ring's keys?"),
        Error::Codec { source, .. } => codec_hint(source),
        _ => None,
    }
}

/// What to say about a payload that does not decode with the key file given.
pub fn codec_hint(error: &CodecError) -> Option<&'static str> {
    match error {
        CodecError::Decrypt { .. } => {
            Some("the key file's key of that id is not the one it was encrypted with")
        }
        CodecError::MissingKey { .. } => Some("the key file does not hold that key"),
        _ => None,
    }
}
