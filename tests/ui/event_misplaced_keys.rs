use chronicle::DomainEvent;

#[derive(DomainEvent)]
#[event(prefix = "account.", version = 2)]
enum AccountEvent {
    #[event(prefix = "x.")]
    Opened {
        #[event(rename = "owner")]
        owner: String,
    },
    #[event(renamed = "account.closed")]
    Closed,
    #[event(version = 2, version = 3)]
    Frozen,
}

fn main() {}
