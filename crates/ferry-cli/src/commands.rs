//! What each subcommand does.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ferry_client::{
    ConnectOptions, Credentials, FileSpec, Job, JobProperties, JobState, JobType, Manager, NewJob,
    NotifyFlags, PeerMode, Priority, Uuid,
};
use ferry_common::{paths, units};

use crate::output;
use crate::progress::wait_with_progress;
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

    async fn job(&self, id: &str) -> Result<Job> {
        let id = Uuid::parse_str(id.trim()).map_err(|_| {
            anyhow!("'{id}' is not a job id (a UUID); `ferry list` shows your jobs")
        })?;
        Ok(self.manager().await?.job(id).await?)
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_owned())
    } else {
        Ok(std::env::current_dir()
            .context("reading the current folder")?
            .join(p))
    }
}

fn priority(s: &str) -> Result<Priority> {
    s.parse::<Priority>().map_err(|e| anyhow!(e))
}

fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    if name.is_empty() {
        "index.html".into()
    } else {
        name.to_string()
    }
}

pub async fn get(ctx: &Ctx, mut a: GetArgs) -> Result<i32> {
    if let Some(list) = &a.input_file {
        a.urls.extend(read_url_list(list)?);
    }
    if a.urls.is_empty() {
        bail!("no URL to download: give URLs or a non-empty --input-file");
    }
    if a.sha256.is_some() && a.urls.len() > 1 {
        bail!("--sha256 applies to one URL; give one URL or check the files separately");
    }
    let mut specs = Vec::new();
    for url in &a.urls {
        let dest = match (&a.output, a.urls.len()) {
            (Some(o), 1) if !o.is_dir() => absolute(o)?,
            (Some(dir), _) => absolute(dir)?.join(url_file_name(url)),
            (None, _) => absolute(Path::new(&url_file_name(url)))?,
        };
        let mut spec = FileSpec::new(url.clone(), dest.to_string_lossy().into_owned());
        if let Some(h) = &a.sha256 {
            spec = spec.sha256(h.clone());
        }
        specs.push(spec);
    }
    let manager = ctx.manager().await?;
    let name = get_job_name(&a.urls);
    let job = manager
        .create_job_with(NewJob {
            priority: priority(&a.priority)?,
            ..NewJob::download(name)
        })
        .await?;
    job.set(JobProperties {
        minimum_retry_delay_secs: Some(a.retry_delay.as_secs().max(1)),
        no_progress_timeout_secs: Some(a.no_progress_timeout.as_secs().max(1)),
        connections: a.connections,
        ..Default::default()
    })
    .await?;
    if let Err(e) = job.add_files(specs).await {
        let _ = job.cancel().await;
        return Err(e.into());
    }
    job.resume().await?;
    if a.detach {
        if ctx.json {
            output::json(&job.info().await?);
        } else {
            println!("{}", job.id());
        }
        return Ok(0);
    }
    let info = wait_with_progress(&job, !ctx.json).await?;
    match info.state() {
        JobState::Transferred => {
            let out = job.complete().await?;
            if ctx.json {
                output::json(&out.job);
            }
            Ok(0)
        }
        state => {
            let msg = info
                .error
                .as_ref()
                .map(|e| match crate::hints::for_job_error(&e.code) {
                    Some(hint) => format!("{} ({})\nhint: {hint}", e.message, e.code),
                    None => format!("{} ({})", e.message, e.code),
                })
                .unwrap_or_else(|| format!("the job ended in state {state}"));
            if !state.is_final() {
                let _ = job.cancel().await;
            }
            if ctx.json {
                output::json(&info);
            }
            eprintln!("ferry: {msg}");
            Ok(1)
        }
    }
}

