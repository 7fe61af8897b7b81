//! The WQL `LIKE` operator.

/// Matches `text` against a `LIKE` pattern: `%` matches any run of characters
/// (including none), `_` matches exactly one character, and every other
/// character matches itself ignoring case (Unicode lowercase mapping).
///
/// Runs in O(pattern × text) time worst case and constant extra space beyond
/// the decoded characters: a greedy scan that only ever backtracks to the most
/// recent `%`, so there is no exponential blow-up on patterns like `%a%a%a%b`.
pub fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // After the most recent '%': (pattern index following it, text index it resumes from).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('%') => {
                pi += 1;
                star = Some((pi, ti));
            }
            Some(&c) if c == '_' || chars_eq(c, t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last '%' swallow one more character and retry.
                Some((sp, st)) => {
                    pi = sp;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '%')
}

/// Case-insensitive comparison of single characters.
fn chars_eq(a: char, b: char) -> bool {
    a == b || a.to_lowercase().eq(b.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::like;
    use proptest::prelude::*;

    #[test]
    fn literals_and_case() {
        assert!(like("abc", "abc"));
        assert!(like("ABC", "abc"));
        assert!(!like("straße", "STRASSE"), "no multi-char folding");
        assert!(like("ÄÖÜ", "äöü"));
        assert!(!like("abc", "abcd"));
        assert!(!like("abcd", "abc"));
        assert!(like("", ""));
        assert!(!like("", "a"));
    }

    #[test]
    fn wildcards() {
        assert!(like("%", ""));
        assert!(like("%", "anything"));
        assert!(like("a%", "abc"));
        assert!(like("%c", "abc"));
        assert!(like("%b%", "abc"));
        assert!(!like("%x%", "abc"));
        assert!(like("a_c", "abc"));
        assert!(like("a_c", "aéc"));
        assert!(!like("a_c", "ac"));
        assert!(!like("_", ""));
        assert!(like("%%a%%", "a"));
        assert!(like("a%b%c", "aXXbYYc"));
        assert!(!like("a%b%c", "aXXcYYb"));
        assert!(like("%ab", "aab"));
        assert!(like("report_%.log", "REPORT_2024.LOG"));
        assert!(like("[a]", "[a]"), "brackets are literal");
    }

    #[test]
    fn no_catastrophic_backtracking() {
        let text = "a".repeat(20_000);
        let pattern = format!("{}b", "%a".repeat(50));
        assert!(!like(&pattern, &text));
        assert!(like(&"%a".repeat(50), &text));
    }

    /// Straightforward exponential reference implementation.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some((&c, rest)) => match t.split_first() {
                Some((&d, trest)) => {
                    (c == '_' || c.to_lowercase().eq(d.to_lowercase())) && reference(rest, trest)
                }
                None => false,
            },
        }
    }

    proptest! {
        #[test]
        fn agrees_with_reference(p in "[abA%_]{0,8}", t in "[abAB]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            prop_assert_eq!(like(&p, &t), reference(&pc, &tc));
        }
    }
}
