//! The enrollment part of the store contract (`EnrollStore`), run by `suite::run_all`; the
//! same rules as `suite`: own rows only, shared database, whole milliseconds.

use super::enroll::{IssuedCertificate, NewEnrollment};
use super::suite::{at, unique_host};
use super::{Store, StoreResult};
use chrono::TimeDelta;

pub async fn run_all(store: &dyn Store) -> StoreResult<()> {
    enrollment_token_is_used_once_before_expiry(store).await?;
    concurrent_uses_of_one_token_succeed_once(store).await?;
    certificates_are_recorded_with_what_they_were_renewed_from(store).await?;
    a_certificate_is_superseded_by_a_newer_one_for_its_host(store).await?;
    first_use_of_a_certificate_is_recorded_once(store).await?;
    only_a_used_renewal_blocks_another(store).await?;
    Ok(())
}

fn cert(
    host: &str,
    fingerprint: &str,
    issued_at: chrono::DateTime<chrono::Utc>,
    renewed_from: Option<&str>,
) -> IssuedCertificate {
    IssuedCertificate {
        fingerprint: fingerprint.to_string(),
        host: host.to_string(),
        serial: format!("{fingerprint}-serial"),
        not_before: issued_at - TimeDelta::minutes(1),
        not_after: issued_at + TimeDelta::days(30),
        issued_at,
        renewed_from: renewed_from.map(str::to_string),
        first_used_at: None,
    }
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
    let (f1, f2) = (format!("{host}-f1"), format!("{host}-f2"));
    assert!(
        store
            .use_enrollment(&a, used, &cert(&host, &f1, used, None))
            .await?,
        "first use"
    );
    assert!(
        !store
            .use_enrollment(&a, used, &cert(&host, &f2, used, None))
            .await?,
        "a used token is refused"
    );
    let got = store.enrollment(&a).await?.expect("still readable");
    assert_eq!(got.used_at, Some(used));
    assert_eq!(got.cert_fingerprint, Some(f1.clone()));
    // The certificate of the use that won is recorded; the refused one is not.
    assert_eq!(
        store.certificates(&host).await?,
        [cert(&host, &f1, used, None)]
    );

    // Expired: at its expiry instant and after.
    let late = t0 + TimeDelta::hours(1);
    assert!(
        !store
            .use_enrollment(&b, late, &cert(&host, &format!("{host}-f3"), late, None))
            .await?,
        "an expired token is refused"
    );
    assert_eq!(store.enrollment(&b).await?.expect("b").used_at, None);
    assert!(
        !store
            .use_enrollment(
                &format!("{host}-none"),
                used,
                &cert(&host, &format!("{host}-f4"), used, None)
            )
            .await?
    );
    assert_eq!(store.certificates(&host).await?.len(), 1);
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
        let c = cert(&host, &format!("{host}-f{i}"), now, None);
        async move { store.use_enrollment(&digest, now, &c).await }
    });
    let won = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .collect::<StoreResult<Vec<bool>>>()?
        .into_iter()
        .filter(|w| *w)
        .count();
    assert_eq!(won, 1, "exactly one concurrent use succeeds");
    assert_eq!(store.certificates(&host).await?.len(), 1, "one certificate");
    Ok(())
}

