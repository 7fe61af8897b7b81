//! The command line, as clap parses it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// ferry: background transfers that survive exits, crashes and reboots.
#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    propagate_version = true,
    // `ferry help` is ferry's own: it also knows topics (`ferry help exit-codes`).
    disable_help_subcommand = true,
    after_help = "Exit codes: `ferry help exit-codes`. Man pages: `ferry man [COMMAND]`."
)]
pub struct Cli {
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Do not start ferryd when none answers
    #[arg(long, global = true)]
    pub no_autostart: bool,
    /// The daemon's socket [default: $FERRY_SOCKET, else $XDG_RUNTIME_DIR/ferry/ferryd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Talk to the system-wide ferryd (socket $FERRY_SOCKET, else /run/ferry/ferryd.sock),
    /// which serves every user of the machine; it is never started by `ferry`
    #[arg(long, global = true)]
    pub system: bool,
    #[command(subcommand)]
    pub command: Command,
}

fn duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}); try 90s, 15m or 2h"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download URLs now: create a job, show progress, complete it
    Get(Box<GetArgs>),
    /// Create a job (suspended) and print its id
    Create(CreateArgs),
    /// Add a file to a job
    AddFile(AddFileArgs),
    /// Change a file's URL, keeping its progress (BITS's SetRemoteName)
    #[command(long_about = SET_URL_HELP)]
    SetUrl(SetUrlArgs),
    /// Replace the start of every URL of a job, keeping progress (BITS's ReplaceRemotePrefix)
    #[command(long_about = REPLACE_PREFIX_HELP, alias = "replace-remote-prefix")]
    ReplacePrefix(ReplacePrefixArgs),
    /// Queue a job for transfer
    Resume(JobArg),
    /// Stop a job's transfer, keeping its progress
    Suspend(JobArg),
    /// Cancel a job and delete its temporary files
    Cancel(JobArg),
    /// Move a job's transferred files to their destinations
    Complete(JobArg),
    /// Take over another user's job: it becomes yours, suspended, without its progress,
    /// secrets or notify command (root and the admin group of the system-wide ferryd;
    /// bitsadmin /takeownership)
    #[command(long_about = TAKEOWN_HELP)]
    Takeown(JobArg),
    /// Show a job
    Info(JobArg),
    /// List a job's files, or judge one: `ferry files validate JOB INDEX --valid|--invalid`
    Files(FilesArgs),
    /// Show a file's ranges and those on disk; ask for ranges of an on-demand file
    #[command(long_about = RANGES_HELP)]
    Ranges(RangesArgs),
    /// List your jobs
    List(ListArgs),
    /// Change a job's properties
    Set(Box<SetArgs>),
    /// Wait until a job is transferred or fails (progress on a terminal)
    Wait(JobArg),
    /// Register, remove or list notification handlers
    #[command(subcommand)]
    Handler(HandlerCommand),
    /// Run a WQL query: SELECT * | prop, ... FROM Job | File | Handler [WHERE ...]
    Query(QueryArgs),
    /// Print events of a WQL event query until interrupted
    Watch(QueryArgs),
    /// Start, stop or ask about the daemon
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// A live view of your jobs: states, progress, rates, errors; act on them with keys
    #[command(long_about = MONITOR_HELP)]
    Monitor(MonitorArgs),
    /// Peer caching: make a fleet, see the peers, the cache
    #[command(subcommand)]
    Peers(PeersCommand),
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell)
    #[command(long_about = COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
    /// Print the man page of ferry or of one of its commands (roff)
    #[command(long_about = MAN_HELP)]
    Man(ManArgs),
    /// Print the help of a command, or of a topic: exit-codes
    Help(HelpArgs),
}

const TAKEOWN_HELP: &str = "\
Take over another user's job (BITS's IBackgroundCopyJob2::TakeOwnership, bitsadmin
/takeownership): for root and the members of the admin group of the system-wide ferryd
(`ferry --system takeown JOB`).

