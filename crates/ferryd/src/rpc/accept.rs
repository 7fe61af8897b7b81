//! Accepting connections on the Unix socket without spinning when ferryd is out of file
//! descriptors: `accept` failing with EMFILE or ENFILE (or ENOBUFS, ENOMEM) leaves the
//! connection waiting in the backlog, so trying again at once fails again at once, a busy
//! loop at full CPU. Here such a failure is logged (once per episode) and the next accept
//! waits 100 ms; the waiting clients are served as descriptors free up. Other accept
//! errors (a client that gave up, ECONNABORTED) go to the server, which skips them.
//!
//! May use: tokio, futures, libc, tracing. Nothing else of the daemon.

use std::io;
use std::time::Duration;

use futures::Stream;
use tokio::net::{UnixListener, UnixStream};

/// How long to wait before accepting again when out of descriptors or memory.
const BACKOFF: Duration = Duration::from_millis(100);

fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The connections accepted on `listener`, pausing (not failing) while out of descriptors.
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<UnixStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let mut short = false;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    if short {
                        tracing::info!("accepting connections again");
                    }
                    return Some((Ok(stream), listener));
                }
                Err(e) if out_of_resources(&e) => {
                    if !short {
                        tracing::warn!(
                            "cannot accept a connection: {e}; clients wait until descriptors \
                             free up (raise ferryd's limit: `ulimit -n`, LimitNOFILE=)"
                        );
                        short = true;
                    }
                    tokio::time::sleep(BACKOFF).await;
                }
                Err(e) => return Some((Err(e), listener)),
            }
        }
    })
}
