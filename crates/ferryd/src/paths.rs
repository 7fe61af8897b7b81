//! Where the socket and the state live. The rules are ferry-common's, shared
//! with the client library and the `ferry` command.
//!
//! May use: nothing of the daemon.

pub use ferry_common::paths::{
    current_uid, lock_path, socket_path, state_dir, system_config_path, system_socket_path,
    system_state_dir,
};
