//! WQL: the hand-written parser (`lexer`, `parser`, `ast`), three-valued evaluation
//! (`eval`, `like`), the classes queries see (`schema`), and running data and event
//! queries (`exec`, `events`) over what a [`exec::Source`] provides.
//!
//! May use: `model`. Not `service`, `engine`, `notify`, `rpc` or `store`.

pub mod ast;
pub mod eval;
pub mod events;
pub mod exec;
pub mod lexer;
pub mod like;
pub mod parser;
pub mod schema;

pub use parser::{parse, ParseError};

#[cfg(test)]
mod tests;
