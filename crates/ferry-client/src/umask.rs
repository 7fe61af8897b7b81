//! The umask of this process, which a new job carries so that ferryd gives its completed
//! destinations the mode a file created by this process would get (as curl's and wget's
//! files do).

/// This process's umask, read from `/proc/self/status` (`umask(2)` cannot be read without
/// changing it for a moment under the other threads); `None` where the kernel does not
/// say (before Linux 4.7), and ferryd then uses its own.
pub fn process_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_umask_is_read() {
        let mask = super::process_umask().expect("Linux reports the umask");
        assert!(mask <= 0o777, "{mask:o}");
    }
}
