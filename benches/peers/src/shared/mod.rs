//! What both sides of `cargo bench --bench peers` share: the bank domain, the settings of a
//! run, the JSON line every measurement becomes, and the workloads themselves, written once
//! against the [`workload::Bank`] trait that each system implements.
//!
//! This directory is compiled twice: as a module of the peers binary
//! (`benches/peers/src/main.rs`, sqlx 0.8) and, through `#[path]`, as a module of the main
//! crate's bench target (`benches/peers.rs`, sqlx 0.9). So it may only use what both have:
//! std, serde, serde_json, thiserror, tokio and futures; never sqlx (SQL text is fine).

// Each side uses only part of it (the peers never write results or print tables, the
// driver never parses a phase from the command line), so what one leaves unused would warn.
#![allow(dead_code)]

pub mod bank;
pub mod record;
pub mod settings;
pub mod workload;
