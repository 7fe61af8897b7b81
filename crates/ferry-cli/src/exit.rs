//! ferry's exit codes: one table, which `ferry help exit-codes`, the man page (`EXIT
//! STATUS`) and the README print, and the mapping from what went wrong to a code. curl's
//! numbers where one of curl's means the same (a curl user's scripts keep working), then
//! aria2c's, the shell's and LSB's; ferry's own codes (110–113) are above every code curl
//! has, for what curl has no word for.
//!
//! A job's failure is mapped from its error's short code (`http_404`, `connect`, …),
//! never from its message.
//!
//! May use: the standard library.

/// Why `ferry` exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    Success,
    Failure,
    Usage,
    NotRunning,
    Dns,
    Connect,
    HttpClientError,
    Write,
    Timeout,
    Checksum,
    Tls,
    Redirects,
    Receive,
    TlsCertificate,
    CaFile,
    UnknownJob,
    DaemonUnreachable,
    HttpServerError,
    Partial,
    Interrupted,
    BrokenPipe,
}

impl Exit {
    /// Every exit, in the order of their codes.
    pub const ALL: [Exit; 21] = [
        Exit::Success,
        Exit::Failure,
        Exit::Usage,
        Exit::NotRunning,
        Exit::Dns,
        Exit::Connect,
        Exit::HttpClientError,
        Exit::Write,
        Exit::Timeout,
        Exit::Checksum,
        Exit::Tls,
        Exit::Redirects,
        Exit::Receive,
        Exit::TlsCertificate,
        Exit::CaFile,
        Exit::UnknownJob,
        Exit::DaemonUnreachable,
        Exit::HttpServerError,
        Exit::Partial,
        Exit::Interrupted,
        Exit::BrokenPipe,
    ];

    /// The process's exit status.
    pub fn code(self) -> i32 {
        self.row().0
    }

    /// A stable name for scripts (the `kind` of a `--json` error).
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// When it happens.
    pub fn meaning(self) -> &'static str {
        self.row().2
    }

    /// Whose number it is.
    pub fn origin(self) -> &'static str {
        self.row().3
    }

    fn row(self) -> (i32, &'static str, &'static str, &'static str) {
        match self {
            Exit::Success => (0, "success", "done", "everyone"),
            Exit::Failure => (
                1,
                "failure",
                "any other failure (a job cancelled by someone else, a limit reached, not allowed)",
                "everyone",
            ),
            Exit::Usage => (
                2,
                "usage",
                "a bad command line: an unknown option, a missing or malformed argument, or a value \
                 ferryd refused (a relative path, a URL it cannot fetch)",
                "curl 2",
            ),
            Exit::NotRunning => (
                3,
                "not_running",
                "`ferry daemon status` only: ferryd is not running",
                "LSB status",
            ),
            Exit::Dns => (6, "dns", "the server's name could not be resolved", "curl 6"),
            Exit::Connect => (
                7,
                "connect",
                "the server could not be reached (connection refused, no route)",
                "curl 7",
            ),
            Exit::HttpClientError => (
                22,
                "http_client_error",
                "the server answered 4xx (404 Not Found, 401, 403, ...)",
                "curl 22 (-f)",
            ),
            Exit::Write => (
                23,
                "write",
                "a destination or the output could not be written: disk full, quota, permission",
                "curl 23",
            ),
            Exit::Timeout => (
                28,
                "timeout",
                "the transfer timed out (no data, or --max-transfer-time ran out)",
                "curl 28",
            ),
            Exit::Checksum => (
                32,
                "checksum",
                "the file does not have the SHA-256 given with --sha256",
                "aria2c 32",
            ),
            Exit::Tls => (35, "tls", "the TLS handshake failed", "curl 35"),
            Exit::Redirects => (47, "redirects", "too many redirects", "curl 47"),
            Exit::Receive => (
                56,
                "receive",
                "the connection broke during the transfer",
                "curl 56",
            ),
            Exit::TlsCertificate => (
                60,
                "tls_certificate",
                "the server's certificate is not trusted (see --cacert)",
                "curl 60",
            ),
            Exit::CaFile => (
                77,
                "ca_file",
                "the CA file given with --cacert cannot be read",
                "curl 77",
            ),
            Exit::UnknownJob => (
                110,
                "unknown_job",
                "no such job, or not yours",
                "ferry",
            ),
            Exit::DaemonUnreachable => (
                111,
                "daemon_unreachable",
                "no ferryd answers (none could be started, or it went away and did not come back)",
                "ferry",
            ),
            Exit::HttpServerError => (
                112,
                "http_server_error",
                "the server answered 5xx (curl says 22 for both)",
                "ferry",
            ),
            Exit::Partial => (
                113,
                "partial",
                "some files are in place and others are not (`complete` of a job in error)",
                "ferry",
            ),
            Exit::Interrupted => (
                130,
                "interrupted",
                "Ctrl-C stopped the command; the job goes on (`ferry watch` ends with 0)",
                "shell: 128 + SIGINT",
            ),
            Exit::BrokenPipe => (
                141,
                "broken_pipe",
                "the reader of the output went away (piped into `head`): ferry ends quietly",
                "shell: 128 + SIGPIPE, as cat",
            ),
        }
    }

    /// The exit for a job that failed with the error code `code` (the short code of the
    /// job's error: `http_404`, `connect`, `checksum_mismatch`, …).
    pub fn for_job_error(code: &str) -> Exit {
        if let Some(status) = code.strip_prefix("http_") {
            return match status.parse::<u16>() {
                Ok(400..=499) => Exit::HttpClientError,
                Ok(500..=599) => Exit::HttpServerError,
                _ => Exit::Failure,
            };
        }
        match code {
            "dns" => Exit::Dns,
            "connect" | "network_unreachable" => Exit::Connect,
            "enospc" | "edquot" | "permission_denied" | "symlink_refused" | "is_a_directory"
            | "io" | "commit_failed" => Exit::Write,
            "timeout" | "stalled" | "max_transfer_time" => Exit::Timeout,
            "checksum_mismatch" => Exit::Checksum,
            "tls" => Exit::Tls,
            "too_many_redirects" => Exit::Redirects,
            "connection_cut" | "network" => Exit::Receive,
            "tls_certificate" | "pinned_key_mismatch" | "certificate_revoked" => {
                Exit::TlsCertificate
            }
            "ca_file" => Exit::CaFile,
            _ => Exit::Failure,
        }
    }
}

