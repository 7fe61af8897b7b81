//! What the subcommands on one job do (create, add files, resume…, set, wait, list), and
//! what every command uses: [`Ctx`]. `ferry get` is in `get.rs`, queries in `wql.rs`, the
//! daemon and handlers in `admin.rs`, the monitor in `monitor/`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use ferry_client::{
    ConnectOptions, FileRange, FileSpec, Job, JobProperties, JobState, JobType, Manager,
    MeteredPolicy, NewJob, NotifyFlags, PeerMode, Priority, Uuid,
};

use crate::failure::{usage, JobFailed, Partial};
use crate::options::{absolute, TransferProperties};
use crate::output;
use crate::progress::{wait_with_progress, Display};
use ferry_cli::args::*;

/// Global settings every command uses.
pub struct Ctx {
    pub json: bool,
    pub autostart: bool,
    pub socket: Option<PathBuf>,
    /// `--system`: the machine's daemon.
    pub system: bool,
}

impl Ctx {
    pub async fn manager(&self) -> Result<Manager> {
        let mut opts = ConnectOptions {
            autostart: self.autostart,
            ..Default::default()
        };
        if let Some(s) = &self.socket {
            opts.socket = s.clone();
        }
        Ok(Manager::connect_with(opts).await?)
    }

    pub async fn job(&self, id: &str) -> Result<Job> {
        let id = job_id(id)?;
        Ok(self.manager().await?.job(id).await?)
    }
}

/// A job id given on the command line.
pub fn job_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id.trim()).map_err(|_| {
        usage(format!(
            "'{id}' is not a job id (a UUID); `ferry list` shows your jobs"
        ))
    })
}

pub fn priority(s: &str) -> Result<Priority> {
    s.parse::<Priority>().map_err(usage)
}

pub async fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let job_type: JobType = a.job_type.parse().map_err(usage)?;
    let job = ctx
        .manager()
        .await?
        .create_job_with(NewJob {
            description: a.description,
            job_type,
            priority: priority(&a.priority)?,
            upload_protocol: a.upload_protocol,
            ..NewJob::download(a.name)
        })
        .await?;
    if ctx.json {
        output::json(&job.info().await?);
    } else {
        outln!("{}", job.id());
    }
    Ok(0)
}

pub async fn add_file(ctx: &Ctx, a: AddFileArgs) -> Result<i32> {
    let job = ctx.job(&a.job).await?;
    let mut spec = FileSpec::new(a.remote_url, absolute(&a.local_path)?.to_string_lossy());
    spec.expected_sha256 = a.sha256;
    spec.mirrors = a.mirrors;
    spec.ranges = parse_ranges(&a.ranges)?;
    spec.on_demand = a.on_demand;
    let files = job.add_files(vec![spec]).await?;
    if ctx.json {
        output::json(&files[0]);
    } else {
        outln!("added file {} to job {}", files[0].index, job.id());
    }
    Ok(0)
}

/// `ferry set-url JOB INDEX URL` (BITS's SetRemoteName).
pub async fn set_url(ctx: &Ctx, a: SetUrlArgs) -> Result<i32> {
    let job = ctx.job(&a.job).await?;
    let file = job.set_remote_name(a.index, &a.url).await?;
    if ctx.json {
        output::json(&file);
    } else {
        outln!(
            "file {} of job {} now comes from {}",
            file.index,
            job.id(),
            file.url_in_use
        );
    }
    Ok(0)
}

/// `ferry replace-prefix JOB OLD NEW` (BITS's ReplaceRemotePrefix).
pub async fn replace_prefix(ctx: &Ctx, a: ReplacePrefixArgs) -> Result<i32> {
    let job = ctx.job(&a.job).await?;
    let changed = job.replace_remote_prefix(&a.old, &a.new).await?;
    if ctx.json {
        output::json(&serde_json::json!({ "job_id": job.id(), "files_changed": changed }));
    } else if changed == 0 {
        outln!(
            "no URL of job {} starts with {}: nothing changed",
            job.id(),
            a.old
        );
    } else {
        outln!("{changed} file(s) of job {} changed", job.id());
    }
    Ok(0)
}

