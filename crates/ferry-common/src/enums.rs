//! The enums both the daemon and its clients spell by name: in the store, in JSON, in WQL
//! and on the command line. The names are snake_case (`transient_error`); parsing ignores
//! ASCII case and refuses anything else with "unknown X 'y' (expected one of: …)".

use serde::{Deserialize, Serialize};
use strum::{VariantArray, VariantNames};

/// An enum of this crate: what its values are called in messages, and its variants.
pub trait NamedEnum: Copy + VariantArray + VariantNames + 'static {
    /// What one value is called in an error message, e.g. `"job state"`.
    const WHAT: &'static str;
}

/// The error of a failed parse: "unknown job state 'x' (expected one of: suspended, …)".
fn unknown<T: NamedEnum>(text: &str) -> String {
    format!(
        "unknown {} '{}' (expected one of: {})",
        T::WHAT,
        text,
        <T as VariantNames>::VARIANTS.join(", ")
    )
}

/// Gives an enum its [`NamedEnum`] impl, `ALL` and `as_str`.
macro_rules! named {
    ($name:ident, $what:literal) => {
        impl NamedEnum for $name {
            const WHAT: &'static str = $what;
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = <$name as VariantArray>::VARIANTS;

            /// The snake_case name used in the store, in JSON, in WQL and on the command
            /// line.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

/// The derives every enum here shares.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize,
            strum::Display, strum::IntoStaticStr, strum::EnumString, strum::EnumIter,
            strum::EnumCount, strum::VariantArray, strum::VariantNames,
        )]
        #[serde(rename_all = "snake_case")]
        #[strum(
            serialize_all = "snake_case",
            ascii_case_insensitive,
            parse_err_ty = String,
            parse_err_fn = unknown::<$name>
        )]
        pub enum $name { $($(#[$vm])* $variant),+ }

        named!($name, $what);
    };
}

string_enum!(
    /// What a job does with its files.
    JobType, "job type" {
        /// Downloads files from remote URLs.
        Download,
        /// Uploads one file.
        Upload,
        /// Uploads one file and keeps the server's reply.
        UploadReply,
    }
);

string_enum!(
    /// Scheduling priority: foreground jobs run at once, the others share what is left,
    /// higher first.
    Priority, "priority" {
        /// Runs at once, beside everything else.
        Foreground,
        /// Before normal and low.
        High,
        /// The default.
        Normal,
        /// After everything else.
        Low,
    }
);

string_enum!(
    /// The state of a job (BITS's `BG_JOB_STATE_*`; the state machine in ARCHITECTURE.md, "Jobs").
    JobState, "job state" {
        /// Not running; new jobs start here. `resume` queues it.
        Suspended,
        /// Waiting for its turn.
        Queued,
        /// Connecting to the server.
        Connecting,
        /// Moving bytes.
        Transferring,
        /// A failure that ferry retries after the minimum retry delay.
        TransientError,
        /// A failure that needs you: see the job's error, then resume or cancel.
        Error,
        /// Every file is transferred; `complete` makes them appear at their destinations.
        Transferred,
        /// Completed (final).
        Acknowledged,
        /// Cancelled (final).
        Cancelled,
    }
);

string_enum!(
    /// Where an error happened.
    ErrorContext, "error context" {
        /// The local file (destination or part file).
        LocalFile,
        /// The remote file (the server's answer).
        RemoteFile,
        /// The connection.
        Transport,
        /// ferryd itself.
        Daemon,
        /// The application rejected a file with `set_validation_state(false)`.
        Validation,
        /// Delivering a notification.
        Notification,
        /// Authenticating to the server: no Kerberos ticket for Negotiate, a ticket the
        /// server refused.
        Authentication,
    }
);

string_enum!(
    /// The server protocol of an upload job.
    UploadProtocol, "upload protocol" {
        /// One `PUT` of the whole file per attempt.
        Put,
        /// The tus resumable upload protocol: an interrupted upload continues where the
        /// server says.
        Tus,
    }
);

string_enum!(
    /// A job's part in peer caching (BITS's per-job peer-caching flags): whether it asks
    /// the fleet's peers for its files before the origin (`client`), whether its files are
    /// offered to the peers once they qualify (`server`), both or neither.
    PeerMode, "peer mode" {
        /// Neither: the origin only, and nothing offered to peers.
        Off,
        /// Asks peers first; its files are not offered.
        Client,
        /// Offers its files; fetches from the origin only.
        Server,
        /// Asks peers first and offers its files.
        Both,
    }
);

string_enum!(
    /// What a job does while the network is metered (BITS's cost flags): `pause` waits
    /// (queued) until the network is unmetered, `continue` transfers anyway. A job without
    /// a policy of its own pauses at the background priorities (`normal`, `low`) and
    /// continues at `foreground` and `high`.
    MeteredPolicy, "metered policy" {
        /// Waits, queued, until the network is unmetered.
        Pause,
        /// Transfers on a metered network too.
        Continue,
    }
);

string_enum!(
    /// What a job does when a server redirects it (BITS's `BG_HTTP_REDIRECT_POLICY_*`
    /// security flags, `IBackgroundCopyJobHttpOptions::SetSecurityFlags`).
    #[derive(Default)]
    RedirectPolicy, "redirect policy" {
        /// Follows redirects (up to 10) and keeps the URL the job was given
        /// (`BG_HTTP_REDIRECT_POLICY_ALLOW_SILENT`, the default); the file's `final_url`
        /// still tells where the last redirect led.
        #[default]
        AllowSilent,
        /// Follows redirects and replaces the file's remote URL by the final one
        /// (`BG_HTTP_REDIRECT_POLICY_ALLOW_REPORT`).
        AllowReport,
        /// A redirect fails the file for good, with the error `redirect_refused`
        /// (`BG_HTTP_REDIRECT_POLICY_DISALLOW`).
        Disallow,
        /// Follows redirects, except from `https` to `http`, which fails as `disallow`
        /// does (BITS refuses those unless `BG_HTTP_REDIRECT_POLICY_ALLOW_HTTPS_TO_HTTP`
        /// is set).
        NoHttpsToHttp,
    }
);

impl MeteredPolicy {
    /// The policy of a job at `priority` that has none of its own.
    pub fn default_for(priority: Priority) -> MeteredPolicy {
        match priority {
            Priority::Foreground | Priority::High => MeteredPolicy::Continue,
            Priority::Normal | Priority::Low => MeteredPolicy::Pause,
        }
    }
}

impl PeerMode {
    /// True when the job asks peers for content.
    pub fn is_client(self) -> bool {
        matches!(self, PeerMode::Client | PeerMode::Both)
    }

    /// True when the job's files may be offered to peers.
    pub fn is_server(self) -> bool {
        matches!(self, PeerMode::Server | PeerMode::Both)
    }
}

impl Priority {
    /// The scheduling rank: lower ranks run first.
    pub fn rank(self) -> u8 {
        match self {
            Priority::Foreground => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        }
    }
}

impl JobState {
    /// `acknowledged` and `cancelled`: nothing changes the job any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Acknowledged | JobState::Cancelled)
    }

    /// The states in which the engine owns the job (a worker runs or will run it):
    /// `queued`, `connecting`, `transferring`, `transient_error`.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Queued
                | JobState::Connecting
                | JobState::Transferring
                | JobState::TransientError
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    fn round_trips<T>()
    where
        T: NamedEnum + IntoEnumIterator + std::str::FromStr<Err = String> + std::fmt::Display,
        T: std::fmt::Debug + PartialEq + Into<&'static str> + Serialize,
    {
        let names = <T as VariantNames>::VARIANTS;
        assert_eq!(T::iter().count(), names.len());
        for (v, name) in T::iter().zip(names) {
            let text: &'static str = v.into();
            assert_eq!(text, *name);
            assert_eq!(v.to_string(), *name);
            assert_eq!(name.parse::<T>().unwrap(), v);
            assert_eq!(name.to_ascii_uppercase().parse::<T>().unwrap(), v);
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{name}\""),
                "JSON spells it as the store does"
            );
        }
        let err = "sideways".parse::<T>().unwrap_err();
        assert_eq!(
            err,
            format!(
                "unknown {} 'sideways' (expected one of: {})",
                T::WHAT,
                names.join(", ")
            )
        );
    }

    #[test]
    fn every_enum_round_trips_its_names_and_refuses_others() {
        round_trips::<JobType>();
        round_trips::<Priority>();
        round_trips::<JobState>();
        round_trips::<ErrorContext>();
        round_trips::<UploadProtocol>();
    }

    #[test]
    fn names_are_the_store_names() {
        assert_eq!(JobState::TransientError.as_str(), "transient_error");
        assert_eq!(JobType::UploadReply.as_str(), "upload_reply");
        assert_eq!(ErrorContext::LocalFile.as_str(), "local_file");
        assert_eq!("Transient_Error".parse(), Ok(JobState::TransientError));
        assert_eq!(
            "fast".parse::<Priority>().unwrap_err(),
            "unknown priority 'fast' (expected one of: foreground, high, normal, low)"
        );
        assert_eq!(JobState::ALL.len(), 9);
        assert_eq!(JobState::ALL[0], JobState::Suspended);
    }

    #[test]
    fn state_classes_and_ranks() {
        let finals: Vec<_> = JobState::iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [JobState::Acknowledged, JobState::Cancelled]);
        let active: Vec<_> = JobState::iter().filter(|s| s.is_active()).collect();
        assert_eq!(
            active,
            [
                JobState::Queued,
                JobState::Connecting,
                JobState::Transferring,
                JobState::TransientError
            ]
        );
        let ranks: Vec<u8> = Priority::iter().map(Priority::rank).collect();
        assert_eq!(ranks, [0, 1, 2, 3], "declaration order is scheduling order");
    }
}
