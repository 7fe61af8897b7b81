//! ferry-apt: apt's transport method `ferry+http` / `ferry+https` (installed as
//! `/usr/lib/apt/methods/ferry`, the two names linked to it, as apt-transport-tor does
//! for `tor+http`). Each file apt asks for becomes a ferry job with apt's expected
//! SHA-256: ferry verifies it, the fleet's peers may serve it, it survives a ferryd
//! restart, and apt gets it back with its hashes. See `docs/architecture/apt.md`.
//!
//! The protocol (apt's `doc/method.dbk` and `apt-pkg/acquire-method.cc`) is in
//! `message`; the rest is this method's own: `settings` (apt's configuration), `request`
//! (one `600 URI Acquire`), `fetch` (its job), `failure` (errors in apt's terms),
//! `hashes`, `status` (the progress line), `privs` (apt's sandbox user) and `method`
//! (the conversation).

pub mod failure;
pub mod fetch;
pub mod hashes;
pub mod message;
pub mod method;
pub mod privs;
pub mod request;
pub mod settings;
pub mod status;
