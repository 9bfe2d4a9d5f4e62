//! Hostile input: a corpus of malformed and forged requests across every webhook route
//! (bad JSON, huge and deeply nested bodies, wrong types, forged, expired and
//! algorithm-confused JWTs, qsh mismatches, bad Ed25519 signatures, replayed Discord
//! timestamps, unknown integrations, SQL and header injection strings). Each must get its
//! 4xx; afterwards nothing is stored or enqueued and the server still answers.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestApp;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use std::io::{Read, Write};

sqlite_and_pg_redis_tests!(the_corpus_gets_4xx_and_changes_nothing);

const ADO: &str = include_str!("fixtures/vsts_workitem_updated_assignee_change.json");
const JIRA: &str = include_str!("fixtures/jira_cloud_issue_updated_assignee_change.json");
const COLLECTION: &str = "80ded3e8-3cd3-43b1-9f96-52032624aa3a";
const ADO_SECRET: &str = "ado-shared-secret-value";
const SERVER_ID: &str = "jira.example.com:issuesync";
const SERVER_SECRET: &str = "a long secret value";
const CLIENT_KEY: &str = "jira:hostile-tenant";
const CLOUD_SECRET: &str = "cloud-shared-secret";
const APP_ID: &str = "1234567890123456789";

struct Case {
    name: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    expect: u16,
}

fn case(
    name: impl Into<String>,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
    expect: u16,
) -> Case {
    Case {
        name: name.into(),
        path: path.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.into(),
        expect,
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&std::array::from_fn(|i| i as u8))
}

fn jwt(header: Value, claims: Value, secret: Option<&str>) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = match secret {
        Some(s) => {
            use hmac::Mac;
            let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(s.as_bytes()).unwrap();
            m.update(format!("{h}.{c}").as_bytes());
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        }
        None => String::new(),
    };
    format!("{h}.{c}.{sig}")
}

fn connect_claims(iss: &str, path: &str, exp_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": iss, "iat": now, "exp": now + exp_in,
        "qsh": issuesync::providers::jira::auth::qsh("POST", path, &[])})
}

/// Bodies that are not a JSON object, or not JSON at all.
fn bad_bodies() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = [
        ("empty", ""),
        ("open brace", "{"),
        ("array", "[]"),
        ("null", "null"),
        ("string", "\"x\""),
        ("number", "42"),
        ("truncated", "{\"a\":"),
        ("single quotes", "{'a': 1}"),
        ("trailing comma", "{\"a\": 1,}"),
        ("NaN", "{\"a\": NaN}"),
        ("comment", "{/* x */}"),
        ("two objects", "{}{}"),
        ("xml", "<xml/>"),
        ("form", "a=1&b=2"),
        ("bare word", "true"),
    ]
    .iter()
    .map(|(n, b)| (n.to_string(), b.as_bytes().to_vec()))
    .collect();
    v.push(("binary".into(), vec![0, 0xff, 0xfe, 0x80, 0x7b]));
    v.push(("deep arrays".into(), "[".repeat(100_000).into_bytes()));
    v.push(("deep objects".into(), "{\"a\":".repeat(50_000).into_bytes()));
    v.push((
        "invalid utf-8 in a string".into(),
        b"{\"a\": \"\xc3\x28\"}".to_vec(),
    ));
    v
}

const INJECTIONS: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE webhook_deliveries; --",
    "1; SELECT pg_sleep(10)",
    "\" OR \"\"=\"",
    "../../../etc/passwd",
    "%00",
    "${jndi:ldap://x/a}",
    "<script>alert(1)</script>",
    "\u{0}",
    "😀",
];

