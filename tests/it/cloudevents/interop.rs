//! Interoperability with the official CloudEvents SDK for Python (`cloudevents` 2.x on
//! PyPI), which nobody here wrote: `tests/interop/cloudevents_peer.py` sends, receives
//! and requests with the SDK's HTTP binding.
//!
//! The interpreter is `CHRONICLE_PYTHON` (`.ci/run` points it at the virtual environment
//! it makes from `tests/interop/requirements.txt`), else `python3`. Without the SDK the
//! tests skip loudly, unless `CHRONICLE_REQUIRE_SERVICES=1`, where they fail.

use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use chronicle::Direction;
use chronicle::cloudevents::{
    AppendToStream, CloudEvent, CloudEventsClient, Data, EventMapping, Mode, ReceiveError, Receiver,
};
use futures::TryStreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Captured, serve};
use crate::support::Kind;

const PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/cloudevents_peer.py"
);
const TIME: &str = "2026-05-01T10:00:00.123456Z";

/// The Python interpreter with the SDK, or `None` (after a loud skip notice).
async fn python(test: &str) -> Option<String> {
    let python = std::env::var("CHRONICLE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let check = tokio::process::Command::new(&python)
        .args([PEER, "check"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    let problem = match check {
        Ok(output) if output.status.success() => return Some(python),
        Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
        Err(error) => error.to_string(),
    };
    if std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!(
            "CHRONICLE_REQUIRE_SERVICES=1 but `{python}` cannot import the CloudEvents SDK \
             (pip install -r tests/interop/requirements.txt; set CHRONICLE_PYTHON): {problem}"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: `{python}` cannot import the CloudEvents SDK; \
         pip install -r tests/interop/requirements.txt and set CHRONICLE_PYTHON ({problem})"
    );
    None
}

/// Runs the peer with `args` to its end (at most 60 s); its stdout.
async fn run_peer(python: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(python)
        .arg(PEER)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the Python peer finishes within 60 s")
        .expect("the Python peer runs");
    assert!(
        output.status.success(),
        "the Python peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn time() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(TIME).expect("time")
}

/// What `cloudevents_peer.py send` posts, as chronicle must read it.
fn sent_by_python() -> Vec<CloudEvent> {
    let event = |id: &str, ty: &str, subject: &str| {
        CloudEvent::builder(id, "/python/sender", ty)
            .subject(subject)
            .time(time())
    };
    vec![
        event("py-structured-1", "com.example.py.structured", "py-1")
            .extension("pyext", "hello")
            .extension("pynum", 42)
            .extension("pyflag", true)
            .data_json(json!({ "greeting": "hello", "n": [1, 2] }))
            .build(),
        // Binary mode: every extension is a string.
        event("py-binary-1", "com.example.py.binary", "py-2 ✓ ünï")
            .extension("pyext", "100% \"quoted\"")
            .data_json(json!({ "greeting": "héllo" }))
            .build(),
        event("py-binary-text", "com.example.py.text", "py-3")
            .data_text("text/plain; charset=utf-8", "hello, chronicle ✓")
            .build(),
        event("py-structured-bytes", "com.example.py.bytes", "py-4")
            .data_binary("application/octet-stream", vec![0, 1, 254, 255])
            .build(),
        event("py-binary-bytes", "com.example.py.bytes", "py-5")
            .data_binary("application/octet-stream", vec![0, 255, 254])
            .build(),
    ]
    .into_iter()
    .map(|event| event.expect("valid"))
    .collect()
}

/// A Python sender posts structured and binary events; the receiver gets them intact and
/// stores them intact (on SQLite).
#[tokio::test]
async fn the_python_sdk_sends_both_modes_to_the_receiver() {
    let Some(python) = python("the_python_sdk_sends_both_modes_to_the_receiver").await else {
        return;
    };
    let t = Kind::Sqlite
        .open("cloudevents_python_sends")
        .await
        .expect("sqlite");
    let captured = Captured::default();
    let seen = captured.clone();
    let append = AppendToStream::new(t.store.clone());
    let server = serve(
        Receiver::new().on("com.example.py.*", move |event: CloudEvent| {
            seen.push(event.clone());
            let append = append.clone();
            async move { append.handle(event).await }
        }),
    )
    .await;

    let output = run_peer(&python, &["send", &server.url()]).await;
    let posts: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(posts.len(), 5, "{output}");
    for post in &posts {
        assert_eq!(post["status"], 202, "{post}");
    }
    let expected = sent_by_python();
    assert_eq!(captured.all(), expected);

    // Stored intact: each goes back out as the very CloudEvent Python sent.
    let mapping = EventMapping::new();
    for event in &expected {
        let subject = event.subject().expect("subject");
        let stored: Vec<_> = t
            .store
            .read_stream(subject, 1, Direction::Forward)
            .try_collect()
            .await
            .expect("read");
        assert_eq!(stored.len(), 1, "{subject}");
        assert_eq!(&mapping.to_cloud_event(&stored[0]).expect("maps"), event);
    }
    // Sent again: stored once.
    run_peer(&python, &["send", &server.url()]).await;
    let all: Vec<_> = t
        .store
        .read_all(chronicle::LogPosition::START)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(all.len(), 5);
    server.shutdown().await.expect("shutdown");
}

/// The Python echo receiver, started on a free port; dropped, it is killed.
struct PythonReceiver {
    _child: tokio::process::Child,
    url: String,
}

async fn python_receiver(python: &str) -> PythonReceiver {
    let mut child = tokio::process::Command::new(python)
        .args([PEER, "serve"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python receiver");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the Python receiver starts within 30 s")
        .expect("read its port")
        .expect("a port");
    PythonReceiver {
        _child: child,
        url: format!("http://127.0.0.1:{}/", port.trim()),
    }
}

/// chronicle's client sends both modes to a Python receiver, which parses them with the
/// SDK and answers with what it saw.
#[tokio::test]
async fn chronicle_sends_both_modes_to_the_python_receiver() {
    let Some(python) = python("chronicle_sends_both_modes_to_the_python_receiver").await else {
        return;
    };
    let peer = python_receiver(&python).await;
    let base = CloudEvent::builder(
        "rs-1",
        "https://chronicle.example.com/orders",
        "com.example.rs.order",
    )
    .subject("order ✓ 1")
    .time(time())
    .dataschema("https://example.com/order.json")
    .extension("tenantid", "acme")
    .extension("hint", "100% \"quoted\"");
    let cases = [
        (
            base.clone()
                .data_json(json!({ "total": 12, "items": ["a", "b"] }))
                .build(),
            json!({ "json": { "total": 12, "items": ["a", "b"] } }),
        ),
        (
            base.clone().data_text("text/plain", "héllo").build(),
            json!({ "text": "héllo" }),
        ),
        (
            base.clone()
                .data_binary("application/octet-stream", vec![0, 255, 254])
                .build(),
            json!({ "base64": "AP/+" }),
        ),
    ];
    for mode in [Mode::Structured, Mode::Binary] {
        let client = CloudEventsClient::new(&peer.url)
            .expect("client")
            .mode(mode);
        for (event, data) in &cases {
            let event = event.clone().expect("valid");
            let echo = client.request(&event).await.expect("an echo");
            assert_eq!(echo.ty(), "com.example.py.echo");
            assert_eq!(echo.id(), "echo-rs-1");
            let Some(Data::Json(seen)) = echo.data() else {
                panic!("an echo with JSON data: {echo:?}");
            };
            let mode_name = match mode {
                Mode::Structured => "structured",
                Mode::Binary => "binary",
            };
            assert_eq!(seen["mode"], mode_name);
            assert_eq!(seen["specversion"], "1.0");
            assert_eq!(seen["id"], "rs-1");
            assert_eq!(seen["source"], "https://chronicle.example.com/orders");
            assert_eq!(seen["type"], "com.example.rs.order");
            assert_eq!(seen["subject"], "order ✓ 1");
            assert_eq!(seen["time"], TIME);
            assert_eq!(seen["dataschema"], "https://example.com/order.json");
            assert_eq!(
                seen["datacontenttype"],
                event.datacontenttype().expect("media type")
            );
            assert_eq!(
                seen["extensions"],
                json!({ "tenantid": "acme", "hint": "100% \"quoted\"" })
            );
            assert_eq!(&seen["data"], data, "{mode_name}");
        }
        // A plain send is an ACK (the echo is its reply).
        assert!(
            client
                .send(&cases[0].0.clone().expect("valid"))
                .await
                .is_ack()
        );
    }
}

/// The receiver's request-response answer parses in Python, in both modes.
#[tokio::test]
async fn the_receivers_answer_parses_in_python() {
    let Some(python) = python("the_receivers_answer_parses_in_python").await else {
        return;
    };
    let server = serve(Receiver::new().on_request(
        "com.example.question",
        |question: CloudEvent| async move {
            let asked = match question.data() {
                Some(Data::Json(value)) => value.clone(),
                _ => Value::Null,
            };
            let answer = CloudEvent::builder(
                format!("answer-{}", question.id()),
                "/chronicle/answers",
                "com.example.answer",
            )
            .subject(question.subject().unwrap_or("none"))
            .time(time())
            .extension("inreplyto", question.id())
            .data_json(json!({ "answer": 42, "question": asked }))
            .build()
            .map_err(ReceiveError::failed)?;
            Ok(answer)
        },
    ))
    .await;
    for (mode, content_type) in [
        ("structured", "application/cloudevents+json"),
        ("binary", "application/json"),
    ] {
        let output = run_peer(&python, &["request", &server.url(), mode]).await;
        let parsed: Value = serde_json::from_str(output.trim()).expect("JSON");
        assert_eq!(parsed["status"], 200, "{parsed}");
        assert_eq!(
            parsed["content_type"], content_type,
            "answered in the request's mode"
        );
        let event = &parsed["event"];
        assert_eq!(event["id"], format!("answer-py-q-{mode}"));
        assert_eq!(event["type"], "com.example.answer");
        assert_eq!(event["source"], "/chronicle/answers");
        assert_eq!(event["subject"], "life");
        assert_eq!(event["time"], TIME);
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(
            event["extensions"],
            json!({ "inreplyto": format!("py-q-{mode}") })
        );
        assert_eq!(
            event["data"],
            json!({ "json": { "answer": 42, "question": { "q": "the answer?" } } })
        );
    }
    server.shutdown().await.expect("shutdown");
}