The job becomes yours with its id, files and properties, and arrives suspended. It does
not keep its progress (its part files were the old owner's and are deleted: the files
start over), its credentials and secret header values, its notify command, notification
class, CA file or reply file. Its files are opened as you from now on: look at their
destinations (`ferry --system files JOB`) before `ferry --system resume JOB`.";

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print, e.g. `get` or `peers ca new` [default: ferry's own]
    pub command: Vec<String>,
    /// Write every page (ferry.1, ferry-get.1, …) into this folder instead
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HelpArgs {
    /// A command (e.g. `get`, `peers ca new`) or a topic: exit-codes
    pub topic: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Open on this job's files
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
}

/// The transfer options `ferry get` and `ferry set` share.
#[derive(Debug, Args, Default)]
pub struct TransferArgs {
    /// A request header 'Name: value' (repeatable; `set` replaces the job's headers)
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// HTTP basic credentials USER:PASSWORD
    #[arg(short = 'u', long, value_name = "USER:PASSWORD")]
    pub basic: Option<String>,
    /// Bearer token (Authorization: Bearer TOKEN)
    #[arg(long, value_name = "TOKEN")]
    pub bearer: Option<String>,
    /// HTTP Negotiate (Kerberos/SPNEGO) with your Kerberos tickets (kinit), from $KRB5CCNAME's cache or your default one (BITS: BG_AUTH_SCHEME_NEGOTIATE)
    #[arg(long)]
    pub negotiate: bool,
    /// Proxy: none, system, or a URL (http://host:port, https://, socks5://,
    /// socks5h://host:port: names resolved by the proxy)
    #[arg(long)]
    pub proxy: Option<String>,
    /// Extra CA certificates (PEM file) to trust for https (`set`: "" clears)
    #[arg(long, visible_alias = "cacert", value_name = "PATH")]
    pub ca_file: Option<String>,
    /// Bandwidth limit, e.g. 1MiB/s (0 for none)
    #[arg(long, value_name = "RATE")]
    pub bandwidth: Option<String>,
    /// Longest time the transfer may take (e.g. 90m; 0 for none)
    #[arg(long, value_parser = duration)]
    pub max_transfer_time: Option<Duration>,
    /// Do not check the server's TLS certificate at all (curl's -k; shown in `ferry info`)
    #[arg(short = 'k', long, conflicts_with = "secure")]
    pub insecure: bool,
    /// Check the server's TLS certificate again (undoes -k on a job)
    #[arg(long)]
    pub secure: bool,
    /// Fail a file larger than this, e.g. 100MiB, with no byte past it written (0 for no
    /// limit; BITS's MAX_DOWNLOAD_SIZE)
    #[arg(long, value_name = "SIZE")]
    pub max_download_size: Option<String>,
    /// The HTTP method of the requests, e.g. POST ("" for the default: GET, or PUT for an
    /// upload; BITS's SetHttpMethod)
    #[arg(long, value_name = "METHOD")]
    pub http_method: Option<String>,
    /// HTTP Digest credentials USER:PASSWORD (RFC 7616, MD5 or SHA-256; BITS's
    /// BG_AUTH_SCHEME_DIGEST)
    #[arg(long, value_name = "USER:PASSWORD")]
    pub digest: Option<String>,
    /// Basic credentials for the proxy, apart from its URL (curl's --proxy-user; BITS's
    /// BG_AUTH_TARGET_PROXY; `set`: "" removes them)
    #[arg(long, value_name = "USER:PASSWORD")]
    pub proxy_user: Option<String>,
    /// What a redirect does: allow_silent (default), allow_report (the file's URL becomes
    /// the final one), disallow (the file fails), no_https_to_http (BITS's
    /// BG_HTTP_REDIRECT_POLICY_*)
    #[arg(long, value_name = "POLICY", value_parser = redirect_policy)]
    pub redirect_policy: Option<ferry_common::RedirectPolicy>,
    /// Accept only a server whose public key has this hash: sha256//BASE64, several
    /// separated by ';' (curl's --pinnedpubkey; `set`: "" clears)
    #[arg(long, visible_alias = "pinnedpubkey", value_name = "PINS")]
    pub pinned_public_key: Option<String>,
    /// Check the server's certificate against these revocation lists (PEM file; BITS's
    /// BG_SSL_ENABLE_CRL_CHECK; `set`: "" clears)
    #[arg(long, visible_alias = "crlfile", value_name = "PATH")]
    pub crl_file: Option<String>,
    /// Client certificate (PEM file, with its key unless --client-key) for servers that
    /// require one (curl's --cert; `set`: "" clears)
    #[arg(long, visible_alias = "cert", value_name = "PATH")]
    pub client_cert: Option<String>,
    /// The client certificate's private key (PEM file; curl's --key; `set`: "" clears)
    #[arg(long, visible_alias = "key", value_name = "PATH")]
    pub client_key: Option<String>,
}

/// A redirect policy by name (`allow_silent`, `allow-report`, …).
fn redirect_policy(s: &str) -> Result<ferry_common::RedirectPolicy, String> {
    s.replace('-', "_").parse()
}

#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// The fleet, the peers found and their state, the cache and what it served
    Status,
    /// A fleet's certificate authority
    #[command(subcommand)]
    Ca(CaCommand),
    /// Machine certificates
    #[command(subcommand)]
    Cert(CertCommand),
    /// The cache of files offered to peers
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a fleet CA in DIR: ca.pem (give it to every machine) and ca.key (keep it)
    New {
        /// Folder to create it in
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a certificate for machine NAME: a folder with ca.pem, node.pem and node.key,
    /// whose three files go into /etc/ferry/fleet/ (the system-wide daemon) or
    /// ~/.config/ferry/fleet/ (a user's daemon) on that machine
    Issue {
        /// The fleet CA's folder (from `ferry peers ca new`)
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The machine's name (its host name, say)
        name: String,
        /// Where to write it [default: ./NAME]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Renew a machine's certificate before it expires: a new one from the fleet CA for
    /// the same machine name, valid 5 years, with the same key (or a new one)
    #[command(long_about = RENEW_HELP)]
    Renew {
        /// The fleet CA's folder (from `ferry peers ca new`)
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The machine's certificate folder now: its node.pem (the name is read from
        /// it) and, unless --new-key, its node.key
        from: PathBuf,
        /// Make a new key instead of keeping the machine's
        #[arg(long)]
        new_key: bool,
        /// Where to write the renewed folder [default: ./NAME-renewed]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Revoke a machine's certificate: the fleet's revocation list (CA_DIR/crl.pem),
    /// which every machine honours, lists it; copy the list to every machine
    #[command(long_about = REVOKE_HELP)]
    Revoke {
        /// The fleet CA's folder (from `ferry peers ca new`)
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The machine's certificate: its folder (with node.pem) or the file
        cert: PathBuf,
    },
}

const REVOKE_HELP: &str = "\
Revoke a machine's certificate (a machine that leaves the fleet, or whose key was
lost): its serial number joins CA_DIR/revoked.txt and CA_DIR/crl.pem, the fleet's
revocation list signed by the CA, is written again with every certificate revoked so
far. Copy crl.pem into every machine's fleet folder (/etc/ferry/fleet/crl.pem, or
~/.config/ferry/fleet/crl.pem; the `crl` key of [peers]) and restart its ferryd: from
then on no machine of the fleet accepts the revoked certificate, as a client or as a
server.";

const RENEW_HELP: &str = "\
Renew a machine's certificate before it expires (`ferry peers status` on the machine
shows when, and warns 30 days ahead): a new certificate from the fleet CA for the same
machine name, valid 5 years from now, with the machine's key (read from FROM/node.key)
or, with --new-key, a new one. The renewed folder (ca.pem, node.pem, node.key) replaces
the machine's files in /etc/ferry/fleet/ (or ~/.config/ferry/fleet/); its ferryd reads
them when it starts.";

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the cache's entries
    List,
    /// Empty the cache
    Clear,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The WQL text (quote it)
    pub wql: String,
    /// Objects per batch ferryd sends (0: ferryd's choice, 100; a batch also stops
    /// before about 1 MiB)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub batch_size: u32,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// URLs to download (http, https, file)
    #[arg(required_unless_present = "input_file")]
    pub urls: Vec<String>,
    /// Also download the URLs listed in this file, one a line ("-": standard input;
    /// blank lines and lines starting with '#' are skipped), as `aria2c -i` does
    #[arg(short = 'i', long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// Where to write: a file for one URL, a folder for several (a path ending in '/' is
    /// a folder, made if missing), or '-' for standard output [default: current folder]
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Make the folders of the destination that do not exist (curl's --create-dirs)
    #[arg(long)]
    pub create_dirs: bool,
    /// SHA-256 the file must have (one URL only)
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Another URL of the same file, tried when the one in use fails for good, keeping
    /// the progress (one URL only; repeat for more mirrors, tried in order)
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Priority: foreground (default for get), high, normal, low
    #[arg(long, default_value = "foreground")]
    pub priority: String,
    /// Print the job id and return at once; the job runs in the background and completes
    /// itself (its files appear when it is transferred)
    #[arg(long)]
    pub detach: bool,
    /// Give up after this many transient errors in a row (a refused connection, a name
    /// that does not resolve, a full disk), as curl's --retry [default: 3]
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retry: u32,
    /// Give up after this long in all (curl's --max-time), e.g. 5m
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub max_time: Option<Duration>,
    /// The longest wait before retrying after a transient error (retries back off from
    /// one second up to it)
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub retry_delay: Duration,
    /// Give up when no byte has moved for this long
    #[arg(long, value_parser = duration, default_value = "60s")]
    pub no_progress_timeout: Duration,
    /// Connections per file for large files from servers that accept ranges (1-16)
    #[arg(short = 'x', long)]
    pub connections: Option<u32>,
    /// Print nothing but errors (no bars, no summary)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Display name
    pub name: String,
    /// Job type: download, upload or upload_reply
    #[arg(long = "type", default_value = "download")]
    pub job_type: String,
    /// Upload protocol: put (default) or tus (resumable)
    #[arg(long)]
    pub upload_protocol: Option<String>,
    /// Priority: foreground, high, normal, low
    #[arg(long, default_value = "normal")]
    pub priority: String,
    /// Description
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct AddFileArgs {
    /// Job id
    pub job: String,
    /// Remote URL
    pub remote_url: String,
    /// Local path (made absolute against the current folder)
    pub local_path: PathBuf,
    /// SHA-256 the file must have
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Another URL of the same file, tried when the one in use fails for good, keeping
    /// the progress (repeat for more mirrors, tried in order)
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Download only this range, OFFSET:LENGTH or OFFSET:eof; repeat for more. The ranges
    /// are written one after the other, in this order, into the local file (BITS's
    /// AddFileWithRanges, bitsadmin /AddFileWithRanges)
    #[arg(long = "range", value_name = "OFFSET:LENGTH")]
    pub ranges: Vec<String>,
    /// Download nothing until ranges are requested (`ferry ranges request`); each lands at
    /// its own offset (BITS's on-demand mode)
    #[arg(long)]
    pub on_demand: bool,
}

const SET_URL_HELP: &str = "\
Change a file's URL, keeping its progress (BITS's IBackgroundCopyFile2::SetRemoteName):
for a signed URL that expired, or a server that moved.

The URL is checked as `ferry add-file` checks one (http, https or file; uploads http or
https). Allowed until the job is completed or cancelled; a running job continues from
the new URL at once. The bytes already downloaded are kept when the new server has the
same validator for the file (its ETag, else Last-Modified): ferry asks it for the rest
with Range and If-Range. A server with another validator sends the whole file, and the
file starts over from zero, as in BITS. A file with mirrors is fetched from this URL
again. INDEX is the file's index in `ferry files JOB`.";

#[derive(Debug, Args)]
pub struct SetUrlArgs {
    /// Job id
    pub job: String,
    /// The file's index in the job (`ferry files JOB` lists them)
    pub index: u32,
    /// The new URL
    pub url: String,
}

const REPLACE_PREFIX_HELP: &str = "\
Replace the start of every URL of a job, keeping progress (BITS's
IBackgroundCopyJob3::ReplaceRemotePrefix; bitsadmin /replaceremoteprefix): every file URL
and mirror that starts with OLD gets NEW in its place, e.g.
`ferry replace-prefix JOB https://old.example/ https://new.example/`.

