use chronicle::Aggregate;
use serde::{Deserialize, Serialize};

#[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "account")]
struct Account {
    balance: u64,
}

#[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
struct NoAttribute {
    balance: u64,
}

fn main() {}
