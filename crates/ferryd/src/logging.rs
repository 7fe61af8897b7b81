//! How ferryd writes its log lines: every field of every event (the message included)
//! goes through [`shown`], so what reaches the log from users — a handler's path, a
//! callback's error text, a URL — can neither forge a line (its line feeds and other
//! control characters are escaped) nor reveal a secret (URL userinfo is masked), whatever
//! the line that logs it. One formatter rather than care at each of the daemon's log
//! calls: a call added later is covered too, and so are the libraries' events.
//!
//! May use: `model`.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

use crate::model::{escape_control_chars, mask_urls_in};

/// `text` as a log line may hold it: control characters escaped (`\n`, `\u{1b}`), the
/// userinfo of URLs masked.
pub fn shown(text: &str) -> Cow<'_, str> {
    match escape_control_chars(text) {
        Cow::Borrowed(t) => mask_urls_in(t),
        Cow::Owned(t) => Cow::Owned(mask_urls_in(&t).into_owned()),
    }
}

/// The fields of an event as tracing-subscriber's default formatter writes them (the
/// message first and bare, then `name=value` separated by spaces, string values quoted),
/// each through [`shown`].
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = FieldWriter {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes the fields it visits.
struct FieldWriter<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl FieldWriter<'_> {
    fn write(&mut self, field: &Field, text: &str) {
        let name = field.name();
        // A `log` record's metadata, as the default formatter also leaves it out.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        let text = shown(text);
        self.result = if name == "message" {
            write!(self.writer, "{separator}{text}")
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            write!(self.writer, "{separator}{name}={text}")
        };
    }
}

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, value);
        } else {
            self.write(field, &format!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        if write!(text, "{value:?}").is_ok() {
            self.write(field, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log written into memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What `log` writes through the daemon's formatter.
    fn logged(log: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn fields_are_written_as_the_default_formatter_writes_them() {
        let text = logged(
            || tracing::info!(job = %"j-1", count = 3, path = "/a b", value = ?Some(2), "job failed: {}", "why"),
        );
        assert_eq!(
            text,
            " INFO job failed: why job=j-1 count=3 path=\"/a b\" value=Some(2)\n"
        );
    }

    #[test]
    fn a_user_string_cannot_forge_a_line_or_drive_a_terminal() {
        let forged = "/h\n2030-01-01T00:00:00Z  INFO ferryd: FORGED\u{1b}]0;t\u{7}";
        let text = logged(|| {
            tracing::info!(program = %forged, "cannot start the handler {forged}");
            tracing::warn!(program = forged, "as a string field");
        });
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines().all(|l| !l.starts_with("2030")),
            "a forged line: {text}"
        );
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(
            text.contains("/h\\n2030-01-01T00:00:00Z  INFO ferryd: FORGED\\u{1b}]0;t\\u{7}"),
            "{text}"
        );
    }

    #[test]
    fn url_userinfo_never_reaches_the_log() {
        let text = logged(|| {
            tracing::info!(
                url = "https://u:s3cret@host/f",
                "answered 401 for https://t0ken@host/g"
            )
        });
        assert!(
            !text.contains("s3cret") && !text.contains("t0ken"),
            "{text}"
        );
        assert!(
            text.contains("https://u:***@host/f") && text.contains("https://***@host/g"),
            "{text}"
        );
    }
}

/// Where the log goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Standard error: colours only on a terminal (and not with `NO_COLOR`).
    Stderr,
    /// The journal, through standard error (systemd sets `JOURNAL_STREAM`): each line
    /// starts with its syslog priority (`<3>` for an error…), which journald takes as the
    /// entry's priority; no time (journald keeps its own) and no colours.
    Journal,
    /// A file of the daemon's own (the per-user daemon started by `ferry`): `PATH` gets
    /// a date for each day (`ferryd.log.2026-12-07`), the last seven days are kept.
    File(std::path::PathBuf),
}

impl Sink {
    /// The sink for this process: `file` if given, else the journal when systemd
    /// connected standard error to it, else standard error.
    pub fn choose(file: Option<std::path::PathBuf>) -> Sink {
        if let Some(f) = file {
            return Sink::File(f);
        }
        if std::env::var_os("JOURNAL_STREAM").is_some_and(|v| stderr_is(&v)) {
            return Sink::Journal;
        }
        Sink::Stderr
    }
}

/// True when standard error is the stream `JOURNAL_STREAM` names (`DEVICE:INODE`).
fn stderr_is(journal_stream: &std::ffi::OsStr) -> bool {
    let Some((dev, ino)) = journal_stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino)
}

/// Starts logging to `sink` with `RUST_LOG`'s filter (else `ferryd=info`). The returned
/// guard flushes a file sink when dropped: keep it for the process's life.
pub fn init(sink: &Sink) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "ferryd=info".into());
    let registry = tracing_subscriber::registry().with(filter);
    match sink {
        Sink::Stderr => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(colour)
                        .with_writer(std::io::stderr)
                        .fmt_fields(EscapedFields),
                )
                .init();
            None
        }
        Sink::Journal => {
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(std::io::stderr)
                        .event_format(SyslogPrefixed(
                            tracing_subscriber::fmt::format().without_time(),
                        ))
                        .fmt_fields(EscapedFields),
                )
                .init();
            None
        }
        Sink::File(path) => {
            let dir = path.parent().unwrap_or(std::path::Path::new("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "ferryd.log".into());
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix(name)
                .max_log_files(7)
                .build(dir);
            match appender {
                Ok(appender) => {
                    let (writer, guard) = tracing_appender::non_blocking(appender);
                    registry
                        .with(
                            tracing_subscriber::fmt::layer()
                                .with_ansi(false)
                                .with_writer(writer)
                                .fmt_fields(EscapedFields),
                        )
                        .init();
                    Some(guard)
                }
                Err(e) => {
                    eprintln!(
                        "ferryd: cannot write the log in {}: {e}; logging to standard error",
                        dir.display()
                    );
                    init(&Sink::Stderr)
                }
            }
        }
    }
}

/// An event format whose lines start with their syslog priority (`<3>`…`<7>`), which
/// journald reads from a service's standard error.
struct SyslogPrefixed<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for SyslogPrefixed<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod sink_tests {
    use super::*;

    #[test]
    fn a_file_wins_and_a_journal_stream_that_is_not_stderr_is_ignored() {
        let f = std::path::PathBuf::from("/tmp/x/ferryd.log");
        assert!(matches!(Sink::choose(Some(f.clone())), Sink::File(p) if p == f));
        assert!(!stderr_is(std::ffi::OsStr::new("1:2")));
        assert!(!stderr_is(std::ffi::OsStr::new("garbage")));
    }
}
