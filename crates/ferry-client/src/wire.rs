//! Mapping between ferry-common's enums and their wire counterparts.

use ferry_common::{
    ErrorContext, JobState, JobType, MeteredPolicy, PeerMode, Priority, RedirectPolicy,
    UploadProtocol,
};
use ferry_proto::v1 as pb;

/// An enum with a counterpart on the wire.
pub(crate) trait Wire: Sized + Copy {
    /// The generated enum.
    type Pb: Copy + TryFrom<i32> + Into<i32>;

    /// The wire value.
    fn to_pb(self) -> Self::Pb;

    /// From the wire value; `None` for the unspecified value.
    fn from_pb(p: Self::Pb) -> Option<Self>;

    /// The wire value as the message field holds it.
    fn to_wire(self) -> i32 {
        self.to_pb().into()
    }

    /// From a message field; `None` for unknown or unspecified values.
    fn from_wire(v: i32) -> Option<Self> {
        Self::Pb::try_from(v).ok().and_then(Self::from_pb)
    }
}

macro_rules! wire {
    ($t:ident : $pb:ident { $($v:ident),+ $(,)? }) => {
        impl Wire for $t {
            type Pb = pb::$pb;

            fn to_pb(self) -> pb::$pb {
                match self {
                    $($t::$v => pb::$pb::$v),+
                }
            }

            fn from_pb(p: pb::$pb) -> Option<$t> {
                match p {
                    $(pb::$pb::$v => Some($t::$v),)+
                    pb::$pb::Unspecified => None,
                }
            }
        }
    };
}

wire!(JobType: JobType { Download, Upload, UploadReply });
wire!(Priority: Priority { Foreground, High, Normal, Low });
wire!(JobState: JobState {
    Suspended,
    Queued,
    Connecting,
    Transferring,
    TransientError,
    Error,
    Transferred,
    Acknowledged,
    Cancelled,
});
wire!(ErrorContext: ErrorContext {
    LocalFile,
    RemoteFile,
    Transport,
    Daemon,
    Validation,
    Notification,
    Authentication,
});
wire!(UploadProtocol: UploadProtocol { Put, Tus });
wire!(PeerMode: PeerMode {
    Off,
    Client,
    Server,
    Both
});
wire!(MeteredPolicy: MeteredPolicy { Pause, Continue });
wire!(RedirectPolicy: RedirectPolicy {
    AllowSilent,
    AllowReport,
    Disallow,
    NoHttpsToHttp
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallFlags, NotifyFlags};

    fn round_trips<T: Wire + PartialEq + std::fmt::Debug>(all: &[T]) {
        for v in all {
            assert_eq!(T::from_wire(v.to_wire()), Some(*v));
        }
        assert_eq!(T::from_wire(0), None, "0 is unspecified");
        assert_eq!(T::from_wire(999), None);
    }

    #[test]
    fn every_value_round_trips() {
        round_trips(JobType::ALL);
        round_trips(Priority::ALL);
        round_trips(JobState::ALL);
        round_trips(ErrorContext::ALL);
        round_trips(UploadProtocol::ALL);
        round_trips(PeerMode::ALL);
        round_trips(MeteredPolicy::ALL);
        round_trips(RedirectPolicy::ALL);
    }

    #[test]
    fn flag_bits_are_the_wire_enums() {
        let notify = [
            (NotifyFlags::JOB_TRANSFERRED, pb::NotifyFlag::JobTransferred),
            (NotifyFlags::JOB_ERROR, pb::NotifyFlag::JobError),
            (NotifyFlags::DISABLE, pb::NotifyFlag::Disable),
            (
                NotifyFlags::JOB_MODIFICATION,
                pb::NotifyFlag::JobModification,
            ),
            (
                NotifyFlags::FILE_TRANSFERRED,
                pb::NotifyFlag::FileTransferred,
            ),
            (
                NotifyFlags::FILE_RANGES_TRANSFERRED,
                pb::NotifyFlag::FileRangesTransferred,
            ),
        ];
        for (bit, wire) in notify {
            assert_eq!(bit.bits(), wire as u32, "{bit:?}");
        }
        assert_eq!(
            notify.iter().fold(NotifyFlags::empty(), |a, (b, _)| a | *b),
            NotifyFlags::all()
        );
        assert_eq!(
            CallFlags::SEND_STATUS.bits(),
            pb::CallFlag::SendStatus as u32
        );
    }
}