/// Enrollment, renewals and a renewal of a certificate made elsewhere: each is listed for
/// its host, and the chain of `renewed_from` is followed back, nearest first, bounded.
pub async fn certificates_are_recorded_with_what_they_were_renewed_from(
    store: &dyn Store,
) -> StoreResult<()> {
    let host = unique_host("certs");
    let t0 = at(3_000);
    let fp = |n: &str| format!("{host}-{n}");
    let enrolled = cert(&host, &fp("e"), t0, None);
    let r1 = cert(&host, &fp("r1"), t0 + TimeDelta::days(20), Some(&fp("e")));
    let r2 = cert(&host, &fp("r2"), t0 + TimeDelta::days(40), Some(&fp("r1")));
    for c in [&r2, &enrolled, &r1] {
        store.record_certificate(c).await?;
    }
    assert_eq!(
        store.certificates(&host).await?,
        [enrolled.clone(), r1.clone(), r2.clone()]
    );
    assert_eq!(
        store.renewed_from(&fp("r2"), 64).await?,
        [fp("r1"), fp("e")]
    );
    assert_eq!(store.renewed_from(&fp("r2"), 1).await?, [fp("r1")]);
    assert_eq!(
        store.renewed_from(&fp("e"), 64).await?,
        Vec::<String>::new()
    );
    assert_eq!(
        store.renewed_from(&fp("unknown"), 64).await?,
        Vec::<String>::new()
    );
    // A renewal authenticated by a certificate of the deploy/ script: that one is named
    // though it is not recorded itself.
    let other = unique_host("certs-deploy");
    let d1 = cert(
        &other,
        &format!("{other}-r1"),
        t0,
        Some(&format!("{other}-d")),
    );
    store.record_certificate(&d1).await?;
    assert_eq!(
        store.renewed_from(&d1.fingerprint, 64).await?,
        [format!("{other}-d")]
    );
    assert_eq!(store.certificates(&other).await?, [d1]);
    // A fingerprint is recorded once.
    assert!(store.record_certificate(&r1).await.is_err());
    Ok(())
}

/// Superseded: a newer certificate for the same host first used at or before the cut-off;
/// one never used (its reply lost) supersedes nothing.
pub async fn a_certificate_is_superseded_by_a_newer_one_for_its_host(
    store: &dyn Store,
) -> StoreResult<()> {
    let host = unique_host("supersede");
    let t0 = at(3_000);
    let fp = |n: &str| format!("{host}-{n}");
    let (t1, t2) = (t0 + TimeDelta::days(20), t0 + TimeDelta::days(40));
    let (u1, u2) = (t1 + TimeDelta::minutes(1), t2 + TimeDelta::minutes(1));
    let far = t2 + TimeDelta::days(99);
    let e = cert(&host, &fp("e"), t0, None);
    let r1 = cert(&host, &fp("r1"), t1, Some(&fp("e")));
    let r2 = cert(&host, &fp("r2"), t2, Some(&fp("r1")));
    for c in [&e, &r1, &r2] {
        store.record_certificate(c).await?;
    }
    // Another host's newer certificate supersedes nothing here.
    let other = unique_host("supersede-other");
    store
        .record_certificate(&cert(&other, &format!("{other}-x"), t2, None))
        .await?;
    store
        .mark_certificate_used(&format!("{other}-x"), t2)
        .await?;
    let nb = |c: &IssuedCertificate| c.not_before;
    let sup = async |c: &IssuedCertificate, until| {
        store
            .superseding(&host, &c.fingerprint, nb(c), until)
            .await
            .map(|s| s.map(|s| s.fingerprint))
    };
    // Issued but never used: nothing is superseded, however long ago.
    assert_eq!(sup(&e, far).await?, None);
    assert_eq!(sup(&r1, far).await?, None);
    store.mark_certificate_used(&fp("r1"), u1).await?;
    // Before r1's first use (the grace not over): nothing; from it on, r1.
    assert_eq!(sup(&e, u1 - TimeDelta::seconds(1)).await?, None);
    assert_eq!(sup(&e, u1).await?, Some(fp("r1")));
    // r2 issued but unused: e is still superseded by r1 only, r1 by nothing.
    assert_eq!(sup(&e, far).await?, Some(fp("r1")));
    assert_eq!(sup(&r1, far).await?, None);
    store.mark_certificate_used(&fp("r2"), u2).await?;
    assert_eq!(sup(&e, u2 - TimeDelta::seconds(1)).await?, Some(fp("r1")));
    assert_eq!(sup(&e, u2).await?, Some(fp("r2")));
    assert_eq!(sup(&r1, u2).await?, Some(fp("r2")));
    assert_eq!(sup(&r2, far).await?, None);
    // Not recorded (deploy/ script): superseded by what was issued after its not_before.
    let deploy = fp("deploy");
    let made = async |not_before| {
        store
            .superseding(&host, &deploy, not_before, far)
            .await
            .map(|s| s.map(|s| s.fingerprint))
    };
    assert_eq!(made(t0 - TimeDelta::days(1)).await?, Some(fp("r2")));
    assert_eq!(made(t2 + TimeDelta::minutes(1)).await?, None);
    Ok(())
}

