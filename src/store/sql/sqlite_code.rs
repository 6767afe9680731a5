//! An error SQLite's C API returned (`sqlite_reader.rs`'s connections), as sqlx reports
//! SQLite's own: a leaf, so that the error hub (`error.rs`) can find its result code
//! without importing the reader.

use std::ffi::c_int;

/// An error SQLite returned, as sqlx reports SQLite's (`Error::Database`), with its
/// extended result code.
#[derive(Debug, thiserror::Error)]
#[error("(code: {code}) {message}")]
pub(crate) struct SqliteCodeError {
    pub(crate) code: c_int,
    pub(crate) message: String,
}

impl SqliteCodeError {
    /// The extended result code.
    pub(crate) fn code(&self) -> i64 {
        i64::from(self.code)
    }
}

impl sqlx::error::DatabaseError for SqliteCodeError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}
