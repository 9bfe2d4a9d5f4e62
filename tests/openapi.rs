//! The OpenAPI document: served without a token, OpenAPI 3.1, and complete: every route the
//! router declares (read from the `.route(...)` calls of the receiver's sources) is in it, and
//! every operation it documents under /api/v1 is served.

mod common;

use serde_json::Value;

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

/// `(path, method)` of every `.route("path", get(..).post(..))` call in `src`.
fn routes_in(src: &str, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        // The call's text, up to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find_map(|(j, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(j)
            })
            .expect("a closed .route( call");
        let call = &rest[..end];
        let path = call
            .split('"')
            .nth(1)
            .expect("a path literal first in .route(");
        for m in METHODS {
            let needle = format!("{m}(");
            let mut from = 0;
            while let Some(k) = call[from..].find(&needle) {
                let at = from + k;
                let before = call[..at].chars().last().unwrap_or(' ');
                if !(before.is_alphanumeric() || before == '_') {
                    out.push((format!("{prefix}{path}"), m.to_string()));
                }
                from = at + needle.len();
            }
        }
        rest = &rest[end..];
    }
    out
}

fn source(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))).expect(rel)
}

/// The routes the receiver serves, from its sources.
fn served_routes() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dir = format!("{}/src/receiver/admin", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("admin dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("admin source");
        out.extend(routes_in(&text, "/api/v1"));
    }
    out.extend(routes_in(&source("src/receiver/webhooks/mod.rs"), ""));
    out.extend(routes_in(&source("src/receiver/health.rs"), ""));
    out
}

#[test]
fn the_route_reader_reads_method_chains() {
    let src = r#"Router::new()
        .route("/a/{id}", get(get_a).delete(delete_a))
        .route(
            "/b",
            post(create_b),
        )
        .route("/c", axum::routing::get(crate::x::get))"#;
    assert_eq!(
        routes_in(src, "/p"),
        vec![
            ("/p/a/{id}".to_string(), "get".to_string()),
            ("/p/a/{id}".to_string(), "delete".to_string()),
            ("/p/b".to_string(), "post".to_string()),
            ("/p/c".to_string(), "get".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_without_a_token_and_covers_every_route() {
    let Some(app) = common::spawn_app(common::Backend::Sqlite, common::Seq::Local).await else {
        return;
    };
    let resp = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let doc: Value = resp.json().await.expect("JSON");
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "openapi {version}");

    // Every route of the router is documented, with its method.
    let routes = served_routes();
    let admin = routes
        .iter()
        .filter(|(p, _)| p.starts_with("/api/v1/") && p != "/api/v1/openapi.json")
        .count();
    assert!(
        admin > 40,
        "the route reader found only {admin} admin routes"
    );
    let missing: Vec<_> = routes
        .iter()
        .filter(|(p, m)| !doc["paths"][p.as_str()][m.as_str()].is_object())
        .collect();
    assert!(missing.is_empty(), "not in the document: {missing:?}");

    // Every documented admin operation is served: without a token it answers 401 (a route
    // that does not exist would answer 404, a method it lacks 405).
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
            continue;
        }
        for (method, op) in item.as_object().expect("path item") {
            let url = app.url(
                &path
                    .replace("{id}", "1")
                    .replace("{team_id}", "2")
                    .replace("{org_id}", "3"),
            );
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let resp = app
                .client
                .request(method.clone(), url)
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status(), 401, "{method} {path}");
            let body: Value = resp.json().await.expect("error body");
            assert_eq!(body["error"], "unauthorized", "{method} {path}");
            // Bearer security and the error answers are declared.
            assert_eq!(
                op["security"],
                Value::Null,
                "{method} {path}: the document-wide security applies"
            );
            for status in ["400", "401", "404"] {
                let content =
                    &op["responses"][status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    content, "#/components/schemas/ApiErrorBody",
                    "{method} {path} {status}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, admin, "documented admin operations vs. routes");
    assert_eq!(doc["security"], serde_json::json!([{"admin_token": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    let error = &doc["components"]["schemas"]["ApiErrorBody"];
    assert_eq!(error["required"], serde_json::json!(["error", "detail"]));
    assert!(error["example"]["error"].is_string());

    // The webhooks carry their verification, and need no admin token.
    let vsts = &doc["paths"]["/extensions/vsts/issue-updated/"]["post"];
    assert_eq!(vsts["security"], serde_json::json!([{}]));
    assert!(vsts["parameters"].as_array().is_some_and(|p| {
        p.iter()
            .any(|p| p["name"] == "shared-secret" && p["in"] == "header")
    }));
    let discord = &doc["paths"]["/extensions/discord/interactions/"]["post"];
    assert!(
        discord["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "x-signature-ed25519"))
    );
}
