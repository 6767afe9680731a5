//! The client's delivery results and retries: ACK, NACK with status and body, undelivered
//! with the cause; retries only for undelivered, 429 and 5xx, honouring `Retry-After`;
//! request-response and why no event came.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chronicle::cloudevents::{
    CloudEvent, CloudEventsClient, Delivery, ReceiveError, Receiver, RequestError, RetryPolicy,
};
use http::StatusCode;

use super::{event, serve};

/// A receiver whose handler fails with `status` the first `failures` times, then accepts;
/// and the count of calls.
fn flaky(
    status: StatusCode,
    failures: u32,
    retry_after: Option<Duration>,
) -> (Receiver, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let receiver = Receiver::new().on("*", move |_| {
        let call = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if call <= failures {
                let mut error = ReceiveError::with_status(status, format!("failure {call}"));
                if let Some(pause) = retry_after {
                    error = error.retry_after(pause);
                }
                return Err(error);
            }
            Ok(())
        }
    });
    (receiver, calls)
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(4)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
}

#[tokio::test]
async fn retryable_answers_are_retried_until_accepted() {
    for status in [
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        let (receiver, calls) = flaky(status, 2, None);
        let server = serve(receiver).await;
        let client = CloudEventsClient::new(&server.url())
            .expect("client")
            .retry(fast_retries());
        match client.send(&event("1", "t", "x")).await {
            Delivery::Ack(ack) => {
                assert_eq!((ack.status.as_u16(), ack.attempts), (202, 3), "{status}")
            }
            other => panic!("{status}: expected an ACK, got {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        server.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn other_4xx_are_never_retried() {
    for status in [
        StatusCode::BAD_REQUEST,
        StatusCode::NOT_FOUND,
        StatusCode::REQUEST_TIMEOUT,
        StatusCode::CONFLICT,
        StatusCode::UNPROCESSABLE_ENTITY,
    ] {
        let (receiver, calls) = flaky(status, 10, None);
        let server = serve(receiver).await;
        let client = CloudEventsClient::new(&server.url())
            .expect("client")
            .retry(fast_retries());
        match client.send(&event("1", "t", "x")).await {
            Delivery::Nack(nack) => {
                assert_eq!((nack.status, nack.attempts), (status, 1));
                assert!(
                    nack.body.contains("failure 1"),
                    "the body is kept: {}",
                    nack.body
                );
                assert!(nack.url.starts_with("http://127.0.0.1:"));
            }
            other => panic!("{status}: expected a NACK, got {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{status} is not retried");
        server.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn retries_stop_after_max_attempts_with_the_last_nack() {
    let (receiver, calls) = flaky(StatusCode::BAD_GATEWAY, 100, None);
    let server = serve(receiver).await;
    let client = CloudEventsClient::new(&server.url())
        .expect("client")
        .retry(fast_retries());
    let delivery = client.send(&event("1", "t", "x")).await;
    assert_eq!(delivery.attempts(), 4);
    let error = delivery.into_result().expect_err("a NACK");
    assert!(error.to_string().contains("502"), "{error}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (receiver, calls) = flaky(
        StatusCode::TOO_MANY_REQUESTS,
        1,
        Some(Duration::from_secs(1)),
    );
    let server = serve(receiver).await;
    // The backoff alone would retry at once.
    let client = CloudEventsClient::new(&server.url())
        .expect("client")
        .retry(fast_retries());
    let started = Instant::now();
    assert!(client.send(&event("1", "t", "x")).await.is_ack());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A Retry-After beyond the policy's limit ends the retries.
    let (receiver, calls) = flaky(
        StatusCode::SERVICE_UNAVAILABLE,
        1,
        Some(Duration::from_secs(3600)),
    );
    let long = serve(receiver).await;
    let client = CloudEventsClient::new(&long.url())
        .expect("client")
        .retry(fast_retries());
    match client.send(&event("1", "t", "x")).await {
        Delivery::Nack(nack) => assert_eq!(nack.retry_after, Some(Duration::from_secs(3600))),
        other => panic!("expected a NACK, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    server.shutdown().await.expect("shutdown");
    long.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn nothing_listening_is_undelivered_after_the_retries() {
    // A port that was just free: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client = CloudEventsClient::new(&format!("http://127.0.0.1:{port}/"))
        .expect("client")
        .retry(fast_retries());
    match client.send(&event("1", "t", "x")).await {
        Delivery::Undelivered(undelivered) => {
            assert_eq!(undelivered.attempts, 4);
            assert!(
                undelivered.cause().is_connect(),
                "{:?}",
                undelivered.cause()
            );
            assert!(!undelivered.is_timeout());
        }
        other => panic!("expected undelivered, got {other:?}"),
    }
}

#[tokio::test]
async fn a_timeout_is_undelivered_and_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let server = serve(Receiver::new().on("*", move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, ReceiveError>(())
        }
    }))
    .await;
    let http = chronicle::cloudevents::http_client_builder()
        .expect("builder")
        .timeout(Duration::from_millis(200))
        .build()
        .expect("http client");
    let client = CloudEventsClient::with_http_client(http, &server.url())
        .expect("client")
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .backoff(Duration::from_millis(1), Duration::from_millis(1)),
        );
    match client.send(&event("1", "t", "x")).await {
        Delivery::Undelivered(undelivered) => {
            assert!(undelivered.is_timeout());
            assert_eq!(undelivered.attempts, 2);
        }
        other => panic!("expected undelivered, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    drop(server);
}

#[tokio::test]
async fn request_says_why_no_event_came() {
    let receiver = Receiver::new()
        .on("silent", |_| async { Ok::<_, ReceiveError>(()) })
        .on_request("echo", |event: CloudEvent| async move { Ok(event) })
        .on("refused", |_| async { Err(ReceiveError::rejected("no")) });
    let server = serve(receiver).await;
    let client = CloudEventsClient::new(&server.url()).expect("client");
    let echoed = client
        .request(&event("e", "echo", "x"))
        .await
        .expect("echo");
    assert_eq!(echoed, event("e", "echo", "x"));
    assert!(matches!(
        client.request(&event("s", "silent", "x")).await,
        Err(RequestError::NoEvent { status, .. }) if status == 202
    ));
    assert!(matches!(
        client.request(&event("r", "refused", "x")).await,
        Err(RequestError::Nack(nack)) if nack.status == 422
    ));

    // A reply that claims to be a CloudEvent and is not.
    let app = chronicle::cloudevents::axum::Router::new().route(
        "/",
        chronicle::cloudevents::axum::routing::post(|| async {
            (
                [("content-type", "application/cloudevents+json")],
                "{\"specversion\":\"1.0\"}",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let liar =
        tokio::spawn(async move { chronicle::cloudevents::axum::serve(listener, app).await });
    let client = CloudEventsClient::new(&format!("http://{addr}/")).expect("client");
    match client.request(&event("1", "t", "x")).await {
        Err(RequestError::InvalidReply { source, .. }) => {
            assert_eq!(source.attribute(), Some("id"))
        }
        other => panic!("expected an invalid reply, got {other:?}"),
    }
    liar.abort();
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_client_needs_an_http_url() {
    assert!(CloudEventsClient::new("ftp://example.com/").is_err());
    assert!(CloudEventsClient::new("not a url").is_err());
    assert!(CloudEventsClient::new("https://example.com/events").is_ok());
}
