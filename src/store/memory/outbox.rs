//! The memory backend's outbox: [`OutboxTx`] for [`MemoryTx`], over [`OutboxTables`],
//! which `Tables` holds beside its other tables and copies on write like them (a
//! transaction copies the requests at its first outbox write; the writer lock serializes
//! those writers, as SQLite's write lock does).
//!
//! The requests (SQL's `handler_requests`) are a map by id with indexes kept beside it:
//! by (handler, event) (a request is created once), the open requests of ordered handlers
//! per (handler, stream), and the requests a claim may take, in claim order. Every change
//! of a request goes through [`Requests::change`], which takes it out of the indexes and
//! puts it back, so they cannot drift from the rows.
//!
//! **Turns.** Where SQL materializes a `ready` flag and moves it ([`OutboxTx::pass_turns`]),
//! here the turn of a (handler, stream) is a rule, [`Queue::turn`]: the running request,
//! else the open one earliest in the log. The claim index holds each queue's turn, found
//! by that rule whenever the queue changes, and every open request of a handler not
//! ordered; `lock_turns` and `pass_turns` have nothing left to do.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, PoisonError};

use uuid::Uuid;

use super::{MemoryTx, Tables};
use crate::error::{Error, Result};
use crate::read::LogPosition;
use crate::store::requests::{
    Claimed, DEAD, DONE, DeadRow, Failed, NewRequest, OutboxTx, PENDING, RUNNING, StateCount,
    TurnKeys,
};

/// The outbox's tables.
#[derive(Debug, Default, Clone)]
pub(super) struct OutboxTables {
    requests: Arc<Requests>,
    /// Where each handler of each outbox starts, by (outbox, handler) (SQL's
    /// `outbox_handlers`; when they were recorded is not kept).
    starts: Arc<BTreeMap<(String, String), LogPosition>>,
}

/// A request as stored (a row of SQL's `handler_requests`).
#[derive(Debug, Clone)]
struct Request {
    handler: Arc<str>,
    event_id: Uuid,
    position: u64,
    commit: u64,
    stream: Arc<str>,
    priority: i32,
    ordered: bool,
    state: i16,
    /// Executions started.
    attempts: i32,
    errors: i32,
    last_error: Option<String>,
    /// Not run before this (microseconds).
    due_at: i64,
    /// A running request's lease.
    locked_until: Option<i64>,
    /// The claim holding it.
    locked_by: Option<Arc<str>>,
    created_at: i64,
    updated_at: i64,
}

impl Request {
    fn is_open(&self) -> bool {
        self.state < DONE
    }

    /// Whether a claim at `now` may take it: pending and due, or running with its lease
    /// run out.
    fn is_due(&self, now: i64) -> bool {
        match self.state {
            PENDING => self.due_at <= now,
            RUNNING => self.locked_until.is_some_and(|until| until < now),
            _ => false,
        }
    }

    fn is_claimed_by(&self, token: &str) -> bool {
        self.state == RUNNING && self.locked_by.as_deref() == Some(token)
    }

    /// Its place in claim order.
    fn claim_order(&self, id: i64) -> (i32, u64, i64) {
        (self.priority, self.position, id)
    }
}

/// The open requests of one (handler, stream) of an ordered handler.
#[derive(Debug, Default, Clone)]
struct Queue {
    /// In log order: (position, id).
    open: BTreeSet<(u64, i64)>,
    /// The running ones among them (one, unless something is wrong).
    running: BTreeSet<(u64, i64)>,
}

impl Queue {
    /// The rule of turns: the request that may run is the running one, else the open one
    /// earliest in the log.
    fn turn(&self) -> Option<i64> {
        self.running
            .first()
            .or_else(|| self.open.first())
            .map(|(_, id)| *id)
    }
}

/// The requests, by id, and their indexes.
#[derive(Debug, Default, Clone)]
struct Requests {
    rows: BTreeMap<i64, Request>,
    /// Each request's id by handler, then event.
    by_event: HashMap<Arc<str>, HashMap<Uuid, i64>>,
    /// The open requests a claim may take, in claim order (priority, position, id):
    /// every open request of a handler not ordered, and the turn of each queue.
    ready: BTreeSet<(i32, u64, i64)>,
    /// The open requests of ordered handlers, by handler, then stream.
    queues: HashMap<Arc<str>, HashMap<Arc<str>, Queue>>,
    last_id: i64,
}

impl Requests {
    fn contains(&self, handler: &str, event_id: Uuid) -> bool {
        self.by_event
            .get(handler)
            .is_some_and(|events| events.contains_key(&event_id))
    }

