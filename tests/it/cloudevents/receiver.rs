//! The receiver over a real socket: the three modes in, the answers the HTTP binding
//! prescribes, bad input that never panics and stores nothing, backpressure, the three
//! kinds of handler, idempotent storing on both SQL backends, graceful shutdown, curl.

use std::time::Duration;

use chronicle::cloudevents::{
    AppendToStream, CloudEvent, CloudEventsClient, Data, Delivery, Mode, ReceiveError, Receiver,
    ServerHandle, StreamNaming, format,
};
use chronicle::{Direction, Store};
use futures::TryStreamExt;
use serde_json::{Value, json};

use super::{Captured, event, raw, serve};
use crate::support::Kind;

async fn count(store: &Store, stream: &str) -> usize {
    store
        .read_stream(stream, 1, Direction::Forward)
        .try_collect::<Vec<_>>()
        .await
        .map_or(0, |events| events.len())
}

async fn log_size(store: &Store) -> usize {
    store
        .read_all(chronicle::LogPosition::START)
        .try_collect::<Vec<_>>()
        .await
        .expect("read all")
        .len()
}

#[tokio::test]
async fn structured_binary_and_batch_events_reach_the_handler_intact() {
    let captured = Captured::default();
    let server = serve(captured.receiver()).await;
    let sent = vec![
        event("s-1", "com.example.a", "thing-1"),
        CloudEvent::builder("b-1", "/tests", "com.example.b")
            .subject("thing ✓ 2")
            .extension("hint", "100% \"quoted\"")
            .data_text("text/plain; charset=utf-8", "héllo")
            .build()
            .expect("valid"),
        CloudEvent::builder("b-2", "/tests", "com.example.c")
            .data_binary("application/octet-stream", vec![0, 1, 254, 255])
            .build()
            .expect("valid"),
    ];
    let structured = CloudEventsClient::new(&server.url()).expect("client");
    let binary = structured.clone().mode(Mode::Binary);
    assert!(structured.send(&sent[0]).await.is_ack());
    assert!(binary.send(&sent[1]).await.is_ack());
    assert!(binary.send(&sent[2]).await.is_ack());
    assert!(structured.send_batch(&sent).await.is_ack());
    assert!(
        structured.send_batch(&[]).await.is_ack(),
        "an empty batch is fine"
    );
    let mut expected = sent.clone();
    expected.extend(sent);
    assert_eq!(captured.all(), expected);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn request_response_answers_in_the_requests_mode() {
    let receiver =
        Receiver::new().on_request("com.example.question", |question: CloudEvent| async move {
            let answer = CloudEvent::builder(
                format!("{}-answer", question.id()),
                "/answers",
                "com.example.answer",
            )
            .subject(question.subject().unwrap_or("none"))
            .extension("inreplyto", question.id())
            .data_json(json!({ "answer": 42 }))
            .build()?;
            Ok(answer)
        });
    let server = serve(receiver).await;
    let question = event("q-1", "com.example.question", "life");
    for mode in [Mode::Structured, Mode::Binary] {
        let client = CloudEventsClient::new(&server.url())
            .expect("client")
            .mode(mode);
        let answer = client.request(&question).await.expect("an answer");
        assert_eq!(answer.id(), "q-1-answer");
        assert_eq!(answer.subject(), Some("life"));
        assert_eq!(answer.extension("inreplyto"), Some(&"q-1".into()));
        assert_eq!(answer.data(), Some(&Data::Json(json!({ "answer": 42 }))));

        // The raw answer is in the request's mode.
        let (headers, body) = chronicle::cloudevents::encode(&question, mode);
        let response = raw()
            .post(server.url())
            .headers(headers)
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        match mode {
            Mode::Structured => assert_eq!(content_type, "application/cloudevents+json"),
            Mode::Binary => {
                assert_eq!(content_type, "application/json");
                assert_eq!(response.headers()["ce-id"], "q-1-answer");
                assert_eq!(response.headers()["ce-inreplyto"], "q-1");
            }
        }
    }
    // A batch of questions is answered with a batch.
    let (headers, body) = chronicle::cloudevents::encode_batch(&[
        question.clone(),
        event("q-2", "com.example.question", "x"),
    ]);
    let response = raw()
        .post(server.url())
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(
        response.headers()["content-type"],
        "application/cloudevents-batch+json"
    );
    let answers =
        format::batch_from_bytes(&response.bytes().await.expect("body")).expect("a batch");
    let ids: Vec<&str> = answers.iter().map(CloudEvent::id).collect();
    assert_eq!(ids, ["q-1-answer", "q-2-answer"]);
    server.shutdown().await.expect("shutdown");
}

/// Posts `body` with `headers` and returns the status, the `attribute` the answer names,
/// and the answer's JSON.
async fn post(
    server: &ServerHandle,
    headers: &[(&str, &[u8])],
    body: impl Into<Vec<u8>>,
) -> (u16, Option<String>, Value) {
    let mut request = raw().post(server.url()).body(body.into());
    for (name, value) in headers {
        request = request.header(
            *name,
            chronicle::cloudevents::reqwest::header::HeaderValue::from_bytes(value).expect("value"),
        );
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("a body");
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let attribute = json["attribute"].as_str().map(str::to_owned);
    (status, attribute, json)
}

type Header = (&'static str, &'static [u8]);
/// What is wrong, the headers, the body, the status expected and the attribute it names.
type Case = (
    &'static str,
    Vec<Header>,
    Vec<u8>,
    u16,
    Option<&'static str>,
);
/// What is wrong, the header that breaks it, the status and the attribute named.
type BinaryCase = (&'static str, Header, u16, Option<&'static str>);

const STRUCTURED: (&str, &[u8]) = ("content-type", b"application/cloudevents+json");

fn binary_headers() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("ce-specversion", b"1.0"),
        ("ce-id", b"bad-1"),
        ("ce-source", b"/tests"),
        ("ce-type", b"com.example.bad"),
        ("ce-subject", b"bad-1"),
        ("content-type", b"application/json"),
    ]
}

