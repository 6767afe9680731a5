use chronicle::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent)]
enum AccountEvent {
    Opened,
}

#[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(event = AccountEvent, snapshot = 100)]
struct Account {
    balance: u64,
}

fn main() {}
