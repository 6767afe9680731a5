//! chronicle's CloudEvents benchmarks: events per second through the receiver (a no-op
//! handler, and the append-to-stream handler on SQLite and PostgreSQL) and sends per
//! second of the client, with p50 / p99 latencies, each beside a baseline.
//!
//! ```text
//! cargo bench --bench cloudevents --features cloudevents
//! cargo bench --bench cloudevents --features cloudevents -- ce_receiver_append_pg
//! CHRONICLE_BENCH_SECS=2 cargo bench --bench cloudevents --features cloudevents
//! ```
//!
//! Environment: `CHRONICLE_PG_URL`, `CHRONICLE_BENCH_SECS`, `CHRONICLE_BENCH_ROUNDS` as in
//! `benches/core.rs`.
//!
//! The load is chronicle's own client (reqwest) from 8 tasks, so 8 keep-alive HTTP/1.1
//! connections, one event per request (~150 bytes of JSON, structured mode unless the row
//! says binary), each with a new id. The server and the load share the machine's cores.
//!
//! | workload | chronicle | baseline |
//! | --- | --- | --- |
//! | `ce_receiver_noop` | `Receiver` with a no-op handler | a bare axum POST handler that reads the body and answers 202: the HTTP ceiling |
//! | `ce_receiver_append_sqlite`, `_pg` | `Receiver` with `AppendToStream` (one stream per connection) | `Store::append` of the same event from 8 tasks, no HTTP |
//! | `ce_client_structured`, `_binary` | `CloudEventsClient::send` to the bare endpoint | reqwest posting bytes encoded once |

mod harness;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chronicle::cloudevents::axum::{Router, routing::post};
use chronicle::cloudevents::{
    AppendToStream, CloudEvent, CloudEventsClient, Mode, ReceiveError, Receiver, RetryPolicy,
    ServerHandle,
};
use chronicle::{ExpectedVersion, Store};
use serde_json::json;

use harness::{Config, Met, Op, Res, Row, fmt_rate, median, op, run_for, with_schemas};

const WORKLOADS: &[&str] = &[
    "ce_receiver_noop",
    "ce_receiver_append_sqlite",
    "ce_receiver_append_pg",
    "ce_client_structured",
    "ce_client_binary",
];

const TASKS: usize = 8;

/// Latencies of one system's timed window.
#[derive(Clone, Default)]
struct Latencies(Arc<Mutex<Vec<Duration>>>);

impl Latencies {
    fn push(&self, latency: Duration) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(latency);
    }

    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// A system measured: its name, its operation (one request), and where its latencies go.
struct System {
    name: &'static str,
    op: Op,
    latencies: Latencies,
}

/// Each system in turn per round (warm-up, then a timed window); each system's rates and
/// the latencies of all its timed windows.
async fn measure(cfg: &Config, systems: &[System]) -> Res<Vec<(Vec<f64>, Vec<Duration>)>> {
    let mut results: Vec<(Vec<f64>, Vec<Duration>)> =
        systems.iter().map(|_| Default::default()).collect();
    for round in 1..=cfg.rounds {
        let mut line = Vec::new();
        for (system, result) in systems.iter().zip(results.iter_mut()) {
            run_for(TASKS, cfg.warmup, &system.op).await?;
            system.latencies.take();
            let timed = run_for(TASKS, cfg.secs, &system.op).await?;
            result.0.push(timed.per_sec());
            result.1.extend(system.latencies.take());
            line.push(format!("{} {}/s", system.name, fmt_rate(timed.per_sec())));
        }
        eprintln!("  round {round}: {}", line.join(", "));
    }
    for result in &mut results {
        result.1.sort();
    }
    Ok(results)
}

/// The rate row and the latency row of a baseline (first) and chronicle (second).
fn rows(workload: &str, unit: &str, results: &[(Vec<f64>, Vec<Duration>)]) -> Vec<Row> {
    let (baseline, chronicle) = (&results[0], &results[1]);
    let rate = |r: &(Vec<f64>, Vec<Duration>)| median(&r.0);
    let latency = |r: &(Vec<f64>, Vec<Duration>)| {
        format!(
            "{:.2} / {:.2} ms",
            quantile_ms(&r.1, 0.5),
            quantile_ms(&r.1, 0.99)
        )
    };
    vec![
        Row {
            workload: workload.to_owned(),
            chronicle: format!("{} {unit}", fmt_rate(rate(chronicle))),
            baseline: format!("{} {unit}", fmt_rate(rate(baseline))),
            ratio: format!("{:.0}%", rate(chronicle) / rate(baseline) * 100.0),
            target: "—".to_owned(),
            met: Met::Info,
        },
        Row {
            workload: format!("{workload} p50 / p99"),
            chronicle: latency(chronicle),
            baseline: latency(baseline),
            ratio: "—".to_owned(),
            target: "—".to_owned(),
            met: Met::Info,
        },
    ]
}

/// An event of about 150 bytes of JSON, with a new id.
fn event(n: u64, subject: &str) -> Res<CloudEvent> {
    Ok(CloudEvent::builder(format!("bench-{n}"), "/bench", "bench.deposited")
        .subject(subject)
        .data_json(json!({ "account": subject, "amount": n % 1000, "currency": "EUR", "memo": "benchmark deposit" }))
        .build()?)
}

