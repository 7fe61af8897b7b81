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
        /// Ranges of a file were transferred (BITS's `BG_NOTIFY_FILE_RANGES_TRANSFERRED`):
        /// the ranges a file was added with, or those an application requested of an
        /// on-demand file (`RequestFileRanges`), as each batch of them lands.
        const FILE_RANGES_TRANSFERRED = 0x20;
    }
}

impl Default for NotifyFlags {
    fn default() -> Self {
        NotifyFlags::JOB_TRANSFERRED | NotifyFlags::JOB_ERROR
    }
}

impl NotifyFlags {
    /// Each flag with the name the command line and the documentation use for it.
    pub const NAMES: [(NotifyFlags, &'static str); 6] = [
        (NotifyFlags::JOB_TRANSFERRED, "job_transferred"),
        (NotifyFlags::JOB_ERROR, "job_error"),
        (NotifyFlags::JOB_MODIFICATION, "job_modification"),
        (NotifyFlags::FILE_TRANSFERRED, "file_transferred"),
        (
            NotifyFlags::FILE_RANGES_TRANSFERRED,
            "file_ranges_transferred",
        ),
        (NotifyFlags::DISABLE, "disable"),
    ];

    /// The names of the flags set, joined by ", " ("none" when none is; unknown bits in
    /// hex).
    pub fn describe(self) -> String {
        let mut names: Vec<String> = Self::NAMES
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| name.to_string())
            .collect();
        let unknown = self.bits() & !NotifyFlags::all().bits();
        if unknown != 0 {
            names.push(format!("{unknown:#x}"));
        }
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NotifyFlags;

    #[test]
    fn describes_flags_by_name() {
        assert_eq!(
            NotifyFlags::default().describe(),
            "job_transferred, job_error"
        );
        assert_eq!(NotifyFlags::empty().describe(), "none");
        let odd = NotifyFlags::from_bits_retain(0x4 | 0x100);
        assert_eq!(odd.describe(), "disable, 0x100");
    }
}
