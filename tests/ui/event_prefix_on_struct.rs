use chronicle::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(prefix = "account.")]
struct Opened {
    owner: String,
}

fn main() {}
