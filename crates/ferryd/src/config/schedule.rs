//! Bandwidth schedules, `[[bandwidth.schedule]]` in `ferryd.toml`, as BITS's group
//! policies: on some days, between two local times, jobs of some priorities share at most
//! a given rate. Parsing and the "is it in force now" rule; the engine applies them.
//!
//! May use: nothing of the daemon (`ferry-common` for rates and priorities).

use ferry_common::Priority;

/// Day names, Monday first (`days` accepts these, `mon-fri` ranges, and full names).
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One `[[bandwidth.schedule]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The days it starts on, Monday first.
    pub days: [bool; 7],
    /// Start, minutes after local midnight.
    pub from_min: u16,
    /// End, minutes after local midnight (up to 1440); before `from_min` means the
    /// period runs past midnight into the next day.
    pub to_min: u16,
    /// Bytes per second shared by the jobs it applies to.
    pub limit: u64,
    /// The priorities it applies to.
    pub priorities: Vec<Priority>,
}

/// The entry as written in the file.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleFile {
    days: Option<Vec<String>>,
    from: String,
    to: String,
    limit: toml::Value,
    priorities: Option<Vec<String>>,
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

/// `HH:MM` (00:00 to 24:00) as minutes after midnight.
fn minutes(key: &str, v: &str) -> Result<u16, String> {
    let bad =
        || format!("bandwidth.schedule {key} = '{v}': give a local time as HH:MM (00:00 to 24:00)");
    let (h, m) = v.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl ScheduleFile {
    /// Checks the entry (number `n`, from 1, for messages).
    pub(super) fn parse(self, n: usize) -> Result<Schedule, String> {
        let at = format!("[[bandwidth.schedule]] number {n}");
        let mut days = [self.days.is_none(); 7];
        for d in self.days.unwrap_or_default() {
            let bad = || {
                format!(
                    "{at}: unknown day '{d}' (use mon, tue, wed, thu, fri, sat, sun or a range \
                     like mon-fri)"
                )
            };
            match d.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (day_index(a).ok_or_else(bad)?, day_index(b).ok_or_else(bad)?);
                    let mut i = a;
                    loop {
                        days[i] = true;
                        if i == b {
                            break;
                        }
                        i = (i + 1) % 7;
                    }
                }
                None => days[day_index(&d).ok_or_else(bad)?] = true,
            }
        }
        let from_min = minutes("from", &self.from).map_err(|e| format!("{at}: {e}"))?;
        let to_min = minutes("to", &self.to).map_err(|e| format!("{at}: {e}"))?;
        if from_min == to_min {
            return Err(format!(
                "{at}: from and to are both {}: the period is empty (a whole day is from = \
                 \"00:00\", to = \"24:00\")",
                self.from
            ));
        }
        let limit = match self.limit {
            toml::Value::Integer(n) if n > 0 => n as u64,
            toml::Value::String(s) => {
                ferry_common::units::parse_rate(&s).map_err(|e| format!("{at}: limit: {e}"))?
            }
            other => {
                return Err(format!(
                    "{at}: limit = {other}: give bytes per second or a rate like \"2MiB/s\""
                ))
            }
        };
        if limit == 0 {
            return Err(format!("{at}: limit is 0; give a rate above zero"));
        }
        let priorities = match self.priorities {
            None => vec![Priority::High, Priority::Normal, Priority::Low],
            Some(names) => names
                .iter()
                .map(|p| {
                    p.parse::<Priority>()
                        .map_err(|e| format!("{at}: priorities: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Schedule {
            days,
            from_min,
            to_min,
            limit,
            priorities,
        })
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
        let f: ScheduleFile = toml::from_str(text).map_err(|e| e.to_string())?;
        f.parse(1)
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
    fn bad_entries_say_what_is_wrong() {
        let e = entry("from = \"8am\"\nto = \"18:00\"\nlimit = 1\n").unwrap_err();
        assert!(e.contains("from = '8am'") && e.contains("HH:MM"), "{e}");
        let e = entry("days = [\"funday\"]\nfrom = \"08:00\"\nto = \"18:00\"\nlimit = 1\n")
            .unwrap_err();
        assert!(e.contains("unknown day 'funday'"), "{e}");
        let e = entry("from = \"08:00\"\nto = \"08:00\"\nlimit = 1\n").unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = entry("from = \"08:00\"\nto = \"09:00\"\nlimit = 1\npriorities = [\"urgent\"]\n")
            .unwrap_err();
        assert!(e.contains("priorities") && e.contains("urgent"), "{e}");
    }
}
