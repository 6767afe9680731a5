//! One [`RedisBus`](super::RedisBus) subscription's task: read through the consumer
//! group, run the handler ([`Consumer::attempt`]), and turn each [`Verdict`] into `XACK`,
//! a later `XCLAIM` by this consumer, or a dead letter; claim what dead consumers left
//! (`XAUTOCLAIM`); keep the group's lag for `health`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::streams::{
    StreamAutoClaimReply, StreamClaimReply, StreamId, StreamInfoGroupsReply,
    StreamPendingCountReply, StreamReadReply,
};
use ::redis::{RedisResult, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::entry::{bytes, decode_entry};
use super::is_disconnect;
use super::{
    DATA_FIELD, DEAD_ENTRY_FIELD, DEAD_GROUP_FIELD, DEAD_REASON_FIELD, GroupStart, Link,
    dead_letter_key, stop_requested,
};
use crate::bus::consumer::{Consumer, Shared, Verdict};
use crate::bus::dedup::{self, Seen};

/// A subscription's settings, from the bus's builder.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) start: GroupStart,
    pub(super) block: Duration,
    pub(super) batch: usize,
    pub(super) claim_idle: Duration,
    pub(super) dedup_window: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            start: GroupStart::New,
            block: Duration::from_millis(200),
            batch: 100,
            claim_idle: Duration::from_secs(30),
            dedup_window: dedup::DEFAULT_WINDOW,
        }
    }
}

/// An entry waiting for its next delivery.
struct Waiting {
    key: usize,
    id: String,
    /// The delivery that failed.
    attempt: u32,
    /// How long it waited: its idle time in Redis is at least that when it is due.
    delay: Duration,
}

pub(super) struct Reader {
    conn: ConnectionManager,
    read_conn: ConnectionManager,
    target: Arc<str>,
    keys: Vec<String>,
    group: String,
    name: String,
    ephemeral: bool,
    consumer: Consumer,
    shared: Arc<Shared>,
    link: Arc<Link>,
    settings: Settings,
    lag: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
    /// Entries waiting for a retry, by due time (and a sequence number).
    waiting: BTreeMap<(Instant, u64), Waiting>,
    waiting_ids: HashSet<(usize, String)>,
    sequence: u64,
    /// Entry ids to acknowledge, per key.
    acks: Vec<Vec<String>>,
    seen: Seen,
    /// Where the next `XAUTOCLAIM` of each key starts.
    cursors: Vec<String>,
}

