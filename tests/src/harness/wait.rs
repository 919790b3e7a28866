//! Waiting for something another process will do, without bare sleeps.
//!
//! Invariants:
//! - `eventually` and `eventually_sync` try at least once, then every [`POLL_INTERVAL`], and make a
//!   last attempt at the deadline, so a condition met just in time still passes.
//! - `eventually` never outlives its timeout: an attempt still running at the deadline (a connect
//!   that hangs) is abandoned. `eventually_sync` cannot interrupt a blocking attempt, so it can
//!   overrun by at most one attempt.
//! - On timeout they panic with what they waited for, for how long, how many attempts, and the
//!   LAST error seen, so a failing test reads "waited 10s for X; last saw Y".
//! - `free_port` hands out a port that was free a moment ago; the caller must bind it soon and
//!   retry on "address in use" (another process may take it in between).

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// How often `eventually` re-checks: fast enough for tests that take seconds, slow enough that
/// a check spawning `psql` does not hog one of the two cores.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Polls `f` until it returns `Ok`, and returns that value.
///
/// `f` may be an async closure that borrows (`async || pg.archiver_stats_async().await`) or a
/// plain closure returning a future (`|| async move { .. }`); `AsyncFnMut` accepts both, while
/// `FnMut() -> Fut` would reject the borrowing one.
///
/// # Panics
/// When `timeout` passes without an `Ok`; the message contains `what` and the last error.
pub async fn eventually<T, F>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: AsyncFnMut() -> anyhow::Result<T>,
{
    // tokio's clock, so tests that pause time (`start_paused`) still time out.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut attempts: u32 = 0;
    let mut last_error: Option<anyhow::Error> = None;
    loop {
        attempts += 1;
        // `timeout_at` polls the attempt once before looking at the clock, so the attempt made
        // at the deadline still gets its chance.
        match tokio::time::timeout_at(deadline, f()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(error)) => last_error = Some(error),
            Err(_elapsed) => {
                let seen = format!(
                    "attempt {attempts} was still running at the deadline; before it: {}",
                    describe(last_error.as_ref())
                );
                give_up(what, timeout, attempts, &seen)
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            give_up(what, timeout, attempts, &describe(last_error.as_ref()));
        }
        tokio::time::sleep_until((now + POLL_INTERVAL).min(deadline)).await;
    }
}

/// Checks `f` over `duration` (every [`POLL_INTERVAL`], and once more at the end): the way to
/// say "nothing happens" (no second alert, no resend) instead of a bare sleep followed by one
/// look, which passes whenever the look comes too early.
///
/// # Panics
/// At the first `Err`, with `what` and the error.
pub async fn consistently<F>(duration: Duration, what: &str, mut f: F)
where
    F: AsyncFnMut() -> anyhow::Result<()>,
{
    let end = tokio::time::Instant::now() + duration;
    loop {
        if let Err(e) = f().await {
            panic!("expected {what} throughout {duration:?}, but: {e:#}");
        }
        let now = tokio::time::Instant::now();
        if now >= end {
            return;
        }
        tokio::time::sleep_until((now + POLL_INTERVAL).min(end)).await;
    }
}

/// Blocking twin of [`eventually`] for tests without a runtime.
///
/// # Panics
/// When `timeout` passes without an `Ok`; the message contains `what` and the last error.
pub fn eventually_sync<T, F>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> anyhow::Result<T>,
{
    let deadline = Instant::now() + timeout;
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let error = match f() {
            Ok(value) => return value,
            Err(error) => error,
        };
        let now = Instant::now();
        if now >= deadline {
            give_up(what, timeout, attempts, &describe(Some(&error)));
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// A TCP port on 127.0.0.1 that nothing listened on when this was called.
///
/// # Panics
/// When the loopback interface cannot be bound at all (the machine is unusable for these tests).
pub fn free_port() -> u16 {
    // Dropping the listener frees the port again; the kernel does not hand a just-released
    // port to the next `bind(0)` right away, which makes collisions rare but not impossible.
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).expect("binding 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("address of a bound listener")
        .port()
}

fn describe(error: Option<&anyhow::Error>) -> String {
    match error {
        // `{:#}` prints the whole context chain on one line: "psql: connection refused".
        Some(error) => format!("{error:#}"),
        None => "no attempt had finished".to_owned(),
    }
}

fn give_up(what: &str, timeout: Duration, attempts: u32, seen: &str) -> ! {
    panic!(
        "timed out after {timeout:?} ({attempts} attempts) waiting for {what}; last error: {seen}"
    )
}