/// The first stream's time is kept; later ones and unknown fingerprints change nothing.
pub async fn first_use_of_a_certificate_is_recorded_once(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("first-use");
    let t0 = at(3_000);
    let c = cert(&host, &format!("{host}-c"), t0, None);
    store.record_certificate(&c).await?;
    assert_eq!(store.certificates(&host).await?[0].first_used_at, None);
    let u = t0 + TimeDelta::minutes(3);
    assert!(store.mark_certificate_used(&c.fingerprint, u).await?);
    assert!(
        !store
            .mark_certificate_used(&c.fingerprint, u + TimeDelta::hours(1))
            .await?,
        "a second stream marks nothing"
    );
    assert_eq!(store.certificates(&host).await?[0].first_used_at, Some(u));
    // A certificate of the deploy/ script is not recorded: nothing to mark, no error.
    assert!(
        !store
            .mark_certificate_used(&format!("{host}-deploy"), u)
            .await?
    );
    // Racing first streams: one of them sets it.
    let d = cert(&host, &format!("{host}-d"), t0, None);
    store.record_certificate(&d).await?;
    let tries = (0..6).map(|i| {
        let fp = d.fingerprint.clone();
        async move {
            store
                .mark_certificate_used(&fp, u + TimeDelta::seconds(i))
                .await
        }
    });
    let set = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .collect::<StoreResult<Vec<bool>>>()?
        .into_iter()
        .filter(|w| *w)
        .count();
    assert_eq!(set, 1, "exactly one first use");
    Ok(())
}

/// A renewal blocks another renewal of its parent only once it was used.
pub async fn only_a_used_renewal_blocks_another(store: &dyn Store) -> StoreResult<()> {
    let host = unique_host("used-renewal");
    let t0 = at(3_000);
    let fp = |n: &str| format!("{host}-{n}");
    let t1 = t0 + TimeDelta::days(20);
    let e = cert(&host, &fp("e"), t0, None);
    // Two renewals of e: the first reply was lost (never used), the second was used.
    let lost = cert(&host, &fp("lost"), t1, Some(&fp("e")));
    let kept = cert(
        &host,
        &fp("kept"),
        t1 + TimeDelta::minutes(1),
        Some(&fp("e")),
    );
    for c in [&e, &lost] {
        store.record_certificate(c).await?;
    }
    let used = async |f: &str| {
        store
            .used_renewal(f)
            .await
            .map(|c| c.map(|c| c.fingerprint))
    };
    assert_eq!(
        used(&fp("e")).await?,
        None,
        "an unused renewal does not block"
    );
    store.record_certificate(&kept).await?;
    assert_eq!(used(&fp("e")).await?, None);
    let u = t1 + TimeDelta::minutes(2);
    store.mark_certificate_used(&fp("kept"), u).await?;
    assert_eq!(used(&fp("e")).await?, Some(fp("kept")));
    let got = store.used_renewal(&fp("e")).await?.expect("used renewal");
    assert_eq!(got.first_used_at, Some(u));
    // Its own children and unknown fingerprints: none.
    assert_eq!(used(&fp("kept")).await?, None);
    assert_eq!(used(&fp("unknown")).await?, None);
    // A renewal of a certificate made elsewhere (not recorded) counts the same.
    let d = cert(&host, &fp("from-deploy"), t1, Some(&fp("deploy")));
    store.record_certificate(&d).await?;
    store.mark_certificate_used(&d.fingerprint, u).await?;
    assert_eq!(used(&fp("deploy")).await?, Some(d.fingerprint.clone()));
    Ok(())
}
