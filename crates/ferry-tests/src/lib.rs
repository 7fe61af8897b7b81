//! Integration tests of ferry live in `tests/`; this library is empty.
