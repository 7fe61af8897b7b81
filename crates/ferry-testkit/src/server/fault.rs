//! The ways a path can misbehave: its persistent [`Mode`] and the one-shot
//! [`Fault`]s queued for its next requests.
//!
//! Only the definitions live here; [`dispatch`](super::dispatch),
//! [`files`](super::files) and [`body`](super::body) act on them.

#[cfg(doc)]
use super::{gzip, TestServer};

/// Persistent behaviour of one path (see [`TestServer::set_mode`]).
///
/// The default value is normal, well-behaved HTTP/1.1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mode {
    /// Always answer `200` with the whole body even if a `Range` was given.
    /// `Accept-Ranges: bytes` is still advertised (the server lies).
    pub ignore_range: bool,
    /// Send the body with neither `Content-Length` nor chunking: the end of the
    /// body is the end of the connection (`Connection: close`). No
    /// `Accept-Ranges`, `ETag` or `Last-Modified` is sent and `Range` is ignored.
    pub no_content_length: bool,
    /// Send `Transfer-Encoding: chunked` instead of `Content-Length`.
    pub chunked: bool,
    /// Pace the body so that its average rate is about this many bytes per
    /// second (small pieces with sleeps in between).
    pub throttle_bytes_per_sec: Option<u64>,
    /// Omit `ETag` and `Last-Modified`; `If-Range` then never matches.
    pub no_validators: bool,
    /// Serve the file compressed, with `Content-Encoding: gzip`, whatever the
    /// request's `Accept-Encoding` says (a server that compresses anyway).
    /// The body is [`gzip`] of the file's content; `Content-Length`, ranges
    /// and `Content-Range` count bytes of that compressed body (as RFC 9110
    /// says for a content coding), and the `ETag` is that of the file.
    pub gzip: bool,
}

/// A one-shot misbehaviour for the next request of a path
/// (see [`TestServer::push_fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Send the normal headers (with the full `Content-Length`), then close the
    /// connection after this many bytes of the response body (of the `206`
    /// body for a range request). For an upload (a request with a body), close
    /// the connection after receiving this many bytes of the request body.
    CutAfter(u64),
    /// Answer with this status and a short text body (e.g. 500, 503, 404).
    Status(u16),
    /// Answer with this status and `Retry-After: <secs>` (e.g. 429 or 503).
    StatusRetryAfter(u16, u64),
    /// Answer `302 Found` with this `Location` (absolute URL or path).
    Redirect(String),
    /// Answer with this redirect status (301, 302, 303, 307, 308) and `Location`.
    RedirectWith(u16, String),
    /// Accept the request (and read its body, if any) but do not answer until
    /// [`TestServer::release_stalls`] is called or the client disconnects.
    /// Once released, the request is answered normally.
    Stall,
    /// Send the headers and this many body bytes, then hold the connection open
    /// sending nothing until [`TestServer::release_stalls`] is called or the
    /// client disconnects; once released, the rest of the body is sent. For an
    /// upload, stop reading the request body after this many bytes instead
    /// (until released; a client disconnect is not noticed then).
    StallAfter(u64),
    /// Before answering, replace the content of the path (new `ETag`, new
    /// `Last-Modified`), then answer normally.
    ChangeContent(Vec<u8>),
    /// Answer normally, plus one response header `X-Padding` whose value is
    /// this many bytes (`a`s): e.g. `1 << 20` for a head of over 1 MiB,
    /// larger than HTTP clients accept.
    HugeHeader(usize),
    /// Answer a `GET` of a served file with `206 Partial Content` carrying the
    /// file's bytes from this offset to its end, with a `Content-Range` and
    /// `Content-Length` that truthfully describe those bytes, whatever
    /// `Range` (or none) and `If-Range` the request had: a consistent-looking
    /// answer to another question. An offset past the end answers `416`.
    WrongContentRange(u64),
    /// Answer as usual (status, `Content-Range`, validators) but with
    /// `Transfer-Encoding: chunked` instead of `Content-Length`, and after the
    /// real bytes keep sending filler bytes (`0xEE`) for ever, until the
    /// client goes away: a body that never ends.
    EndlessBody,
    /// Send the normal headers (with the true `Content-Length`), then the
    /// body followed by this many filler bytes (`0xEE`) it does not count,
    /// then close the connection: a `Content-Length` shorter than the body.
    ExtraBytes(u64),
}
