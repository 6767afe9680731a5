use chronicle::DomainEvent;

#[derive(DomainEvent)]
#[event(prefix = "account.")]
enum AccountEvent {
    Opened { owner: String },
    #[event(rename = "account.Opened")]
    Reopened { owner: String },
}

fn main() {}