/// The URLs of a `--input-file` list ("-": standard input).
fn read_url_list(path: &Path) -> Result<Vec<String>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading URLs from standard input")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the URL list {}", path.display()))?
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// The display name of a `ferry get` job: the first URL, and how many more there are,
/// kept within the daemon's 4096-byte limit.
fn get_job_name(urls: &[String]) -> String {
    const MAX: usize = 4096;
    let mut name = format!("ferry get {}", urls[0]);
    let more = match urls.len() {
        1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    if name.len() + more.len() > MAX {
        let mut cut = MAX - more.len() - 3;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        name.push_str("...");
    }
    name + &more
}

pub async fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let job_type: JobType = a.job_type.parse().map_err(|e: String| anyhow!(e))?;
    let job = ctx
        .manager()
        .await?
        .create_job_with(NewJob {
            display_name: a.name,
            description: a.description,
            job_type,
            priority: priority(&a.priority)?,
            upload_protocol: a.upload_protocol,
        })
        .await?;
    if ctx.json {
        output::json(&job.info().await?);
    } else {
        println!("{}", job.id());
    }
    Ok(0)
}

pub async fn add_file(ctx: &Ctx, a: AddFileArgs) -> Result<i32> {
    let job = ctx.job(&a.job).await?;
    let mut spec = FileSpec::new(a.remote_url, absolute(&a.local_path)?.to_string_lossy());
    spec.expected_sha256 = a.sha256;
    let files = job.add_files(vec![spec]).await?;
    if ctx.json {
        output::json(&files[0]);
    } else {
        println!("added file {} to job {}", files[0].index, job.id());
    }
    Ok(0)
}

