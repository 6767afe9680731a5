//! chronicle's integration tests, in one binary (each file under `tests/` would link the
//! crate again). One module per area; `support` opens a fresh store per test and backend.

mod aggregates;
mod bad_input;
mod bus;
#[cfg(feature = "kafka")]
mod bus_kafka;
#[cfg(feature = "nats")]
mod bus_nats;
#[cfg(feature = "rabbitmq")]
mod bus_rabbit;
#[cfg(feature = "redis")]
mod bus_redis;
mod bus_support;
#[cfg(feature = "cloudevents")]
mod cloudevents;
mod concurrency;
mod conformance;
mod corrupt_rows;
mod custom_backend;
mod deploy;
mod derive_ui;
mod dictionaries;
mod domain;
mod domain_event;
mod event_types;
mod inline_projections;
mod manager;
mod migration;
mod model;
mod outbox;
mod pages;
mod postgres;
mod privacy;
mod process;
mod projections;
mod read_models;
mod readme;
mod retention;
mod sqlite;
mod statements;
mod support;
mod tampering;
#[cfg(feature = "otel")]
mod telemetry;
mod upcasting;