fn corpus() -> Vec<Case> {
    let mut c = Vec::new();
    let vsts = "/extensions/vsts/issue-updated/";
    let server_token =
        issuesync::providers::jira_server::auth::make_token(SERVER_ID, SERVER_SECRET).unwrap();
    let server = format!("/extensions/jira-server/issue-updated/{server_token}/");
    let cloud = "/extensions/jira/issue-updated/";
    let good_cloud = format!(
        "JWT {}",
        jwt(
            json!({"alg": "HS256", "typ": "JWT"}),
            connect_claims(CLIENT_KEY, cloud, 300),
            Some(CLOUD_SECRET)
        )
    );
    let discord = "/extensions/discord/interactions/";
    let json_ct = ("content-type", "application/json");

    // 1. Bodies that do not parse, on every route, with valid authentication where it comes first.
    for (name, body) in bad_bodies() {
        c.push(case(
            format!("vsts: {name}"),
            vsts,
            &[json_ct, ("shared-secret", ADO_SECRET)],
            body.clone(),
            400,
        ));
        c.push(case(
            format!("jira-server: {name}"),
            &server,
            &[json_ct],
            body.clone(),
            400,
        ));
        c.push(case(
            format!("jira: {name}"),
            cloud,
            &[json_ct, ("authorization", &good_cloud)],
            body.clone(),
            400,
        ));
        // Signed: Discord's signature covers the body, and comes before any parsing.
        let ts = chrono::Utc::now().timestamp().to_string();
        let mut signed = ts.as_bytes().to_vec();
        signed.extend_from_slice(&body);
        let sig = hex::encode(key().sign(&signed).to_bytes());
        c.push(case(
            format!("discord: {name}"),
            discord,
            &[
                json_ct,
                ("x-signature-ed25519", &sig),
                ("x-signature-timestamp", &ts),
            ],
            body.clone(),
            400,
        ));
        c.push(case(
            format!("jira installed: {name}"),
            "/extensions/jira/installed/",
            &[json_ct],
            body.clone(),
            400,
        ));
        c.push(case(
            format!("jira uninstalled: {name}"),
            "/extensions/jira/uninstalled/",
            &[json_ct],
            body,
            400,
        ));
    }

    // 2. Wrong types and missing fields (valid JSON).
    let ado: Value = serde_json::from_str(ADO).unwrap();
    let mut wrong = |name: &str, f: &dyn Fn(&mut Value), expect: u16| {
        let mut v = ado.clone();
        f(&mut v);
        c.push(case(
            format!("vsts wrong types: {name}"),
            vsts,
            &[json_ct, ("shared-secret", ADO_SECRET)],
            v.to_string(),
            expect,
        ));
    };
    wrong(
        "no resourceContainers",
        &|v| {
            v.as_object_mut().unwrap().remove("resourceContainers");
        },
        400,
    );
    wrong(
        "resourceContainers a number",
        &|v| v["resourceContainers"] = json!(5),
        400,
    );
    wrong(
        "collection id a number (no such integration)",
        &|v| v["resourceContainers"]["collection"]["id"] = json!(7),
        404,
    );
    wrong(
        "collection id null",
        &|v| v["resourceContainers"]["collection"]["id"] = Value::Null,
        400,
    );
    wrong(
        "eventType a list",
        &|v| v["eventType"] = json!(["workitem.updated"]),
        400,
    );
    wrong(
        "no eventType",
        &|v| {
            v.as_object_mut().unwrap().remove("eventType");
        },
        400,
    );
    let strip = |v: &mut Value| {
        let o = v.as_object_mut().unwrap();
        o.remove("subscriptionId");
        o.remove("notificationId");
    };
    wrong(
        "no delivery id",
        &|v| {
            strip(v);
            v.as_object_mut().unwrap().remove("id");
        },
        400,
    );
    wrong(
        "delivery id an object",
        &|v| {
            strip(v);
            v["id"] = json!({"a": 1});
        },
        400,
    );
    for inj in INJECTIONS {
        let mut v = ado.clone();
        v["resourceContainers"]["collection"]["id"] = json!(inj);
        c.push(case(
            format!("vsts injection in collection id: {inj}"),
            vsts,
            &[json_ct, ("shared-secret", ADO_SECRET)],
            v.to_string(),
            404,
        ));
    }

    // 3. Azure DevOps secrets.
    for (name, secret) in [
        ("wrong", "nope"),
        ("empty", ""),
        ("case", &ADO_SECRET.to_uppercase()[..]),
        ("prefix", &ADO_SECRET[..10]),
        ("suffix", &format!("{ADO_SECRET}x")[..]),
        ("injection", "' OR '1'='1"),
        (
            "inner space",
            &format!("{} {}", &ADO_SECRET[..5], &ADO_SECRET[5..])[..],
        ),
    ] {
        c.push(case(
            format!("vsts secret {name}"),
            vsts,
            &[json_ct, ("shared-secret", secret)],
            ADO,
            401,
        ));
    }
    c.push(case("vsts no secret header", vsts, &[json_ct], ADO, 401));
    c.push(case(
        "vsts secret in another header",
        vsts,
        &[json_ct, ("authorization", ADO_SECRET)],
        ADO,
        401,
    ));

    // 4. Jira Server webhook tokens.
    let server_body = include_str!("fixtures/jira_server_issue_updated_assignee_change.json");
    let tokens: Vec<(String, String, u16)> = vec![
        ("garbage".into(), "abc".into(), 401),
        (
            "alg none".into(),
            jwt(json!({"alg": "none"}), json!({"id": SERVER_ID}), None),
            401,
        ),
        (
            "HS384".into(),
            {
                let h = URL_SAFE_NO_PAD.encode(json!({"alg": "HS384"}).to_string());
                let b = URL_SAFE_NO_PAD.encode(json!({"id": SERVER_ID}).to_string());
                format!("{h}.{b}.{}", URL_SAFE_NO_PAD.encode([7u8; 48]))
            },
            401,
        ),
        (
            "wrong secret".into(),
            issuesync::providers::jira_server::auth::make_token(SERVER_ID, "guess").unwrap(),
            401,
        ),
        (
            "unknown id".into(),
            issuesync::providers::jira_server::auth::make_token("other:id", SERVER_SECRET).unwrap(),
            404,
        ),
        (
            "no id claim".into(),
            jwt(
                json!({"alg": "HS256"}),
                json!({"sub": SERVER_ID}),
                Some(SERVER_SECRET),
            ),
            401,
        ),
        (
            "id a number".into(),
            jwt(
                json!({"alg": "HS256"}),
                json!({"id": 5}),
                Some(SERVER_SECRET),
            ),
            401,
        ),
        (
            "expired".into(),
            jwt(
                json!({"alg": "HS256"}),
                json!({"id": SERVER_ID, "exp": 1_000_000}),
                Some(SERVER_SECRET),
            ),
            401,
        ),
        (
            "signature stripped".into(),
            {
                let t =
                    issuesync::providers::jira_server::auth::make_token(SERVER_ID, SERVER_SECRET)
                        .unwrap();
                format!("{}.", t.rsplit_once('.').unwrap().0)
            },
            401,
        ),
    ];
    for (name, token, expect) in tokens {
        c.push(case(
            format!("jira-server token {name}"),
            &format!("/extensions/jira-server/issue-updated/{token}/"),
            &[json_ct],
            server_body,
            expect,
        ));
    }
    for inj in INJECTIONS
        .iter()
        .filter(|i| !i.contains('/') && !i.contains('%') && !i.contains('\u{0}'))
    {
        let p = format!(
            "/extensions/jira-server/issue-updated/{}/",
            percent_encoding::utf8_percent_encode(inj, percent_encoding::NON_ALPHANUMERIC)
        );
        c.push(case(
            format!("jira-server token injection {inj}"),
            &p,
            &[json_ct],
            server_body,
            401,
        ));
    }

    // 5. Jira Cloud Connect JWTs.
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    let cloud_cases: Vec<(&str, Option<String>, u16)> = vec![
        ("missing", None, 401),
        (
            "not JWT scheme",
            Some(format!(
                "Bearer {}",
                jwt(
                    hs.clone(),
                    connect_claims(CLIENT_KEY, cloud, 300),
                    Some(CLOUD_SECRET)
                )
            )),
            401,
        ),
        ("garbage", Some("JWT abc.def".into()), 401),
        ("empty", Some("JWT ".into()), 401),
        (
            "alg none",
            Some(format!(
                "JWT {}",
                jwt(
                    json!({"alg": "none"}),
                    connect_claims(CLIENT_KEY, cloud, 300),
                    None
                )
            )),
            401,
        ),
        (
            "alg confusion RS256",
            Some(format!(
                "JWT {}",
                jwt(
                    json!({"alg": "RS256"}),
                    connect_claims(CLIENT_KEY, cloud, 300),
                    Some(CLOUD_SECRET)
                )
            )),
            401,
        ),
        (
            "HS512",
            Some(format!(
                "JWT {}",
                jwt(
                    json!({"alg": "HS512"}),
                    connect_claims(CLIENT_KEY, cloud, 300),
                    Some(CLOUD_SECRET)
                )
            )),
            401,
        ),
        (
            "wrong secret",
            Some(format!(
                "JWT {}",
                jwt(
                    hs.clone(),
                    connect_claims(CLIENT_KEY, cloud, 300),
                    Some("guess")
                )
            )),
            401,
        ),
        (
            "expired",
            Some(format!(
                "JWT {}",
                jwt(
                    hs.clone(),
                    connect_claims(CLIENT_KEY, cloud, -3600),
                    Some(CLOUD_SECRET)
                )
            )),
            401,
        ),
        (
            "qsh of another path",
            Some(format!(
                "JWT {}",
                jwt(
                    hs.clone(),
                    connect_claims(CLIENT_KEY, "/extensions/jira/installed/", 300),
                    Some(CLOUD_SECRET)
                )
            )),
            401,
        ),
        (
            "qsh missing",
            Some(format!(
                "JWT {}",
                jwt(
                    hs.clone(),
                    json!({"iss": CLIENT_KEY, "exp": chrono::Utc::now().timestamp() + 300}),
                    Some(CLOUD_SECRET)
                )
            )),
            401,
        ),
        (
            "context qsh",
            Some(format!(
                "JWT {}",
                jwt(
                    hs.clone(),
                    json!({"iss": CLIENT_KEY, "exp": chrono::Utc::now().timestamp() + 300, "qsh": "context-qsh"}),
                    Some(CLOUD_SECRET)
                )
            )),
            401,
        ),
        (
            "unknown tenant",
            Some(format!(
                "JWT {}",
                jwt(
                    hs.clone(),
                    connect_claims("jira:nobody", cloud, 300),
                    Some(CLOUD_SECRET)
                )
            )),
            404,
        ),
        (
            "no iss",
            Some(format!(
                "JWT {}",
                jwt(
                    hs.clone(),
                    json!({"exp": chrono::Utc::now().timestamp() + 300}),
                    Some(CLOUD_SECRET)
                )
            )),
            401,
        ),
        (
            "iss injection",
            Some(format!(
                "JWT {}",
                jwt(
                    hs.clone(),
                    connect_claims("' OR '1'='1", cloud, 300),
                    Some(CLOUD_SECRET)
                )
            )),
            404,
        ),
    ];
    for (name, auth, expect) in cloud_cases {
        let mut h = vec![json_ct];
        if let Some(a) = &auth {
            h.push(("authorization", a.as_str()));
        }
        c.push(case(format!("jira JWT {name}"), cloud, &h, JIRA, expect));
    }
    let forged_q = jwt(
        hs.clone(),
        connect_claims(CLIENT_KEY, cloud, 300),
        Some("guess"),
    );
    c.push(case(
        "jira ?jwt= forged",
        &format!("{cloud}?jwt={forged_q}"),
        &[json_ct],
        JIRA,
        401,
    ));
    c.push(case(
        "jira ?jwt= garbage",
        &format!("{cloud}?jwt=%27%20OR%201%3D1"),
        &[json_ct],
        JIRA,
        401,
    ));
    let lifecycle = json!({"clientKey": CLIENT_KEY, "sharedSecret": "stolen", "baseUrl": "https://evil.example"}).to_string();
    for (name, auth) in [
        ("none", None),
        (
            "forged HS256",
            Some(format!(
                "JWT {}",
                jwt(
                    hs.clone(),
                    connect_claims(CLIENT_KEY, "/extensions/jira/installed/", 300),
                    Some("guess")
                )
            )),
        ),
        (
            "alg none",
            Some(format!(
                "JWT {}",
                jwt(
                    json!({"alg": "none"}),
                    connect_claims(CLIENT_KEY, "/extensions/jira/installed/", 300),
                    None
                )
            )),
        ),
    ] {
        let mut h = vec![json_ct];
        if let Some(a) = &auth {
            h.push(("authorization", a.as_str()));
        }
        c.push(case(
            format!("jira installed {name}"),
            "/extensions/jira/installed/",
            &h,
            lifecycle.clone(),
            401,
        ));
        c.push(case(
            format!("jira uninstalled {name}"),
            "/extensions/jira/uninstalled/",
            &h,
            lifecycle.clone(),
            401,
        ));
    }

    // 6. Discord signatures and timestamps.
    let now = chrono::Utc::now().timestamp();
    let ping = json!({"id": "1", "application_id": APP_ID, "type": 1, "token": "t"}).to_string();
    let sign =
        |ts: i64, body: &str| hex::encode(key().sign(format!("{ts}{body}").as_bytes()).to_bytes());
    let other_key = SigningKey::from_bytes(&[9u8; 32]);
    // (name, signature, timestamp, body, expected status)
    type DiscordCase<'a> = (&'a str, Option<String>, Option<String>, String, u16);
    let discord_cases: Vec<DiscordCase> = vec![
        ("no headers", None, None, ping.clone(), 401),
        (
            "no signature",
            None,
            Some(now.to_string()),
            ping.clone(),
            401,
        ),
        (
            "no timestamp",
            Some(sign(now, &ping)),
            None,
            ping.clone(),
            401,
        ),
        (
            "tampered body",
            Some(sign(now, &ping)),
            Some(now.to_string()),
            ping.replace("\"1\"", "\"2\""),
            401,
        ),
        (
            "replayed (10 min old)",
            Some(sign(now - 600, &ping)),
            Some((now - 600).to_string()),
            ping.clone(),
            401,
        ),
        (
            "replayed (1 day old)",
            Some(sign(now - 86_400, &ping)),
            Some((now - 86_400).to_string()),
            ping.clone(),
            401,
        ),
        (
            "from the future",
            Some(sign(now + 600, &ping)),
            Some((now + 600).to_string()),
            ping.clone(),
            401,
        ),
        (
            "timestamp not a number",
            Some(sign(now, &ping)),
            Some("soon".into()),
            ping.clone(),
            401,
        ),
        (
            "signature not hex",
            Some("zz".repeat(64)),
            Some(now.to_string()),
            ping.clone(),
            401,
        ),
        (
            "signature too short",
            Some("ab".repeat(10)),
            Some(now.to_string()),
            ping.clone(),
            401,
        ),
        (
            "zero signature",
            Some("00".repeat(64)),
            Some(now.to_string()),
            ping.clone(),
            401,
        ),
        (
            "another key",
            Some(hex::encode(
                other_key.sign(format!("{now}{ping}").as_bytes()).to_bytes(),
            )),
            Some(now.to_string()),
            ping.clone(),
            401,
        ),
        (
            "timestamp swapped after signing",
            Some(sign(now, &ping)),
            Some((now - 1).to_string()),
            ping.clone(),
            401,
        ),
        // Signed by our application's key but naming another one: refused as unauthorized
        // (the key that verified is the application's identity).
        (
            "unknown application",
            Some(sign(now, &ping.replace(APP_ID, "42"))),
            Some(now.to_string()),
            ping.replace(APP_ID, "42"),
            401,
        ),
        (
            "application id injection",
            Some(sign(now, &ping.replace(APP_ID, "' OR 1=1 --"))),
            Some(now.to_string()),
            ping.replace(APP_ID, "' OR 1=1 --"),
            401,
        ),
        (
            "no application id",
            Some(sign(now, "{}")),
            Some(now.to_string()),
            "{}".into(),
            400,
        ),
        (
            "type a string",
            None,
            None,
            json!({"id": "1", "application_id": APP_ID, "type": "1"}).to_string(),
            401,
        ),
    ];
    for (name, sig, ts, body, expect) in discord_cases {
        let mut h = vec![json_ct];
        if let Some(s) = &sig {
            h.push(("x-signature-ed25519", s.as_str()));
        }
        if let Some(t) = &ts {
            h.push(("x-signature-timestamp", t.as_str()));
        }
        c.push(case(format!("discord {name}"), discord, &h, body, expect));
    }
    // Verified but malformed interactions.
    for (name, body) in [
        (
            "type a string",
            json!({"id": "1", "application_id": APP_ID, "type": "3", "token": "t"}),
        ),
        (
            "component without custom_id",
            json!({"id": "1", "application_id": APP_ID, "type": 3, "token": "t", "data": {}}),
        ),
        (
            "values not strings",
            json!({"id": "1", "application_id": APP_ID, "type": 3, "token": "t", "data": {"custom_id": "assign:1", "values": [1, 2]}}),
        ),
        (
            "no token",
            json!({"id": "1", "application_id": APP_ID, "type": 3, "data": {"custom_id": "assign:1"}}),
        ),
        (
            "no id",
            json!({"application_id": APP_ID, "type": 3, "token": "t", "data": {"custom_id": "assign:1"}}),
        ),
    ] {
        let b = body.to_string();
        let s = sign(now, &b);
        c.push(case(
            format!("discord verified but {name}"),
            discord,
            &[
                json_ct,
                ("x-signature-ed25519", &s),
                ("x-signature-timestamp", &now.to_string()),
            ],
            b,
            400,
        ));
    }

    // 7. Oversized bodies (over 1 MiB), authenticated where authentication comes first.
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(1_100_000));
    c.push(case(
        "vsts 1.1 MiB",
        vsts,
        &[json_ct, ("shared-secret", ADO_SECRET)],
        big.clone(),
        413,
    ));
    c.push(case(
        "jira-server 1.1 MiB",
        &server,
        &[json_ct],
        big.clone(),
        413,
    ));
    c.push(case(
        "jira 1.1 MiB",
        cloud,
        &[json_ct, ("authorization", &good_cloud)],
        big.clone(),
        413,
    ));
    c.push(case(
        "discord 1.1 MiB",
        discord,
        &[json_ct],
        big.clone(),
        413,
    ));
    c.push(case(
        "jira installed 1.1 MiB",
        "/extensions/jira/installed/",
        &[json_ct],
        big,
        413,
    ));
    c
}