pub async fn simple(ctx: &Ctx, verb: &str, a: JobArg) -> Result<i32> {
    let job = ctx.job(&a.job).await?;
    let info = match verb {
        "resume" => job.resume().await?,
        "suspend" => job.suspend().await?,
        "cancel" => job.cancel().await?,
        "complete" => {
            let out = job.complete().await?;
            if ctx.json {
                output::json(&out);
            } else if out.is_partial() {
                println!(
                    "job {} completed partially: {} file(s) committed, {} discarded",
                    job.id(),
                    out.files_committed,
                    out.files_discarded
                );
            } else {
                println!(
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
        "files" => {
            let files = job.files().await?;
            if ctx.json {
                output::json(&files);
            } else {
                output::file_table(&files);
            }
            return Ok(0);
        }
        other => bail!("unknown verb {other}"),
    };
    if ctx.json {
        output::json(&info);
    } else {
        println!("job {}: {}", info.id, info.state());
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
            .ok_or_else(|| anyhow!("notify flags {n:#x} include unknown bits"));
    }
    if let Some(hex) = s.strip_prefix("0x") {
        let n = u32::from_str_radix(hex, 16).map_err(|e| anyhow!("notify flags '{s}': {e}"))?;
        return NotifyFlags::from_bits(n)
            .ok_or_else(|| anyhow!("notify flags {n:#x} include unknown bits"));
    }
    let mut flags = NotifyFlags::empty();
    for name in s.split(['|', ',']).map(str::trim).filter(|n| !n.is_empty()) {
        flags |= match name.to_ascii_lowercase().as_str() {
            "job_transferred" | "transferred" => NotifyFlags::JOB_TRANSFERRED,
            "job_error" | "error" => NotifyFlags::JOB_ERROR,
            "job_modification" | "modification" => NotifyFlags::JOB_MODIFICATION,
            "file_transferred" => NotifyFlags::FILE_TRANSFERRED,
            "disable" => NotifyFlags::DISABLE,
            other => bail!(
                "unknown notify flag '{other}' (job_transferred, job_error, job_modification, file_transferred, disable)"
            ),
        };
    }
    Ok(flags)
}

pub async fn set(ctx: &Ctx, a: SetArgs) -> Result<i32> {
    let job = ctx.job(&a.job).await?;
    let notification_class = a
        .notify_class
        .as_deref()
        .map(|s| Uuid::parse_str(s.trim()).map_err(|_| anyhow!("'{s}' is not a UUID")))
        .transpose()?;
    if !a.argv.is_empty() && !a.notify_command {
        bail!("arguments after `--` are the notify command: add --notify-command");
    }
    if a.basic.is_some() as u8 + a.bearer.is_some() as u8 + a.clear_credentials as u8 > 1 {
        bail!("give one of --basic, --bearer, --clear-credentials");
    }
    let credentials = if let Some(b) = &a.basic {
        let (user, password) = b
            .split_once(':')
            .ok_or_else(|| anyhow!("--basic takes USER:PASSWORD"))?;
        Some(Credentials::Basic {
            user: user.into(),
            password: password.into(),
        })
    } else if let Some(t) = &a.bearer {
        Some(Credentials::Bearer(t.clone()))
    } else if a.clear_credentials {
        Some(Credentials::Clear)
    } else {
        None
    };
    let headers = if a.clear_headers {
        if !a.headers.is_empty() {
            bail!("--clear-headers and --header together: give one");
        }
        Some(Vec::new())
    } else if a.headers.is_empty() {
        None
    } else {
        Some(a.headers.clone())
    };
    let absolute_opt = |p: &Option<String>| -> Result<Option<String>> {
        Ok(match p.as_deref() {
            None => None,
            Some("") => Some(String::new()),
            Some(p) => Some(absolute(Path::new(p))?.to_string_lossy().into_owned()),
        })
    };
    let props = JobProperties {
        headers,
        credentials,
        proxy: a.proxy.clone(),
        ca_file: absolute_opt(&a.ca_file)?,
        bandwidth_limit: a
            .bandwidth
            .as_deref()
            .map(|r| units::parse_rate(r).map_err(|e| anyhow!(e)))
            .transpose()?,
        reply_file: absolute_opt(&a.reply_file)?,
        connections: a.connections,
        peers: a
            .peers
            .as_deref()
            .map(|m| m.parse::<PeerMode>().map_err(|e| anyhow!(e)))
            .transpose()?,
        display_name: a.name,
        description: a.description,
        priority: a.priority.as_deref().map(priority).transpose()?,
        notify_flags: a.notify_flags.as_deref().map(notify_flags).transpose()?,
        notification_class,
        notify_command: a.notify_command.then_some(a.argv),
        minimum_retry_delay_secs: a.min_retry_delay.map(|d| d.as_secs()),
        no_progress_timeout_secs: a.no_progress_timeout.map(|d| d.as_secs()),
        max_transfer_time_secs: a.max_transfer_time.map(|d| d.as_secs()),
    };
    if props == JobProperties::default() {
        bail!("nothing to set: give at least one option (see `ferry set --help`)");
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
    let info = wait_with_progress(&job, !ctx.json).await?;
    if ctx.json {
        output::json(&info);
    } else {
        println!("job {}: {}", info.id, info.state());
        if let Some(e) = &info.error {
            println!("error: {} ({})", e.message, e.code);
            if let Some(hint) = crate::hints::for_job_error(&e.code) {
                println!("hint: {hint}");
            }
        }
    }
    Ok(match info.state() {
        JobState::Transferred | JobState::Acknowledged => 0,
        _ => 1,
    })
}

pub async fn daemon(ctx: &Ctx, c: DaemonCommand) -> Result<i32> {
    match c {
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
                println!(
                    "ferryd {} running, pid {}, socket {}",
                    s.version, s.pid, s.socket_path
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
                    m.shutdown_daemon().await?;
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
                        println!("ferryd stopped");
                    }
                }
                Err(_) => {
                    if !ctx.json {
                        println!("ferryd is not running");
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
                        println!("ferryd {} running", s.version);
                        println!("pid:      {}", s.pid);
                        println!("socket:   {}", s.socket_path);
                        println!("state:    {}", s.state_dir);
                        println!("jobs:     {}", s.jobs);
                        println!("active:   {}", s.active_transfers);
                        print_limits_in_force(&s);
                    }
                }
                Err(e) => {
                    if ctx.json {
                        println!("{{\"running\":false}}");
                    } else {
                        println!("ferryd is not running ({e})");
                    }
                    return Ok(3);
                }
            }
        }
    }
    Ok(0)
}

fn value_text(v: &ferry_client::Value) -> String {
    use ferry_client::Value as V;
    match v {
        V::Null => "NULL".into(),
        V::String(s) => s.clone(),
        V::Integer(i) => i.to_string(),
        V::Real(r) => r.to_string(),
        V::Boolean(b) => b.to_string(),
        V::Object(o) => serde_json::to_string(o).unwrap_or_default(),
    }
}

pub async fn query(ctx: &Ctx, a: QueryArgs) -> Result<i32> {
    let objects = ctx.manager().await?.exec_query(&a.wql).await?;
    if ctx.json {
        for o in &objects {
            output::json(o);
        }
        return Ok(0);
    }
    let Some(first) = objects.first() else {
        println!("(no objects)");
        return Ok(0);
    };
    let names: Vec<&str> = first.properties.iter().map(|(n, _)| n.as_str()).collect();
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|o| o.properties.iter().map(|(_, v)| value_text(v)).collect())
        .collect();
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
                .max(n.len())
                .min(60)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(names.iter().map(|n| n.to_uppercase()).collect()));
    for r in rows {
        println!("{}", line(r));
    }
    println!(
        "({} object{})",
        objects.len(),
        if objects.len() == 1 { "" } else { "s" }
    );
    Ok(0)
}

