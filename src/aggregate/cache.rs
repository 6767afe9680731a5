//! The repository's per-aggregate slots: an async lock per stream, so commands on one
//! aggregate in one process queue instead of racing, holding the last state written (when
//! caching is on) so the next command neither reloads the stream nor conflicts.
//!
//! The map is bounded: past the capacity, the least recently used slots that no command
//! holds are dropped. A cached state is only a guess at the stream's head; the append's
//! `Exact(version)` check is what makes it safe, and a conflict empties the slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The state of one aggregate at a version, as the repository last saw it.
#[derive(Debug, Clone)]
pub(crate) struct Cached<A> {
    pub state: A,
    pub version: u64,
}

/// One aggregate's slot: lock it to run a command.
pub(crate) type Slot<A> = Arc<tokio::sync::Mutex<Option<Cached<A>>>>;

#[derive(Debug)]
pub(crate) struct StateCache<A> {
    /// How many slots to keep when idle; 0 keeps no states at all.
    capacity: usize,
    slots: Mutex<Slots<A>>,
}

#[derive(Debug)]
struct Slots<A> {
    by_stream: HashMap<String, (Slot<A>, u64)>,
    /// Bumped on every use; a slot's number says when it was last used.
    clock: u64,
}

impl<A> StateCache<A> {
    pub(crate) fn new(capacity: usize) -> Self {
        StateCache {
            capacity,
            slots: Mutex::new(Slots {
                by_stream: HashMap::new(),
                clock: 0,
            }),
        }
    }

    /// Whether states are kept between commands.
    pub(crate) fn keeps_states(&self) -> bool {
        self.capacity > 0
    }

    /// The slot of `stream`, created empty when missing.
    pub(crate) fn slot(&self, stream: &str) -> Slot<A> {
        // A panic elsewhere cannot leave the map inconsistent: every change is one call.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.clock += 1;
        let now = slots.clock;
        let slot = match slots.by_stream.get_mut(stream) {
            Some((slot, used)) => {
                *used = now;
                Arc::clone(slot)
            }
            None => {
                let slot = Slot::default();
                slots
                    .by_stream
                    .insert(stream.to_owned(), (Arc::clone(&slot), now));
                slot
            }
        };
        // Evict in bursts, so the scan is paid once per quarter of the capacity.
        if slots.by_stream.len() > self.capacity + self.capacity / 4 + 16 {
            slots.evict_down_to(self.capacity);
        }
        slot
    }
}

impl<A> Slots<A> {
    fn evict_down_to(&mut self, capacity: usize) {
        // A slot only this map holds is idle: new holders clone it under the map's lock.
        let mut idle: Vec<(u64, String)> = self
            .by_stream
            .iter()
            .filter(|(_, (slot, _))| Arc::strong_count(slot) == 1)
            .map(|(stream, (_, used))| (*used, stream.clone()))
            .collect();
        idle.sort_unstable();
        let excess = self.by_stream.len().saturating_sub(capacity);
        for (_, stream) in idle.into_iter().take(excess) {
            self.by_stream.remove(&stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_slots_are_evicted_oldest_first_and_busy_ones_kept() {
        let cache = StateCache::<u32>::new(4);
        let busy = cache.slot("busy");
        for n in 0..40 {
            drop(cache.slot(&format!("s-{n}")));
        }
        let slots = cache.slots.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(slots.by_stream.len() <= 4 + 4 / 4 + 16);
        assert!(slots.by_stream.contains_key("busy"));
        assert!(slots.by_stream.contains_key("s-39"));
        assert!(!slots.by_stream.contains_key("s-0"));
        drop(busy);
    }

    #[test]
    fn one_stream_gets_one_slot() {
        let cache = StateCache::<u32>::new(4);
        let first = cache.slot("a");
        let second = cache.slot("a");
        assert!(Arc::ptr_eq(&first, &second));
    }
}
