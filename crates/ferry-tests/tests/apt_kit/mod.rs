//! The apt tests' machinery: a Debian repository built for the test (`repo`), apt with a
//! tree of its own (`apt`), and machines running the system-wide ferryd (`machine`), on
//! the LAN, origin and fleets of `peer_cache_kit`.

// Each test uses a different subset.
#![allow(dead_code)]

pub mod apt;
pub mod machine;
pub mod repo;
