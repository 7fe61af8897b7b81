//! Test support for ferry.
//!
//! * [`TestServer`]: a local HTTP/1.1 server serving in-memory files that can
//!   misbehave on purpose ([`Mode`], [`Fault`]) and records what it receives;
//!   it can also act as a tus 1.0 upload server ([`TestServer::enable_tus`])
//!   and serve over HTTPS ([`TestServer::start_tls`], [`TlsMaterial`]).
//! * [`TestEnv`] and [`Daemon`]: run the real `ferryd` and `ferry` binaries in
//!   a private temporary directory, plus polling helpers ([`wait_until`]).

mod daemon;
mod server;

pub use daemon::*;
pub use server::*;
