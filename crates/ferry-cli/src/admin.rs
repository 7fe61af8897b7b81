//! `ferry daemon` and `ferry handler`: the daemon itself and notification handlers.

use std::path::Path;

use anyhow::{bail, Result};
use ferry_client::{ConnectOptions, Manager, Uuid};
use ferry_common::{paths, units};

use crate::commands::Ctx;
use crate::options::absolute;
use crate::output;
use ferry_cli::args::{DaemonCommand, HandlerCommand};

pub async fn daemon(ctx: &Ctx, c: DaemonCommand) -> Result<i32> {
    match c {
        DaemonCommand::Log { .. } if ctx.system => {
            bail!(
                "the system-wide ferryd logs to the journal: `journalctl -u ferryd` (-f to follow)"
            );
        }
        DaemonCommand::Log { follow, lines } => {
            crate::daemonlog::show(&paths::state_dir(), lines, follow).await?;
        }
        DaemonCommand::Start if ctx.system => {
            bail!(
                "the system-wide ferryd is started by systemd: \
                 `sudo systemctl enable --now ferryd.socket`"
            );
        }
        DaemonCommand::Start => {
            let m = Manager::connect_with(ConnectOptions {
                autostart: true,
                socket: ctx.socket.clone().unwrap_or_else(paths::socket_path),
                ..Default::default()
            })
            .await?;
            let s = m.status().await?;
            if ctx.json {
                output::json(&s);
            } else {
                outln!(
                    "ferryd {} running, pid {}, socket {}",
                    s.version,
                    s.pid,
                    s.socket_path
                );
            }
        }
        DaemonCommand::Stop => {
            let opts = ConnectOptions {
                socket: ctx.socket.clone().unwrap_or_else(paths::socket_path),
                ..Default::default()
            };
            match Manager::connect_with(opts.clone()).await {
                Ok(m) => {
                    // Left before the daemon goes, so that no client attached to it starts
                    // it again (they wait instead), until `daemon start` or a new command.
                    let mark = paths::stopped_mark(&opts.socket);
                    let _ = std::fs::write(&mark, b"stopped by `ferry daemon stop`\n");
                    if let Err(e) = m.shutdown_daemon().await {
                        let _ = std::fs::remove_file(&mark);
                        return Err(e.into());
                    }
                    // Wait (bounded) until the socket stops answering and the daemon has
                    // released its instance lock (it exits right after).
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                    while std::os::unix::net::UnixStream::connect(&opts.socket).is_ok()
                        || instance_lock_held(&opts.socket)
                    {
                        if std::time::Instant::now() > deadline {
                            bail!("ferryd did not stop within 30 s");
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    if !ctx.json {
                        outln!("ferryd stopped");
                    }
                }
                Err(_) => {
                    if !ctx.json {
                        outln!("ferryd is not running");
                    }
                }
            }
        }
        DaemonCommand::Status => {
            let opts = ConnectOptions {
                socket: ctx.socket.clone().unwrap_or_else(paths::socket_path),
                ..Default::default()
            };
            match Manager::connect_with(opts).await {
                Ok(m) => {
                    let s = m.status().await?;
                    if ctx.json {
                        output::json(&s);
                    } else {
                        outln!("ferryd {} running", s.version);
                        outln!("pid:      {}", s.pid);
                        outln!("socket:   {}", s.socket_path);
                        outln!("state:    {}", s.state_dir);
                        outln!("jobs:     {}", s.jobs);
                        outln!("active:   {}", s.active_transfers);
                        outln!("rate:     {}", units::format_rate(s.bytes_per_second));
                        outln!(
                            "network:  {} ({})",
                            if s.network_metered {
                                "metered"
                            } else {
                                "unmetered"
                            },
                            s.network_cost_source
                        );
                        outln!(
                            "roaming:  {} ({})",
                            if s.network_roaming { "yes" } else { "no" },
                            s.network_roaming_source
                        );
                        outln!(
                            "cost:     {} (jobs whose cost flags leave it out wait)",
                            s.network_cost_state.state_name()
                        );
                        print_limits_in_force(&s);
                    }
                }
                Err(e) => {
                    if ctx.json {
                        outln!("{{\"running\":false}}");
                    } else {
                        outln!("ferryd is not running ({e})");
                    }
                    return Ok(3);
                }
            }
        }
    }
    Ok(0)
}

/// Resolves a program name to an absolute path (as given, against the current folder, or
/// on PATH), so ferryd can start it later from anywhere.
fn absolute_program(program: &str) -> Result<String> {
    let p = Path::new(program);
    if p.is_absolute() {
        return Ok(program.to_string());
    }
    if program.contains('/') {
        return Ok(absolute(p)?.to_string_lossy().into_owned());
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|c| c.is_file())
        })
        .map(|c| c.to_string_lossy().into_owned())
        .ok_or_else(|| {
            crate::failure::usage(format!(
                "program '{program}' not found on PATH: give its absolute path"
            ))
        })
}

pub async fn handler(ctx: &Ctx, c: HandlerCommand) -> Result<i32> {
    let m = ctx.manager().await?;
    let class = |s: &str| {
        Uuid::parse_str(s.trim())
            .map_err(|_| crate::failure::usage(format!("'{s}' is not a class (a UUID)")))
    };
    match c {
        HandlerCommand::Register {
            class: c,
            workdir,
            mut argv,
        } => {
            argv[0] = absolute_program(&argv[0])?;
            let workdir = workdir
                .map(|w| absolute(&w).map(|p| p.to_string_lossy().into_owned()))
                .transpose()?;
            let h = m.register_handler(class(&c)?, argv, workdir).await?;
            if ctx.json {
                output::json(&h);
            } else {
                outln!(
                    "handler for class {} registered: {}",
                    h.class,
                    h.argv.join(" ")
                );
            }
        }
        HandlerCommand::Unregister { class: c } => {
            m.unregister_handler(class(&c)?).await?;
            if !ctx.json {
                outln!("handler for class {c} removed");
            }
        }
        HandlerCommand::List => {
            let hs = m.handlers().await?;
            if ctx.json {
                output::json(&hs);
            } else {
                outln!("{:<36}  {:<20}  COMMAND", "CLASS", "WORKDIR");
                for h in hs {
                    outln!(
                        "{:<36}  {:<20}  {}",
                        h.class,
                        h.workdir.as_deref().unwrap_or("-"),
                        h.argv.join(" ")
                    );
                }
            }
        }
    }
    Ok(0)
}

/// Whether a daemon still holds the instance lock beside `socket`.
fn instance_lock_held(socket: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(paths::lock_path(socket)) else {
        return false;
    };
    // SAFETY: flock on an open descriptor; a shared lock is released when `f` closes.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
}

/// The bandwidth limits in force now: the daemon-wide one and the schedule entries.
fn print_limits_in_force(s: &ferry_client::DaemonStatus) {
    let all = if s.bandwidth_limit > 0 {
        units::format_rate(s.bandwidth_limit)
    } else {
        "none".to_string()
    };
    outln!("limit:    {all} (all jobs together)");
    if s.limits_in_force.is_empty() {
        outln!("schedule: no limit in force now");
    }
    for l in &s.limits_in_force {
        let who: Vec<String> = l.priorities.iter().map(|p| p.to_string()).collect();
        if l.limit == 0 {
            outln!(
                "schedule: no transfers for {} jobs now ({})",
                who.join(", "),
                l.period
            );
            continue;
        }
        outln!(
            "schedule: {} for {} jobs now ({})",
            units::format_rate(l.limit),
            who.join(", "),
            l.period
        );
    }
}
