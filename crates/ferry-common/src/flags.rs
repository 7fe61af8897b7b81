//! Which notifications a job sends.

bitflags::bitflags! {
    /// Which notifications a job sends (BITS's `BG_NOTIFY_*`; the bits of the wire's
    /// `NotifyFlag` enum). Default: `JOB_TRANSFERRED | JOB_ERROR`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
    #[serde(transparent)]
    pub struct NotifyFlags: u32 {
        /// Every file is transferred.
        const JOB_TRANSFERRED = 0x1;
        /// The job entered `error`.
        const JOB_ERROR = 0x2;
        /// Silences every notification.
        const DISABLE = 0x4;
        /// Any change of state or progress (coalesced).
        const JOB_MODIFICATION = 0x8;
        /// A file is transferred.
        const FILE_TRANSFERRED = 0x10;
    }
}

impl Default for NotifyFlags {
    fn default() -> Self {
        NotifyFlags::JOB_TRANSFERRED | NotifyFlags::JOB_ERROR
    }
}