    /// Creates `request`, due at `now`, unless its (handler, event) has one already.
    fn insert(&mut self, request: &NewRequest<'_>, now: i64) -> bool {
        if self.contains(request.handler, request.event_id) {
            return false;
        }
        let handler = match self.by_event.get_key_value(request.handler) {
            Some((handler, _)) => Arc::clone(handler),
            None => Arc::from(request.handler),
        };
        self.last_id += 1;
        let id = self.last_id;
        self.by_event
            .entry(Arc::clone(&handler))
            .or_default()
            .insert(request.event_id, id);
        self.rows.insert(
            id,
            Request {
                handler,
                event_id: request.event_id,
                position: request.position,
                commit: request.commit,
                stream: Arc::from(request.stream),
                priority: request.priority,
                ordered: request.ordered,
                state: PENDING,
                attempts: 0,
                errors: 0,
                last_error: None,
                due_at: now,
                locked_until: None,
                locked_by: None,
                created_at: now,
                updated_at: now,
            },
        );
        self.index(id, true);
        true
    }

    /// Applies `change` to request `id`, and brings the indexes up to date.
    fn change(&mut self, id: i64, change: impl FnOnce(&mut Request)) {
        self.index(id, false);
        if let Some(row) = self.rows.get_mut(&id) {
            change(row);
        }
        self.index(id, true);
    }

    /// Deletes request `id`.
    fn remove(&mut self, id: i64) {
        self.index(id, false);
        if let Some(row) = self.rows.remove(&id)
            && let Some(events) = self.by_event.get_mut(&row.handler)
        {
            events.remove(&row.event_id);
            if events.is_empty() {
                self.by_event.remove(&row.handler);
            }
        }
    }

    /// Puts open request `id` into the indexes (`add`) or takes it out, and gives its
    /// queue's turn by [`Queue::turn`]. A request done or dead is in none.
    fn index(&mut self, id: i64, add: bool) {
        let Some(row) = self.rows.get(&id).filter(|row| row.is_open()) else {
            return;
        };
        let at = row.claim_order(id);
        if !row.ordered {
            if add {
                self.ready.insert(at);
            } else {
                self.ready.remove(&at);
            }
            return;
        }
        let (handler, stream) = (Arc::clone(&row.handler), Arc::clone(&row.stream));
        let place = (row.position, id);
        let running = row.state == RUNNING;
        let streams = self.queues.entry(handler).or_default();
        let queue = streams.entry(Arc::clone(&stream)).or_default();
        let before = queue.turn();
        if add {
            queue.open.insert(place);
            if running {
                queue.running.insert(place);
            }
        } else {
            queue.open.remove(&place);
            queue.running.remove(&place);
        }
        let after = queue.turn();
        if queue.open.is_empty() {
            streams.remove(&stream);
            if streams.is_empty() {
                self.queues.remove(&row.handler);
            }
        }
        if before != after {
            for (turn, add) in [(before, false), (after, true)] {
                let Some(at) = turn.and_then(|id| Some(self.rows.get(&id)?.claim_order(id))) else {
                    continue;
                };
                if add {
                    self.ready.insert(at);
                } else {
                    self.ready.remove(&at);
                }
            }
        }
    }

    /// The open requests' ids.
    fn open(&self) -> impl Iterator<Item = i64> + '_ {
        let unordered = self
            .ready
            .iter()
            .map(|(_, _, id)| *id)
            .filter(|id| self.rows.get(id).is_some_and(|row| !row.ordered));
        let ordered = self
            .queues
            .values()
            .flat_map(HashMap::values)
            .flat_map(|queue| queue.open.iter().map(|(_, id)| *id));
        unordered.chain(ordered)
    }
}

/// Handler names as the outbox passes them (a JSON array).
fn handler_set(handlers: &str) -> Result<HashSet<String>> {
    serde_json::from_str(handlers)
        .map_err(|error| Error::Internal(format!("the outbox's handler names: {error}")))
}

/// A position as the request rows return it.
fn signed(position: u64) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
}

