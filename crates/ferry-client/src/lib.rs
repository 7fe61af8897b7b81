//! ferry-client: the library applications link to talk to `ferryd`, ferry's background
//! transfer daemon.
//!
//! ```no_run
//! # async fn demo() -> ferry_client::Result<()> {
//! use ferry_client::{ConnectOptions, Manager};
//! let manager = Manager::connect_with(ConnectOptions { autostart: true, ..Default::default() }).await?;
//! let job = manager.create_job("nightly data").await?;
//! job.add_file("https://example.com/data.bin", "/tmp/data.bin").await?;
//! job.resume().await?;
//! let info = job.wait().await?;
//! if info.state() == ferry_client::JobState::Transferred {
//!     job.complete().await?;
//! }
//! # Ok(()) }
//! ```

mod callback;
mod channel;
mod conn;
mod connect;
mod error;
mod job;
mod manager;
mod object;
mod peers;
mod query;
mod types;
mod umask;
mod wire;

pub use callback::{activation_class, Callback, CallbackResult, File, HandlerInfo};
pub use conn::ConnectionEvent;
pub use connect::{default_socket_path, default_state_dir, find_daemon_binary, ConnectOptions};
pub use error::{Error, ErrorKind, Result};
pub use job::{Job, NotifyInterface};
pub use manager::{Manager, NewJob};
pub use object::{Object, Value};
pub use peers::{CacheEntry, PeerInfo, PeerOrigin, PeerState, PeersStatus};
pub use query::{
    AsyncCall, CallFlags, CallId, CallStatus, Enumerator, FinalStatus, Next, ObjectSink,
    QueryOptions, StatusCode,
};
pub use types::{
    CompleteOutcome, Credentials, DaemonStatus, FileInfo, FileRange, FileSpec, JobError, JobInfo,
    JobProperties, ProxyCredentials, ScheduledLimit, LENGTH_TO_EOF,
};
/// The named enums and flags, shared with ferryd through `ferry-common`.
pub use types::{
    CostFlags, ErrorContext, JobState, JobType, MeteredPolicy, NotifyFlags, PeerMode, Priority,
    RedirectPolicy, UploadProtocol,
};
pub use umask::process_umask;
/// The job and file ids are UUIDs.
pub use uuid::Uuid;