pub async fn simple(ctx: &Ctx, verb: &str, a: JobArg) -> Result<i32> {
    let job = if verb == "takeown" {
        // Another user's job: the daemon says whether the caller may take it.
        ctx.manager().await?.job_unchecked(job_id(&a.job)?)
    } else {
        ctx.job(&a.job).await?
    };
    let info = match verb {
        "resume" => job.resume().await?,
        "suspend" => job.suspend().await?,
        "cancel" => job.cancel().await?,
        "takeown" => job.take_ownership().await?,
        "complete" => {
            let out = job.complete().await?;
            if ctx.json {
                output::json(&out);
            }
            if out.is_partial() {
                // Some destinations are missing: a script must not go on as if all were
                // there (the error says how many).
                return Err(Partial {
                    job: job.id(),
                    committed: out.files_committed,
                    discarded: out.files_discarded,
                }
                .into());
            } else if !ctx.json {
                outln!(
                    "job {} completed: {} file(s) committed",
                    job.id(),
                    out.files_committed
                );
            }
            return Ok(0);
        }
        "info" => {
            let info = job.info().await?;
            if ctx.json {
                output::json(&info);
            } else {
                output::job_detail(&info);
            }
            return Ok(0);
        }
        other => bail!("unknown verb {other}"),
    };
    if ctx.json {
        output::json(&info);
    } else {
        outln!("job {}: {}", info.id, info.state());
    }
    Ok(0)
}

/// `ferry files JOB` (list) and `ferry files validate JOB INDEX --valid|--invalid`.
pub async fn files(ctx: &Ctx, a: FilesArgs) -> Result<i32> {
    let v = match (a.command, a.job) {
        (Some(FilesCommand::Validate(v)), _) => v,
        (None, Some(id)) => {
            let files = ctx.job(&id).await?.files().await?;
            if ctx.json {
                output::json(&files);
            } else {
                output::file_table(&files);
                if a.headers {
                    output::response_headers(&files);
                }
            }
            return Ok(0);
        }
        (None, None) => return Err(usage("give a job id: ferry files JOB")),
    };
    let job = ctx.job(&v.job).await?;
    let file = job.file(v.index).await?;
    let info = file.set_validation_state(v.valid && !v.invalid).await?;
    if ctx.json {
        output::json(&info);
    } else if v.valid {
        outln!("file {} of job {}: validated", v.index, job.id());
    } else {
        outln!(
            "file {} of job {}: rejected, its bytes discarded (`ferry info {}` shows the job)",
            v.index,
            job.id(),
            job.id()
        );
    }
    Ok(0)
}

/// Reads `OFFSET:LENGTH` / `OFFSET:eof` ranges.
fn parse_ranges(ranges: &[String]) -> Result<Vec<FileRange>> {
    ranges
        .iter()
        .map(|r| r.parse::<FileRange>().map_err(usage))
        .collect()
}