async fn seed(app: &TestApp) {
    app.create(
        "/integrations",
        json!({"provider": "vsts", "external_id": COLLECTION, "name": "ado",
        "metadata": {"subscription": {"id": "s", "secret": ADO_SECRET}}}),
    )
    .await;
    app.create(
        "/integrations",
        json!({"provider": "jira_server", "external_id": SERVER_ID, "name": "server",
        "metadata": {"base_url": "http://127.0.0.1:9", "webhook_secret": SERVER_SECRET}}),
    )
    .await;
    app.create(
        "/integrations",
        json!({"provider": "jira", "external_id": CLIENT_KEY, "name": "cloud",
        "metadata": {"base_url": "http://127.0.0.1:9", "shared_secret": CLOUD_SECRET}}),
    )
    .await;
    app.create(
        "/integrations",
        json!({"provider": "discord", "external_id": APP_ID, "name": "discord",
        "metadata": {"public_key": hex::encode(key().verifying_key().to_bytes())}}),
    )
    .await;
}

/// Requests reqwest refuses to build: raw bytes on a socket.
fn raw_requests(addr: &str) -> Vec<(String, String, u16)> {
    let host = addr.trim_start_matches("http://");
    let ado = ADO.replace('\n', "");
    [
        ("CRLF in the secret header", format!("POST /extensions/vsts/issue-updated/ HTTP/1.1\r\nHost: {host}\r\nshared-secret: x\r\nX-Injected: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ado}", ado.len()), 401),
        ("header folding", format!("POST /extensions/vsts/issue-updated/ HTTP/1.1\r\nHost: {host}\r\nshared-secret: x\r\n {ADO_SECRET}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"), 400),
        ("content-length lies", format!("POST /extensions/discord/interactions/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{{}}"), 400),
        ("two content-lengths", format!("POST /extensions/discord/interactions/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{{}}"), 400),
        ("NUL in a header", format!("POST /extensions/vsts/issue-updated/ HTTP/1.1\r\nHost: {host}\r\nshared-secret: a\0b\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"), 400),
        // Keeps the connection open with the body unfinished: answered 408, not held until 503.
        ("stalled body", format!("POST /extensions/discord/interactions/ HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{{\"a\":"), 408),
    ]
    .into_iter()
    .map(|(n, r, e)| (n.to_string(), r, e))
    .collect()
}

