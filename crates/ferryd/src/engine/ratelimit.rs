//! Bandwidth limits: a "next free time" pacer shared by the transfers it limits. Its rate
//! can change while transfers use it (a schedule coming into force); 0 lets everything
//! through. A limiter can also be closed (a schedule window with `limit = 0`): then no
//! byte passes until it opens again.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::time::Duration;
use tokio::sync::Notify;

use tokio::time::Instant;

/// Paces byte counts to `rate` bytes per second, allowing a small burst.
#[derive(Debug)]
pub struct RateLimiter {
    rate: AtomicU64,
    next_free: Mutex<Instant>,
    /// No byte passes while set.
    closed: AtomicBool,
    /// Woken when the limiter opens.
    opened: Notify,
}

/// How far ahead of the schedule a transfer may run (the burst).
const BURST: Duration = Duration::from_millis(100);

impl RateLimiter {
    /// A limiter of `rate` bytes per second (`rate` > 0).
    pub fn new(rate: u64) -> RateLimiter {
        RateLimiter {
            rate: AtomicU64::new(rate.max(1)),
            next_free: Mutex::new(Instant::now()),
            closed: AtomicBool::new(false),
            opened: Notify::new(),
        }
    }

    /// A limiter that lets everything through until [`RateLimiter::set_rate`] gives it a
    /// rate.
    pub fn off() -> RateLimiter {
        RateLimiter {
            rate: AtomicU64::new(0),
            next_free: Mutex::new(Instant::now()),
            closed: AtomicBool::new(false),
            opened: Notify::new(),
        }
    }

    /// Sets the rate in bytes per second; 0 lets everything through.
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// The rate in bytes per second; 0 when off.
    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Closes the limiter (nothing passes) or opens it again.
    pub fn set_closed(&self, closed: bool) {
        self.closed.store(closed, Ordering::SeqCst);
        if !closed {
            self.opened.notify_waiters();
        }
    }

    /// True while nothing passes.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits until `n` more bytes may move.
    pub async fn consume(&self, n: usize) {
        while self.is_closed() {
            let opened = self.opened.notified();
            if !self.is_closed() {
                break;
            }
            opened.await;
        }
        let rate = self.rate();
        if rate == 0 {
            return;
        }
        let wait_until = {
            let mut next = self.next_free.lock();
            let now = Instant::now();
            let start = (*next).max(now - BURST);
            *next = start + Duration::from_secs_f64(n as f64 / rate as f64);
            *next - BURST
        };
        if wait_until > Instant::now() {
            tokio::time::sleep_until(wait_until).await;
        }
    }
}

/// Waits on every limiter in turn.
pub async fn consume_all(limits: &[std::sync::Arc<RateLimiter>], n: usize) {
    for l in limits {
        l.consume(n).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn parity_a_closed_limiter_lets_nothing_through_until_it_opens() {
        let l = std::sync::Arc::new(RateLimiter::off());
        l.set_closed(true);
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.consume(1).await }
        });
        // An hour of (paused, auto-advanced) time: still nothing passes.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(
            !waiting.is_finished(),
            "a closed limiter let a byte through"
        );
        l.set_closed(false);
        waiting.await.unwrap();
        l.consume(1 << 20).await;
    }

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate() {
        let l = RateLimiter::new(1000);
        let start = Instant::now();
        for _ in 0..10 {
            l.consume(500).await;
        }
        // 5000 bytes at 1000 B/s: about 5 s, less the burst.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(4800), "{took:?}");
        assert!(took <= Duration::from_millis(5100), "{took:?}");
    }
}
