//! Messages between ferry's own processes (broker, workers, cache process) over a Unix
//! stream socket, each with descriptors attached when it hands one over (`SCM_RIGHTS`).
//!
//! A frame is an 8-byte header — the payload's length and the number of descriptors, both
//! little-endian `u32` — then the payload (postcard). The descriptors travel with the
//! header's bytes (`sendmsg`), and the header is read with `recvmsg` of exactly its own
//! length, so a read never mixes two frames' descriptors. Received descriptors are
//! close-on-exec (`MSG_CMSG_CLOEXEC`). Every peer is treated as hostile: a frame larger
//! than [`MAX_FRAME`], a header that announces more descriptors than arrived, or a
//! payload that does not decode ends the link with an error; descriptors a receiver did
//! not ask for are simply dropped (closed) by it.
//!
//! May use: tokio, nix, serde, postcard. Nothing else of the daemon.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::Interest;
use tokio::net::UnixStream;

/// The largest payload a frame may carry (a page of jobs stays far below it).
pub const MAX_FRAME: usize = 16 << 20;
/// The most descriptors one frame may carry.
pub const MAX_FDS: usize = 64;
const HEADER: usize = 8;

/// A connected pair of sockets for a parent and the process it starts (close-on-exec on
/// both ends; the child's end is duplicated onto its inherited descriptor on purpose).
pub fn pair() -> io::Result<(
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixStream,
)> {
    std::os::unix::net::UnixStream::pair()
}

/// One end of a link, split into a sending and a receiving half.
pub fn link(stream: std::os::unix::net::UnixStream) -> io::Result<(Sender, Receiver)> {
    stream.set_nonblocking(true)?;
    let stream = Arc::new(UnixStream::from_std(stream)?);
    Ok((
        Sender {
            stream: stream.clone(),
            lock: Arc::new(tokio::sync::Mutex::new(())),
        },
        Receiver { stream },
    ))
}

/// The sending half: frames are written whole, one at a time.
#[derive(Clone)]
pub struct Sender {
    stream: Arc<UnixStream>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("fd", &self.stream.as_raw_fd())
            .finish()
    }
}

