//! The command line of `ferry` as a library: its arguments (`args`), so that tools
//! that describe the command (man pages, shell completions: `ferry-dist`) read the very
//! definition the binary parses with.
//!
//! May use: clap and the standard library.

pub mod args;