/// A bare axum endpoint: reads the body, answers 202.
async fn bare_endpoint() -> Res<(String, tokio::task::JoinHandle<()>)> {
    let app = Router::new().route(
        "/",
        post(
            |body: chronicle::cloudevents::axum::body::Bytes| async move {
                let _ = body.len();
                chronicle::cloudevents::axum::http::StatusCode::ACCEPTED
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = chronicle::cloudevents::axum::serve(listener, app).await;
    });
    Ok((url, task))
}

fn client(url: &str, mode: Mode) -> Res<CloudEventsClient> {
    Ok(CloudEventsClient::new(url)?
        .mode(mode)
        .retry(RetryPolicy::none()))
}

/// An op sending a new event through `client`, expecting an ACK.
fn send_op(client: CloudEventsClient, latencies: Latencies) -> Op {
    op(move |task| {
        let (client, latencies) = (client.clone(), latencies.clone());
        async move {
            let event = event(harness::next_id(), &format!("bench-{task}"))?;
            let started = Instant::now();
            client.send(&event).await.into_result()?;
            latencies.push(started.elapsed());
            Ok(1)
        }
    })
}

async fn receiver_noop(cfg: &Config) -> Res<Vec<Row>> {
    let (bare, bare_task) = bare_endpoint().await?;
    let server = Receiver::new()
        .on("*", |_| async { Ok::<_, ReceiveError>(()) })
        .serve("127.0.0.1:0")
        .await?;
    let (b, c) = (Latencies::default(), Latencies::default());
    let systems = [
        System {
            name: "bare axum",
            op: send_op(client(&bare, Mode::Structured)?, b.clone()),
            latencies: b,
        },
        System {
            name: "receiver",
            op: send_op(client(&server.url(), Mode::Structured)?, c.clone()),
            latencies: c,
        },
    ];
    let results = measure(cfg, &systems).await?;
    server.shutdown().await?;
    bare_task.abort();
    Ok(rows("ce_receiver_noop", "events/s", &results))
}

/// The append-to-stream receiver on `store` beside direct appends to it.
async fn receiver_append(cfg: &Config, workload: &str, store: Store) -> Res<Vec<Row>> {
    let server: ServerHandle = Receiver::new()
        .append_to_stream("*", AppendToStream::new(store.clone()))
        .serve("127.0.0.1:0")
        .await?;
    let mapping = chronicle::cloudevents::EventMapping::new();
    let (b, c) = (Latencies::default(), Latencies::default());
    let direct = {
        let latencies = b.clone();
        op(move |task| {
            let (store, latencies, mapping) = (store.clone(), latencies.clone(), mapping.clone());
            async move {
                let subject = format!("direct-{task}");
                let new_event = mapping.to_new_event(&event(harness::next_id(), &subject)?)?;
                let started = Instant::now();
                store
                    .append(&subject, ExpectedVersion::Any, vec![new_event])
                    .await?;
                latencies.push(started.elapsed());
                Ok(1)
            }
        })
    };
    let systems = [
        System {
            name: "Store::append",
            op: direct,
            latencies: b,
        },
        System {
            name: "receiver",
            op: send_op(client(&server.url(), Mode::Structured)?, c.clone()),
            latencies: c,
        },
    ];
    let results = measure(cfg, &systems).await?;
    server.shutdown().await?;
    Ok(rows(workload, "events/s", &results))
}

async fn client_send(cfg: &Config, workload: &str, mode: Mode) -> Res<Vec<Row>> {
    let (bare, bare_task) = bare_endpoint().await?;
    let (b, c) = (Latencies::default(), Latencies::default());
    // The baseline posts bytes encoded once, with reqwest alone.
    let http = chronicle::cloudevents::http_client_builder()?.build()?;
    let (headers, body) = chronicle::cloudevents::encode(&event(0, "bench-0")?, mode);
    let raw = {
        let latencies = b.clone();
        let url = bare.clone();
        op(move |_| {
            let request = http.post(&url).headers(headers.clone()).body(body.clone());
            let latencies = latencies.clone();
            async move {
                let started = Instant::now();
                let response = request.send().await?;
                if !response.status().is_success() {
                    return Err(format!("the bare endpoint answered {}", response.status()).into());
                }
                latencies.push(started.elapsed());
                Ok(1)
            }
        })
    };
    let systems = [
        System {
            name: "reqwest",
            op: raw,
            latencies: b,
        },
        System {
            name: "client",
            op: send_op(client(&bare, mode)?, c.clone()),
            latencies: c,
        },
    ];
    let results = measure(cfg, &systems).await?;
    bare_task.abort();
    Ok(rows(workload, "sends/s", &results))
}

async fn run_workload(cfg: &Config, name: &'static str) -> Res<Vec<Row>> {
    match name {
        "ce_receiver_noop" => receiver_noop(cfg).await,
        "ce_receiver_append_sqlite" => {
            let dir = tempfile::tempdir()?;
            let store = Store::open(&harness::sqlite_url(dir.path(), "ce.db")).await?;
            let rows = receiver_append(cfg, name, store.clone()).await;
            store.close().await;
            rows
        }
        "ce_receiver_append_pg" => {
            with_schemas(cfg, async |schemas| {
                let store = schemas.store("ce", 8, |builder| builder).await?;
                let rows = receiver_append(cfg, name, store.clone()).await;
                store.close().await;
                rows
            })
            .await
        }
        "ce_client_structured" => client_send(cfg, name, Mode::Structured).await,
        "ce_client_binary" => client_send(cfg, name, Mode::Binary).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn main() -> Res<()> {
    harness::run("chronicle CloudEvents benchmark", WORKLOADS, run_workload)
}
