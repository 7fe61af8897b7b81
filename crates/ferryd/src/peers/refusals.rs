//! Refused TLS handshakes on the peer port (a machine of another fleet, or one without a
//! certificate, probing every few seconds): logged at WARN once per peer address per
//! interval, with how many were refused meanwhile, instead of a line per connection.
//!
//! May use: the standard library.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often refusals from one address are logged at most.
pub const LOG_EVERY: Duration = Duration::from_secs(3600);
/// Addresses remembered at most (a flood of addresses cannot grow the table).
const MAX_ADDRESSES: usize = 4096;

/// The refusals seen per address: when one was last logged, how many since.
pub struct Refusals {
    every: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u64)>>,
}

impl Refusals {
    pub fn new(every: Duration) -> Refusals {
        Refusals {
            every,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records a refusal from `ip` at `now`: `Some(n)` when it is to be logged, `n`
    /// being how many refusals from it went unlogged since the last line; `None` when it
    /// was logged less than an interval ago.
    pub fn refused(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock();
        if let Some((logged, unlogged)) = seen.get_mut(&ip) {
            if now.duration_since(*logged) < self.every {
                *unlogged += 1;
                return None;
            }
            let n = *unlogged;
            *logged = now;
            *unlogged = 0;
            return Some(n);
        }
        if seen.len() >= MAX_ADDRESSES {
            seen.retain(|_, (logged, _)| now.duration_since(*logged) < self.every);
            if seen.len() >= MAX_ADDRESSES {
                seen.clear();
            }
        }
        seen.insert(ip, (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_address_per_interval_with_the_count_between() {
        let r = Refusals::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(r.refused(a, t0), Some(0), "the first is logged");
        for i in 1..=1800 {
            // A foreign peer probing every 2 s for an hour.
            assert_eq!(r.refused(a, t0 + Duration::from_secs(2 * i - 1)), None);
        }
        assert_eq!(
            r.refused(b, t0),
            Some(0),
            "another address has its own line"
        );
        assert_eq!(
            r.refused(a, t0 + Duration::from_secs(3600)),
            Some(1800),
            "an hour later: one line, saying how many were not logged"
        );
        assert_eq!(r.refused(a, t0 + Duration::from_secs(3601)), None);
    }

    #[test]
    fn many_addresses_do_not_grow_the_table_without_bound() {
        let r = Refusals::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(r.refused(ip, t0), Some(0));
        }
        assert!(r.seen.lock().len() <= MAX_ADDRESSES);
    }
}
