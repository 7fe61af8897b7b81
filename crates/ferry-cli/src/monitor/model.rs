//! What the monitor knows and shows: the jobs as the last event described them, the
//! selection, the open view (the job list, or one job's files), a pending confirmation,
//! the status line, and the daemon's total throughput over the last minutes. Updates come
//! from event subscriptions and from the results of actions; nothing here talks to the
//! daemon or draws.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ferry_client::{FileInfo, JobInfo, JobState, Object, Priority, Uuid, Value};

use crate::stdout::one_line;

/// A job's rate counts only while events keep coming: a transfer that sends no progress
/// for this long shows no rate (the daemon reports progress at least once a second while
/// bytes move).
pub const RATE_FRESH_FOR: Duration = Duration::from_secs(3);

/// How many seconds of total throughput the sparkline keeps.
pub const THROUGHPUT_HISTORY: usize = 600;

/// One job as the monitor shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: Uuid,
    pub name: String,
    pub state: JobState,
    pub priority: Priority,
    pub done: u64,
    pub total: Option<u64>,
    /// Bytes per second, as the daemon last reported it.
    pub rate: u64,
    pub files_done: u32,
    pub files_total: u32,
    /// The error's code and message.
    pub error: Option<(String, String)>,
    pub created_ms: i64,
    /// When an event last described the job.
    pub seen: Instant,
}

impl JobRow {
    /// A job as a call returned it.
    pub fn from_info(j: &JobInfo, now: Instant) -> JobRow {
        JobRow {
            id: j.id,
            name: one_line(&j.display_name),
            state: j.state(),
            priority: j.priority.unwrap_or(Priority::Normal),
            done: j.bytes_transferred,
            total: j.bytes_total,
            rate: j.bytes_per_second,
            files_done: j.files_transferred,
            files_total: j.files_total,
            error: j
                .error
                .as_ref()
                .map(|e| (e.code.clone(), one_line(&e.message))),
            created_ms: j.created_unix_ms,
            seen: now,
        }
    }

    /// A job as an event's `TargetInstance` describes it; `None` if it is not one.
    pub fn from_object(o: &Object, now: Instant) -> Option<JobRow> {
        let int = |name: &str| o.get_i64(name).and_then(|v| u64::try_from(v).ok());
        let text = |name: &str| o.get_str(name).unwrap_or_default().to_string();
        Some(JobRow {
            id: Uuid::parse_str(o.get_str("id")?).ok()?,
            name: one_line(&text("display_name")),
            state: o.get_str("state")?.parse().ok()?,
            priority: o
                .get_str("priority")
                .and_then(|p| p.parse().ok())
                .unwrap_or(Priority::Normal),
            done: int("bytes_transferred").unwrap_or(0),
            total: int("bytes_total"),
            rate: int("bytes_per_second").unwrap_or(0),
            files_done: int("files_transferred").unwrap_or(0) as u32,
            files_total: int("files_total").unwrap_or(0) as u32,
            error: o.get_object("error").map(|e| {
                let field = |n: &str| match e.get(n) {
                    Some(Value::String(s)) => s.clone(),
                    _ => String::new(),
                };
                (field("code"), one_line(&field("message")))
            }),
            created_ms: o.get_i64("created_unix_ms").unwrap_or(0),
            seen: now,
        })
    }

    /// The rate to show at `now`: the last reported one while the job transfers and
    /// events keep coming, else 0.
    pub fn rate_at(&self, now: Instant) -> u64 {
        if self.state == JobState::Transferring && now.duration_since(self.seen) < RATE_FRESH_FOR {
            self.rate
        } else {
            0
        }
    }

    /// Time left at the current rate, when both the size and a rate are known.
    pub fn eta_at(&self, now: Instant) -> Option<Duration> {
        let rate = self.rate_at(now);
        let left = self.total?.saturating_sub(self.done);
        (rate > 0).then(|| Duration::from_secs(left.div_ceil(rate)))
    }

    /// Progress as a fraction, when the size is known.
    pub fn fraction(&self) -> Option<f64> {
        match self.total {
            Some(0) => Some(1.0),
            Some(t) => Some((self.done as f64 / t as f64).min(1.0)),
            None => None,
        }
    }
}

/// What the main area shows.
#[derive(Debug, Clone, PartialEq)]
pub enum View {
    /// Every job.
    Jobs,
    /// One job's files (`None` until they arrive).
    Files {
        job: Uuid,
        files: Option<Vec<FileInfo>>,
    },
}

/// The connection to the daemon, as the monitor last heard of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connected,
    /// Gone, with what happened; the library is reconnecting.
    Away(String),
}

/// Everything the monitor shows.
#[derive(Debug, Clone)]
pub struct Model {
    /// Oldest first.
    pub jobs: Vec<JobRow>,
    pub selected: usize,
    pub view: View,
    /// The job the user is asked to confirm cancelling.
    pub confirm_cancel: Option<Uuid>,
    /// The last message for the user (what an action did, or why it failed).
    pub status: String,
    pub connection: Connection,
    pub show_help: bool,
    /// How many lines the help is scrolled down (the view stops at its last line).
    pub help_scroll: u16,
    /// Total bytes per second, one sample a second, oldest first.
    pub throughput: VecDeque<u64>,
}