impl Reader {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        conn: ConnectionManager,
        read_conn: ConnectionManager,
        target: Arc<str>,
        keys: Vec<String>,
        group: String,
        name: String,
        ephemeral: bool,
        consumer: Consumer,
        shared: Arc<Shared>,
        link: Arc<Link>,
        settings: Settings,
        lag: Arc<AtomicU64>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let seen = Seen::new(settings.dedup_window);
        Reader {
            acks: vec![Vec::new(); keys.len()],
            cursors: vec!["0-0".to_owned(); keys.len()],
            conn,
            read_conn,
            target,
            keys,
            group,
            name,
            ephemeral,
            consumer,
            shared,
            link,
            settings,
            lag,
            stop,
            waiting: BTreeMap::new(),
            waiting_ids: HashSet::new(),
            sequence: 0,
            seen,
        }
    }

    /// Reads and handles until asked to stop, then acknowledges what it handled and
    /// tidies the group up (a group of its own is destroyed; its consumer removed when
    /// nothing is pending with it).
    pub(super) async fn run(mut self) {
        let tick =
            (self.settings.claim_idle / 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut next_tick = Instant::now();
        let mut failures = 0u32;
        // Until asked to stop, or the bus is dropped (the stop signal's sender with it).
        while !*self.stop.borrow() && self.stop.has_changed().is_ok() {
            self.retry_due().await;
            self.flush_acks().await;
            if Instant::now() >= next_tick {
                self.reclaim().await;
                self.refresh_lag().await;
                next_tick = Instant::now() + tick;
            }
            let mut wait = self.settings.block.min(next_tick - Instant::now());
            if let Some(((due, _), _)) = self.waiting.first_key_value() {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            if self.read(wait.max(Duration::from_millis(1))).await {
                failures = 0;
            } else {
                failures = failures.saturating_add(1);
                let pause = Duration::from_millis(50 * 2u64.pow(failures.min(5)));
                let mut stop = self.stop.clone();
                let _ = tokio::time::timeout(pause, stop_requested(&mut stop)).await;
            }
            self.flush_acks().await;
        }
        self.flush_acks().await;
        self.tidy_up().await;
    }

    fn note_error(&self, message: String) {
        tracing::warn!(group = %self.group, consumer = %self.name, "{message}");
        self.shared.note_error(format!(
            "subscription `{}`: {message}",
            self.consumer.options().display_name()
        ));
    }

    /// One `XREADGROUP … BLOCK`, its entries handled. False when the read failed.
    async fn read(&mut self, block: Duration) -> bool {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.settings.batch)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&self.keys);
        for _ in &self.keys {
            cmd.arg(">");
        }
        let reply: RedisResult<Option<StreamReadReply>> =
            cmd.query_async(&mut self.read_conn).await;
        self.link.observe(&reply, is_disconnect);
        match reply {
            Ok(reply) => {
                for stream in reply.map(|reply| reply.keys).unwrap_or_default() {
                    let Some(key) = self.keys.iter().position(|key| *key == stream.key) else {
                        continue;
                    };
                    for entry in stream.ids {
                        self.handle(key, entry, 1).await;
                    }
                }
                true
            }
            Err(error) if error.code() == Some("NOGROUP") => {
                // The stream (or the group) was deleted: make it again, from its start.
                for key in 0..self.keys.len() {
                    self.recreate_group(key).await;
                }
                true
            }
            Err(error) => {
                self.note_error(format!("reading {:?}: {error}", self.keys));
                false
            }
        }
    }

    async fn recreate_group(&mut self, key: usize) {
        let created: RedisResult<()> = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.keys[key])
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn)
            .await;
        if let Err(error) = created
            && error.code() != Some("BUSYGROUP")
        {
            self.note_error(format!(
                "creating group `{}` on `{}` again: {error}",
                self.group, self.keys[key]
            ));
        }
    }

    /// Runs the handler for delivery `attempt` of `entry` of stream `key`, and does what
    /// its verdict says.
    async fn handle(&mut self, key: usize, entry: StreamId, attempt: u32) {
        let event = match decode_entry(&entry.map, &self.keys[key]) {
            Ok(event) => event,
            Err(error) => {
                self.shared.dead();
                self.note_error(format!("entry {} is dead: {error}", entry.id));
                self.dead_letter(key, &entry, &error.to_string()).await;
                return;
            }
        };
        let options = self.consumer.options();
        if !options.pattern().matches(&event.event_type) || self.seen.contains(&event.id) {
            self.acks[key].push(entry.id);
            return;
        }
        let most = options.deliveries();
        if attempt > most {
            let reason = format!("delivered {attempt} times; the most is {most}");
            self.consumer.give_up(&event, attempt, &reason);
            self.seen.insert(event.id);
            self.dead_letter(key, &entry, &reason).await;
            return;
        }
        let id = event.id;
        match self.consumer.attempt(Arc::new(event), attempt).await {
            Verdict::Ack => {
                self.seen.insert(id);
                self.acks[key].push(entry.id);
            }
            Verdict::Retry(delay) => {
                self.sequence += 1;
                self.waiting_ids.insert((key, entry.id.clone()));
                self.waiting.insert(
                    (Instant::now() + delay, self.sequence),
                    Waiting {
                        key,
                        id: entry.id,
                        attempt,
                        delay,
                    },
                );
            }
            Verdict::Dead { reason } => {
                self.seen.insert(id);
                self.dead_letter(key, &entry, &reason).await;
            }
        }
    }

    /// Delivers again the entries whose pause is over: `XCLAIM`ed by this consumer (which
    /// counts the delivery in Redis) if no other took them meanwhile.
    async fn retry_due(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let waiting = entry.remove();
            self.waiting_ids.remove(&(waiting.key, waiting.id.clone()));
            let claimed: RedisResult<StreamClaimReply> = ::redis::cmd("XCLAIM")
                .arg(&self.keys[waiting.key])
                .arg(&self.group)
                .arg(&self.name)
                .arg(waiting.delay.as_millis() as u64)
                .arg(&waiting.id)
                .query_async(&mut self.conn)
                .await;
            self.link.observe(&claimed, is_disconnect);
            match claimed {
                Ok(reply) => {
                    // Nothing back: another member claimed it, or it was trimmed away.
                    for again in reply.ids {
                        self.handle(waiting.key, again, waiting.attempt + 1).await;
                    }
                }
                Err(error) => {
                    // Left pending: claimed after the idle time.
                    self.note_error(format!("claiming {} for a retry: {error}", waiting.id));
                }
            }
        }
    }

    /// Claims and handles the entries idle with any consumer of the group for the claim
    /// time (`XAUTOCLAIM`), each as delivery number Redis counted (`XPENDING`).
    async fn reclaim(&mut self) {
        for key in 0..self.keys.len() {
            let claimed: RedisResult<StreamAutoClaimReply> = ::redis::cmd("XAUTOCLAIM")
                .arg(&self.keys[key])
                .arg(&self.group)
                .arg(&self.name)
                .arg(self.settings.claim_idle.as_millis() as u64)
                .arg(&self.cursors[key])
                .arg("COUNT")
                .arg(self.settings.batch)
                .query_async(&mut self.conn)
                .await;
            self.link.observe(&claimed, is_disconnect);
            let claimed = match claimed {
                Ok(reply) => {
                    self.cursors[key] = reply.next_stream_id;
                    reply.claimed
                }
                Err(error) => {
                    if error.code() != Some("NOGROUP") {
                        self.note_error(format!("claiming idle entries: {error}"));
                    }
                    continue;
                }
            };
            let claimed: Vec<StreamId> = claimed
                .into_iter()
                .filter(|entry| !self.waiting_ids.contains(&(key, entry.id.clone())))
                .collect();
            let (Some(first), Some(last)) = (claimed.first(), claimed.last()) else {
                continue;
            };
            let counts = self.delivery_counts(key, &first.id, &last.id).await;
            for entry in claimed {
                // Claimed, so delivered at least twice.
                let attempt = counts.get(&entry.id).copied().unwrap_or(2);
                self.handle(key, entry, attempt).await;
            }
        }
        self.flush_acks().await;
    }

    /// How often each entry pending with this consumer between `first` and `last` was
    /// delivered.
    async fn delivery_counts(
        &mut self,
        key: usize,
        first: &str,
        last: &str,
    ) -> HashMap<String, u32> {
        let pending: RedisResult<StreamPendingCountReply> = ::redis::cmd("XPENDING")
            .arg(&self.keys[key])
            .arg(&self.group)
            .arg(first)
            .arg(last)
            .arg(self.settings.batch + self.waiting.len())
            .arg(&self.name)
            .query_async(&mut self.conn)
            .await;
        match pending {
            Ok(reply) => reply
                .ids
                .into_iter()
                .map(|pending| {
                    let count = u32::try_from(pending.times_delivered).unwrap_or(u32::MAX);
                    (pending.id, count)
                })
                .collect(),
            Err(error) => {
                self.note_error(format!("reading delivery counts: {error}"));
                HashMap::new()
            }
        }
    }

    /// `XACK`s what was handled, one pipeline for every key. On failure the entries stay
    /// pending, to be claimed (and dropped as copies) later.
    async fn flush_acks(&mut self) {
        if self.acks.iter().all(Vec::is_empty) {
            return;
        }
        let mut pipe = ::redis::pipe();
        for (key, ids) in self.acks.iter().enumerate() {
            if !ids.is_empty() {
                pipe.cmd("XACK")
                    .arg(&self.keys[key])
                    .arg(&self.group)
                    .arg(ids)
                    .ignore();
            }
        }
        let acked: RedisResult<()> = pipe.query_async(&mut self.conn).await;
        self.link.observe(&acked, is_disconnect);
        if let Err(error) = acked {
            self.note_error(format!("acknowledging: {error}"));
        }
        for ids in &mut self.acks {
            ids.clear();
        }
    }

    /// Appends `entry` to `<key>:dead` with why, then acknowledges it, in one
    /// transaction. On failure it stays pending, to be claimed and given up again.
    async fn dead_letter(&mut self, key: usize, entry: &StreamId, reason: &str) {
        let stream = &self.keys[key];
        let mut fields: Vec<(&String, &[u8])> = entry
            .map
            .iter()
            .filter_map(|(name, value)| Some((name, bytes(value)?)))
            .collect();
        // The envelope first, in a stable order, the body last.
        fields.sort_by_key(|(name, _)| (name.as_str() == DATA_FIELD, name.as_str()));
        let mut add = ::redis::cmd("XADD");
        add.arg(dead_letter_key(stream)).arg("*");
        for (name, value) in fields {
            add.arg(name).arg(value);
        }
        add.arg(DEAD_REASON_FIELD)
            .arg(reason)
            .arg(DEAD_ENTRY_FIELD)
            .arg(&entry.id)
            .arg(DEAD_GROUP_FIELD)
            .arg(&self.group);
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .add_command(add)
            .ignore()
            .cmd("XACK")
            .arg(stream)
            .arg(&self.group)
            .arg(&entry.id)
            .ignore();
        let done: RedisResult<()> = pipe.query_async(&mut self.conn).await;
        self.link.observe(&done, is_disconnect);
        if let Err(error) = done {
            self.note_error(format!("dead-lettering {}: {error}", entry.id));
        }
    }

    /// Keeps, for `health`, the group's entries not yet delivered plus those pending.
    async fn refresh_lag(&mut self) {
        let mut lag = 0u64;
        for key in 0..self.keys.len() {
            let groups: RedisResult<StreamInfoGroupsReply> = ::redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&self.keys[key])
                .query_async(&mut self.conn)
                .await;
            if let Ok(groups) = groups
                && let Some(group) = groups.groups.iter().find(|g| g.name == self.group)
            {
                lag += (group.lag.unwrap_or(0) + group.pending) as u64;
            }
        }
        self.lag.store(lag, Ordering::Relaxed);
    }

    /// At the end: a group made for this subscription is destroyed; otherwise this
    /// consumer leaves the group when nothing is pending with it.
    async fn tidy_up(&mut self) {
        self.lag.store(0, Ordering::Relaxed);
        for key in 0..self.keys.len() {
            let stream = self.keys[key].clone();
            if self.ephemeral {
                let _: RedisResult<Value> = ::redis::cmd("XGROUP")
                    .arg("DESTROY")
                    .arg(&stream)
                    .arg(&self.group)
                    .query_async(&mut self.conn)
                    .await;
                continue;
            }
            let pending: RedisResult<StreamPendingCountReply> = ::redis::cmd("XPENDING")
                .arg(&stream)
                .arg(&self.group)
                .arg("-")
                .arg("+")
                .arg(1)
                .arg(&self.name)
                .query_async(&mut self.conn)
                .await;
            if pending.is_ok_and(|pending| pending.ids.is_empty()) {
                let _: RedisResult<Value> = ::redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&stream)
                    .arg(&self.group)
                    .arg(&self.name)
                    .query_async(&mut self.conn)
                    .await;
            }
        }
        tracing::debug!(group = %self.group, consumer = %self.name, server = %self.target, "subscription closed");
    }
}
