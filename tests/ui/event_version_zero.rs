use chronicle::DomainEvent;

#[derive(DomainEvent)]
enum AccountEvent {
    #[event(version = 0)]
    Opened { owner: String },
}

fn main() {}
