//! A client connection: its byte stream (plain TCP or TLS), the bytes read
//! but not consumed yet, and the primitives every reader builds on (buffer
//! filling, owed `100 Continue`, holding until stalls are released).

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::state::Shared;
#[cfg(doc)]
use super::Fault;

/// Size of the pieces the body is written in when not throttled.
pub(super) const PIECE: usize = 64 * 1024;

/// What to do with the connection after a response.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    KeepAlive,
    Close,
}

/// A client connection: plain TCP or TLS over TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One client connection being served, one request after the other.
pub(super) struct Conn {
    pub(super) stream: Box<dyn Io>,
    /// Bytes read but not consumed yet.
    pub(super) buf: Vec<u8>,
    pub(super) shared: Arc<Shared>,
    /// Whether a `100 Continue` is owed before the request body is read.
    pub(super) continue_owed: bool,
    /// [`Fault::HugeHeader`]: padding for the next response head.
    pub(super) padding: usize,
}

impl Conn {
    /// Reads more bytes into the buffer (at most `max`); 0 means end of stream.
    pub(super) async fn fill(&mut self, max: usize) -> io::Result<usize> {
        if std::mem::take(&mut self.continue_owed) {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        let mut tmp = vec![0u8; max.clamp(1, PIECE)];
        let n = self.stream.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Makes sure at least `n` bytes are buffered, reading no more than needed.
    pub(super) async fn fill_to(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if self.fill(n - self.buf.len()).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Holds the connection until stalls are released (`true`) or the client
    /// goes away (`false`). `generation` is the release generation seen when the
    /// request was recorded.
    pub(super) async fn hold(&mut self, generation: u64) -> bool {
        let mut rx = self.shared.release.subscribe();
        let mut tmp = [0u8; 4096];
        loop {
            tokio::select! {
                released = rx.wait_for(|g| *g != generation) => return released.is_ok(),
                read = self.stream.read(&mut tmp) => match read {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                },
            }
        }
    }
}