impl Sender {
    /// Sends `msg` with `fds` attached (they stay open here: the receiver gets copies).
    pub async fn send<T: Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let payload = postcard::to_allocvec(msg).map_err(io::Error::other)?;
        if payload.len() > MAX_FRAME || fds.len() > MAX_FDS {
            return Err(io::Error::other(format!(
                "a message of {} bytes and {} descriptors is over the link's limits",
                payload.len(),
                fds.len()
            )));
        }
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&(fds.len() as u32).to_le_bytes());
        frame.extend_from_slice(&payload);
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let _one_at_a_time = self.lock.lock().await;
        // The descriptors go with the first bytes; whatever `sendmsg` did not take is
        // written after it as plain bytes.
        let sent = self
            .stream
            .async_io(Interest::WRITABLE, || {
                let iov = [io::IoSlice::new(&frame)];
                let cmsg = [ControlMessage::ScmRights(&raw)];
                let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
                sendmsg::<UnixAddr>(
                    self.stream.as_raw_fd(),
                    &iov,
                    cmsgs,
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(io::Error::from)
            })
            .await?;
        // The rest of a large frame (the lock keeps frames whole).
        let mut at = sent;
        while at < frame.len() {
            self.stream.writable().await?;
            match self.stream.try_write(&frame[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The receiving half.
pub struct Receiver {
    stream: Arc<UnixStream>,
}

impl Receiver {
    /// The next message and its descriptors; `None` when the other end closed the link
    /// between frames.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
        let mut header = [0u8; HEADER];
        let mut got = 0;
        let mut fds: Vec<OwnedFd> = Vec::new();
        while got < HEADER {
            let n = self
                .stream
                .async_io(Interest::READABLE, || {
                    let mut iov = [io::IoSliceMut::new(&mut header[got..])];
                    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
                    let msg = recvmsg::<UnixAddr>(
                        self.stream.as_raw_fd(),
                        &mut iov,
                        Some(&mut space),
                        MsgFlags::MSG_CMSG_CLOEXEC,
                    )
                    .map_err(io::Error::from)?;
                    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
                    for c in msg.cmsgs().map_err(io::Error::from)? {
                        if let ControlMessageOwned::ScmRights(list) = c {
                            for fd in list {
                                // SAFETY: the kernel just installed `fd` in this process
                                // for us; nothing else owns it.
                                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                            }
                        }
                    }
                    if truncated {
                        return Err(io::Error::other("more descriptors than a frame may carry"));
                    }
                    Ok(msg.bytes)
                })
                .await?;
            if n == 0 {
                if got == 0 && fds.is_empty() {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            got += n;
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let nfds = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::other(format!(
                "a frame of {len} bytes is over the limit ({MAX_FRAME})"
            )));
        }
        if nfds != fds.len() {
            return Err(io::Error::other(format!(
                "a frame announced {nfds} descriptors and {} arrived",
                fds.len()
            )));
        }
        let mut payload = vec![0u8; len];
        let mut at = 0;
        while at < len {
            self.stream.readable().await?;
            match self.stream.try_read(&mut payload[at..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        let msg = postcard::from_bytes(&payload)
            .map_err(|e| io::Error::other(format!("a malformed message: {e}")))?;
        Ok(Some((msg, fds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Msg {
        Hello(String),
        Big(Vec<u8>),
    }

    #[tokio::test]
    async fn messages_and_descriptors_arrive_in_order_and_whole() {
        let (a, b) = pair().unwrap();
        let (tx, _) = link(a).unwrap();
        let (_, mut rx) = link(b).unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"handed over").unwrap();
        let big = vec![7u8; 3 << 20];
        let sending = {
            let big = big.clone();
            let tx = tx.clone();
            let fd = file.try_clone().unwrap();
            tokio::spawn(async move {
                tx.send(&Msg::Big(big), &[]).await.unwrap();
                use std::os::fd::AsFd;
                tx.send(&Msg::Hello("with a file".into()), &[fd.as_fd()])
                    .await
                    .unwrap();
                tx.send(&Msg::Hello("alone".into()), &[]).await.unwrap();
            })
        };
        let (m, fds) = rx.recv::<Msg>().await.unwrap().unwrap();
        assert_eq!((m, fds.len()), (Msg::Big(big), 0));
        let (m, mut fds) = rx.recv::<Msg>().await.unwrap().unwrap();
        assert_eq!(m, Msg::Hello("with a file".into()));
        let mut got = std::fs::File::from(fds.pop().unwrap());
        got.rewind().unwrap();
        let mut text = String::new();
        got.read_to_string(&mut text).unwrap();
        assert_eq!(text, "handed over");
        let (m, fds) = rx.recv::<Msg>().await.unwrap().unwrap();
        assert_eq!((m, fds.len()), (Msg::Hello("alone".into()), 0));
        sending.await.unwrap();
        drop(tx);
        assert!(rx.recv::<Msg>().await.unwrap().is_none(), "a clean end");
    }

    #[tokio::test]
    async fn a_hostile_frame_ends_the_link() {
        let (a, b) = pair().unwrap();
        let (_, mut rx) = link(b).unwrap();
        let mut raw = a;
        raw.write_all(&(u32::MAX).to_le_bytes()).unwrap();
        raw.write_all(&0u32.to_le_bytes()).unwrap();
        let e = rx.recv::<Msg>().await.unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");

        let (a, b) = pair().unwrap();
        let (_, mut rx) = link(b).unwrap();
        let mut raw = a;
        // Announces a descriptor that never came.
        raw.write_all(&1u32.to_le_bytes()).unwrap();
        raw.write_all(&1u32.to_le_bytes()).unwrap();
        raw.write_all(&[0]).unwrap();
        let e = rx.recv::<Msg>().await.unwrap_err();
        assert!(e.to_string().contains("descriptors"), "{e}");
    }
}