/// Every kind of bad input gets its typed 4xx, and nothing is stored.
async fn bad_input_gets_a_typed_4xx_and_stores_nothing(kind: Kind) {
    let Some(t) = kind.open("cloudevents_bad_input").await else {
        return;
    };
    let receiver = Receiver::new()
        .append_to_stream("*", AppendToStream::new(t.store.clone()))
        .max_body_bytes(1024);
    let server = serve(receiver).await;
    let valid = format::to_json(&event("ok-1", "com.example.ok", "ok-1"));
    let with = |name: &str, value: Value| {
        let mut object = valid.clone();
        object[name] = value;
        object.to_string()
    };
    let without = |name: &str| {
        let mut object = valid.clone();
        object.as_object_mut().expect("object").remove(name);
        object.to_string()
    };

    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            vec![STRUCTURED],
            b"{\"specversion\": \"1.0\", ".to_vec(),
            400,
            None,
        ),
        (
            "not an object",
            vec![STRUCTURED],
            b"[1, 2]".to_vec(),
            400,
            None,
        ),
        (
            "a batch that is no array",
            vec![("content-type", b"application/cloudevents-batch+json")],
            valid.to_string().into_bytes(),
            400,
            None,
        ),
        (
            "missing specversion",
            vec![STRUCTURED],
            without("specversion").into_bytes(),
            400,
            Some("specversion"),
        ),
        (
            "unknown specversion",
            vec![STRUCTURED],
            with("specversion", json!("0.3")).into_bytes(),
            400,
            Some("specversion"),
        ),
        (
            "missing id",
            vec![STRUCTURED],
            without("id").into_bytes(),
            400,
            Some("id"),
        ),
        (
            "a source that is no URI",
            vec![STRUCTURED],
            with("source", json!("a b")).into_bytes(),
            400,
            Some("source"),
        ),
        (
            "a bad time",
            vec![STRUCTURED],
            with("time", json!("today")).into_bytes(),
            400,
            Some("time"),
        ),
        (
            "wrong data_base64",
            vec![STRUCTURED],
            {
                let mut object = valid.clone();
                object.as_object_mut().expect("object").remove("data");
                object["datacontenttype"] = json!("application/octet-stream");
                object["data_base64"] = json!("not*base64");
                object.to_string().into_bytes()
            },
            400,
            Some("data_base64"),
        ),
        (
            "a bad extension name",
            vec![STRUCTURED],
            with("Bad-Name", json!(1)).into_bytes(),
            400,
            Some("Bad-Name"),
        ),
        (
            "a batch with one bad event",
            vec![("content-type", b"application/cloudevents-batch+json")],
            format!("[{valid}, {}]", without("type")).into_bytes(),
            400,
            Some("type"),
        ),
        (
            "an unsupported format",
            vec![("content-type", b"application/cloudevents+xml")],
            b"<event/>".to_vec(),
            415,
            None,
        ),
        (
            "no ce- headers",
            vec![("content-type", b"application/json")],
            b"{}".to_vec(),
            415,
            None,
        ),
        (
            "no content type, no headers",
            vec![],
            b"{}".to_vec(),
            415,
            None,
        ),
        (
            "oversized",
            vec![STRUCTURED],
            with("data", json!("x".repeat(2000))).into_bytes(),
            413,
            None,
        ),
    ];
    for (what, headers, body, status, attribute) in cases {
        let (got, named, answer) = post(&server, &headers, body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(named.as_deref(), attribute, "{what}: {answer}");
        assert!(
            answer["error"].is_string(),
            "{what}: the answer says why: {answer}"
        );
    }

    // Binary mode: headers broken one at a time.
    let binary_cases: Vec<BinaryCase> = vec![
        (
            "missing specversion",
            ("ce-specversion", b""),
            400,
            Some("specversion"),
        ),
        (
            "unknown specversion",
            ("ce-specversion", b"2.0"),
            400,
            Some("specversion"),
        ),
        (
            "bad percent-encoding",
            ("ce-subject", b"caf%C3"),
            400,
            Some("subject"),
        ),
        (
            "a percent sign without hex",
            ("ce-subject", b"100%"),
            400,
            Some("subject"),
        ),
        (
            "raw non-ASCII",
            ("ce-subject", "café".as_bytes()),
            400,
            Some("subject"),
        ),
        (
            "an encoded control character",
            ("ce-subject", b"a%0Ab"),
            400,
            Some("subject"),
        ),
        ("a bad time", ("ce-time", b"12:00"), 400, Some("time")),
        (
            "a bad extension name",
            ("ce-my_ext", b"x"),
            400,
            Some("my_ext"),
        ),
    ];
    for (what, (name, value), status, attribute) in binary_cases {
        let mut headers: Vec<(&str, &[u8])> = binary_headers()
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect();
        if !value.is_empty() {
            headers.push((name, value));
        }
        let (got, named, answer) = post(&server, &headers, b"{}".to_vec()).await;
        assert_eq!(got, status, "binary, {what}: {answer}");
        assert_eq!(named.as_deref(), attribute, "binary, {what}: {answer}");
    }
    let (got, named, _) = post(&server, &binary_headers(), b"{not json".to_vec()).await;
    assert_eq!(
        (got, named.as_deref()),
        (400, Some("data")),
        "a body that is not its JSON"
    );

    // An oversized body without a Content-Length (chunked) is cut off too.
    assert_eq!(chunked_status(&server, 40, 100).await, "413");

    assert_eq!(log_size(&t.store).await, 0, "nothing was stored");
    // And the server still serves.
    let client = CloudEventsClient::new(&server.url()).expect("client");
    assert!(
        client
            .send(&event("ok-1", "com.example.ok", "ok-1"))
            .await
            .is_ack()
    );
    assert_eq!(count(&t.store, "ok-1").await, 1);
    server.shutdown().await.expect("shutdown");
}

