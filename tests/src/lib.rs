//! End-to-end test support for Backwatch; the scenarios themselves live in `tests/tests/`.

pub mod harness;
pub mod sim;