OLD is compared with the URLs as `ferry files JOB --json` shows them (scheme and host in
lower case). Each URL that results is checked as `ferry add-file` checks one; if any is
refused, none changes. Progress is kept as `ferry set-url` keeps it.";

#[derive(Debug, Args)]
pub struct ReplacePrefixArgs {
    /// Job id
    pub job: String,
    /// The start of the URLs to replace
    pub old: String,
    /// What replaces it
    pub new: String,
}

/// `ferry ranges JOB INDEX` shows; `ferry ranges request|position …` asks.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    subcommand_value_name = "COMMAND"
)]
pub struct RangesArgs {
    /// Job id
    #[arg(required = true)]
    pub job: Option<String>,
    /// The file's index in the job (`ferry files JOB` lists them)
    #[arg(required = true)]
    pub index: Option<u32>,
    #[command(subcommand)]
    pub command: Option<RangesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum RangesCommand {
    /// Ask for ranges of an on-demand file while its job runs (BITS's RequestFileRanges)
    Request(RequestRangesArgs),
    /// Say where the application reads an on-demand file: missing bytes from there come
    /// first (BITS's UpdateDownloadPosition)
    Position(PositionArgs),
}

const RANGES_HELP: &str = "\
Show a file's ranges and the ranges of it on disk, or ask for ranges of an on-demand file.

`ferry ranges JOB INDEX` prints the ranges the file was added with (`add-file --range`),
or those requested of an on-demand file (BITS's GetFileRanges), and the ranges of the
remote file whose bytes are on disk (BITS's GetFilledFileRanges).
`ferry ranges request JOB INDEX RANGE...` asks for ranges of an on-demand file
(`add-file --on-demand`) while its job runs; each lands at its own offset of the local
file. `ferry ranges position JOB INDEX OFFSET` says where the application reads.

A range is OFFSET:LENGTH or OFFSET:eof (to the end of the file), as bitsadmin writes it.";

#[derive(Debug, Args)]
pub struct RequestRangesArgs {
    /// Job id
    pub job: String,
    /// The file's index in the job
    pub index: u32,
    /// The ranges, OFFSET:LENGTH or OFFSET:eof
    #[arg(required = true, value_name = "OFFSET:LENGTH")]
    pub ranges: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PositionArgs {
    /// Job id
    pub job: String,
    /// The file's index in the job
    pub index: u32,
    /// Where the application reads (a byte offset of the file)
    pub offset: u64,
}

#[derive(Debug, Args)]
pub struct JobArg {
    /// Job id
    pub job: String,
}

/// `ferry files JOB` lists; `ferry files validate …` judges a file.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    subcommand_value_name = "COMMAND"
)]
pub struct FilesArgs {
    /// Job id (list its files)
    #[arg(required = true)]
    pub job: Option<String>,
    /// Show each file's last HTTP response headers too (ETag, Last-Modified, …; BITS's
    /// HTTP_RESPONSE_HEADERS)
    #[arg(long)]
    pub headers: bool,
    #[command(subcommand)]
    pub command: Option<FilesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Accept or reject a transferred file, as the application's SetValidationState does
    #[command(long_about = VALIDATE_HELP)]
    Validate(ValidateArgs),
}

const VALIDATE_HELP: &str = "\
Accept or reject a transferred file, as the application's SetValidationState does
(BITS's IBackgroundCopyFile3::SetValidationState).

--valid accepts it: a file that qualifies for peer caching is offered to the fleet
before the job is completed; the command returns once it is offered.
--invalid rejects it: its bytes are discarded, it leaves this machine's peer cache and
what it shares with the fleet, and the job goes to `error` (a file that came from peers
is fetched again from the origin alone, and those peers are banned).

The file must be transferred (after file_transferred) and its job not completed or
cancelled. INDEX is the file's index in `ferry files JOB`.";

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("verdict").required(true).args(["valid", "invalid"])))]
pub struct ValidateArgs {
    /// Job id
    pub job: String,
    /// The file's index in the job (`ferry files JOB` lists them)
    pub index: u32,
    /// Accept the file
    #[arg(long)]
    pub valid: bool,
    /// Reject the file (its bytes are discarded, the job goes to `error`)
    #[arg(long)]
    pub invalid: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include acknowledged and cancelled jobs
    #[arg(long)]
    pub all: bool,
    /// Every user's jobs, with their owners (root and the admin group of the system-wide
    /// ferryd)
    #[arg(long)]
    pub all_users: bool,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// Job id
    pub job: String,
    /// Display name
    #[arg(long)]
    pub name: Option<String>,
    /// Description
    #[arg(long)]
    pub description: Option<String>,
    /// Priority: foreground, high, normal, low
    #[arg(long)]
    pub priority: Option<String>,
    /// Notify flags: a number, or names joined by '|' or ',' (job_transferred, job_error,
    /// job_modification, file_transferred, file_ranges_transferred, disable)
    #[arg(long)]
    pub notify_flags: Option<String>,
    /// Notification class (UUID); the nil UUID clears it
    #[arg(long, value_name = "UUID")]
    pub notify_class: Option<String>,
    /// Set the command run when the job is transferred or fails: its argv follows `--`
    /// (absolute program path); with nothing after `--` the command is cleared
    #[arg(long)]
    pub notify_command: bool,
    /// The notify command's argv (after `--`)
    #[arg(last = true, value_name = "ARGV")]
    pub argv: Vec<String>,
    /// Minimum delay before retrying a transient error (e.g. 60s)
    #[arg(long, value_parser = duration)]
    pub min_retry_delay: Option<Duration>,
    /// Time without progress after which a transient error becomes an error (e.g. 14d)
    #[arg(long, value_parser = duration)]
    pub no_progress_timeout: Option<Duration>,
    /// Least time between two job_modification callbacks, e.g. 5s or 250ms (0 for the
    /// default, 500ms; BITS's MINIMUM_NOTIFICATION_INTERVAL_MS)
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub min_notify_interval: Option<Duration>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// Remove every custom header
    #[arg(long)]
    pub clear_headers: bool,
    /// Remove the credentials
    #[arg(long)]
    pub clear_credentials: bool,
    /// Where an upload_reply job keeps the server's reply ("" clears)
    #[arg(long, value_name = "PATH")]
    pub reply_file: Option<String>,
    /// Connections per file for large downloads (1-16; 0 = the daemon's default)
    #[arg(long)]
    pub connections: Option<u32>,
    /// Peer caching for this job: off, client (ask the fleet's peers first), server
    /// (offer its files to them) or both
    #[arg(long, value_name = "MODE")]
    pub peers: Option<String>,
    /// On a metered network: pause (wait, queued, until it is unmetered) or continue.
    /// Without it a job follows its priority: normal and low pause, foreground and high
    /// continue
    #[arg(long, value_name = "POLICY")]
    pub on_metered: Option<String>,
    /// The network cost states the job transfers in (BITS's cost flags): a preset
    /// (transfer_always, transfer_not_roaming, transfer_no_surcharge, transfer_standard,
    /// transfer_unrestricted), states joined by '|' (unrestricted, capped_usage_unknown,
    /// below_cap, near_cap, overcap_charged, overcap_throttled, usage_based, roaming), or
    /// BITS's number (0x8000007f). Replaces --on-metered
    #[arg(long, value_name = "FLAGS", conflicts_with = "on_metered")]
    pub cost_flags: Option<String>,
    /// yes: the job does not yield to other traffic (BITS's IGNORE_CONGESTION); no: a job
    /// of a background priority (high, normal, low) yields. From the job's next run
    #[arg(long, value_name = "yes|no", value_parser = yes_no)]
    pub ignore_congestion: Option<bool>,
    /// Make the values of all the job's headers write-only: no answer shows any of them
    /// again (for good: it cannot be undone)
    #[arg(long)]
    pub headers_write_only: bool,
    /// yes: the job completes itself once transferred (its files are put in place
    /// without `ferry complete`; what `ferry get --detach` sets)
    #[arg(long, value_name = "yes|no", value_parser = yes_no)]
    pub auto_complete: Option<bool>,
    /// yes: a file that fails for good does not stop the job's other files (what `ferry
    /// get` sets for several URLs)
    #[arg(long, value_name = "yes|no", value_parser = yes_no)]
    pub keep_going: Option<bool>,
}