fn send_raw(host: &str, request: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let _ = s.write_all(request.as_bytes());
    if request.contains("Content-Length: 5\r\n") {
        // The body is shorter than it says: end it, so the server sees the lie at EOF.
        // Complete requests are not half-closed: hyper (half_close off, axum's default)
        // drops a connection whose client half-closed while the handler still runs, so
        // the answer would depend on timing (seen once in CI: no answer to a 401).
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn counts(app: &TestApp) -> (i64, usize) {
    let mut tx = app.state.db.begin().await.unwrap();
    let deliveries = issuesync::store::deliveries::count_deliveries(&mut tx)
        .await
        .unwrap();
    drop(tx);
    let jobs = issuesync::ops::list(&app.state.db, &Default::default(), 10)
        .await
        .unwrap();
    (deliveries, jobs.len())
}

async fn the_corpus_gets_4xx_and_changes_nothing(app: TestApp) {
    seed(&app).await;
    let before = counts(&app).await;
    let corpus = corpus();
    let mut wrong = Vec::new();
    for c in &corpus {
        // A fresh client per request: an oversized body makes the server close the connection.
        let mut req = reqwest::Client::new()
            .post(app.url(&c.path))
            .body(c.body.clone());
        for (k, v) in &c.headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                let shaped = serde_json::from_str::<Value>(&text)
                    .ok()
                    .is_some_and(|v| v["error"].is_string() && v["detail"].is_string());
                if status != c.expect || !shaped {
                    wrong.push(format!(
                        "{}: got {status} {text:.200}, want {}",
                        c.name, c.expect
                    ));
                }
            }
            Err(e) => wrong.push(format!("{}: no answer ({e})", c.name)),
        }
    }
    let host = app.addr.trim_start_matches("http://").to_string();
    let raw = raw_requests(&app.addr);
    for (name, request, expect) in &raw {
        let got = tokio::task::spawn_blocking({
            let (h, r) = (host.clone(), request.clone());
            move || send_raw(&h, &r)
        })
        .await
        .unwrap();
        if got != *expect {
            wrong.push(format!("raw {name}: got {got}, want {expect}"));
        }
    }
    let total = corpus.len() + raw.len();
    eprintln!("hostile corpus: {total} requests");
    assert!(total >= 200, "the corpus has {total} requests");
    assert!(
        wrong.is_empty(),
        "{} of {total} answered wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        counts(&app).await,
        before,
        "nothing stored, nothing enqueued"
    );
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200, "still up");
}
