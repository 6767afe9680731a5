use chronicle::Aggregate;

#[derive(Aggregate)]
#[aggregate(event = AccountEvent)]
enum Account {
    Open,
    Closed,
}

fn main() {}
