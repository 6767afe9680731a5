//! What a broker adapter knows of its connection, written once for every broker: its
//! address without credentials (for messages and errors), and what the requests'
//! outcomes showed of the connection ([`Link`]: connected or not, how often it came
//! back), for [`BusHealth`](super::BusHealth).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `url` without what sits between `//` and `@` (user and password).
pub(crate) fn redact(url: &str) -> String {
    match (url.find("//"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}//…@{}", &url[..start], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// What a bus or sink saw of its connection: connected or not, and how often it came
/// back. A client that reconnects by itself does not tell; this counts what the
/// requests' outcomes show (a failure for a lost connection, then a success).
#[derive(Debug)]
pub(crate) struct Link {
    connected: AtomicBool,
    reconnects: AtomicU64,
}

impl Link {
    /// Connected (a link is made once the first connection succeeded), no reconnect yet.
    pub(crate) fn new() -> Self {
        Link {
            connected: AtomicBool::new(true),
            reconnects: AtomicU64::new(0),
        }
    }

    /// Takes note of a request's outcome: a success means connected (a reconnect when it
    /// was lost), an error `lost` says is a lost connection means disconnected.
    pub(crate) fn observe<T, E>(
        &self,
        outcome: &std::result::Result<T, E>,
        lost: impl Fn(&E) -> bool,
    ) {
        match outcome {
            Ok(_) => self.up(),
            Err(error) if lost(error) => self.down(),
            Err(_) => {}
        }
    }

    /// The connection works: counts a reconnect when it was lost.
    pub(crate) fn up(&self) {
        if !self.connected.swap(true, Ordering::AcqRel) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The connection is lost.
    pub(crate) fn down(&self) {
        self.connected.store(false, Ordering::Release);
    }

    /// Whether the last outcome said connected.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Reconnections seen so far.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://…@host:6379/0"
        );
        assert_eq!(
            redact("amqp://guest:guest@host:5672/%2f"),
            "amqp://…@host:5672/%2f"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn a_lost_connection_that_answers_again_is_a_reconnect() {
        let link = Link::new();
        let lost = |error: &bool| *error;
        link.observe(&Err::<(), bool>(false), lost);
        assert!(link.connected(), "a refused request is no lost connection");
        link.observe(&Err::<(), bool>(true), lost);
        assert!(!link.connected());
        link.observe(&Ok::<(), bool>(()), lost);
        link.observe(&Ok::<(), bool>(()), lost);
        assert!(link.connected());
        assert_eq!(link.reconnects(), 1);
    }
}
