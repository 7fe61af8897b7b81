//! The command line of `ferry` as a library: its arguments (`args`), its exit codes
//! (`exit`) and the man pages and completions made from them (`docs`), so that the binary
//! (`ferry man`, `ferry completions`, `ferry help exit-codes`) and the tools that package
//! it (`xtask dist`) read the very definition the binary parses with.
//!
//! May use: clap, clap_mangen, clap_complete and the standard library.

pub mod args;
pub mod docs;
pub mod exit;
