use chronicle::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent)]
enum AccountEvent {
    #[event(version = "2")]
    Opened { owner: String },
    #[event(rename = account_closed)]
    Closed,
}

#[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(event = "AccountEvent")]
#[aggregate(snapshot_every = 5000000000000000000000)]
#[aggregate(snapshot_version = 0)]
#[aggregate(name)]
struct Account {
    balance: u64,
}

fn main() {}
