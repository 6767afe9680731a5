use chronicle::DomainEvent;

#[derive(DomainEvent)]
struct Opened {
    owner: String,
}

fn main() {}
