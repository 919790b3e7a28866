//! The enrollment part of the store contract (`EnrollStore`), run by `suite::run_all`; the
//! same rules as `suite`: own rows only, shared database, whole milliseconds.

use super::enroll::NewEnrollment;
use super::suite::{at, unique_host};
use super::{Store, StoreResult};
use chrono::TimeDelta;

pub async fn run_all(store: &dyn Store) -> StoreResult<()> {
    enrollment_token_is_used_once_before_expiry(store).await?;
    concurrent_uses_of_one_token_succeed_once(store).await?;
    Ok(())
}

fn new(host: &str, digest: &str, t0: chrono::DateTime<chrono::Utc>) -> NewEnrollment {
    NewEnrollment {
        token_sha256: digest.to_string(),
        host: host.to_string(),
        created_by: "suite".into(),
        created_at: t0,
        expires_at: t0 + TimeDelta::hours(1),
    }
}

/// A token is stored, read back by its digest, used once, and refused when used or expired.
pub async fn enrollment_token_is_used_once_before_expiry(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("enroll");
    let t0 = at(3_000);
    let (a, b) = (format!("{host}-a"), format!("{host}-b"));
    store.add_enrollment(&new(&host, &a, t0)).await?;
    store.add_enrollment(&new(&host, &b, t0)).await?;

    let got = store.enrollment(&a).await?.expect("token stored");
    assert_eq!(got.host, host);
    assert_eq!(got.created_by, "suite");
    assert_eq!(got.created_at, t0);
    assert_eq!(got.expires_at, t0 + TimeDelta::hours(1));
    assert_eq!(got.used_at, None);
    assert_eq!(store.enrollment(&format!("{host}-none")).await?, None);

    let used = t0 + TimeDelta::minutes(5);
    assert!(store.use_enrollment(&a, used, "f1").await?, "first use");
    assert!(
        !store.use_enrollment(&a, used, "f2").await?,
        "a used token is refused"
    );
    let got = store.enrollment(&a).await?.expect("still readable");
    assert_eq!(got.used_at, Some(used));
    assert_eq!(got.cert_fingerprint.as_deref(), Some("f1"));

    // Expired: at its expiry instant and after.
    assert!(
        !store
            .use_enrollment(&b, t0 + TimeDelta::hours(1), "f3")
            .await?,
        "an expired token is refused"
    );
    assert_eq!(store.enrollment(&b).await?.expect("b").used_at, None);
    assert!(
        !store
            .use_enrollment(&format!("{host}-none"), used, "f4")
            .await?
    );
    Ok(())
}

/// Many callers racing with one token: exactly one wins.
pub async fn concurrent_uses_of_one_token_succeed_once(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("enroll-race");
    let t0 = at(3_000);
    let digest = format!("{host}-t");
    store.add_enrollment(&new(&host, &digest, t0)).await?;
    let now = t0 + TimeDelta::seconds(1);
    let tries = (0..8).map(|i| {
        let digest = digest.clone();
        async move { store.use_enrollment(&digest, now, &format!("f{i}")).await }
    });
    let won = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .collect::<StoreResult<Vec<bool>>>()?
        .into_iter()
        .filter(|w| *w)
        .count();
    assert_eq!(won, 1, "exactly one concurrent use succeeds");
    Ok(())
}
