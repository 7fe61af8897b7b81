//! The daemon's two clocks.
//!
//! - The wall clock, [`now_ms`] (ms since the Unix epoch): what people see and what the
//!   store keeps (`modified_ms`, `retry_at_ms`, `last_progress_ms`, …), so times read
//!   right and survive a restart.
//! - A monotonic clock, [`mono_ms`] (ms since this process first asked; earlier times are
//!   negative): every wait, timeout and age is measured on it — retry times, the
//!   no-progress timeout, `max_transfer_time`, the inactivity timeout, retention — so
//!   setting the wall clock a day forward or back neither fires every timeout at once nor
//!   holds them for a day.
//!
//! A wall-clock time loaded from the store is placed on the monotonic clock once, at
//! start-up, by how far it lies from the wall clock then ([`mono_since`], [`mono_until`]).

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Milliseconds on the monotonic clock, now (it never goes back, whatever the wall clock
/// does).
pub fn mono_ms() -> i64 {
    base().elapsed().as_millis() as i64
}

/// The monotonic time of `wall_ms`, a wall-clock time in the past: as long ago as the
/// wall clock says (a time "in the future" counts as now).
pub fn mono_since(wall_ms: i64) -> i64 {
    mono_ms() - now_ms().saturating_sub(wall_ms).max(0)
}

/// The monotonic time of `wall_ms`, a wall-clock time to come: as far ahead as the wall
/// clock says, but at most `cap_ms` (a time in the past is now).
pub fn mono_until(wall_ms: i64, cap_ms: i64) -> i64 {
    mono_ms() + wall_ms.saturating_sub(now_ms()).clamp(0, cap_ms.max(0))
}

/// The wall-clock time of `mono`, a monotonic time in the past (for display and the
/// store).
pub fn wall_of(mono: i64) -> i64 {
    now_ms() - mono_ms().saturating_sub(mono).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_map_onto_the_monotonic_clock() {
        let hour = 3_600_000;
        // Each call reads both clocks once, somewhere between the readings around it.
        let (m0, w0) = (mono_ms(), now_ms());
        let past = mono_since(w0 - hour);
        let ahead = mono_until(w0 + hour, 10 * hour);
        let shown = wall_of(m0);
        let (m1, w1) = (mono_ms(), now_ms());
        let drift = w1 - w0;
        assert!((m0 - hour - drift..=m1 - hour).contains(&past), "{past}");
        assert!((m0 + hour - drift..=m1 + hour).contains(&ahead), "{ahead}");
        assert!((w0 - (m1 - m0)..=w1).contains(&shown), "{shown}");
        assert!(
            mono_since(now_ms() + hour) >= m1,
            "a future time counts as now"
        );
        assert!(
            mono_until(now_ms() + 100 * hour, hour) <= mono_ms() + hour,
            "capped"
        );
        assert!(
            mono_until(now_ms() - hour, hour) <= mono_ms(),
            "a past time is now"
        );
    }
}
