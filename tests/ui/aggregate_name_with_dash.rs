use chronicle::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent)]
enum AccountEvent {
    Opened,
}

#[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "bank-account", event = AccountEvent)]
struct Account {
    balance: u64,
}

#[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "", event = AccountEvent)]
struct Unnamed {
    balance: u64,
}

fn main() {}