/// The table as `ferry help exit-codes` prints it.
pub fn table() -> String {
    let mut out = String::from(
        "ferry's exit codes (curl's numbers where one means the same):\n\n\
         CODE  NAME                WHEN [WHOSE NUMBER]\n",
    );
    for exit in Exit::ALL {
        let when = format!("{} [{}]", exit.meaning(), exit.origin());
        let mut lines = wrap(&when, 54).into_iter();
        out.push_str(&format!(
            "{:>4}  {:<18}  {}\n",
            exit.code(),
            exit.name(),
            lines.next().unwrap_or_default()
        ));
        for more in lines {
            out.push_str(&format!("{:26}{more}\n", ""));
        }
    }
    out.push_str(
        "\nWith --json, a failure also prints one JSON object on standard error:\n\
         {\"error\": {\"exit_code\": 22, \"kind\": \"http_client_error\", \"message\": …, …}}\n",
    );
    out
}

/// `text` cut into lines of at most `width` characters, between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_are_distinct_and_in_order() {
        let codes: Vec<i32> = Exit::ALL.iter().map(|e| e.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(codes, sorted, "distinct, in order");
        let mut names: Vec<&str> = Exit::ALL.iter().map(|e| e.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Exit::ALL.len());
        assert!(codes.iter().all(|c| (0..=255).contains(c)));
    }

    #[test]
    fn cli_trust_job_errors_map_to_curls_numbers() {
        for (code, exit) in [
            ("http_404", 22),
            ("http_401", 22),
            ("http_500", 112),
            ("http_503", 112),
            ("dns", 6),
            ("connect", 7),
            ("network_unreachable", 7),
            ("enospc", 23),
            ("edquot", 23),
            ("timeout", 28),
            ("stalled", 28),
            ("checksum_mismatch", 32),
            ("tls", 35),
            ("too_many_redirects", 47),
            ("connection_cut", 56),
            ("tls_certificate", 60),
            ("ca_file", 77),
            ("validation_failed", 1),
            ("http_304", 1),
        ] {
            assert_eq!(Exit::for_job_error(code).code(), exit, "{code}");
        }
    }
}