pub async fn watch(ctx: &Ctx, a: QueryArgs) -> Result<i32> {
    let mut events = ctx
        .manager()
        .await?
        .exec_notification_query_semisync(&a.wql)
        .await?;
    loop {
        let next = tokio::select! {
            n = events.next(std::time::Duration::from_secs(3600), 1) => n?,
            _ = tokio::signal::ctrl_c() => return Ok(0),
        };
        for ev in &next.objects {
            if ctx.json {
                output::json(ev);
            } else {
                let target = ev.get_object("TargetInstance");
                let prev = ev.get_object("PreviousInstance");
                let get = |o: Option<&ferry_client::Object>, n: &str| {
                    o.and_then(|o| o.get(n)).map(value_text).unwrap_or_default()
                };
                let state = match prev {
                    Some(_) if get(prev, "state") != get(target, "state") => {
                        format!("{} -> {}", get(prev, "state"), get(target, "state"))
                    }
                    _ => get(target, "state"),
                };
                println!(
                    "{} {} {} {} bytes={}",
                    ev.class,
                    get(target, "id"),
                    get(target, "display_name"),
                    state,
                    get(target, "bytes_transferred")
                );
            }
        }
        if next.done {
            if let Some(s) = next.status {
                if s.code != ferry_client::StatusCode::Ok {
                    eprintln!("ferry: the subscription ended: {}", s.message);
                    return Ok(1);
                }
            }
            return Ok(0);
        }
    }
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
        .ok_or_else(|| anyhow!("program '{program}' not found on PATH: give its absolute path"))
}

pub async fn handler(ctx: &Ctx, c: HandlerCommand) -> Result<i32> {
    let m = ctx.manager().await?;
    let class =
        |s: &str| Uuid::parse_str(s.trim()).map_err(|_| anyhow!("'{s}' is not a class (a UUID)"));
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
                println!(
                    "handler for class {} registered: {}",
                    h.class,
                    h.argv.join(" ")
                );
            }
        }
        HandlerCommand::Unregister { class: c } => {
            m.unregister_handler(class(&c)?).await?;
            if !ctx.json {
                println!("handler for class {c} removed");
            }
        }
        HandlerCommand::List => {
            let hs = m.handlers().await?;
            if ctx.json {
                output::json(&hs);
            } else {
                println!("{:<36}  {:<20}  COMMAND", "CLASS", "WORKDIR");
                for h in hs {
                    println!(
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
        ferry_common::units::format_rate(s.bandwidth_limit)
    } else {
        "none".to_string()
    };
    println!("limit:    {all} (all jobs together)");
    if s.limits_in_force.is_empty() {
        println!("schedule: no limit in force now");
    }
    for l in &s.limits_in_force {
        let who: Vec<String> = l.priorities.iter().map(|p| p.to_string()).collect();
        println!(
            "schedule: {} for {} jobs now ({})",
            ferry_common::units::format_rate(l.limit),
            who.join(", "),
            l.period
        );
    }
}
