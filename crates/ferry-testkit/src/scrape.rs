//! Reading a ferryd's metrics endpoint (`[metrics] listen`): one HTTP/1.0 `GET` over TCP
//! or a Unix socket (reachable from outside a test's network namespace), and the samples
//! of its OpenMetrics text.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

/// An HTTP answer: status, headers (names in lower case), body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Sends `GET path` as HTTP/1.0 on `stream` (the server closes after its answer) and
/// reads the answer.
pub fn http_get(mut stream: impl Read + Write, path: &str) -> io::Result<HttpAnswer> {
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).map_err(io::Error::other)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no end of headers in {text:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status line in {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// [`http_get`] to `127.0.0.1:port`.
pub fn http_get_tcp(port: u16, path: &str) -> io::Result<HttpAnswer> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    http_get(stream, path)
}

/// [`http_get`] on the Unix socket `socket`.
pub fn http_get_unix(socket: &Path, path: &str) -> io::Result<HttpAnswer> {
    let stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    http_get(stream, path)
}

/// The samples of an OpenMetrics (or Prometheus) text: `name{labels}` → value.
/// Panics on a line that is no sample.
pub fn metric_samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample (series and value): {l:?}"));
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {l:?}"));
            (series.to_string(), value)
        })
        .collect()
}
