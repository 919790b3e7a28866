//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of this HTTP API, written by hand
//! in `collector/assets/openapi.json` and compiled into the binary.
//!
//! Why by hand and not generated from the handlers: the document is the contract people and
//! tools (`schemathesis` in `tests/tests/e2e/openapi.rs`) hold the server to; generating it from
//! the code would make every server bug part of the contract. Drift is caught twice: the unit
//! test below fails when a route registered in `api.rs` or `api/*.rs` is missing from the
//! document (or the document names one that does not exist), and the end-to-end test checks
//! the running server's answers against the document's schemas.
//!
//! The document holds no fleet data, so it is served without authentication (see `auth`).

use axum::http::header;
use axum::response::IntoResponse;

pub const PATH: &str = "/api/v1/openapi.json";
const DOCUMENT: &str = include_str!("../../assets/openapi.json");

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

    /// `(path, method)` of every `.route("...", get(..).post(..))` in `text`.
    fn routes_in(text: &str) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let Some(start) = rest.find('"') else { break };
            let after = &rest[start + 1..];
            let Some(end) = after.find('"') else { break };
            let path = after[..end].to_string();
            // The rest of the call, up to its closing parenthesis.
            let mut depth = 1;
            let call: String = after[end + 1..]
                .chars()
                .take_while(|c| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth > 0
                })
                .collect();
            for m in METHODS {
                let mut s = call.as_str();
                while let Some(j) = s.find(&format!("{m}(")) {
                    let before = s[..j].chars().last();
                    if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                        out.insert((path.clone(), m.to_string()));
                    }
                    s = &s[j + m.len()..];
                }
            }
        }
        out
    }

    fn registered() -> BTreeSet<(String, String)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("api.rs")];
        for e in std::fs::read_dir(src.join("api")).expect("src/api") {
            let path = e.expect("entry").path();
            // This file's own tests hold example routes; `*_tests.rs` register none.
            let name = path.file_name().map(|n| n.to_string_lossy().to_string());
            if name.as_deref() != Some("openapi.rs")
                && !name.as_deref().is_some_and(|n| n.ends_with("_tests.rs"))
            {
                files.push(path);
            }
        }
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .flat_map(|p| routes_in(&std::fs::read_to_string(p).expect("source")))
            .collect()
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .expect("operations")
                    .keys()
                    .filter(|m| METHODS.contains(&m.as_str()))
                    .map(move |m| (path.clone(), m.clone()))
            })
            .collect()
    }

    #[test]
    fn the_route_scanner_sees_chained_methods() {
        let r = routes_in(
            ".route(\"/a\", get(x).post(y))\n.route(\n    \"/b/{id}\",\n    delete(end_it),\n)",
        );
        let want: BTreeSet<_> = [("/a", "get"), ("/a", "post"), ("/b/{id}", "delete")]
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(r, want);
    }

    #[test]
    fn every_route_is_in_the_openapi_document_and_nothing_else() {
        let (code, doc) = (registered(), documented());
        assert!(
            code.contains(&(PATH.to_string(), "get".to_string())),
            "{code:?}"
        );
        let missing: Vec<_> = code.difference(&doc).collect();
        let stale: Vec<_> = doc.difference(&code).collect();
        assert!(
            missing.is_empty(),
            "routes missing from collector/assets/openapi.json: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "collector/assets/openapi.json describes routes the router does not have: {stale:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_bearer_security() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        // Every $ref resolves.
        let text = DOCUMENT;
        for r in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap_or_default();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }
}
