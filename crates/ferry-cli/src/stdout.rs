//! Standard output that ends quietly when its reader goes away, as Unix tools do:
//! `ferry list | head -1` exits with 141 (128 + SIGPIPE, what the shell reports for `cat`)
//! and prints nothing more, instead of Rust's panic "failed printing to stdout". ferry
//! cannot take SIGPIPE's default action itself: a write to ferryd's socket after it went
//! away would then kill the process instead of failing the call. Any other write error
//! ends ferry with curl's 23.
//!
//! Every line of output goes through `outln!`, and what a line holds cannot lie: a
//! control character other than a tab (a line feed that would forge a row, an escape
//! sequence that would retitle the terminal or move the cursor, a carriage return, a
//! backspace) is written as `\u{1b}`, whatever reached the text (ferryd refuses them in
//! names, descriptions and handler paths, but a server's message or an older store may
//! still hold one). Messages on standard error keep their line feeds. The bytes of
//! `-o -`, the help, man pages and completions go out as they are.
//!
//! May use: `ferry_cli::exit`, std.

use std::borrow::Cow;
use std::io::{self, Write};

use ferry_cli::exit::Exit;

/// Writes `args` and a newline to standard output, or ends the process as described above.
pub fn line(args: std::fmt::Arguments) {
    let text = args.to_string();
    let mut out = io::stdout().lock();
    if let Err(e) = writeln!(out, "{}", in_a_line(&text)) {
        gone(e);
    }
}

/// `text` with every control character but a line feed and a tab written as `\u{…}`.
pub fn shown(text: &str) -> Cow<'_, str> {
    escaped(text, |c| c.is_control() && c != '\n' && c != '\t')
}

/// `text` for one line of output: every control character but a tab written as `\u{…}`.
pub fn in_a_line(text: &str) -> Cow<'_, str> {
    escaped(text, |c| c.is_control() && c != '\t')
}

/// `text` for one cell of a row (the monitor's): every control character written as
/// `\u{…}`, line feeds and tabs too.
pub fn one_line(text: &str) -> String {
    escaped(text, char::is_control).into_owned()
}

fn escaped(text: &str, hidden: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.contains(&hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes `bytes` to standard output, or ends the process as described above.
pub fn bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        gone(e);
    }
}

fn gone(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(Exit::BrokenPipe.code());
    }
    let _ = writeln!(io::stderr(), "ferry: cannot write the output: {e}");
    std::process::exit(Exit::Write.code())
}

/// `println!` for ferry's output: see the module's documentation.
macro_rules! outln {
    () => {
        $crate::stdout::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::stdout::line(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn escape_sequences_and_carriage_returns_are_written_out() {
        assert_eq!(shown("plain\tand\nlines"), "plain\tand\nlines");
        assert_eq!(
            shown("job\x1b]0;owned\x07\rforged\x7f\u{9b}"),
            "job\\u{1b}]0;owned\\u{7}\\u{d}forged\\u{7f}\\u{9b}"
        );
        assert_eq!(super::in_a_line("a\nb\tc"), "a\\u{a}b\tc");
        assert_eq!(super::one_line("a\nb\tc"), "a\\u{a}b\\u{9}c");
    }
}
