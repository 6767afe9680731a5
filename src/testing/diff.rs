//! The difference between the events a test expected and those it got, one line per
//! index, for the panics of the given/when/then tests (aggregates and process managers).

use std::fmt::Debug;

/// One line per index: equal events once, differing ones as expected/actual pairs.
pub(crate) fn diff<T: Debug + PartialEq>(expected: &[T], actual: &[T]) -> String {
    let mut out = String::new();
    for index in 0..expected.len().max(actual.len()) {
        let line = match (expected.get(index), actual.get(index)) {
            (Some(want), Some(got)) if want == got => format!("    #{index} {want:?}\n"),
            (Some(want), Some(got)) => {
                format!("  - #{index} expected: {want:?}\n  + #{index} actual:   {got:?}\n")
            }
            (Some(want), None) => format!("  - #{index} missing:  {want:?}\n"),
            (None, Some(got)) => format!("  + #{index} extra:    {got:?}\n"),
            (None, None) => String::new(),
        };
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn diff_marks_changed_missing_and_extra_events() {
        let text = diff(&[1, 2, 3], &[1, 5]);
        assert_eq!(
            text,
            "    #0 1\n  - #1 expected: 2\n  + #1 actual:   5\n  - #2 missing:  3\n"
        );
        assert_eq!(diff(&[1], &[1, 4]), "    #0 1\n  + #1 extra:    4\n");
    }
}