/// Ranges as the command line writes them, `none` for none.
fn describe_ranges(ranges: &[FileRange]) -> String {
    if ranges.is_empty() {
        return "none".into();
    }
    ranges
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ferry ranges JOB INDEX`, `ferry ranges request JOB INDEX RANGE...` and
/// `ferry ranges position JOB INDEX OFFSET`.
pub async fn ranges(ctx: &Ctx, a: RangesArgs) -> Result<i32> {
    let info = match (a.command, a.job, a.index) {
        (Some(RangesCommand::Request(r)), _, _) => {
            let ranges = parse_ranges(&r.ranges)?;
            ctx.job(&r.job)
                .await?
                .request_file_ranges(r.index, &ranges)
                .await?
        }
        (Some(RangesCommand::Position(p)), _, _) => {
            ctx.job(&p.job)
                .await?
                .update_download_position(p.index, p.offset)
                .await?
        }
        (None, Some(job), Some(index)) => ctx.job(&job).await?.file(index).await?.info().clone(),
        _ => {
            return Err(usage(
                "give a job id and a file index: ferry ranges JOB INDEX",
            ))
        }
    };
    if ctx.json {
        output::json(&info);
        return Ok(0);
    }
    let what = if info.on_demand {
        "requested"
    } else if info.ranges.is_empty() {
        "ranges"
    } else {
        "ranges (packed in this order)"
    };
    outln!("file {} of job {}", info.index, info.job_id);
    if info.ranges.is_empty() && !info.on_demand {
        outln!("  {what}: the whole file");
    } else {
        outln!("  {what}: {}", describe_ranges(&info.ranges));
    }
    outln!("  on disk: {}", describe_ranges(&info.filled_ranges));
    if info.on_demand {
        outln!("  position: {}", info.download_position);
    }
    Ok(0)
}

pub async fn list(ctx: &Ctx, a: ListArgs) -> Result<i32> {
    let m = ctx.manager().await?;
    let jobs = if a.all_users {
        m.jobs_of_all_users(a.all).await?
    } else {
        m.jobs(a.all).await?
    };
    if ctx.json {
        output::json(&jobs);
    } else if a.all_users {
        output::job_table_with_owners(&jobs);
    } else {
        output::job_table(&jobs);
    }
    Ok(0)
}

fn notify_flags(s: &str) -> Result<NotifyFlags> {
    if let Ok(n) = s.parse::<u32>() {
        return NotifyFlags::from_bits(n)
            .ok_or_else(|| usage(format!("notify flags {n:#x} include unknown bits")));
    }
    if let Some(hex) = s.strip_prefix("0x") {
        let n =
            u32::from_str_radix(hex, 16).map_err(|e| usage(format!("notify flags '{s}': {e}")))?;
        return NotifyFlags::from_bits(n)
            .ok_or_else(|| usage(format!("notify flags {n:#x} include unknown bits")));
    }
    let mut flags = NotifyFlags::empty();
    for name in s.split(['|', ',']).map(str::trim).filter(|n| !n.is_empty()) {
        flags |= match name.to_ascii_lowercase().as_str() {
            "job_transferred" | "transferred" => NotifyFlags::JOB_TRANSFERRED,
            "job_error" | "error" => NotifyFlags::JOB_ERROR,
            "job_modification" | "modification" => NotifyFlags::JOB_MODIFICATION,
            "file_transferred" => NotifyFlags::FILE_TRANSFERRED,
            "file_ranges_transferred" => NotifyFlags::FILE_RANGES_TRANSFERRED,
            "disable" => NotifyFlags::DISABLE,
            other => {
                return Err(usage(format!(
                    "unknown notify flag '{other}' (job_transferred, job_error, \
                     job_modification, file_transferred, file_ranges_transferred, disable)"
                )))
            }
        };
    }
    Ok(flags)
}

pub async fn set(ctx: &Ctx, a: SetArgs) -> Result<i32> {
    let job = ctx.job(&a.job).await?;
    let notification_class = a
        .notify_class
        .as_deref()
        .map(|s| Uuid::parse_str(s.trim()).map_err(|_| usage(format!("'{s}' is not a UUID"))))
        .transpose()?;
    if !a.argv.is_empty() && !a.notify_command {
        return Err(usage(
            "arguments after `--` are the notify command: add --notify-command",
        ));
    }
    let transfer = a
        .transfer
        .properties(a.clear_headers, a.clear_credentials)?;
    let reply_file = match a.reply_file.as_deref() {
        None => None,
        Some("") => Some(String::new()),
        Some(p) => Some(
            absolute(std::path::Path::new(p))?
                .to_string_lossy()
                .into_owned(),
        ),
    };
    let props = JobProperties {
        reply_file,
        connections: a.connections,
        peers: a
            .peers
            .as_deref()
            .map(|m| m.parse::<PeerMode>().map_err(usage))
            .transpose()?,
        on_metered: a
            .on_metered
            .as_deref()
            .map(|m| m.parse::<MeteredPolicy>().map_err(usage))
            .transpose()?,
        cost_flags: a
            .cost_flags
            .as_deref()
            .map(|f| ferry_client::CostFlags::parse(f).map_err(usage))
            .transpose()?,
        ignore_congestion: a.ignore_congestion,
        headers_write_only: a.headers_write_only.then_some(true),
        auto_complete: a.auto_complete,
        keep_going: a.keep_going,
        display_name: a.name,
        description: a.description,
        priority: a.priority.as_deref().map(priority).transpose()?,
        notify_flags: a.notify_flags.as_deref().map(notify_flags).transpose()?,
        notification_class,
        notify_command: a.notify_command.then_some(a.argv),
        minimum_retry_delay_secs: a.min_retry_delay.map(|d| d.as_secs()),
        no_progress_timeout_secs: a.no_progress_timeout.map(|d| d.as_secs()),
        minimum_notification_interval_ms: a.min_notify_interval.map(|d| d.as_millis() as u64),
        ..transfer
    };
    if props == JobProperties::default() {
        return Err(usage(
            "nothing to set: give at least one option (see `ferry set --help`)",
        ));
    }
    let info = job.set(props).await?;
    if ctx.json {
        output::json(&info);
    } else {
        output::job_detail(&info);
    }
    Ok(0)
}

pub async fn wait(ctx: &Ctx, a: JobArg) -> Result<i32> {
    let job = ctx.job(&a.job).await?;
    let display = Display::new(!ctx.json, false);
    let info = wait_with_progress(&job, &display)
        .await
        .map_err(|e| crate::progress::daemon_gone_hint(e, job.id(), false))?;
    if ctx.json {
        output::json(&info);
    } else {
        outln!("job {}: {}", info.id, info.state());
    }
    match info.state() {
        JobState::Transferred | JobState::Acknowledged => Ok(0),
        // The error, its hint and the exit code of its kind (failure.rs).
        _ => Err(JobFailed(info).into()),
    }
}
