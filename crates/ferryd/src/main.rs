//! `ferryd`: the ferry daemon.

use ferryd::cli::Args;
use ferryd::config::{Config, Mode};
use ferryd::daemon::{self, Options};
use ferryd::paths;

/// Makes glibc give freed memory back promptly.
///
/// By default glibc raises its trim and mmap thresholds after a large block is freed (up
/// to 64 MiB of free space kept at the top of each heap), and never trims the heaps of
/// its per-thread arenas otherwise: after loading a large store, or answering a large
/// query on a tokio worker, tens of MiB stayed resident for nothing. Fixed thresholds
/// keep at most 1 MiB free at the top of each heap; blocks of 1 MiB and more (the
/// 4 MiB write buffers, large tables) are mapped on their own and unmapped when freed.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    let args = Args::parse_args();
    // What users send is escaped and secrets masked in every line, wherever it goes
    // (logging.rs).
    let _log = ferryd::logging::init(&ferryd::logging::Sink::choose(args.log_file.clone()));
    // Before any thread exists: it unsets systemd's variables.
    let passed = match daemon::activation_listener() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ferryd: {e:#}");
            std::process::exit(2);
        }
    };
    let config_path = args.config.clone().unwrap_or_else(|| {
        if args.system || args.worker || args.cache {
            paths::system_config_path()
        } else {
            ferryd::config::default_config_path()
        }
    });
    let system = args.system || args.worker || args.cache;
    let mut config = match Config::load_as(&config_path, system.then_some(Mode::System)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferryd: configuration: {e}");
            std::process::exit(2);
        }
    };
    if let Some(n) = args.max_concurrent_jobs {
        config.max_concurrent_jobs = n.max(1);
    }
    let absolute = |p: std::path::PathBuf| std::path::absolute(&p).unwrap_or(p);
    let socket = absolute(args.socket.clone().unwrap_or_else(|| {
        if config.is_system() {
            paths::system_socket_path()
        } else {
            paths::socket_path()
        }
    }));
    let state_dir = absolute(args.state_dir.clone().unwrap_or_else(|| {
        if config.is_system() {
            paths::system_state_dir()
        } else {
            paths::state_dir()
        }
    }));
    // The daemon works from `/`, whatever folder it was started from: it keeps no folder
    // busy (a caller's removable disk, a folder to be deleted), and handlers and notify
    // commands start in their own folder, never in the caller's.
    if let Err(e) = std::env::set_current_dir("/") {
        eprintln!("ferryd: cannot change to the folder /: {e}");
        std::process::exit(1);
    }
    if args.cache {
        // Not dumpable, as a worker: it holds the fleet's key.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        let link = match ferryd::privsep::worker::inherited_link() {
            Ok(l) => l,
            Err(e) => {
                eprintln!("ferryd: {e:#}");
                std::process::exit(2);
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("ferryd-cache")
            .build()?;
        let result = runtime.block_on(ferryd::privsep::cache::run(config, state_dir, link));
        runtime.shutdown_timeout(std::time::Duration::from_secs(2));
        if let Err(e) = result {
            eprintln!("ferryd (cache process): {e:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let role = if args.worker {
        // Nobody, not even the user it runs as, may read this process's memory or
        // descriptors (ptrace, /proc/PID/mem, /proc/PID/fd): it holds connections the
        // broker vouched for.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        match ferryd::privsep::worker::inherited_link() {
            Ok(link) => Ok(daemon::Role::Worker {
                link,
                import: args.import.clone(),
            }),
            Err(e) => {
                eprintln!("ferryd: {e:#}");
                std::process::exit(2);
            }
        }
    } else if config.is_system() {
        Err(passed)
    } else {
        Ok(daemon::Role::PerUser(passed))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferryd")
        .build()?;
    // `Err`: the system-wide daemon's broker, with the socket systemd passed if any.
    let result = match role {
        Ok(role) => runtime.block_on(daemon::run(Options {
            socket,
            state_dir,
            config,
            role,
        })),
        Err(passed) => broker(socket, state_dir, config, config_path, passed, &runtime),
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = &result {
        eprintln!("ferryd: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

/// The system-wide daemon's root broker (see `privsep/`).
fn broker(
    socket: std::path::PathBuf,
    state_dir: std::path::PathBuf,
    config: Config,
    config_path: std::path::PathBuf,
    passed: Option<std::os::unix::net::UnixListener>,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "ferryd: the system-wide daemon runs as root (it starts each user's worker as \
             that user); start it with `systemctl start ferryd.socket`, or run ferryd \
             without --system for your own jobs"
        );
        std::process::exit(2);
    }
    // The broker's own files (the socket's lock, the users' folders before they are
    // given away) are private. Set before any thread exists.
    // SAFETY: umask only sets the mask.
    unsafe { libc::umask(0o077) };
    // Workers run this very program, opened now: a package upgrade that replaces the
    // file does not mix versions, and the path need not be reachable by every user.
    let program = std::fs::File::open("/proc/self/exe")?;
    daemon::prepare_state_dir(&state_dir, true)?;
    ferryd::privsep::migrate::single_store(&state_dir)?;
    let (listener, _lock) = match passed {
        Some(l) => (l, None),
        None => {
            let dir = socket.parent().unwrap_or(std::path::Path::new("/"));
            daemon::prepare_socket_dir(dir, true)?;
            let lock = daemon::lock_instance(&socket)?;
            (daemon::bind_socket(&socket, true)?, Some(lock))
        }
    };
    let cache = if config.peers.enabled {
        Some(cache_setup(&config, &socket, &state_dir)?)
    } else {
        None
    };
    runtime.block_on(ferryd::privsep::run_broker(
        ferryd::privsep::Options {
            socket,
            state_dir,
            config,
            config_path,
            program,
        },
        listener,
        cache,
    ))
}

/// What the cache process needs, made as root: the fleet's trust material read, the peer
/// port and the two local sockets bound, its folder given to the cache user.
fn cache_setup(
    config: &Config,
    socket: &std::path::Path,
    state_dir: &std::path::Path,
) -> anyhow::Result<(
    ferryd::privsep::cache_supervisor::CacheSetup,
    ferryd::owner::Account,
)> {
    use anyhow::Context;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let account = ferryd::privsep::cache_supervisor::cache_account(&config.system.cache_user)?;
    let material = ferryd::peers::tls::read_material(&config.peers)?;
    // Checked here, where a mistake stops the start with its message.
    ferryd::peers::tls::from_material(&config.peers, &material)?;
    let peer_port = ferryd::peers::Peers::bind(&config.peers)?;
    let local = |path: std::path::PathBuf| -> anyhow::Result<std::os::fd::OwnedFd> {
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path)
            .with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        Ok(std::os::fd::OwnedFd::from(l))
    };
    let cache_sock = local(ferryd::privsep::cache_socket(socket))?;
    let gateway = local(ferryd::privsep::gateway_socket(socket))?;
    let dir = state_dir.join("cache");
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    std::os::unix::fs::chown(&dir, Some(account.uid), Some(account.gid))
        .with_context(|| format!("giving {} to the cache user", dir.display()))?;
    Ok((
        ferryd::privsep::cache_supervisor::CacheSetup {
            ca_cert: material.ca_cert,
            node_cert: material.node_cert,
            node_key: material.node_key,
            crl: material.crl,
            listeners: [std::os::fd::OwnedFd::from(peer_port), cache_sock, gateway],
        },
        account,
    ))
}
