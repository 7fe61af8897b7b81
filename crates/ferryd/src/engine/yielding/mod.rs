//! Yielding to other traffic: a run of a background priority (`high`, `normal`, `low`;
//! BITS calls every priority but foreground background), download or upload, goes
//! through a controller of its run ([`Yielder`]) that watches the queueing delay on the
//! run's own connections and sets how fast the run reads (or sends) and how large a window
//! its connections advertise (or how much they may have in flight), so the traffic slows
//! before the bottleneck's queue grows (LEDBAT, RFC 6817; at the receiver, RFC 9840).
//! A job with `ignore_congestion` (BITS_COST_OPTION_IGNORE_CONGESTION) does not yield.
//! `ledbat.rs` holds the arithmetic, `tcp.rs` the socket work (finding a response's
//! socket, `TCP_INFO`, `TCP_WINDOW_CLAMP`).
//!
//! May use: the engine's rate limiter and live counters, `model`, reqwest and hyper-util
//! (a response's connection addresses), libc.

mod ledbat;
mod tcp;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpInfo;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use ledbat::{DECREASE, GAIN_MSS, MIN_WINDOW_MSS, TARGET_US};

use super::live::LiveRun;
use super::ratelimit::RateLimiter;
use crate::model::Priority;
use ledbat::Ledbat;
use tcp::Socket;

/// How often the controller reads its connections' `TCP_INFO`.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// The queueing delay over which an upload's writes are paced as well as bounded (µs).
const SENDER_PACING_DELAY_US: u64 = 4 * TARGET_US;

/// The segment size assumed until a connection reports its own.
const DEFAULT_MSS: u32 = 1448;

/// True for the jobs that yield: every job but a `foreground` one (BITS runs every other
/// priority in the background), downloads and uploads alike, unless it ignores congestion
/// (BITS_COST_OPTION_IGNORE_CONGESTION). `foreground` jobs compete as plain TCP.
pub fn yields(priority: Priority, ignore_congestion: bool) -> bool {
    priority != Priority::Foreground && !ignore_congestion
}

/// A connection the controller watches.
struct Watched {
    id: u64,
    socket: Socket,
    /// The run sends on it (an upload): the delay is the sender's RTT, the progress the
    /// bytes acknowledged, the actuator the kernel's pacing rate. Otherwise it receives:
    /// the receiver's RTT estimate, the bytes received, the window clamp.
    sending: bool,
    /// Its bytes received (or acknowledged) at the last sample.
    received: u64,
}

/// How an upload's body finds its connection: the run's HTTP client has a pool of its
/// own, so the connection a request opens is new; the daemon's connections before the
/// upload's first request are kept, and the one new connection to the server's port is
/// watched once the body starts to flow (the request is on its connection by then).
#[derive(Clone)]
pub struct NewConnection {
    yielder: Arc<Yielder>,
    before: Arc<HashSet<(SocketAddr, SocketAddr)>>,
    port: u16,
}

impl NewConnection {
    /// Watches the upload's connection until the guard drops; `None` when it cannot be
    /// told (none new, or several: another run connected to the same port meanwhile).
    pub fn watch(&self) -> Option<Watch> {
        let Some(socket) = Socket::find_new(&self.before, self.port) else {
            tracing::debug!(
                port = self.port,
                "no single new connection for an upload; not watched"
            );
            return None;
        };
        Some(self.yielder.add(socket, true))
    }
}

/// The controller of one run: its rate limiter (one of the run's limits) and the
/// connections its responses are read from.
pub struct Yielder {
    limiter: Arc<RateLimiter>,
    watched: Mutex<Vec<Watched>>,
    next_id: AtomicU64,
    live: Arc<LiveRun>,
}

/// Keeps a connection watched while a response is read from it.
pub struct Watch {
    yielder: Arc<Yielder>,
    id: u64,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.yielder.watched.lock().retain(|w| w.id != self.id);
    }
}

impl Yielder {
    /// A controller for the run whose counters are `live`; its limiter lets everything
    /// through until a connection is watched.
    pub fn new(live: Arc<LiveRun>) -> Arc<Yielder> {
        Arc::new(Yielder {
            limiter: Arc::new(RateLimiter::off()),
            watched: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            live,
        })
    }

