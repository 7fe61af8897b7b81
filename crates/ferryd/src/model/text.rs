//! Control characters in text from users. A line feed in a display name forges a row of
//! a listing or a line of the log; an escape sequence drives the terminal that shows it;
//! a bidirectional override reorders what it shows. The API refuses them in names,
//! descriptions, paths, URLs and commands (`service/validate.rs`), and text that reaches
//! an output anyway (a callback's error, the log) shows them escaped.

use std::borrow::Cow;

/// True for a control character: C0 (tab, line feed, escape, NUL…), DEL and C1 (Unicode
/// category Cc), and the bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069).
pub fn is_control_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The first control character of `text` and its position, in characters from 0.
pub fn first_control_char(text: &str) -> Option<(usize, char)> {
    text.chars().enumerate().find(|(_, c)| is_control_char(*c))
}

/// How a message names `c`: its code point, and its name when it has a common one.
pub fn describe_char(c: char) -> String {
    let name = match c {
        '\0' => " (NUL)",
        '\t' => " (tab)",
        '\n' => " (line feed)",
        '\r' => " (carriage return)",
        '\u{1b}' => " (escape)",
        '\u{7f}' => " (delete)",
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => " (a bidirectional control)",
        _ => "",
    };
    format!("U+{:04X}{name}", c as u32)
}

/// `text` with each control character escaped as Rust writes it in a string literal
/// (`\n`, `\t`, `\u{1b}`); the rest as it is.
pub fn escape_control_chars(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_control_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_control_char(c) {
            // Every control character has an escape of its own here (checked below).
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_c0_del_c1_and_bidirectional_controls() {
        for c in [
            '\0', '\t', '\n', '\r', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{202e}', '\u{2066}',
        ] {
            assert!(is_control_char(c), "{c:?}");
        }
        for c in [' ', 'a', 'é', '€', '\u{a0}', '日', '\u{200d}'] {
            assert!(!is_control_char(c), "{c:?}");
        }
    }

    #[test]
    fn the_first_control_character_is_found_by_character_position() {
        assert_eq!(first_control_char("plain"), None);
        assert_eq!(first_control_char("ab\ncd\r"), Some((2, '\n')));
        // Positions count characters, not bytes.
        assert_eq!(first_control_char("éé\u{1b}[31m"), Some((2, '\u{1b}')));
    }

    #[test]
    fn characters_are_described_by_code_point_and_name() {
        assert_eq!(describe_char('\n'), "U+000A (line feed)");
        assert_eq!(describe_char('\u{1b}'), "U+001B (escape)");
        assert_eq!(describe_char('\u{9b}'), "U+009B");
        assert_eq!(
            describe_char('\u{202e}'),
            "U+202E (a bidirectional control)"
        );
    }

    #[test]
    fn escaping_leaves_no_control_character() {
        assert!(matches!(escape_control_chars("plain é"), Cow::Borrowed(_)));
        assert_eq!(
            escape_control_chars("a\nb\t\u{1b}[2J\u{202e}c"),
            "a\\nb\\t\\u{1b}[2J\\u{202e}c"
        );
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert_eq!(first_control_char(&escape_control_chars(&all)), None);
    }
}