impl Model {
    pub fn new(jobs: Vec<JobRow>) -> Model {
        let mut m = Model {
            jobs: Vec::new(),
            selected: 0,
            view: View::Jobs,
            confirm_cancel: None,
            status: String::new(),
            connection: Connection::Connected,
            show_help: false,
            help_scroll: 0,
            throughput: VecDeque::new(),
        };
        m.replace_all(jobs);
        m
    }

    /// The selected job, if any.
    pub fn selected_job(&self) -> Option<&JobRow> {
        self.jobs.get(self.selected)
    }

    /// The job the keys act on: the one whose files are shown, else the selected one.
    pub fn current_job(&self) -> Option<&JobRow> {
        match &self.view {
            View::Files { job, .. } => self.jobs.iter().find(|j| j.id == *job),
            View::Jobs => self.selected_job(),
        }
    }

    /// A job was created or changed.
    pub fn upsert(&mut self, row: JobRow) {
        let keep = self.selected_job().map(|j| j.id);
        match self.jobs.iter_mut().find(|j| j.id == row.id) {
            Some(j) => *j = row,
            None => {
                self.jobs.push(row);
                self.jobs.sort_by_key(|j| (j.created_ms, j.id));
            }
        }
        self.reselect(keep);
    }

    /// A job was purged.
    pub fn remove(&mut self, id: Uuid) {
        let keep = self.selected_job().map(|j| j.id);
        self.jobs.retain(|j| j.id != id);
        if self.confirm_cancel == Some(id) {
            self.confirm_cancel = None;
        }
        self.reselect(keep);
    }

    /// A fresh list of every job (at start, and after the daemon came back). Jobs that
    /// ended during this session stay in view.
    pub fn replace_all(&mut self, rows: Vec<JobRow>) {
        let keep = self.selected_job().map(|j| j.id);
        let ended: Vec<JobRow> = self
            .jobs
            .drain(..)
            .filter(|j| j.state.is_final() && !rows.iter().any(|r| r.id == j.id))
            .collect();
        self.jobs = rows;
        self.jobs.extend(ended);
        self.jobs.sort_by_key(|j| (j.created_ms, j.id));
        self.reselect(keep);
    }

    fn reselect(&mut self, keep: Option<Uuid>) {
        if let Some(i) = keep.and_then(|id| self.jobs.iter().position(|j| j.id == id)) {
            self.selected = i;
        }
        self.selected = self.selected.min(self.jobs.len().saturating_sub(1));
    }

    pub fn select_next(&mut self) {
        if self.selected + 1 < self.jobs.len() {
            self.selected += 1;
        }
    }

    pub fn select_previous(&mut self) {
        self.selected = self.selected.saturating_sub(1);
    }

    /// Every job's rate together, as shown at `now`.
    pub fn total_rate(&self, now: Instant) -> u64 {
        self.jobs.iter().map(|j| j.rate_at(now)).sum()
    }

    /// Records the total throughput of this second (for the sparkline).
    pub fn sample_throughput(&mut self, now: Instant) {
        self.throughput.push_back(self.total_rate(now));
        while self.throughput.len() > THROUGHPUT_HISTORY {
            self.throughput.pop_front();
        }
    }

    /// How many jobs transfer now.
    pub fn transferring(&self) -> usize {
        self.jobs
            .iter()
            .filter(|j| j.state == JobState::Transferring)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn row(name: &str, state: JobState, created: i64) -> JobRow {
        let mut r = JobRow::from_info(&testdata::job(name, state, 0, None), Instant::now());
        r.created_ms = created;
        r
    }

    #[test]
    fn the_selection_follows_its_job_as_jobs_come_and_go() {
        let a = row("a", JobState::Queued, 1);
        let b = row("b", JobState::Queued, 2);
        let mut m = Model::new(vec![a.clone(), b.clone()]);
        m.select_next();
        assert_eq!(m.selected_job().unwrap().name, "b");
        m.upsert(row("first", JobState::Queued, 0));
        assert_eq!(
            m.selected_job().unwrap().name,
            "b",
            "an older job came in above"
        );
        m.remove(b.id);
        assert_eq!(m.selected_job().unwrap().name, "a", "the last one left");
        m.select_next();
        m.select_next();
        assert_eq!(m.selected, 1, "stays on the last job");
    }

    #[test]
    fn a_rate_shows_only_while_events_keep_coming() {
        let now = Instant::now();
        let mut r = row("a", JobState::Transferring, 0);
        r.rate = 1000;
        r.total = Some(10_000);
        r.done = 4000;
        r.seen = now;
        assert_eq!(r.rate_at(now), 1000);
        assert_eq!(r.eta_at(now), Some(Duration::from_secs(6)));
        assert_eq!(r.rate_at(now + RATE_FRESH_FOR), 0, "stale");
        r.state = JobState::Suspended;
        assert_eq!(r.rate_at(now), 0);
        assert_eq!(r.eta_at(now), None);
    }

    #[test]
    fn ended_jobs_stay_in_view_after_a_fresh_list() {
        let done = row("done", JobState::Acknowledged, 1);
        let live = row("live", JobState::Queued, 2);
        let mut m = Model::new(vec![live.clone()]);
        m.upsert(done.clone());
        m.replace_all(vec![live]);
        let names: Vec<&str> = m.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["done", "live"]);
    }

    #[test]
    fn throughput_history_is_bounded() {
        let mut m = Model::new(Vec::new());
        for _ in 0..THROUGHPUT_HISTORY + 10 {
            m.sample_throughput(Instant::now());
        }
        assert_eq!(m.throughput.len(), THROUGHPUT_HISTORY);
    }
}