    /// The limiter whose rate the controller sets (to be among the run's limits).
    pub fn limiter(&self) -> Arc<RateLimiter> {
        self.limiter.clone()
    }

    /// Watches the connection `response` is read from until the returned guard drops.
    /// `None` when its socket cannot be found (the response is then read unwatched).
    pub fn watch(self: &Arc<Self>, response: &reqwest::Response) -> Option<Watch> {
        let Some(info) = response.extensions().get::<HttpInfo>() else {
            tracing::debug!("a response without connection addresses; not watched");
            return None;
        };
        let Some(socket) = Socket::find(info.local_addr(), info.remote_addr()) else {
            tracing::debug!(local = %info.local_addr(), remote = %info.remote_addr(), "no socket for a connection; not watched");
            return None;
        };
        Some(self.add(socket, false))
    }

    /// Notes the daemon's connections before an upload to `port` sends its first request
    /// (see [`NewConnection`]).
    pub fn before_upload(self: &Arc<Self>, port: u16) -> NewConnection {
        NewConnection {
            yielder: self.clone(),
            before: Arc::new(tcp::connections()),
            port,
        }
    }

    fn add(self: &Arc<Self>, socket: Socket, sending: bool) -> Watch {
        let received = socket.sample().map_or(0, |s| {
            if sending {
                s.bytes_acked
            } else {
                s.bytes_received
            }
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.watched.lock().push(Watched {
            id,
            socket,
            sending,
            received,
        });
        Watch {
            yielder: self.clone(),
            id,
        }
    }

    /// Samples the watched connections every [`SAMPLE_INTERVAL`] and applies the
    /// controller's decisions until `stop` fires.
    pub async fn drive(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let started = Instant::now();
        let mut controller: Option<Ledbat> = None;
        let mut delivered: u64 = 0;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let mut watched = self.watched.lock();
            if watched.is_empty() {
                // Nothing to measure: a new connection starts unpaced and is measured
                // within one interval.
                self.limiter.set_rate(0);
                self.live.set_yielding(false);
                continue;
            }
            let mut rtt_us = 0;
            let mut mss = 0;
            for w in watched.iter_mut() {
                if let Some(s) = w.socket.sample() {
                    let (rtt, seg, moved) = if w.sending {
                        (s.rtt_us, s.snd_mss, s.bytes_acked)
                    } else {
                        (s.rcv_rtt_us, s.rcv_mss, s.bytes_received)
                    };
                    rtt_us = rtt_us.max(rtt);
                    mss = mss.max(seg);
                    delivered += moved.saturating_sub(w.received);
                    w.received = moved;
                }
            }
            self.live.set_yielding(true);
            if rtt_us == 0 {
                continue;
            }
            let mss = if mss >= 536 { mss } else { DEFAULT_MSS };
            let c = controller.get_or_insert_with(|| Ledbat::new(mss));
            let now_us = started.elapsed().as_micros() as u64;
            let d = c.on_sample(rtt_us, delivered, now_us);
            let per_socket = (d.window / watched.len() as u64).max(2 * c.mss());
            for w in watched.iter() {
                if w.sending {
                    w.socket.limit_send_buffer(per_socket);
                } else {
                    w.socket.clamp_window(per_socket);
                }
            }
            // A run that only sends (an upload) is bounded by its send buffers, and paced
            // only while the queue is well over the target: its own paced writes make
            // delays of a few milliseconds by themselves (bursts, acknowledgements
            // waiting for a second segment), which would hold it far below an idle link.
            let only_sending = watched.iter().all(|w| w.sending);
            drop(watched);
            let pace = !only_sending || d.queueing_us > SENDER_PACING_DELAY_US;
            self.limiter.set_rate(if pace { d.rate.max(1) } else { 0 });
            tracing::trace!(
                rtt_us,
                queueing_us = d.queueing_us,
                window = d.window,
                rate = d.rate,
                "yielding"
            );
        }
        self.live.set_yielding(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_every_background_priority_yields_unless_it_ignores_congestion() {
        for p in [Priority::High, Priority::Normal, Priority::Low] {
            assert!(yields(p, false), "{p:?}");
            assert!(!yields(p, true), "{p:?} with IGNORE_CONGESTION");
        }
        assert!(!yields(Priority::Foreground, false));
    }
}
