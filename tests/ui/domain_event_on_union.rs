use chronicle::DomainEvent;

#[derive(DomainEvent)]
union Payload {
    amount: u64,
    count: u32,
}

fn main() {}
