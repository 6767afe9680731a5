use chronicle::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(DomainEvent)]
enum Event<T> {
    Happened(T),
}

#[derive(Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(event = Event<u32>)]
struct State<T> {
    value: T,
}

fn main() {}
