//! Test support for ferry.
//!
//! * [`TestServer`]: a local HTTP/1.1 server serving in-memory files that can
//!   misbehave on purpose ([`Mode`], [`Fault`]) and records what it receives;
//!   it can also act as a tus 1.0 upload server ([`TestServer::enable_tus`])
//!   and serve over HTTPS ([`TestServer::start_tls`], [`TlsMaterial`]).
//! * [`TestEnv`] and [`Daemon`]: run the real `ferryd` and `ferry` binaries in
//!   a private temporary directory, plus polling helpers ([`wait_until`]).
//! * [`NetLab`] and [`Nginx`]: a client and a server network namespace joined by a
//!   veth pair (shaped with `tc tbf` when asked), nginx serving in the server one.
//! * [`http_get_tcp`], [`http_get_unix`] and [`metric_samples`]: a ferryd's metrics
//!   endpoint read and parsed.
//! * [`target_dir_bin`] and [`example_bin`]: the paths of the workspace's binaries
//!   and examples, which the test kit builds with cargo when they are missing or
//!   stale (`cargo test --workspace` works on a fresh checkout).

mod binaries;
mod daemon;
mod netlab;
mod scrape;
mod server;

pub use binaries::{example_bin, target_dir_bin};
pub use daemon::*;
pub use netlab::{random_file, NetLab, Nginx, CLIENT_ADDR, SERVER_ADDR};
pub use scrape::{http_get, http_get_tcp, http_get_unix, metric_samples, HttpAnswer};
pub use server::*;
