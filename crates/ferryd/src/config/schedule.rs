//! Bandwidth schedules, `[[bandwidth.schedule]]` in `ferryd.toml`, as BITS's group
//! policies: on some days, between two local times, jobs of some priorities share at most
//! a given rate. Parsing and the "is it in force now" rule; the engine applies them.
//!
//! May use: nothing of the daemon (`ferry-common` for rates and priorities).

use ferry_common::Priority;
use serde::{Deserialize, Serialize};

use super::value::{Bounded, ClockTime, Kind, Named, Rate, ANY};

/// Day names, Monday first (`days` accepts these, `mon-fri` ranges, and full names).
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One `[[bandwidth.schedule]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "ScheduleFile", into = "ScheduleFile")]
pub struct Schedule {
    /// The days it starts on, Monday first.
    pub days: [bool; 7],
    /// Start, minutes after local midnight.
    pub from_min: u16,
    /// End, minutes after local midnight (up to 1440); before `from_min` means the
    /// period runs past midnight into the next day.
    pub to_min: u16,
    /// Bytes per second shared by the jobs it applies to; 0: none of their bytes move
    /// while it is in force.
    pub limit: u64,
    /// The priorities it applies to.
    pub priorities: Vec<Priority>,
}

/// The entry as written in the file: `from`, `to` and `limit` are required; without
/// `days` it is every day, without `priorities` the background ones.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "a table with from, to and limit")]
struct ScheduleFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    days: Option<Vec<DaySpan>>,
    /// 00:00 to 24:00.
    #[serde(with = "Bounded::<ClockTime, 0, { 24 * 60 }>")]
    from: u16,
    /// 00:00 to 24:00.
    #[serde(with = "Bounded::<ClockTime, 0, { 24 * 60 }>")]
    to: u16,
    /// Bytes per second; 0 stops the jobs it applies to while it is in force (a window
    /// with no transfers).
    #[serde(with = "Bounded::<Rate, 0, ANY>")]
    limit: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priorities: Option<Vec<Named<Priority>>>,
}

/// The `[bandwidth]` table, whose only key is `schedule`; `Config::schedules` is
/// `#[serde(with = "schedule::in_bandwidth_table", rename = "bandwidth")]`.
pub(super) mod in_bandwidth_table {
    use super::Schedule;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize, Serialize)]
    #[serde(deny_unknown_fields, expecting = "a table whose key is schedule")]
    struct Bandwidth<T> {
        #[serde(default)]
        schedule: T,
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Schedule>, D::Error> {
        Bandwidth::<Vec<Schedule>>::deserialize(d).map(|b| b.schedule)
    }

    pub(in crate::config) fn serialize<S: Serializer>(
        schedules: &[Schedule],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        Bandwidth {
            schedule: schedules,
        }
        .serialize(s)
    }
}

/// One element of `days`: a day (`mon`, `monday`) or a range of days (`mon-fri`,
/// `fri-mon` across the weekend); indexes Monday first.
#[derive(Debug, Clone, Copy)]
struct DaySpan {
    first: usize,
    last: usize,
}

impl DaySpan {
    fn parse(text: &str) -> Option<DaySpan> {
        let (first, last) = text.split_once('-').unwrap_or((text, text));
        Some(DaySpan {
            first: day_index(first)?,
            last: day_index(last)?,
        })
    }

    /// Its days, Monday first.
    fn days(self) -> impl Iterator<Item = usize> {
        let len = (self.last + 7 - self.first) % 7 + 1;
        (self.first..self.first + len).map(|d| d % 7)
    }
}

impl<'de> Deserialize<'de> for DaySpan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::value::text(
            d,
            "a day (mon, tue, wed, thu, fri, sat, sun, or the full name) or a range such as \
             mon-fri",
            DaySpan::parse,
        )
    }
}

impl Serialize for DaySpan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_str(DAYS[self.first])
        } else {
            s.collect_str(&format_args!("{}-{}", DAYS[self.first], DAYS[self.last]))
        }
    }
}

fn day_index(name: &str) -> Option<usize> {
    let n = name.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| n.len() >= 3 && d.starts_with(&n[..3]) && day_full(d).starts_with(&n))
}

fn day_full(short: &str) -> &'static str {
    match short {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    }
}

impl TryFrom<ScheduleFile> for Schedule {
    type Error = String;

    fn try_from(f: ScheduleFile) -> Result<Schedule, String> {
        if f.from == f.to {
            return Err(format!(
                "from and to are both {}: the period is empty (a whole day is from = \
                 \"00:00\", to = \"24:00\")",
                ClockTime::show(u64::from(f.from))
            ));
        }
        let mut days = [f.days.is_none(); 7];
        for d in f.days.iter().flatten().flat_map(|span| span.days()) {
            days[d] = true;
        }
        Ok(Schedule {
            days,
            from_min: f.from,
            to_min: f.to,
            limit: f.limit,
            priorities: match f.priorities {
                None => vec![Priority::High, Priority::Normal, Priority::Low],
                Some(named) => named.into_iter().map(|p| p.0).collect(),
            },
        })
    }
}

impl From<Schedule> for ScheduleFile {
    fn from(s: Schedule) -> ScheduleFile {
        let every_day = s.days.iter().all(|on| *on);
        ScheduleFile {
            days: (!every_day).then(|| {
                (0..7)
                    .filter(|d| s.days[*d])
                    .map(|d| DaySpan { first: d, last: d })
                    .collect()
            }),
            from: s.from_min,
            to: s.to_min,
            limit: s.limit,
            priorities: Some(s.priorities.into_iter().map(Named).collect()),
        }
    }
}

