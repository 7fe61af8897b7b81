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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ferryd=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config_path = args.config.clone().unwrap_or_else(|| {
        if args.system {
            paths::system_config_path()
        } else {
            ferryd::config::default_config_path()
        }
    });
    let mut config = match Config::load_as(&config_path, args.system.then_some(Mode::System)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferryd: configuration: {e}");
            std::process::exit(2);
        }
    };
    if let Some(n) = args.max_concurrent_jobs {
        config.max_concurrent_jobs = n.max(1);
    }
    let system = config.is_system();
    if system {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "ferryd: the system-wide daemon runs as root (it does each job's work as the \
                 job's owner); start it with `systemctl start ferryd.socket`, or run ferryd \
                 without --system for your own jobs"
            );
            std::process::exit(2);
        }
        // The daemon's own files (store, lock) are private; the threads and processes
        // working for users set the users' umasks themselves. Set before any thread
        // exists.
        // SAFETY: umask only sets the mask.
        unsafe { libc::umask(0o077) };
    }
    let absolute = |p: std::path::PathBuf| std::path::absolute(&p).unwrap_or(p);
    let opts = Options {
        socket: absolute(args.socket.unwrap_or_else(|| {
            if system {
                paths::system_socket_path()
            } else {
                paths::socket_path()
            }
        })),
        state_dir: absolute(args.state_dir.unwrap_or_else(|| {
            if system {
                paths::system_state_dir()
            } else {
                paths::state_dir()
            }
        })),
        config,
    };
    // The daemon works from `/`, whatever folder it was started from: it keeps no folder
    // busy (a caller's removable disk, a folder to be deleted), and handlers and notify
    // commands start in their own folder, never in the caller's.
    if let Err(e) = std::env::set_current_dir("/") {
        eprintln!("ferryd: cannot change to the folder /: {e}");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferryd")
        .build()?;
    let result = runtime.block_on(daemon::run(opts));
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = &result {
        eprintln!("ferryd: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}
