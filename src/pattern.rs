//! Event-type patterns: an exact type, a glob, or `*`. The one implementation that outbox
//! handlers ([`crate::outbox::Handler`]), bus subscriptions ([`crate::bus::Subscribe`]) and
//! the relay's filters ([`crate::bus::Relay::event_types`]) share.

use std::fmt;

/// The event types a handler answers to: an exact name (`account.Opened`), a glob where
/// `*` stands for any run of characters (`account.*`, `*.Opened`), or `*` for every type.
///
/// ```
/// use chronicle::Pattern;
///
/// assert!(Pattern::new("account.*").matches("account.Opened"));
/// assert!(Pattern::new("*.Opened").matches("order.Opened"));
/// assert!(!Pattern::new("account.Opened").matches("account.Closed"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// The pattern `text` (exact unless it holds a `*`).
    pub fn new(text: impl Into<String>) -> Self {
        Pattern { text: text.into() }
    }

    /// The pattern that matches every type.
    pub fn any() -> Self {
        Pattern::new("*")
    }

    /// Whether `event_type` matches.
    pub fn matches(&self, event_type: &str) -> bool {
        glob_matches(&self.text, event_type)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The exact type this pattern names, when it has no `*`.
    pub(crate) fn exact(&self) -> Option<&str> {
        (!self.text.contains('*')).then_some(self.text.as_str())
    }

    /// The event types worth reading from the log for `patterns`: their exact names when
    /// every pattern is exact, else all (empty), the patterns then being checked on each
    /// event read.
    pub(crate) fn exact_types<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Vec<String> {
        let exact: Option<Vec<String>> = patterns
            .into_iter()
            .map(|pattern| pattern.exact().map(str::to_owned))
            .collect();
        exact.unwrap_or_default()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<&str> for Pattern {
    fn from(text: &str) -> Self {
        Pattern::new(text)
    }
}

impl From<String> for Pattern {
    fn from(text: String) -> Self {
        Pattern::new(text)
    }
}

impl From<&String> for Pattern {
    fn from(text: &String) -> Self {
        Pattern::new(text.as_str())
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: exact
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs() {
        assert!(glob_matches("account.Opened", "account.Opened"));
        assert!(!glob_matches("account.Opened", "account.Opened2"));
        assert!(glob_matches("account.*", "account.Opened"));
        assert!(glob_matches("account.*", "account."));
        assert!(!glob_matches("account.*", "accounts.Opened"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("*.Opened", "order.Opened"));
        assert!(!glob_matches("*.Opened", "order.Closed"));
        assert!(glob_matches("a*b*c", "a-b-b-c"));
        assert!(!glob_matches("a*b*c", "a-c-b"));
        assert!(
            !glob_matches("ab*ba", "aba"),
            "the two ends may not overlap"
        );
    }

    #[test]
    fn exact_types_only_when_every_pattern_is_exact() {
        let exact = [Pattern::new("a.B"), Pattern::new("c.D")];
        assert_eq!(Pattern::exact_types(&exact), ["a.B", "c.D"]);
        let mixed = [Pattern::new("a.B"), Pattern::new("c.*")];
        assert!(Pattern::exact_types(&mixed).is_empty());
    }

    proptest! {
        /// `prefix*suffix` matches exactly the texts with that prefix and that suffix
        /// that are long enough for both.
        #[test]
        fn a_glob_is_prefix_and_suffix(prefix in "[ab.]{0,3}", suffix in "[ab.]{0,3}", text in "[ab.]{0,8}") {
            let pattern = format!("{prefix}*{suffix}");
            let expected = text.len() >= prefix.len() + suffix.len()
                && text.starts_with(&prefix)
                && text.ends_with(&suffix);
            prop_assert_eq!(glob_matches(&pattern, &text), expected);
        }
    }
}
