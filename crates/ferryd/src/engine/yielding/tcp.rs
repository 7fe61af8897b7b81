//! The TCP side of the yielding controller: finding the socket an HTTP response came on
//! (or the one an upload opened), reading its `TCP_INFO`, clamping its receive window or
//! bounding its send buffer. Socket options are not
//! file-system work, so they live in the engine; the one file-system read is the
//! daemon's own descriptor table (`/proc/self/fd`), never a job's file.
//!
//! May use: the standard library, libc.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A connection's socket, held through a descriptor of our own (so the number cannot
/// be reused for something else under us).
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

/// What the controller reads of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSample {
    /// The receiver's RTT estimate (µs; 0 before the first estimate).
    pub rcv_rtt_us: u64,
    /// Bytes received on the connection.
    pub bytes_received: u64,
    /// The segment size the peer sends.
    pub rcv_mss: u32,
    /// The sender's smoothed RTT (µs): on a connection that sends, it follows the queue.
    pub rtt_us: u64,
    /// Bytes sent and acknowledged by the peer.
    pub bytes_acked: u64,
    /// The segment size this side sends.
    pub snd_mss: u32,
}

/// The local and peer addresses of every connected socket of the daemon now.
pub fn connections() -> HashSet<(SocketAddr, SocketAddr)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        .filter_map(addresses)
        .collect()
}

impl Socket {
    /// The one socket connected to a peer on `port` that is not among `before` (the
    /// connection an upload opened since); `None` when there is none, or more than one
    /// (another run connected at the same time: which one is ours cannot be told).
    pub fn find_new(before: &HashSet<(SocketAddr, SocketAddr)>, port: u16) -> Option<Socket> {
        let new: Vec<(SocketAddr, SocketAddr)> = connections()
            .into_iter()
            .filter(|(_, peer)| peer.port() == port)
            .filter(|pair| !before.contains(pair))
            .collect();
        match new.as_slice() {
            [(local, remote)] => Socket::find(*local, *remote),
            _ => None,
        }
    }

    /// The daemon's socket whose local and peer addresses are `local` and `remote`.
    pub fn find(local: SocketAddr, remote: SocketAddr) -> Option<Socket> {
        let entries = std::fs::read_dir("/proc/self/fd").ok()?;
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok())
            else {
                continue;
            };
            if addresses(fd) != Some((local, remote)) {
                continue;
            }
            // SAFETY: F_DUPFD_CLOEXEC on any number is harmless; a valid result is ours.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                continue;
            }
            // SAFETY: `dup` was just returned by fcntl and nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(dup) };
            // Checked again on our own descriptor: the number may have been closed and
            // reused between the first look and the dup.
            if addresses(fd.as_raw_fd()) == Some((local, remote)) {
                return Some(Socket { fd });
            }
        }
        None
    }

    /// The socket's `TCP_INFO`, or `None` if the kernel refuses.
    pub fn sample(&self) -> Option<TcpSample> {
        // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes into it.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(TcpSample {
            rcv_rtt_us: u64::from(info.tcpi_rcv_rtt),
            bytes_received: info.tcpi_bytes_received,
            rcv_mss: info.tcpi_rcv_mss,
            rtt_us: u64::from(info.tcpi_rtt),
            bytes_acked: info.tcpi_bytes_acked,
            snd_mss: info.tcpi_snd_mss,
        })
    }

    /// Bounds what the socket holds to send, sent and unacknowledged or not yet sent, to
    /// about `bytes` (`SO_SNDBUF` of half of it: the kernel doubles the value for its
    /// bookkeeping, and keeps a small minimum): on a connection that sends, the bytes in
    /// flight, as the window clamp bounds them on one that receives. It can move both ways
    /// at any time.
    pub fn limit_send_buffer(&self, bytes: u64) {
        let value = (bytes / 2).min(i32::MAX as u64) as libc::c_int;
        // SAFETY: an int option, passed by pointer with its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "SO_SNDBUF");
        }
    }

    /// Clamps the window the socket advertises to `bytes`.
    pub fn clamp_window(&self, bytes: u64) {
        let value = bytes.min(i32::MAX as u64) as libc::c_int;
        // SAFETY: an int option, passed by pointer with its size.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_WINDOW_CLAMP,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "TCP_WINDOW_CLAMP");
        }
    }
}

/// The local and peer addresses of socket `fd`; `None` for anything else.
fn addresses(fd: RawFd) -> Option<(SocketAddr, SocketAddr)> {
    let name = |peer: bool| {
        // SAFETY: sockaddr_storage is plain data, large enough for any address.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let ptr = (&mut storage as *mut libc::sockaddr_storage).cast();
        // SAFETY: the kernel writes at most `len` bytes; on a non-socket it fails.
        let rc = unsafe {
            if peer {
                libc::getpeername(fd, ptr, &mut len)
            } else {
                libc::getsockname(fd, ptr, &mut len)
            }
        };
        (rc == 0).then(|| to_socket_addr(&storage)).flatten()
    };
    Some((name(false)?, name(true)?))
}

fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_connection_by_its_addresses_and_reads_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        std::io::Write::write_all(&mut server, &[7u8; 100_000]).unwrap();
        let mut buf = vec![0u8; 100_000];
        std::io::Read::read_exact(&mut &client, &mut buf).unwrap();
        let found = Socket::find(client.local_addr().unwrap(), client.peer_addr().unwrap())
            .expect("the client's socket");
        let sample = found.sample().expect("TCP_INFO");
        assert_eq!(sample.bytes_received, 100_000);
        found.clamp_window(8 * 1448);
        let wrong = Socket::find(client.local_addr().unwrap(), "127.0.0.1:1".parse().unwrap());
        assert!(wrong.is_none());
    }

    #[test]
    fn parity_upload_finds_the_one_new_connection_to_a_port_and_bounds_its_sending() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let before = connections();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let found = Socket::find_new(&before, port).expect("the new connection");
        std::io::Write::write_all(&mut client, &[7u8; 50_000]).unwrap();
        let mut buf = vec![0u8; 50_000];
        std::io::Read::read_exact(&mut server, &mut buf).unwrap();
        let sample = found.sample().expect("TCP_INFO");
        assert!(sample.rtt_us > 0 && sample.snd_mss > 0, "{sample:?}");
        found.limit_send_buffer(128 << 10);
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an int option read into an int.
        let rc = unsafe {
            libc::getsockopt(
                client.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(
            (rc, value),
            (0, 128 << 10),
            "the kernel doubles what was set"
        );
        // A second new connection to the port makes ours ambiguous: none is picked.
        let _other = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(Socket::find_new(&before, port).is_none());
        assert!(
            Socket::find_new(&connections(), port).is_none(),
            "nothing new"
        );
    }
}
