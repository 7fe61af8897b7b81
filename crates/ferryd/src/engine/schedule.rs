//! The bandwidth schedules at work: one shared limiter per `[[bandwidth.schedule]]`
//! entry, given its rate while the entry is in force and off otherwise; an entry with
//! `limit = 0` closes its limiter while in force (no byte of its priorities moves). A run takes the
//! limiters of the entries that name its job's priority; they are re-checked at every
//! minute boundary (the entries' times are whole minutes).

use std::sync::Arc;
use std::time::Duration;

use crate::config::{local_now, Schedule};
use crate::model::Priority;

use super::ratelimit::RateLimiter;

/// A schedule entry in force now, as `ferry daemon status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitInForce {
    /// Bytes per second; 0: no transfers at all.
    pub limit: u64,
    /// The priorities it holds back.
    pub priorities: Vec<Priority>,
    /// When it applies, e.g. `mon,tue 08:00-18:00`.
    pub period: String,
}

/// The schedule entries and their limiters.
pub struct Schedules {
    entries: Vec<(Schedule, Arc<RateLimiter>)>,
}

impl Schedules {
    pub fn new(schedules: &[Schedule]) -> Schedules {
        let s = Schedules {
            entries: schedules
                .iter()
                .map(|s| (s.clone(), Arc::new(RateLimiter::off())))
                .collect(),
        };
        s.refresh();
        s
    }

    /// Turns each limiter on or off for the local time now.
    pub fn refresh(&self) {
        let (day, minute) = local_now();
        for (s, limiter) in &self.entries {
            let on = s.in_force(day, minute);
            let rate = if on { s.limit } else { 0 };
            let closed = on && s.limit == 0;
            if limiter.rate() != rate || limiter.is_closed() != closed {
                tracing::info!(
                    period = %s.describe(),
                    rate,
                    closed,
                    "bandwidth schedule changed{}",
                    if closed { ": no transfers in this window" } else { "" }
                );
            }
            limiter.set_rate(rate);
            limiter.set_closed(closed);
        }
    }

    /// The limiters that apply to jobs of `priority`.
    pub fn for_priority(&self, priority: Priority) -> Vec<Arc<RateLimiter>> {
        self.entries
            .iter()
            .filter(|(s, _)| s.priorities.contains(&priority))
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// The entries in force now.
    pub fn in_force(&self) -> Vec<LimitInForce> {
        self.entries
            .iter()
            .filter(|(_, l)| l.rate() > 0 || l.is_closed())
            .map(|(s, l)| LimitInForce {
                limit: l.rate(),
                priorities: s.priorities.clone(),
                period: s.describe(),
            })
            .collect()
    }

    /// Refreshes at every minute boundary, forever (the caller aborts it).
    pub async fn follow_the_clock(self: Arc<Self>) {
        if self.entries.is_empty() {
            return;
        }
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let ms = now.as_millis() as u64;
            let to_next_minute = Duration::from_millis(60_000 - ms % 60_000 + 20);
            tokio::time::sleep(to_next_minute).await;
            self.refresh();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_a_window_with_limit_zero_closes_its_limiter() {
        let whole_day = Schedule {
            days: [true; 7],
            from_min: 0,
            to_min: 24 * 60,
            limit: 0,
            priorities: vec![Priority::Low],
        };
        let s = Schedules::new(&[whole_day]);
        let low = s.for_priority(Priority::Low);
        assert_eq!(low.len(), 1);
        assert!(low[0].is_closed(), "no transfers for low jobs now");
        assert!(s.for_priority(Priority::Normal).is_empty());
        let shown = s.in_force();
        assert_eq!(shown.len(), 1, "status shows the window");
        assert_eq!(shown[0].limit, 0);
    }
}
