//! End-to-end test support for Backwatch; the scenarios themselves live in `tests/tests/e2e/`.

pub mod harness;
pub mod sim;
