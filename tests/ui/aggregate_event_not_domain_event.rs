use chronicle::Aggregate;
use serde::{Deserialize, Serialize};

struct SomeStructThatIsNotADomainEvent;

#[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(event = SomeStructThatIsNotADomainEvent)]
struct Account {
    balance: u64,
}

fn main() {}
