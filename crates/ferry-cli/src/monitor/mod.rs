//! `ferry monitor`: a live terminal view of every job — state, progress, rate, ETA,
//! priority, error — and of one job's files, with keys to act on them and the daemon's
//! total throughput as a sparkline.
//!
//! Driven by event subscriptions (creation, modification, deletion of jobs), not by
//! polling: a job changes on screen when the daemon says it changed. The list is read once
//! at start and again when the daemon comes back after going away (the library subscribes
//! again and says so). Actions run as tasks, so a daemon that is away never freezes the
//! screen. The terminal is restored on exit and on a panic (`term.rs`).
//!
//! `model.rs` holds what is shown, `view.rs` draws it, `input.rs` maps keys to actions,
//! `events.rs` turns subscriptions into updates.

mod events;
mod input;
mod model;
mod term;
#[cfg(test)]
mod tests;
mod view;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use crossterm::event::{Event, EventStream, KeyEventKind};
use ferry_client::{JobProperties, Manager, Uuid};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::commands::{job_id, Ctx};
use events::Update;
use ferry_cli::args::MonitorArgs;
use input::{step_priority, Action};
use model::{JobRow, Model, View};

/// The keys, as `ferry monitor --help` and the `?` key show them.
pub const HELP: &str = ferry_cli::args::MONITOR_HELP;

pub async fn run(ctx: &Ctx, a: MonitorArgs) -> Result<i32> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "ferry monitor draws on a terminal and reads keys from it; run it in one \
             (`ferry list` and `ferry watch` print plain text)"
        );
    }
    let open_job = a.job.as_deref().map(job_id).transpose()?;
    let manager = ctx.manager().await?;
    let (tx, mut updates) = mpsc::unbounded_channel();
    let subscriptions = events::subscribe(&manager, tx.clone()).await?;
    let _connection = events::follow_connection(&manager, tx.clone());
    let now = Instant::now();
    let rows = manager
        .jobs(false)
        .await?
        .iter()
        .map(|j| JobRow::from_info(j, now))
        .collect();
    let mut model = Model::new(rows);
    if let Some(job) = open_job {
        if let Some(i) = model.jobs.iter().position(|j| j.id == job) {
            model.selected = i;
        }
        open_files(&mut model, &manager, &tx, job);
    }

    let mut terminal = term::Terminal::enter()?;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        terminal.draw(|frame| view::draw(frame, &model, Instant::now()))?;
        tokio::select! {
            key = keys.next() => match key {
                Some(Ok(Event::Key(k))) if k.kind != KeyEventKind::Release => {
                    let action = input::action(&model, k);
                    if action == Action::Quit {
                        break;
                    }
                    act(&mut model, &manager, &tx, action);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            Some(update) = updates.recv() => {
                let now = Instant::now();
                events::apply(&mut model, &manager, &tx, update, now);
                while let Ok(more) = updates.try_recv() {
                    events::apply(&mut model, &manager, &tx, more, now);
                }
            }
            _ = tick.tick() => model.sample_throughput(Instant::now()),
        }
    }
    drop(terminal);
    for call in subscriptions {
        call.cancel().await;
    }
    Ok(0)
}

/// Shows the files of `job` and asks the daemon for them.
fn open_files(model: &mut Model, manager: &Manager, tx: &mpsc::UnboundedSender<Update>, job: Uuid) {
    model.view = View::Files { job, files: None };
    events::fetch_files(manager, tx, job);
}

/// Carries out `action` (calls to the daemon run as tasks that report back).
fn act(model: &mut Model, manager: &Manager, tx: &mpsc::UnboundedSender<Update>, action: Action) {
    let current = model
        .current_job()
        .map(|j| (j.id, j.name.clone(), j.priority));
    match action {
        Action::Up => model.select_previous(),
        Action::Down => model.select_next(),
        Action::OpenFiles => {
            if let Some(j) = model.selected_job() {
                let id = j.id;
                open_files(model, manager, tx, id);
            }
        }
        Action::Back => model.view = View::Jobs,
        Action::ToggleHelp => {
            model.show_help = !model.show_help;
            model.help_scroll = 0;
        }
        Action::ScrollHelp(down) => {
            let last = view::help_text().lines().count() as u16;
            model.help_scroll = if down {
                (model.help_scroll + 1).min(last)
            } else {
                model.help_scroll.saturating_sub(1)
            };
        }
        Action::AskCancel => model.confirm_cancel = current.map(|(id, ..)| id),
        Action::KeepJob => {
            model.confirm_cancel = None;
            model.status = "kept the job".into();
        }
        Action::ConfirmCancel => {
            if let Some(id) = model.confirm_cancel.take() {
                events::call(manager, tx, id, "cancelled", |job| async move {
                    job.cancel().await.map(|_| String::new())
                });
            }
        }
        Action::Suspend | Action::Resume | Action::Complete | Action::Priority(_) => {
            let Some((id, _, priority)) = current else {
                model.status = "no job selected".into();
                return;
            };
            match action {
                Action::Suspend => events::call(manager, tx, id, "suspended", |job| async move {
                    job.suspend().await.map(|_| String::new())
                }),
                Action::Resume => events::call(manager, tx, id, "resumed", |job| async move {
                    job.resume().await.map(|_| String::new())
                }),
                Action::Complete => events::call(manager, tx, id, "completed", |job| async move {
                    job.complete().await.map(|out| {
                        format!(
                            ": {} file(s) in place, {} discarded",
                            out.files_committed, out.files_discarded
                        )
                    })
                }),
                Action::Priority(up) => match step_priority(priority, up) {
                    None => {
                        model.status = format!("the priority is already {priority}");
                    }
                    Some(p) => {
                        events::call(manager, tx, id, "re-prioritized", move |job| async move {
                            job.set(JobProperties {
                                priority: Some(p),
                                ..Default::default()
                            })
                            .await
                            .map(|_| format!(" to {p}"))
                        })
                    }
                },
                _ => {}
            }
        }
        Action::Quit | Action::Nothing => {}
    }
}
