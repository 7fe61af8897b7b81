//! `ferryd`'s command line (clap), in the library so that the man page and the shell
//! completions can be generated from it (the `xtask` package).
//!
//! May use: nothing of the daemon.

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

/// ferry's daemon: keeps transfer jobs and runs them in the background.
///
/// Without --system it is one user's daemon (usually started by `ferry` or by systemd's
/// user instance); with --system it is the machine's daemon, run as root by systemd,
/// serving every user on /run/ferry/ferryd.sock and doing each job's work as its owner.
#[derive(Debug, Parser)]
#[command(name = "ferryd", version)]
pub struct Args {
    /// Be the system-wide daemon: socket /run/ferry/ferryd.sock (mode 0666), state in
    /// /var/lib/ferry, configuration /etc/ferry/ferryd.toml ($FERRY_SOCKET,
    /// $FERRY_STATE_DIR, $FERRY_CONFIG override them); needs root
    #[arg(long)]
    pub system: bool,
    /// Socket to serve on [default: $FERRY_SOCKET, else $XDG_RUNTIME_DIR/ferry/ferryd.sock,
    /// else /tmp/ferry-$UID/ferryd.sock]
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Folder of the job store [default: $FERRY_STATE_DIR, else $XDG_STATE_HOME/ferry,
    /// else ~/.local/state/ferry]
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Background jobs transferring at once (overrides the config file)
    #[arg(long, env = "FERRY_MAX_CONCURRENT_JOBS")]
    pub max_concurrent_jobs: Option<usize>,
    /// Configuration file [default: $FERRY_CONFIG, else $XDG_CONFIG_HOME/ferry/ferryd.toml,
    /// else ~/.config/ferry/ferryd.toml]; a missing file means the defaults
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write the log to this file, a new one each day (PATH.YYYY-MM-DD, the last seven
    /// kept), instead of standard error (`ferry` starts the per-user daemon so, with
    /// STATE_DIR/ferryd.log); under systemd the log goes to the journal, each line with
    /// its priority. RUST_LOG sets what is logged (default: ferryd=info); NO_COLOR, or
    /// output that is no terminal, leaves colours out
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Be one user's worker of the system-wide daemon (started by `ferryd --system` as
    /// that user, with its control link; not for use by hand)
    #[arg(long, hide = true, conflicts_with = "system")]
    pub worker: bool,
    /// Be the system-wide daemon's cache process (started by `ferryd --system` as the
    /// cache user, with its control link; not for use by hand)
    #[arg(long, hide = true, conflicts_with_all = ["system", "worker"])]
    pub cache: bool,
    /// A worker's store split from the single store of an earlier version, to move into
    /// its state folder if it has none (given by the broker)
    #[arg(long, hide = true, requires = "worker")]
    pub import: Option<PathBuf>,
}

impl Args {
    /// The arguments of this process (exits with usage on a mistake).
    pub fn parse_args() -> Args {
        Args::parse()
    }

    /// The command line as clap describes it (for the man page and completions).
    pub fn command() -> clap::Command {
        <Args as CommandFactory>::command()
    }
}
