//! `verify_ssl: false` on a Jira Server integration: a Data Center instance behind a
//! self-signed certificate works (install and sync), and the default still refuses it. The
//! instance is a wiremock server behind a TLS terminator with a certificate made by rcgen.

mod common;

use std::sync::Arc;

use common::TestApp;
use common::sync::{PRIVATE, body, linked_group, outbound_jobs, put_group, requests};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

sqlite_and_pg_redis_tests!(self_signed_jira_server_works_only_with_verify_ssl_false);

/// Serves TLS on 127.0.0.1 with a fresh self-signed certificate for `localhost` and forwards
/// the decrypted bytes to `backend`. Returns the port.
async fn self_signed_tls_in_front_of(backend: std::net::SocketAddr) -> u16 {
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        cert.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    port
}

async fn self_signed_jira_server_works_only_with_verify_ssl_false(app: TestApp) {
    let mock = MockServer::start().await;
    let port = self_signed_tls_in_front_of(*mock.address()).await;
    let base = format!("https://localhost:{port}/jira");
    let common::seed::Seed {
        org, project, user, ..
    } = common::seed::org_team_project_member(&app).await;
    Mock::given(method("POST"))
        .and(path("/jira/rest/webhooks/1.0/webhook"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"self": format!("{base}/rest/webhooks/1.0/webhook/7")})),
        )
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/jira/rest/api/2/user/assignable/search"))
        .and(query_param("username", "lauryn@sentry.io"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"name": "lauryn", "displayName": "Lauryn"}])),
        )
        .mount(&mock)
        .await;
    Mock::given(method("PUT"))
        .and(path("/jira/rest/api/2/issue/PROJ-1/assignee"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mock)
        .await;
    let install = |verify: Option<bool>| {
        let mut b = json!({"organization_id": org, "url": base, "consumer_key": "issuesync", "private_key": PRIVATE,
                           "access_token": "oauth-tok", "config": {"sync_forward_assignment": true}});
        if let Some(v) = verify {
            b["verify_ssl"] = json!(v);
        }
        b
    };

    // Default (verified): the self-signed certificate is refused, nothing reaches Jira or is saved.
    let (s, e) = app
        .post("/integrations/jira-server/install", install(None))
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (502, Some("provider_unreachable")),
        "{e}"
    );
    assert!(mock.received_requests().await.unwrap().is_empty());
    assert!(
        app.get("/integrations?provider=jira_server")
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );

    // verify_ssl false: the webhook is registered through the self-signed TLS and saved.
    let (s, i) = app
        .post("/integrations/jira-server/install", install(Some(false)))
        .await;
    assert_eq!(s, 201, "{i}");
    assert_eq!(i["metadata"]["verify_ssl"], false);
    let registrations = mock
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/jira/rest/webhooks/1.0/webhook")
        .count();
    assert_eq!(registrations, 1);

    // And the sync's API calls use it too: an outbound assignment reaches the issue.
    let integration = i["id"].as_i64().expect("integration id");
    let group = linked_group(&app, org, project, "boom", &[(integration, "PROJ-1")]).await;
    let _workers = app.start_workers();
    put_group(&app, group, json!({"assignedTo": format!("user:{user}")})).await;
    app.drain().await;
    let puts: Vec<Value> = requests(&mock, "PUT", "/jira/rest/api/2/issue/PROJ-1/assignee")
        .await
        .iter()
        .map(body)
        .collect();
    assert_eq!(puts, [json!({"name": "lauryn"})]);

    // Switched back to verified, the same call is refused before anything is sent.
    let (s, _) = app
        .api(
            reqwest::Method::PATCH,
            &format!("/integrations/{}", i["id"]),
            Some(json!({"metadata": {"verify_ssl": true}})),
        )
        .await;
    assert_eq!(s, 200);
    let before = mock.received_requests().await.unwrap().len();
    put_group(&app, group, json!({"assignedTo": null})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let job = loop {
        let jobs = outbound_jobs(&app).await;
        if let Some(j) = jobs.into_iter().find(|j| j.last_error.is_some()) {
            break j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the unassign never failed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        job.last_error.as_deref().unwrap().contains("PUT"),
        "{:?}",
        job.last_error
    );
    assert_eq!(mock.received_requests().await.unwrap().len(), before);
}