impl MemoryTx {
    /// The tables as the transaction reads them, without taking the writer lock: its own
    /// once it writes, the committed ones before (their `Arc`s).
    fn view(&self) -> Tables {
        match &self.open {
            Some((_, tables)) => tables.clone(),
            None => self
                .committed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// The requests to write: the first call takes the writer lock (and a transaction's
    /// first outbox write copies them).
    async fn requests_mut(&mut self) -> Result<&mut Requests> {
        let (tables, _) = self.write().await?;
        Ok(Arc::make_mut(&mut tables.outbox.requests))
    }

    /// The requests, read under the writer lock, for a write that may follow.
    async fn requests_locked(&mut self) -> Result<&Requests> {
        let (tables, _) = self.write().await?;
        Ok(&tables.outbox.requests)
    }
}

impl OutboxTx for MemoryTx {
    async fn insert_requests(&mut self, requests: &[NewRequest<'_>], now: i64) -> Result<u64> {
        if requests.is_empty() {
            return Ok(0);
        }
        let stored = self.requests_locked().await?;
        if requests
            .iter()
            .all(|request| stored.contains(request.handler, request.event_id))
        {
            return Ok(0);
        }
        let stored = self.requests_mut().await?;
        let created = requests
            .iter()
            .filter(|request| stored.insert(request, now))
            .count();
        Ok(created as u64)
    }

    /// Nothing: the writer lock serializes the writers.
    async fn lock_turns(&mut self, _: &TurnKeys<'_>) -> Result<()> {
        Ok(())
    }

    /// Nothing: every change gives the turns by their rule.
    async fn pass_turns(&mut self, _: &TurnKeys<'_>) -> Result<()> {
        Ok(())
    }

    async fn claim_requests(
        &mut self,
        handlers: &str,
        token: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>> {
        let handlers = handler_set(handlers)?;
        let stored = self.requests_locked().await?;
        let due: Vec<i64> = stored
            .ready
            .iter()
            .map(|(_, _, id)| *id)
            .filter(|id| {
                stored
                    .rows
                    .get(id)
                    .is_some_and(|row| row.is_due(now) && handlers.contains(&*row.handler))
            })
            .take(limit)
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let stored = self.requests_mut().await?;
        let token: Arc<str> = Arc::from(token);
        let mut claimed = Vec::with_capacity(due.len());
        for id in due {
            stored.change(id, |row| {
                row.state = RUNNING;
                row.attempts = row.attempts.saturating_add(1);
                row.locked_until = Some(lease_until);
                row.locked_by = Some(Arc::clone(&token));
                row.updated_at = now;
            });
            if let Some(row) = stored.rows.get(&id) {
                claimed.push(Claimed {
                    id,
                    handler: row.handler.to_string(),
                    event_id: row.event_id,
                    stream_id: row.stream.to_string(),
                    attempts: row.attempts,
                    errors: row.errors,
                    priority: row.priority,
                    event_position: signed(row.position),
                    ordered: row.ordered,
                    token: token.to_string(),
                });
            }
        }
        Ok(claimed)
    }

    async fn finish_done(&mut self, ids: &[i64], token: &str, now: i64) -> Result<Vec<i64>> {
        let stored = self.requests_locked().await?;
        let held: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| stored.rows.get(id).is_some_and(|r| r.is_claimed_by(token)))
            .collect();
        if held.is_empty() {
            return Ok(held);
        }
        let stored = self.requests_mut().await?;
        for id in &held {
            stored.change(*id, |row| {
                row.state = DONE;
                row.due_at = now;
                row.locked_until = None;
                row.locked_by = None;
                row.updated_at = now;
            });
        }
        Ok(held)
    }

    async fn finish_failed(
        &mut self,
        id: i64,
        token: &str,
        failed: &Failed<'_>,
        now: i64,
    ) -> Result<bool> {
        let stored = self.requests_locked().await?;
        if !stored.rows.get(&id).is_some_and(|r| r.is_claimed_by(token)) {
            return Ok(false);
        }
        self.requests_mut().await?.change(id, |row| {
            row.state = if failed.dead { DEAD } else { PENDING };
            row.errors = row.errors.saturating_add(1);
            row.last_error = Some(failed.error.to_owned());
            row.due_at = failed.due_at;
            row.locked_until = None;
            row.locked_by = None;
            row.updated_at = now;
        });
        Ok(true)
    }

    async fn request_counts(&mut self) -> Result<Vec<StateCount>> {
        let view = self.view();
        let mut counts: BTreeMap<(&str, i16, bool), (u64, i64)> = BTreeMap::new();
        for row in view.outbox.requests.rows.values() {
            let (count, oldest) = counts
                .entry((&row.handler, row.state, row.errors > 0))
                .or_insert((0, row.created_at));
            *count += 1;
            *oldest = (*oldest).min(row.created_at);
        }
        Ok(counts
            .into_iter()
            .map(|((handler, state, failed), (count, oldest))| StateCount {
                handler: handler.to_owned(),
                state,
                failed,
                count,
                oldest,
            })
            .collect())
    }

    async fn list_requests(&mut self) -> Result<Vec<(String, Uuid)>> {
        let view = self.view();
        Ok(view
            .outbox
            .requests
            .rows
            .values()
            .map(|row| (row.handler.to_string(), row.event_id))
            .collect())
    }

    async fn dead_requests(&mut self, handler: Option<&str>, limit: usize) -> Result<Vec<DeadRow>> {
        let view = self.view();
        Ok(view
            .outbox
            .requests
            .rows
            .iter()
            .filter(|(_, row)| row.state == DEAD && handler.is_none_or(|h| *row.handler == *h))
            .take(limit)
            .map(|(id, row)| DeadRow {
                id: *id,
                handler: row.handler.to_string(),
                event_id: row.event_id,
                stream_id: row.stream.to_string(),
                errors: row.errors,
                last_error: row.last_error.clone(),
                updated_at: row.updated_at,
            })
            .collect())
    }

    async fn retry_dead(
        &mut self,
        id: Option<i64>,
        handler: Option<&str>,
        now: i64,
    ) -> Result<u64> {
        let stored = self.requests_locked().await?;
        let dead: Vec<i64> = match id {
            Some(id) => stored
                .rows
                .get(&id)
                .map(|row| (id, row))
                .into_iter()
                .collect::<Vec<_>>(),
            None => stored
                .rows
                .iter()
                .map(|(id, row)| (*id, row))
                .collect::<Vec<_>>(),
        }
        .into_iter()
        .filter(|(_, row)| row.state == DEAD && handler.is_none_or(|h| *row.handler == *h))
        .map(|(id, _)| id)
        .collect();
        if dead.is_empty() {
            return Ok(0);
        }
        let stored = self.requests_mut().await?;
        for id in &dead {
            stored.change(*id, |row| {
                row.state = PENDING;
                row.errors = 0;
                row.due_at = now;
                row.updated_at = now;
            });
        }
        Ok(dead.len() as u64)
    }

    async fn register_handlers(
        &mut self,
        outbox: &str,
        handlers: &[(&str, LogPosition)],
        _now: i64,
    ) -> Result<Vec<(String, LogPosition)>> {
        let (tables, _) = self.write().await?;
        let of_outbox = |starts: &BTreeMap<(String, String), LogPosition>| {
            starts
                .range((outbox.to_owned(), String::new())..)
                .take_while(|((name, _), _)| name == outbox)
                .map(|((_, handler), start)| (handler.clone(), *start))
                .collect::<Vec<_>>()
        };
        let recorded = of_outbox(&tables.outbox.starts);
        let upgraded = recorded.is_empty() && tables.checkpoints.contains_key(outbox);
        let missing: Vec<&(&str, LogPosition)> = handlers
            .iter()
            .filter(|(handler, _)| !recorded.iter().any(|(name, _)| name == handler))
            .collect();
        if missing.is_empty() {
            return Ok(recorded);
        }
        let starts = Arc::make_mut(&mut tables.outbox.starts);
        for (handler, start) in missing {
            let start = if upgraded { LogPosition::START } else { *start };
            starts
                .entry((outbox.to_owned(), (*handler).to_owned()))
                .or_insert(start);
        }
        Ok(of_outbox(starts))
    }

    async fn open_requests_until(&mut self, handlers: &str, until: LogPosition) -> Result<u64> {
        let handlers = handler_set(handlers)?;
        let view = self.view();
        let stored = &view.outbox.requests;
        let open = stored
            .open()
            .filter_map(|id| stored.rows.get(&id))
            .filter(|row| {
                handlers.contains(&*row.handler)
                    && LogPosition::new(row.commit, row.position) <= until
            })
            .count();
        Ok(open as u64)
    }

    async fn last_committed_event(&mut self) -> Result<LogPosition> {
        let view = self.view();
        Ok(view
            .log
            .values()
            .next_back()
            .map_or(LogPosition::START, |event| event.log_position()))
    }

    async fn purge_done(&mut self, before: i64) -> Result<u64> {
        let stored = self.requests_locked().await?;
        let purged: Vec<i64> = stored
            .rows
            .iter()
            .filter(|(_, row)| row.state == DONE && row.updated_at < before)
            .map(|(id, _)| *id)
            .collect();
        if purged.is_empty() {
            return Ok(0);
        }
        let stored = self.requests_mut().await?;
        for id in &purged {
            stored.remove(*id);
        }
        Ok(purged.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::Backend;
    use crate::store::batch::Flush;
    use crate::store::memory::MemoryBackend;

    /// The requests that may run, found from the rows alone by the rule of turns.
    fn by_the_rule(requests: &Requests) -> BTreeSet<(i32, u64, i64)> {
        let open: Vec<(i64, &Request)> = requests
            .rows
            .iter()
            .filter(|(_, row)| row.is_open())
            .map(|(id, row)| (*id, row))
            .collect();
        let mut ready = BTreeSet::new();
        for (id, row) in &open {
            let queue: Vec<&(i64, &Request)> = open
                .iter()
                .filter(|(_, r)| r.ordered && r.handler == row.handler && r.stream == row.stream)
                .collect();
            let earliest = |running: bool| {
                queue
                    .iter()
                    .filter(|(_, r)| !running || r.state == RUNNING)
                    .min_by_key(|(id, r)| (r.position, *id))
                    .map(|(id, _)| *id)
            };
            let turn = earliest(true).or_else(|| earliest(false));
            if !row.ordered || turn == Some(*id) {
                ready.insert(row.claim_order(*id));
            }
        }
        ready
    }

    /// A small deterministic generator (an LCG), for a sequence of operations.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, sides: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % sides
        }
    }

    /// Whatever the operations, the claim index holds exactly what the rule of turns
    /// says, and a (handler, stream) of an ordered handler never has two running.
    #[tokio::test]
    async fn the_claim_index_follows_the_rule_of_turns() {
        let backend = MemoryBackend::default();
        let mut dice = Dice(17);
        let events: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
        let mut next_event = 0;
        let mut claims = Vec::new();
        let mut states = BTreeSet::new();
        // Whether a request ever waited, revived, before a later one running.
        let mut behind_running = false;
        for now in 0..1000_i64 {
            let mut tx = backend.begin_batch(Flush::Wait).await.expect("begins");
            match dice.roll(10) {
                0 | 1 if next_event < events.len() => {
                    let streams = ["s-0", "s-1", "s-2"];
                    let stream = streams[dice.roll(3) as usize];
                    let position = next_event as u64 + 1;
                    let priority = i32::from(dice.roll(2) == 0);
                    let new = |handler, ordered| NewRequest {
                        handler,
                        event_id: events[next_event],
                        position,
                        commit: 0,
                        stream,
                        priority,
                        ordered,
                    };
                    let requests = [new("ordered", true), new("unordered", false)];
                    let created = tx.insert_requests(&requests, now).await.expect("inserts");
                    assert_eq!(created, 2);
                    assert_eq!(tx.insert_requests(&requests, now).await.expect("again"), 0);
                    next_event += 1;
                }
                2 | 3 => {
                    let limit = dice.roll(3) as usize + 1;
                    // Mostly long leases, some that run out.
                    let lease = if dice.roll(4) == 0 { 2 } else { 40 };
                    let token = format!("claim-{now}");
                    let handlers = r#"["ordered","unordered"]"#;
                    let claimed = tx
                        .claim_requests(handlers, &token, now, now + lease, limit)
                        .await
                        .expect("claims");
                    claims.extend(claimed.into_iter().map(|c| (c.id, c.token)));
                }
                4..=7 if !claims.is_empty() => {
                    let (id, token) = claims.swap_remove(dice.roll(claims.len() as u64) as usize);
                    let failed = Failed {
                        error: "no",
                        dead: dice.roll(2) == 0,
                        due_at: now + 1,
                    };
                    match dice.roll(2) {
                        0 => drop(tx.finish_done(&[id], &token, now).await.expect("done")),
                        _ => drop(
                            tx.finish_failed(id, &token, &failed, now)
                                .await
                                .expect("failed"),
                        ),
                    }
                }
                8 => drop(tx.retry_dead(None, None, now).await.expect("revives")),
                9 => drop(tx.purge_done(now - 20).await.expect("purges")),
                _ => {}
            }
            tx.commit().await.expect("commits");
            let tables = backend.lock().expect("tables");
            let requests = &tables.outbox.requests;
            assert_eq!(requests.ready, by_the_rule(requests), "after step {now}");
            let mut running = HashSet::new();
            behind_running |= requests.queues.values().flat_map(HashMap::values).any(|q| {
                q.running
                    .first()
                    .is_some_and(|running| q.open.first() != Some(running))
            });
            for row in requests.rows.values() {
                states.insert(row.state);
                if row.ordered && row.state == RUNNING {
                    let key = (row.handler.clone(), row.stream.clone());
                    assert!(running.insert(key), "two running in one stream at {now}");
                }
            }
        }
        assert_eq!(states.len(), 4, "every state was reached: {states:?}");
        assert!(behind_running, "a revived request waited for a running one");
    }
}
