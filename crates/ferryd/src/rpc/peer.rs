//! Who is on the other end of a connection: the uid, gid and pid the kernel recorded when
//! the client connected (`SO_PEERCRED`) and its supplementary groups (`SO_PEERGROUPS`),
//! read once as the connection is accepted and attached to every request on it. A caller
//! cannot claim to be someone else: these come from the kernel, not from the request.
//!
//! A worker of the system-wide daemon gets its connections from the broker (which
//! accepted them): the kernel's record is the client's all the same, since it is made at
//! `connect`. A connection the broker opened itself for an administrator carries the
//! broker's own credentials; the broker's word (the administrator's uid, sent on the
//! worker's control link) stands for the caller then. Each connection from the broker has
//! the broker's id, and the broker hears when it closes.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

use crate::service::Caller;

/// A connection and who made it.
pub struct PeerStream {
    stream: UnixStream,
    peer: Peer,
    /// Tells the broker that the connection closed (a worker's connections only).
    on_close: Option<Box<dyn FnOnce() + Send + Sync>>,
    /// Once cancelled, every read and write fails: how a shutdown closes the connection
    /// of a client that stopped reading (see [`PeerStream::severed_by`]).
    sever: Option<Sever>,
}

/// The signal that ends a connection from under the server.
struct Sever {
    token: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Sever {
    /// The error every read and write returns once the connection is severed; polling
    /// registers `cx` to be woken then.
    fn poll(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let severed = self.token.is_cancelled() || self.cancelled.as_mut().poll(cx).is_ready();
        severed.then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "ferryd is shutting down and the client did not read its answers",
            )
        })
    }
}

/// What every request on a connection carries (the request's extensions).
#[derive(Debug, Clone)]
pub struct Peer {
    /// `None` when the kernel would not say (the call is then refused).
    pub caller: Option<Caller>,
}

impl PeerStream {
    /// Reads the peer's credentials of a just-accepted connection.
    pub fn new(stream: UnixStream) -> PeerStream {
        let caller = credentials(&stream)
            .map_err(|e| tracing::warn!("the peer's credentials could not be read: {e}"))
            .ok();
        PeerStream {
            stream,
            peer: Peer { caller },
            on_close: None,
            sever: None,
        }
    }

    /// The same connection, made to fail every read and write once `token` is
    /// cancelled: the server then drops it, whatever its streams wait for (a client that
    /// stopped reading holds a stream open for as long as it likes otherwise).
    pub fn severed_by(mut self, token: CancellationToken) -> PeerStream {
        self.sever = Some(Sever {
            cancelled: Box::pin(token.clone().cancelled_owned()),
            token,
        });
        self
    }

    fn severed(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.sever.as_mut()?.poll(cx)
    }

    /// A connection the broker handed over as `id`; `admin`: the broker opened it for
    /// this administrator. `on_close` is called with `id` when it closes.
    pub fn from_broker(
        stream: UnixStream,
        id: u64,
        admin: Option<u32>,
        on_close: Box<dyn FnOnce(u64) + Send + Sync>,
    ) -> PeerStream {
        let caller = match admin {
            Some(uid) => Some(Caller {
                uid,
                gid: uid,
                pid: None,
                groups: Vec::new(),
                vouched: true,
                connection: Some(id),
            }),
            None => credentials(&stream)
                .map(|c| Caller {
                    connection: Some(id),
                    ..c
                })
                .map_err(|e| tracing::warn!("the peer's credentials could not be read: {e}"))
                .ok(),
        };
        PeerStream {
            stream,
            peer: Peer { caller },
            on_close: Some(Box::new(move || on_close(id))),
            sever: None,
        }
    }
}

impl Drop for PeerStream {
    fn drop(&mut self) {
        if let Some(f) = self.on_close.take() {
            f();
        }
    }
}

/// The kernel's record of who made a connection (the broker reads it at `accept`).
pub fn peer_credentials(stream: &impl AsRawFd) -> io::Result<Caller> {
    credentials(stream)
}

fn credentials(stream: &impl AsRawFd) -> io::Result<Caller> {
    let fd = stream.as_raw_fd();
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` describe a buffer of the size the option fills.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Caller {
        uid: cred.uid,
        gid: cred.gid,
        pid: u32::try_from(cred.pid).ok().filter(|p| *p > 0),
        groups: peer_groups(fd)?,
        vouched: false,
        connection: None,
    })
}

/// The peer's supplementary groups (Linux 4.13 and later; none before).
fn peer_groups(fd: i32) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` has room for `len` bytes; the kernel writes at most that many.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) if n > groups.len() && n <= 65536 => groups.resize(n, 0),
            Some(libc::ENOPROTOOPT) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    }
}

impl Connected for PeerStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.severed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.severed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.severed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read waiting for a client that sends nothing ends when the connection is
    /// severed (the drain's last step), and so does every write after.
    #[tokio::test]
    async fn parity_a_severed_connection_fails_a_waiting_read_and_its_writes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, _b) = UnixStream::pair().unwrap();
        let sever = CancellationToken::new();
        let mut conn = PeerStream::new(a).severed_by(sever.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let r = conn.read(&mut buf).await;
            (r, conn)
        });
        sever.cancel();
        let (r, mut conn) = reader.await.unwrap();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        let w = conn.write(b"x").await.unwrap_err();
        assert_eq!(w.kind(), io::ErrorKind::ConnectionAborted);
        assert!(w.to_string().contains("did not read"), "{w}");
    }

    #[tokio::test]
    async fn a_connection_carries_this_process_credentials() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = PeerStream::new(a).peer.caller.clone().unwrap();
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!((peer.uid, peer.gid), (uid, gid));
        assert_eq!(peer.pid, Some(std::process::id()));
        let mut mine: Vec<libc::gid_t> = vec![0; 256];
        // SAFETY: `mine` has room for 256 groups.
        let n = unsafe { libc::getgroups(256, mine.as_mut_ptr()) };
        mine.truncate(n.max(0) as usize);
        let (mut got, mut want) = (peer.groups, mine);
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
