//! The consumer's side of deduplication: a subscription remembers the ids (`ce-id`) of
//! the last events it handled and drops a later copy of one of them unhandled.
//!
//! Every message chronicle publishes carries its event's id as the deduplication key
//! ([`Outgoing::dedup_key`](super::Outgoing::dedup_key)). A broker that deduplicates
//! (NATS JetStream's `Nats-Msg-Id`) drops copies before they are stored; one that does
//! not (Redis Streams; Kafka, whose idempotent producer drops only its own retries, not
//! a batch a restarted relay sends again) stores them, and the subscription drops them
//! here with a [`Seen`] window. The window is per subscription and in memory: a copy
//! that arrives after more than the window's other events, or at another process, is
//! handled again.

use std::collections::{HashSet, VecDeque};

use uuid::Uuid;

/// The window a broker's subscription keeps unless its builder says otherwise: the last
/// 10,000 event ids.
pub(crate) const DEFAULT_WINDOW: usize = 10_000;

/// The ids of the last `window` events a subscription handled (acknowledged, or given
/// up), oldest forgotten first. A window of 0 remembers nothing: no deduplication.
#[derive(Debug)]
pub(crate) struct Seen {
    window: usize,
    ids: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl Seen {
    /// Remembers up to `window` ids.
    pub(crate) fn new(window: usize) -> Self {
        Seen {
            window,
            ids: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether event `id` was handled within the window: a copy, to drop.
    pub(crate) fn contains(&self, id: &Uuid) -> bool {
        self.ids.contains(id)
    }

    /// Remembers that event `id` was handled, forgetting the oldest id beyond the window.
    pub(crate) fn insert(&mut self, id: Uuid) {
        if self.window == 0 || !self.ids.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > self.window
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_window_of_ids() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let mut seen = Seen::new(3);
        for id in &ids[..3] {
            seen.insert(*id);
        }
        seen.insert(ids[0]); // already there: stays the oldest
        assert!(ids[..3].iter().all(|id| seen.contains(id)));
        seen.insert(ids[3]);
        assert!(!seen.contains(&ids[0]), "the oldest is forgotten");
        assert!(ids[1..].iter().all(|id| seen.contains(id)));
    }

    #[test]
    fn a_window_of_zero_remembers_nothing() {
        let id = Uuid::now_v7();
        let mut seen = Seen::new(0);
        seen.insert(id);
        assert!(!seen.contains(&id));
    }
}
