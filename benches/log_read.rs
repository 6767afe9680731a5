//! A SQLite log read in isolation, for instruction counts (`valgrind --tool=callgrind`)
//! and a quick wall-clock rate: `read_all` of a log of [`harness::fill_accounts`]' events
//! (100 streams, appends of 100, ~110-byte JSON payloads), or a relay of it into a
//! `NoopBus` (default batches of 1,000; a relay of a new name each run). Each step is its
//! own run of the binary, so callgrind counts one step whole: the instructions per event
//! of a read are (read − open) / events.
//!
//! ```text
//! cargo bench --bench log_read -- fill /tmp/logread 20000   # writes /tmp/logread/relay.db
//! cargo bench --bench log_read -- open /tmp/logread         # opens the store, closes it
//! cargo bench --bench log_read -- read /tmp/logread         # + read_all of the whole log
//! cargo bench --bench log_read -- relay /tmp/logread 20000  # + a relay into a NoopBus (of EVENTS)
//! valgrind --tool=callgrind target/release/deps/log_read-<hash> read /tmp/logread
//! ```
//!
//! `read` and `relay` print the events they went through and the wall-clock rate.

mod harness;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chronicle::Store;
use chronicle::bus::{BusSink, NoopBus, StartFrom};
use futures::TryStreamExt;

use harness::{Res, fill_accounts, sqlite_url};

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (step, dir) = match args.as_slice() {
        [step, dir, ..] => (step.as_str(), PathBuf::from(dir)),
        _ => {
            eprintln!("usage: log_read fill|open|read|relay DIR [EVENTS]");
            return Ok(());
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match step {
            "fill" => {
                let total = args.get(2).map_or(Ok(20_000), |n| n.parse::<u64>())?;
                std::fs::create_dir_all(&dir)?;
                let store = Store::open(sqlite_url(&dir, "relay.db")).await?;
                fill_accounts(&store, total).await?;
                store.close().await;
                eprintln!("wrote {total} events to {}", dir.display());
            }
            "open" => {
                let store = Store::open(sqlite_url(&dir, "relay.db")).await?;
                store.close().await;
            }
            "read" => {
                let store = Store::open(sqlite_url(&dir, "relay.db")).await?;
                let started = Instant::now();
                let events: u64 = store
                    .read_all(chronicle::LogPosition::START)
                    .try_fold(0, |n, event| {
                        std::hint::black_box(&event);
                        async move { Ok(n + 1) }
                    })
                    .await?;
                let elapsed = started.elapsed().as_secs_f64();
                store.close().await;
                println!(
                    "read {events} events in {elapsed:.3} s: {:.0} events/s",
                    events as f64 / elapsed
                );
            }
            "relay" => {
                let store = Store::open(sqlite_url(&dir, "relay.db")).await?;
                let total = args.get(2).map_or(Ok(20_000), |n| n.parse::<u64>())?;
                // A name of its own in each run: a relay's checkpoint stays in the file.
                let started = Instant::now();
                let relay = store
                    .relay(format!("log-read-{}", uuid::Uuid::now_v7()))
                    .start_from(StartFrom::Beginning)
                    .poll_interval(Duration::from_millis(10))
                    .spawn(BusSink::new(NoopBus::new()));
                relay.wait_for_idle().await?;
                let elapsed = started.elapsed().as_secs_f64();
                let sent = relay.stats().published;
                relay.stop().await?;
                store.close().await;
                if sent != total {
                    return Err(format!("the relay sent {sent} events, expected {total}").into());
                }
                println!(
                    "relayed {sent} events in {elapsed:.3} s: {:.0} events/s",
                    sent as f64 / elapsed
                );
            }
            other => return Err(format!("unknown step `{other}`").into()),
        }
        Ok(())
    })
}
