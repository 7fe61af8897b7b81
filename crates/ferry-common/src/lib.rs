//! ferry-common: what `ferryd` and its clients (`ferry-client`, the `ferry` command) both
//! need, so that each rule is written once:
//!
//! - [`paths`]: where the socket, the state folder, the configuration file and the
//!   single-instance lock live;
//! - [`units`]: sizes and rates as people write them (`1MiB/s`, `500k`) and as ferry
//!   prints them (`1.5 MiB`);
//! - the enums both sides spell by name — [`JobState`], [`Priority`], [`JobType`],
//!   [`ErrorContext`], [`UploadProtocol`], [`PeerMode`], [`MeteredPolicy`], [`RedirectPolicy`] — the [`NotifyFlags`] bits
//!   and BITS's cost states and policies ([`CostFlags`], [`cost`]).
//!
//! The crate does not know the wire (`ferry-proto`): each side maps these types to and
//! from the generated messages itself.

pub mod cost;
mod enums;
mod flags;
pub mod paths;
pub mod units;

pub use cost::CostFlags;
pub use enums::{
    ErrorContext, JobState, JobType, MeteredPolicy, NamedEnum, PeerMode, Priority, RedirectPolicy,
    UploadProtocol,
};
pub use flags::NotifyFlags;
/// strum's traits, for iterating over the variants of an enum of this crate
/// (`JobState::iter()`) and listing their names.
pub use strum::{EnumCount, IntoEnumIterator, VariantArray, VariantNames};
