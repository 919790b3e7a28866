use super::*;
use std::os::unix::fs::PermissionsExt;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn token_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn raw<'a>(base: &'a Path, listen: &str) -> RawHttpAuth<'a> {
    RawHttpAuth {
        tokens: Vec::new(),
        trusted_user_header: None,
        trusted_proxies: Vec::new(),
        ack_users: Vec::new(),
        listen: listen.parse().unwrap(),
        base,
    }
}

fn check(raw: RawHttpAuth<'_>) -> (HttpAuth, String) {
    let mut p = Problems::new(Path::new("c.toml"));
    let auth = validate(&mut p, raw);
    let text = p.finish().err().map(|e| e.to_string()).unwrap_or_default();
    (auth, text)
}

#[test]
fn loopback_without_anything_is_open() {
    let (auth, err) = check(raw(Path::new("."), "127.0.0.1:7080"));
    assert_eq!(err, "");
    assert!(auth.open);
}

#[test]
fn beyond_loopback_authentication_is_required() {
    let (_, err) = check(raw(Path::new("."), "0.0.0.0:7080"));
    assert!(
        err.contains("http.listen: 0.0.0.0:7080 is not loopback"),
        "{err}"
    );
}

#[test]
fn tokens_are_read_relative_to_the_config_and_kept_as_digests() {
    let dir = tempfile::tempdir().unwrap();
    token_file(dir.path(), "screen", &format!("{TOKEN}\n"), 0o600);
    let mut r = raw(dir.path(), "0.0.0.0:7080");
    r.tokens.push(RawToken {
        name: Some("wall-screen".into()),
        token_file: Some("screen".into()),
        role: None,
    });
    let (auth, err) = check(r);
    assert_eq!(err, "");
    assert!(!auth.open);
    assert_eq!(auth.tokens[0].role, Role::Read);
    assert_eq!(auth.tokens[0].digest, digest(TOKEN));
    let shown = format!("{auth:?} {}", auth.describe());
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("token wall-screen (read)"), "{shown}");
}

#[test]
fn every_token_problem_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let open = token_file(dir.path(), "open", TOKEN, 0o644);
    let short = token_file(dir.path(), "short", "secret", 0o600);
    let t = |name: &str, file: Option<PathBuf>, role: Option<&str>| RawToken {
        name: Some(name.into()),
        token_file: file,
        role: role.map(String::from),
    };
    let mut r = raw(dir.path(), "127.0.0.1:7080");
    r.tokens = vec![
        t("a", Some(open), None),
        t("b", Some(short), None),
        t("c d", None, Some("owner")),
        t("e", Some(dir.path().join("missing")), None),
    ];
    let (_, err) = check(r);
    for expected in [
        "http.tokens[0].token_file: ",
        "is readable by every user (mode 644)",
        "http.tokens[1].token_file: ",
        "at least 32 characters",
        "http.tokens[2].name: \"c d\" is not a name",
        "http.tokens[2].role: \"owner\" is not one of \"read\", \"ack\", \"admin\"",
        "http.tokens[2].token_file: is required",
        "http.tokens[3].token_file: cannot read",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("secret"), "a token value was shown: {err}");
}

#[test]
fn proxy_header_needs_its_proxies_and_valid_networks() {
    let mut r = raw(Path::new("."), "0.0.0.0:7080");
    r.trusted_user_header = Some("X-Forwarded-User".into());
    r.trusted_proxies = vec!["10.0.0.0/33".into()];
    let (_, err) = check(r);
    assert!(
        err.contains("http.trusted_proxies[0]: \"10.0.0.0/33\" is not an address"),
        "{err}"
    );
    let mut r = raw(Path::new("."), "0.0.0.0:7080");
    r.trusted_user_header = Some("X-Forwarded-User".into());
    let (_, err) = check(r);
    assert!(err.contains("http.trusted_proxies: is required"), "{err}");
    let mut r = raw(Path::new("."), "127.0.0.1:7080");
    r.ack_users = vec!["alice".into()];
    let (_, err) = check(r);
    assert!(
        err.contains("http.ack_users: is set without http.trusted_user_header"),
        "{err}"
    );
}

#[test]
fn networks_match_addresses_of_both_families() {
    let net = Net::parse("10.0.0.0/24").unwrap();
    assert!(net.contains("10.0.0.200".parse().unwrap()));
    assert!(net.contains("::ffff:10.0.0.7".parse().unwrap()));
    assert!(!net.contains("10.0.1.1".parse().unwrap()));
    let one = Net::parse("192.0.2.1").unwrap();
    assert!(one.contains("192.0.2.1".parse().unwrap()));
    assert!(!one.contains("192.0.2.2".parse().unwrap()));
    let v6 = Net::parse("fd00::/8").unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert!(!v6.contains("fe80::1".parse().unwrap()));
    assert!(
        Net::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
    assert_eq!(Net::parse("nope"), None);
}

#[test]
fn proxy_users_acknowledge_only_when_listed() {
    let proxy = TrustedProxy {
        header: "x-forwarded-user".into(),
        proxies: vec![],
        ack_users: vec!["alice".into(), "dba-*".into()],
    };
    assert_eq!(proxy.role_of("alice"), Role::Ack);
    assert_eq!(proxy.role_of("dba-bob"), Role::Ack);
    assert_eq!(proxy.role_of("mallory"), Role::Read);
}

#[test]
fn the_toml_keys_are_the_documented_ones_and_inline_tokens_are_refused() {
    use backwatch_common::config::parse_toml;
    let path = Path::new("c.toml");
    let raw: crate::config::RawConfig = parse_toml(
        path,
        "[http]\nlisten = \"0.0.0.0:7080\"\ntrusted_user_header = \"X-Forwarded-User\"\n\
         trusted_proxies = [\"10.0.0.5\"]\nack_users = [\"alice\"]\n\
         [[http.tokens]]\nname = \"oncall\"\ntoken_file = \"oncall.token\"\nrole = \"ack\"\n",
    )
    .unwrap();
    assert_eq!(raw.http.tokens[0].name.as_deref(), Some("oncall"));
    assert_eq!(raw.http.trusted_proxies, ["10.0.0.5"]);
    let err = parse_toml::<crate::config::RawConfig>(
        path,
        "[[http.tokens]]\nname = \"x\"\ntoken = \"in-the-config\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `token`"), "{err}");
}
