//! A local HTTP/1.1 server for tests that can misbehave on purpose.
//!
//! The server is hand-written on top of a tokio [`TcpListener`] and
//! [`httparse`] so that it can lie: cut connections, announce wrong lengths,
//! stall, change content between requests, and so on. It runs on its own
//! thread with its own single-threaded tokio runtime, so it can be used from
//! synchronous tests and from async tests alike.
//!
//! Paths are keyed without their query string: a request for `/a?x=1` is
//! served from, recorded under and faulted like `/a` (the recorded
//! [`RecordedRequest::path`] keeps the full request target).
//!
//! The same server can also speak the [tus 1.0] resumable upload protocol
//! under a path prefix ([`TestServer::enable_tus`]) and can be served over
//! HTTPS with a throw-away CA ([`TestServer::start_tls`]).
//!
//! The modules, from the outside in:
//!
//! * [`handle`]: [`TestServer`], the handle tests hold, and its setters;
//! * [`accept`]: the server thread, its accept loop and the per-connection
//!   loop;
//! * [`state`]: what the handle and the connections share (files, modes,
//!   fault queues, recordings, uploads);
//! * [`fault`]: the [`Mode`] and [`Fault`] definitions;
//! * [`record`]: [`RecordedRequest`], the record of what was received;
//! * [`conn`]: a connection's buffered byte stream;
//! * [`request`]: request heads and bodies;
//! * [`dispatch`]: one request from head to answer, faults included;
//! * [`files`]: `GET`/`HEAD` of served files;
//! * [`range`]: `Range` headers;
//! * [`response`]: response heads and short complete responses;
//! * [`body`]: streaming a body, with its cuts, stalls, pacing and filler;
//! * [`tus`]: the tus protocol; [`tls`]: HTTPS; [`digest`]: HTTP Digest
//!   authentication;
//! * [`data`]: test data helpers ([`sha256_hex`], [`gzip`], [`random_bytes`]).
//!
//! [tus 1.0]: https://tus.io/protocols/resumable-upload
//! [`TcpListener`]: tokio::net::TcpListener

mod accept;
mod body;
mod conn;
mod data;
mod digest;
mod dispatch;
mod fault;
mod files;
mod handle;
mod range;
mod record;
mod request;
mod response;
mod state;
mod tls;
mod tus;

pub use data::{gzip, random_bytes, sha256_hex};
pub use digest::DigestAlgorithm;
pub use fault::{Fault, Mode};
pub use handle::TestServer;
pub use record::RecordedRequest;
pub use tls::TlsMaterial;
