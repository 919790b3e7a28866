use super::*;
use crate::config::http_auth::{Net, Token, TrustedProxy};
use axum::http::HeaderValue;

const READ_TOKEN: &str = "read-0123456789abcdef0123456789abcdef";
const ACK_TOKEN: &str = "ack-0123456789abcdef0123456789abcdef";

fn auth() -> HttpAuth {
    HttpAuth {
        tokens: vec![
            Token {
                name: "screen".into(),
                role: Role::Read,
                digest: digest(READ_TOKEN),
            },
            Token {
                name: "oncall".into(),
                role: Role::Ack,
                digest: digest(ACK_TOKEN),
            },
        ],
        proxy: Some(TrustedProxy {
            header: "x-forwarded-user".into(),
            proxies: vec![Net::parse("10.0.0.5").unwrap()],
            ack_users: vec!["alice".into()],
        }),
        open: false,
        plain_bearer_refused: false,
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn bearer_of(token: &str) -> HeaderMap {
    headers(&[("authorization", &format!("Bearer {token}"))])
}

#[test]
fn a_read_token_reads_and_cannot_acknowledge() {
    let id = authenticate(&auth(), ip("192.0.2.9"), &bearer_of(READ_TOKEN)).unwrap();
    assert_eq!(
        id,
        Identity::Token {
            name: "screen".into(),
            role: Role::Read
        }
    );
    assert_eq!(authorize(&id, &Method::GET), Ok(()));
    let Err(Denied::Forbidden(m)) = authorize(&id, &Method::POST) else {
        panic!("a read token must not write");
    };
    assert_eq!(m, "screen may only read; this needs role \"ack\"");
    assert!(matches!(
        authorize(&id, &Method::DELETE),
        Err(Denied::Forbidden(_))
    ));
}

#[test]
fn an_ack_token_reads_and_acknowledges() {
    let id = authenticate(&auth(), ip("192.0.2.9"), &bearer_of(ACK_TOKEN)).unwrap();
    assert_eq!(id.name(), "oncall");
    assert_eq!(authorize(&id, &Method::GET), Ok(()));
    assert_eq!(authorize(&id, &Method::POST), Ok(()));
}

#[test]
fn scheme_is_case_insensitive_and_unknown_tokens_are_refused_without_echo() {
    let h = headers(&[("authorization", &format!("bearer {ACK_TOKEN}"))]);
    assert!(authenticate(&auth(), None, &h).is_ok());
    let Err(Denied::Unauthenticated(m)) = authenticate(&auth(), None, &bearer_of("guess")) else {
        panic!("unknown token accepted");
    };
    assert!(!m.contains("guess"), "{m}");
    assert!(matches!(
        authenticate(&auth(), None, &HeaderMap::new()),
        Err(Denied::Unauthenticated(_))
    ));
}

#[test]
fn proxy_header_is_believed_only_from_a_trusted_proxy() {
    let alice = headers(&[("x-forwarded-user", "alice")]);
    let id = authenticate(&auth(), ip("10.0.0.5"), &alice).unwrap();
    assert_eq!(
        id,
        Identity::Proxy {
            user: "alice".into(),
            role: Role::Ack
        }
    );
    // The same header from anyone else is ignored: no credentials at all.
    assert!(matches!(
        authenticate(&auth(), ip("10.0.0.6"), &alice),
        Err(Denied::Unauthenticated(_))
    ));
    assert!(matches!(
        authenticate(&auth(), None, &alice),
        Err(Denied::Unauthenticated(_))
    ));
    // IPv4 peers of a dual-stack listener arrive mapped into IPv6.
    assert!(authenticate(&auth(), ip("::ffff:10.0.0.5"), &alice).is_ok());
}

#[test]
fn proxy_users_not_listed_only_read() {
    let bob = headers(&[("x-forwarded-user", "bob")]);
    let id = authenticate(&auth(), ip("10.0.0.5"), &bob).unwrap();
    assert_eq!(id.role(), Role::Read);
    assert!(authorize(&id, &Method::POST).is_err());
    let empty = headers(&[("x-forwarded-user", " ")]);
    assert!(authenticate(&auth(), ip("10.0.0.5"), &empty).is_err());
}

#[test]
fn a_token_wins_over_the_proxy_header() {
    let mut h = bearer_of(READ_TOKEN);
    h.insert("x-forwarded-user", HeaderValue::from_static("alice"));
    let id = authenticate(&auth(), ip("10.0.0.5"), &h).unwrap();
    assert_eq!(id.name(), "screen");
}

#[test]
fn open_mode_answers_loopback_names_only() {
    let open = HttpAuth::default();
    for host in [
        "127.0.0.1:7080",
        "localhost:7080",
        "[::1]:7080",
        "LOCALHOST",
    ] {
        let id = authenticate(&open, ip("127.0.0.1"), &headers(&[("host", host)])).unwrap();
        assert_eq!(id, Identity::Open, "{host}");
        assert_eq!(authorize(&id, &Method::POST), Ok(()));
    }
    assert!(matches!(
        authenticate(
            &open,
            ip("127.0.0.1"),
            &headers(&[("host", "evil.example:7080")])
        ),
        Err(Denied::Forbidden(_))
    ));
}

#[test]
fn enrollments_need_an_admin_token() {
    let path = "/api/v1/enrollments";
    let ack = Identity::Token {
        name: "dba".into(),
        role: Role::Ack,
    };
    let admin = Identity::Token {
        name: "ops".into(),
        role: Role::Admin,
    };
    assert_eq!(required_role(&Method::POST, path), Role::Admin);
    assert_eq!(
        required_role(&Method::POST, "/api/v1/hosts/db1/retire"),
        Role::Admin
    );
    assert_eq!(
        required_role(&Method::DELETE, "/api/v1/hosts/db1/retire"),
        Role::Admin
    );
    assert_eq!(
        required_role(&Method::GET, "/api/v1/retired-hosts"),
        Role::Read
    );
    assert_eq!(
        required_role(&Method::GET, &format!("{path}/")),
        Role::Admin
    );
    assert_eq!(
        required_role(&Method::POST, "/api/v1/enrollmentsx"),
        Role::Ack
    );
    assert!(matches!(
        authorize_path(&ack, &Method::POST, path),
        Err(Denied::Forbidden(m)) if m.contains("needs role \"admin\"")
    ));
    assert!(matches!(
        authorize_path(&Identity::Open, &Method::POST, path),
        Err(Denied::Forbidden(_))
    ));
    assert_eq!(authorize_path(&admin, &Method::POST, path), Ok(()));
    // Admin includes everything below it.
    assert_eq!(
        authorize_path(&admin, &Method::POST, "/api/v1/alerts/1/ack"),
        Ok(())
    );
}

#[test]
fn bearer_tokens_are_refused_over_plain_http_beyond_loopback() {
    let mut a = auth();
    a.proxy = None;
    a.plain_bearer_refused = true;
    match authenticate(&a, ip("10.0.0.9"), &bearer_of(READ_TOKEN)) {
        Err(Denied::Forbidden(m)) => assert!(m.contains("plain HTTP"), "{m}"),
        other => panic!("a token over plain HTTP must be refused, got {other:?}"),
    }
    // Without a token the request is simply unauthenticated, as before.
    assert!(matches!(
        authenticate(&a, ip("10.0.0.9"), &headers(&[])),
        Err(Denied::Unauthenticated(_))
    ));
    a.plain_bearer_refused = false;
    assert!(authenticate(&a, ip("10.0.0.9"), &bearer_of(READ_TOKEN)).is_ok());
}
