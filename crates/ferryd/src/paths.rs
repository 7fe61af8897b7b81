//! Where the socket and the state live (DESIGN §3). The rules are ferry-common's, shared
//! with the client library and the `ferry` command.

pub use ferry_common::paths::{current_uid, lock_path, socket_path, state_dir};
