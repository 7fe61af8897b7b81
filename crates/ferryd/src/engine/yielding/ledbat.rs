//! The delay-based controller of yielding jobs (receiver-driven LEDBAT, RFC 9840), as
//! pure arithmetic: it takes the receiver's RTT estimates and the bytes received, and
//! answers the window (bytes in flight the sender may have) and the read rate. No
//! sockets, no clock of its own: time comes in as microseconds, so tests drive it.
//!
//! May use: the standard library.

use std::collections::VecDeque;

/// The queueing delay the controller aims at (µs). rLEDBAT's default is 60 ms, but a
/// competing download whose receiver autotunes its window (Linux's default) keeps a
/// standing queue of only some 10-20 ms on a deep-buffered link: a 60 ms target would
/// never see it and compete as plain TCP. 5 ms sits under that standing queue and above
/// the 1 ms granularity of the timestamps the kernel's estimate is built from.
pub const TARGET_US: u64 = 5_000;
/// Growth per RTT while below the target, in segments, scaled by how far below.
pub const GAIN_MSS: f64 = 1.0;
/// The window is multiplied by this when the delay is over the target…
pub const DECREASE: f64 = 0.5;
/// … at most once per RTT. The window never falls below this many segments.
pub const MIN_WINDOW_MSS: f64 = 2.0;
/// The base delay is the minimum over this many one-minute buckets (the current one and
/// the ones before it), so a route change that lengthens the path is learnt in minutes.
pub const BASE_HISTORY: usize = 4;
const BUCKET_US: u64 = 60_000_000;
/// The window may exceed what arrived in the last RTT by this factor: a connection
/// limited elsewhere (a slow server) does not build a window it could not use.
const USED_HEADROOM: f64 = 2.0;
/// No window grows past this (bytes).
const MAX_WINDOW: f64 = 64.0 * 1024.0 * 1024.0;
/// The RTT used for pacing decisions is never taken below this (timestamp granularity).
const MIN_RTT_US: u64 = 1_000;

/// The minimum RTT seen, over [`BASE_HISTORY`] one-minute buckets.
#[derive(Debug, Default)]
struct BaseDelay {
    /// (bucket number, minimum in it), oldest first.
    buckets: VecDeque<(u64, u64)>,
}

impl BaseDelay {
    fn add(&mut self, rtt_us: u64, now_us: u64) {
        let bucket = now_us / BUCKET_US;
        match self.buckets.back_mut() {
            Some((b, min)) if *b == bucket => *min = (*min).min(rtt_us),
            _ => {
                self.buckets.push_back((bucket, rtt_us));
                while self.buckets.len() > BASE_HISTORY {
                    self.buckets.pop_front();
                }
            }
        }
    }

    fn get(&self) -> Option<u64> {
        self.buckets.iter().map(|(_, m)| *m).min()
    }
}

/// What the controller decided after a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Bytes the sender may have in flight, every connection of the job together.
    pub window: u64,
    /// Bytes per second the job reads at: the window per RTT.
    pub rate: u64,
    /// The queueing delay measured (µs): the RTT estimate less the base delay.
    pub queueing_us: u64,
}

/// One job's controller.
#[derive(Debug)]
pub struct Ledbat {
    mss: f64,
    window: f64,
    slow_start: bool,
    base: BaseDelay,
    last_us: Option<u64>,
    last_decrease_us: Option<u64>,
    /// (time µs, total bytes received) samples of about the last RTT.
    received: VecDeque<(u64, u64)>,
}

impl Ledbat {
    /// A controller for connections with segments of `mss` bytes; it starts at a few
    /// segments and in slow start, like TCP.
    pub fn new(mss: u32) -> Ledbat {
        let mss = f64::from(mss.max(536));
        Ledbat {
            mss,
            window: 4.0 * mss,
            slow_start: true,
            base: BaseDelay::default(),
            last_us: None,
            last_decrease_us: None,
            received: VecDeque::new(),
        }
    }

