//! Test support for ferry.
//!
//! * [`TestServer`]: a local HTTP/1.1 server serving in-memory files that can
//!   misbehave on purpose ([`Mode`], [`Fault`]) and records what it receives.
//! * [`TestEnv`] and [`Daemon`]: run the real `ferryd` and `ferry` binaries in
//!   a private temporary directory, plus polling helpers ([`wait_until`]).

mod daemon;
mod server;

pub use daemon::*;
pub use server::*;