/// Storing is idempotent on the event id, in every mode; the same id with other content
/// is a 409, and an event that names no stream a 400 naming `subject`.
async fn append_to_stream_is_idempotent_on_the_event_id(kind: Kind) {
    let Some(t) = kind.open("cloudevents_append_idempotent").await else {
        return;
    };
    let receiver = Receiver::new()
        .append_to_stream(
            "fixed.*",
            AppendToStream::new(t.store.clone()).stream(StreamNaming::Fixed("inbox-fixed".into())),
        )
        .append_to_stream("*", AppendToStream::new(t.store.clone()));
    let server = serve(receiver).await;
    let structured = CloudEventsClient::new(&server.url()).expect("client");
    let binary = structured.clone().mode(Mode::Binary);
    let first = event("order-1-placed", "order.placed", "order-1");
    let second = event("order-1-paid", "order.paid", "order-1");
    for _ in 0..2 {
        assert!(structured.send(&first).await.is_ack());
        assert!(binary.send(&first).await.is_ack());
        assert!(
            structured
                .send_batch(&[first.clone(), second.clone()])
                .await
                .is_ack()
        );
    }
    assert_eq!(count(&t.store, "order-1").await, 2, "each event once");

    let changed = first
        .to_builder()
        .data_json(json!({ "changed": true }))
        .build()
        .expect("valid");
    match structured.send(&changed).await {
        Delivery::Nack(nack) => {
            assert_eq!(nack.status, 409);
            assert!(!nack.is_retryable());
            assert_eq!(nack.attempts, 1, "a 409 is not retried");
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    let anonymous = CloudEvent::builder("a-1", "/tests", "order.note")
        .build()
        .expect("valid");
    match structured.send(&anonymous).await {
        Delivery::Nack(nack) => {
            assert_eq!(nack.status, 400);
            let body: Value = serde_json::from_str(&nack.body).expect("JSON");
            assert_eq!(body["attribute"], "subject");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(
        structured
            .send(&event("f-1", "fixed.one", "ignored"))
            .await
            .is_ack()
    );
    assert_eq!(count(&t.store, "inbox-fixed").await, 1);

    // Stored intact: back out as the same CloudEvent.
    let stored: Vec<_> = t
        .store
        .read_stream("order-1", 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read");
    let out = chronicle::cloudevents::EventMapping::new()
        .to_cloud_event(&stored[0])
        .expect("maps");
    assert_eq!(out, first);
    server.shutdown().await.expect("shutdown");
}

/// The status a chunked body of `chunks` × `size` bytes gets, sent on a raw socket.
async fn chunked_status(server: &ServerHandle, chunks: usize, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    let head = "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/cloudevents+json\r\nTransfer-Encoding: chunked\r\n\r\n";
    socket.write_all(head.as_bytes()).await.expect("head");
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n{}\r\n", " ".repeat(size));
        // The server may answer and stop reading before the end.
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 64];
    let read = socket.read(&mut answer).await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    answer.split(' ').nth(1).unwrap_or_default().to_owned()
}

crate::for_each_sql_backend!(
    bad_input_gets_a_typed_4xx_and_stores_nothing,
    append_to_stream_is_idempotent_on_the_event_id
);

#[tokio::test]
async fn handlers_ask_for_backpressure_and_errors_are_nacks() {
    let receiver = Receiver::new()
        .on("busy", |_| async {
            Err(ReceiveError::busy(Some(Duration::from_secs(7))))
        })
        .on("down", |_| async { Err(ReceiveError::unavailable(None)) })
        .on("refused", |_| async {
            Err(ReceiveError::rejected("not for us").attribute("data"))
        })
        .on("failing", |_| async {
            Err(std::io::Error::other("the disk is full"))?;
            Ok(())
        })
        .on("panicking", |event: CloudEvent| async move {
            if event.id().is_empty() {
                return Ok(());
            }
            panic!("a handler bug")
        });
    let server = serve(receiver).await;
    let client = CloudEventsClient::new(&server.url())
        .expect("client")
        .retry(chronicle::cloudevents::RetryPolicy::none());
    let nack = |delivery: Delivery| match delivery {
        Delivery::Nack(nack) => nack,
        other => panic!("expected a NACK, got {other:?}"),
    };
    let busy = nack(client.send(&event("1", "busy", "x")).await);
    assert_eq!(
        (busy.status.as_u16(), busy.retry_after),
        (429, Some(Duration::from_secs(7)))
    );
    assert_eq!(
        nack(client.send(&event("2", "down", "x")).await).status,
        503
    );
    let refused = nack(client.send(&event("3", "refused", "x")).await);
    assert_eq!(refused.status, 422);
    assert!(refused.is_fatal());
    let failing = nack(client.send(&event("4", "failing", "x")).await);
    assert_eq!(failing.status, 500);
    assert!(
        failing.body.contains("the disk is full"),
        "{}",
        failing.body
    );
    let panicking = nack(client.send(&event("5", "panicking", "x")).await);
    assert_eq!(panicking.status, 500);
    assert!(
        panicking.body.contains("a handler bug"),
        "{}",
        panicking.body
    );
    let unrouted = nack(client.send(&event("6", "nobody.listens", "x")).await);
    assert_eq!(unrouted.status, 400);
    assert!(
        unrouted.body.contains("\"attribute\":\"type\""),
        "{}",
        unrouted.body
    );
    // Still serving after the panic.
    assert!(matches!(
        client.send(&event("7", "busy", "x")).await,
        Delivery::Nack(_)
    ));
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn more_requests_than_allowed_in_flight_get_503() {
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    let receiver = Receiver::new()
        .on("*", move |_| {
            let entered = entered_tx.clone();
            let gate = gate.clone();
            async move {
                let _ = entered.send(());
                gate.notified().await;
                Ok::<_, ReceiveError>(())
            }
        })
        .max_in_flight(1);
    let server = serve(receiver).await;
    let client = CloudEventsClient::new(&server.url())
        .expect("client")
        .retry(chronicle::cloudevents::RetryPolicy::none());
    let first = tokio::spawn({
        let client = client.clone();
        async move { client.send(&event("1", "t", "x")).await }
    });
    entered.recv().await.expect("the first is in the handler");
    match client.send(&event("2", "t", "x")).await {
        Delivery::Nack(nack) => assert_eq!(
            (nack.status.as_u16(), nack.retry_after),
            (503, Some(Duration::from_secs(1)))
        ),
        other => panic!("expected a 503, got {other:?}"),
    }
    release.notify_one();
    assert!(first.await.expect("joined").is_ack());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let captured = Captured::default();
    let seen = captured.clone();
    let receiver = Receiver::new().on("*", move |event| {
        let entered = entered_tx.clone();
        let seen = seen.clone();
        async move {
            let _ = entered.send(());
            tokio::time::sleep(Duration::from_millis(300)).await;
            seen.push(event);
            Ok::<_, ReceiveError>(())
        }
    });
    let server = serve(receiver).await;
    let url = server.url();
    let client = CloudEventsClient::new(&url)
        .expect("client")
        .retry(chronicle::cloudevents::RetryPolicy::none());
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.send(&event("slow-1", "t", "x")).await }
    });
    entered.recv().await.expect("in the handler");
    server.shutdown().await.expect("shutdown");
    assert!(
        in_flight.await.expect("joined").is_ack(),
        "the request in flight finished"
    );
    assert_eq!(captured.all().len(), 1);
    assert!(
        matches!(
            client.send(&event("late", "t", "x")).await,
            Delivery::Undelivered(_)
        ),
        "nothing listens after the shutdown"
    );
}

#[tokio::test]
async fn the_router_mounts_in_an_axum_app() {
    let captured = Captured::default();
    let app = chronicle::cloudevents::axum::Router::new()
        .nest("/nested", captured.receiver().router())
        .route("/hooks/events", captured.receiver().method_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server =
        tokio::spawn(async move { chronicle::cloudevents::axum::serve(listener, app).await });
    for path in ["nested", "hooks/events"] {
        let client = CloudEventsClient::new(&format!("http://{addr}/{path}")).expect("client");
        assert!(client.send(&event(path, "t", "x")).await.is_ack(), "{path}");
    }
    let response = raw()
        .get(format!("http://{addr}/hooks/events"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 405, "POST only");
    assert_eq!(captured.all().len(), 2);
    server.abort();
}

/// The binary-mode headers a user can copy into curl (README, "CloudEvents over HTTP").
#[tokio::test]
async fn curl_posts_a_binary_mode_event() {
    let store = Store::open("memory:").await.expect("store");
    let server =
        serve(Receiver::new().append_to_stream("*", AppendToStream::new(store.clone()))).await;
    // tokio's Command: the server answers on this test's runtime, which must not block.
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &server.url(),
            "-H",
            "ce-specversion: 1.0",
            "-H",
            "ce-id: order-1-placed",
            "-H",
            "ce-source: /shop",
            "-H",
            "ce-type: com.example.order.placed",
            "-H",
            "ce-subject: order-1",
            "-H",
            "ce-time: 2026-05-01T12:00:00Z",
            "-H",
            "ce-tenantid: acme",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"total": 12}"#,
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), output)
        .await
        .expect("curl answers within 30 s");
    let output = match output {
        Ok(output) => output,
        Err(error) if std::env::var("CHRONICLE_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("curl is required: {error}")
        }
        Err(error) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED curl_posts_a_binary_mode_event: no curl ({error})"
            );
            return;
        }
    };
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "202",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stored: Vec<_> = store
        .read_stream("order-1", 1, Direction::Forward)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event_type, "com.example.order.placed");
    assert_eq!(stored[0].metadata.tenant_id.as_deref(), Some("acme"));
    assert_eq!(stored[0].json().expect("json"), json!({ "total": 12 }));
    server.shutdown().await.expect("shutdown");
}
