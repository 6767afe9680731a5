//! Names derived from Rust identifiers: the default aggregate name is the struct's name in
//! snake_case (`BankAccount` → `bank_account`).

/// `ident` in snake_case: an `_` goes before an upper-case letter that follows a lower-case
/// letter or a digit, or that starts a new word after an acronym (`HTTPServer` →
/// `http_server`); everything is lower-cased.
pub(crate) fn snake_case(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 4);
    let mut previous: Option<char> = None;
    let mut chars = ident.chars().peekable();
    while let Some(current) = chars.next() {
        if current.is_uppercase() {
            let next = chars.peek().copied();
            let boundary = previous.is_some_and(|previous| {
                previous.is_lowercase()
                    || previous.is_numeric()
                    || (previous.is_uppercase() && next.is_some_and(char::is_lowercase))
            });
            if boundary {
                out.push('_');
            }
            out.extend(current.to_lowercase());
        } else {
            out.push(current);
        }
        previous = Some(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn words_are_split_at_capitals() {
        assert_eq!(snake_case("Account"), "account");
        assert_eq!(snake_case("BankAccount"), "bank_account");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("Account2Fa"), "account2_fa");
        assert_eq!(snake_case("already_snake"), "already_snake");
        assert_eq!(snake_case("Two_Words"), "two_words");
        assert_eq!(snake_case("Ünïcode"), "ünïcode");
    }
}