impl Schedule {
    /// Whether the entry is in force on `weekday` (0 = Monday) at `minute` after local
    /// midnight.
    pub fn in_force(&self, weekday: usize, minute: u16) -> bool {
        if self.from_min < self.to_min {
            self.days[weekday % 7] && (self.from_min..self.to_min).contains(&minute)
        } else {
            // Past midnight: the evening of a listed day, or the morning after one.
            (self.days[weekday % 7] && minute >= self.from_min)
                || (self.days[(weekday + 6) % 7] && minute < self.to_min)
        }
    }

    /// `mon,tue,wed 08:00-18:00`, for people.
    pub fn describe(&self) -> String {
        let days: Vec<&str> = DAYS
            .iter()
            .zip(self.days)
            .filter(|(_, on)| *on)
            .map(|(d, _)| *d)
            .collect();
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        format!(
            "{} {}-{}",
            if days.len() == 7 {
                "every day".to_string()
            } else {
                days.join(",")
            },
            hm(self.from_min),
            hm(self.to_min)
        )
    }
}

/// The local weekday (0 = Monday) and minute after midnight now.
pub fn local_now() -> (usize, u16) {
    // SAFETY: time(NULL) and localtime_r into a zeroed struct we own.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        (
            ((tm.tm_wday + 6) % 7) as usize,
            (tm.tm_hour * 60 + tm.tm_min) as u16,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> Result<Schedule, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn weekday_office_hours() {
        let s =
            entry("days = [\"mon-fri\"]\nfrom = \"08:00\"\nto = \"18:00\"\nlimit = \"2MiB/s\"\n")
                .unwrap();
        assert_eq!(s.limit, 2 << 20);
        assert_eq!(
            s.priorities,
            vec![Priority::High, Priority::Normal, Priority::Low]
        );
        assert!(s.in_force(0, 8 * 60));
        assert!(!s.in_force(0, 18 * 60));
        assert!(!s.in_force(5, 9 * 60), "not on Saturday");
        assert_eq!(s.describe(), "mon,tue,wed,thu,fri 08:00-18:00");
    }

    #[test]
    fn past_midnight_and_whole_days() {
        let s = entry(
            "days = [\"fri\"]\nfrom = \"22:00\"\nto = \"06:00\"\nlimit = 1000\npriorities = [\"low\"]\n",
        )
        .unwrap();
        assert!(s.in_force(4, 23 * 60));
        assert!(s.in_force(5, 60), "Saturday morning, after Friday night");
        assert!(!s.in_force(4, 60), "Friday morning follows Thursday");
        let all = entry("from = \"00:00\"\nto = \"24:00\"\nlimit = 1\n").unwrap();
        assert!((0..7).all(|d| all.in_force(d, 0) && all.in_force(d, 1439)));
    }

    #[test]
    fn day_ranges_wrap_and_names_take_any_case() {
        let s = entry(
            "days = [\"Sat-Mon\", \"Wednesday\"]\nfrom = \"01:00\"\nto = \"02:00\"\nlimit = 1\n\
             priorities = [\"NORMAL\"]\n",
        )
        .unwrap();
        assert_eq!(s.days, [true, false, true, false, false, true, true]);
        assert_eq!(s.priorities, vec![Priority::Normal]);
    }

    #[test]
    fn parity_a_window_with_limit_zero_is_accepted() {
        let s = entry("from = \"08:00\"\nto = \"18:00\"\nlimit = 0\n").unwrap();
        assert_eq!(s.limit, 0);
        assert!(s.in_force(2, 9 * 60));
        let text = toml::to_string(&s).unwrap();
        assert_eq!(entry(&text).unwrap(), s, "{text}");
    }

    #[test]
    fn an_entry_written_back_reads_the_same() {
        let s = entry(
            "days = [\"tue-thu\", \"sun\"]\nfrom = \"07:30\"\nto = \"24:00\"\nlimit = \"3MiB/s\"\n\
             priorities = [\"foreground\", \"low\"]\n",
        )
        .unwrap();
        let text = toml::to_string(&s).unwrap();
        assert_eq!(entry(&text).unwrap(), s, "{text}");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let e = entry("from = \"8am\"\nto = \"18:00\"\nlimit = 1\n").unwrap_err();
        assert!(e.contains("HH:MM") && e.contains("24:00"), "{e}");
        let e = entry("from = \"08:00\"\nto = \"24:30\"\nlimit = 1\n").unwrap_err();
        assert!(e.contains("up to 24:00"), "{e}");
        let e = entry("days = [\"funday\"]\nfrom = \"08:00\"\nto = \"18:00\"\nlimit = 1\n")
            .unwrap_err();
        assert!(e.contains("mon-fri"), "{e}");
        let e = entry("from = \"08:00\"\nto = \"08:00\"\nlimit = 1\n").unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = entry("from = \"08:00\"\nto = \"09:00\"\nlimit = 1\npriorities = [\"urgent\"]\n")
            .unwrap_err();
        assert!(e.contains("foreground, high, normal, low"), "{e}");
        let e = entry("from = \"08:00\"\nlimit = 1\n").unwrap_err();
        assert!(e.contains("`to`"), "{e}");
    }
}