/// `yes` or `no`.
fn yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(format!("'{s}': expected yes or no")),
    }
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Start ferryd if none answers
    Start,
    /// Ask ferryd to checkpoint and exit
    Stop,
    /// Show ferryd's status
    Status,
    /// Show the log of your ferryd (the one `ferry` started; the system-wide daemon's is
    /// in the journal: `journalctl -u ferryd`)
    Log {
        /// Keep showing what is added, as `tail -f`
        #[arg(short = 'f', long)]
        follow: bool,
        /// Lines from the end to show first
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum HandlerCommand {
    /// Register the command ferryd starts for a notification class: CLASS -- COMMAND ARGS…
    Register {
        /// The notification class (UUID)
        class: String,
        /// Working folder of the started handler
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// The command and its arguments (after `--`)
        #[arg(last = true, required = true, value_name = "COMMAND")]
        argv: Vec<String>,
    },
    /// Remove the handler of a class
    Unregister {
        /// The notification class (UUID)
        class: String,
    },
    /// List your handlers
    List,
}

/// What `ferry monitor` shows and its keys (its `--help`, and its `?` key).
pub const MONITOR_HELP: &str = "\
A live view of your jobs: state, progress, rate, time left, priority and
error of each, the files of one job, and ferryd's total throughput as a
sparkline. It follows the daemon's events (nothing is polled) and keeps going
when ferryd restarts.

Keys (plain keys only: it works over ssh):
  Up/Down, k/j         select a job
  Enter, Right, l, f   show the selected job's files
  Esc, Left, h         back to the job list (Esc on the list quits)
  s                    suspend the job (its progress is kept)
  r                    resume the job (also retries a job in error)
  x, Delete            cancel the job (asks first: y cancels, any other
                       key keeps it)
  c                    complete the job: its transferred files appear at
                       their destinations
  +, -                 raise or lower the job's priority
                       (foreground > high > normal > low)
  ?                    show or hide this help (Up/Down scroll it)
  q, Ctrl-C            quit (the jobs go on in the background)";

/// `ferry completions --help`: where each shell looks for the script.
pub const COMPLETIONS_HELP: &str = "\
Print the completion script of a shell (bash, zsh, fish, elvish, powershell) on standard
output. Installed for yourself, without the Debian package:

  bash  ferry completions bash > ~/.local/share/bash-completion/completions/ferry
  zsh   ferry completions zsh > ~/.zfunc/_ferry    (with fpath+=~/.zfunc before compinit)
  fish  ferry completions fish > ~/.config/fish/completions/ferry.fish";

/// `ferry man --help`.
pub const MAN_HELP: &str = "\
Print the man page of ferry, or of one of its commands, as roff on standard output:
`ferry man | man -l -`, `ferry man peers ca new | man -l -`. With --dir, write every page
(ferry.1, ferry-get.1, ...) into a folder, for example for yourself without the Debian
package: ferry man --dir ~/.local/share/man/man1";