    /// Feeds one sample taken at `now_us`: the receiver's RTT estimate `rtt_us` (the
    /// largest of the job's connections) and the bytes received so far on them.
    pub fn on_sample(&mut self, rtt_us: u64, received: u64, now_us: u64) -> Decision {
        self.base.add(rtt_us, now_us);
        let base = self.base.get().unwrap_or(rtt_us);
        let queueing = rtt_us.saturating_sub(base);
        let rtt = rtt_us.max(MIN_RTT_US);
        let dt = self
            .last_us
            .map_or(0, |last| now_us.saturating_sub(last))
            .min(rtt);
        self.last_us = Some(now_us);
        let per_rtt = dt as f64 / rtt as f64;
        if queueing > TARGET_US {
            let due = self
                .last_decrease_us
                .is_none_or(|at| now_us.saturating_sub(at) >= rtt);
            if due {
                self.window *= DECREASE;
                self.last_decrease_us = Some(now_us);
                self.slow_start = false;
            }
        } else if self.slow_start && queueing < TARGET_US / 2 {
            self.window += self.window * per_rtt;
        } else {
            self.slow_start = false;
            let off_target = (TARGET_US - queueing) as f64 / TARGET_US as f64;
            self.window += GAIN_MSS * off_target * self.mss * per_rtt;
        }
        let used = self.received_in(rtt, received, now_us);
        let ceiling = USED_HEADROOM * used + 4.0 * self.mss;
        self.window = self
            .window
            .min(ceiling)
            .min(MAX_WINDOW)
            .max(MIN_WINDOW_MSS * self.mss);
        Decision {
            window: self.window as u64,
            rate: (self.window * 1e6 / rtt as f64) as u64,
            queueing_us: queueing,
        }
    }

    /// Bytes received over the last `rtt_us` (as far as the samples reach back).
    fn received_in(&mut self, rtt_us: u64, received: u64, now_us: u64) -> f64 {
        self.received.push_back((now_us, received));
        while self
            .received
            .get(1)
            .is_some_and(|(t, _)| now_us.saturating_sub(*t) >= rtt_us)
        {
            self.received.pop_front();
        }
        let (_, oldest) = self.received.front().copied().unwrap_or((now_us, received));
        received.saturating_sub(oldest) as f64
    }

    /// The segment size it counts in.
    pub fn mss(&self) -> u64 {
        self.mss as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1448;

    /// A link of 5 MB/s.
    const LINK: u64 = 5_000_000;

    /// Samples every 10 ms for `ms` at a fixed RTT, the receiver taking in the window
    /// each RTT as far as the link allows; the last decision.
    fn run(c: &mut Ledbat, now: &mut u64, received: &mut u64, rtt: u64, ms: u64) -> Decision {
        let mut d = None;
        for _ in 0..ms / 10 {
            *now += 10_000;
            let w = d.map_or(4 * u64::from(MSS), |d: Decision| d.window);
            *received += (w * 1_000_000 / rtt).min(LINK) / 100;
            d = Some(c.on_sample(rtt, *received, *now));
        }
        d.unwrap()
    }

    #[test]
    fn grows_while_the_delay_is_low_and_halves_when_it_is_high() {
        let mut c = Ledbat::new(MSS);
        let (mut now, mut rx) = (0, 0);
        let low = run(&mut c, &mut now, &mut rx, 20_000, 2000);
        assert!(low.window > 40 * u64::from(MSS), "{low:?}");
        let high = run(&mut c, &mut now, &mut rx, 20_000 + TARGET_US + 100_000, 130);
        assert!(high.window <= low.window / 2, "{low:?} {high:?}");
        let floor = run(
            &mut c,
            &mut now,
            &mut rx,
            20_000 + TARGET_US + 100_000,
            10_000,
        );
        assert_eq!(floor.window, (MIN_WINDOW_MSS * f64::from(MSS)) as u64);
        assert!(floor.rate > 0, "never stalls: {floor:?}");
        let back = run(&mut c, &mut now, &mut rx, 20_000, 2000);
        assert!(back.window > floor.window * 4, "{floor:?} {back:?}");
    }

    #[test]
    fn halves_at_most_once_per_rtt() {
        let mut c = Ledbat::new(MSS);
        let (mut now, mut rx) = (0, 0);
        let before = run(&mut c, &mut now, &mut rx, 10_000, 1000);
        // 200 ms of high delay at an RTT of 200 ms: one or two halvings, not twenty.
        let after = run(&mut c, &mut now, &mut rx, 200_000, 200);
        assert!(after.window * 5 > before.window, "{before:?} {after:?}");
    }

    #[test]
    fn the_base_delay_is_the_minimum_of_the_last_minutes() {
        let mut b = BaseDelay::default();
        b.add(5_000, 0);
        b.add(9_000, BUCKET_US);
        assert_eq!(b.get(), Some(5_000));
        for i in 2..=BASE_HISTORY as u64 + 1 {
            b.add(9_000, i * BUCKET_US);
        }
        assert_eq!(b.get(), Some(9_000), "the old minimum ages out");
    }
}
