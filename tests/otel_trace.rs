//! One trace per delivery: an ADO webhook, the jobs it causes and the provider call those
//! make arrive at a mock OTLP/HTTP collector as one trace, each span the child of the one
//! that caused it. The subscriber is process-wide, so this file holds one test, which runs
//! the SQLite and the Postgres + Redis receivers (their webhook paths store the job
//! differently) one after the other.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::sync::{ADO_SECRET, ado_inbound_status, ado_state};
use common::{Backend, Seq};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn attr(s: &Span, key: &str) -> Option<String> {
    let v = s.attributes.iter().find(|a| a.key == key)?.value.as_ref()?;
    match v.value.as_ref()? {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        Any::BoolValue(b) => Some(b.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Every span the collector has received.
async fn received(collector: &MockServer) -> Vec<Span> {
    let mut out = Vec::new();
    for r in collector.received_requests().await.unwrap_or_default() {
        let req = ExportTraceServiceRequest::decode(r.body.as_slice()).expect("OTLP protobuf");
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                out.extend(ss.spans);
            }
        }
    }
    out
}

/// The chain from `s` up to the root of its trace, `s` first.
fn ancestors<'a>(s: &'a Span, by_id: &HashMap<Vec<u8>, &'a Span>) -> Vec<&'a Span> {
    let mut chain = vec![s];
    let mut cur = s;
    while !cur.parent_span_id.is_empty() {
        match by_id.get(&cur.parent_span_id) {
            Some(p) => {
                chain.push(p);
                cur = p;
            }
            None => break,
        }
    }
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_job_and_provider_call_are_one_trace() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let otel = issuesync::config::OtelSettings {
        endpoint: Some(collector.uri()),
        service_name: "issuesync-test".into(),
    };
    let telemetry = std::sync::Arc::new(issuesync::telemetry::init("text", &otel).expect("otel"));

    for (backend, seq) in [
        (Backend::Sqlite, Seq::Local),
        (Backend::Postgres, Seq::Redis),
    ] {
        let Some(app) = common::spawn_app(backend, seq).await else {
            continue;
        };
        let provider = MockServer::start().await;
        let (ado, _group) = ado_inbound_status(&app, &provider, 33).await;
        let workers = app.start_workers();
        let notification = format!("trace-{backend:?}");
        let r = app
            .client
            .post(app.url("/extensions/vsts/issue-updated/"))
            .header("shared-secret", ADO_SECRET)
            .json(&ado_state(33, Some("Active"), "Resolved", &notification, 3))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        let request_id = r.headers()["x-request-id"]
            .to_str()
            .expect("request id")
            .to_string();
        let answer: Value = r.json().await.expect("json");
        let job_id = answer["job_id"].as_str().expect("job id").to_string();
        app.drain().await;

        // The receiver stored the trace with the job.
        let traceparent = app
            .job(&job_id)
            .await
            .job
            .traceparent
            .unwrap_or_else(|| panic!("{backend:?}: no traceparent stored with the job"));

        // Spans are exported in batches: flush until the provider call has arrived.
        let deadline = Instant::now() + Duration::from_secs(20);
        let (call, spans) = loop {
            let t = telemetry.clone();
            tokio::task::spawn_blocking(move || t.flush())
                .await
                .expect("flush");
            let spans = received(&collector).await;
            // This round's trace: the one the stored traceparent names.
            let call = spans.iter().position(|s| {
                attr(s, "url.template").as_deref()
                    == Some("{project}/_apis/wit/workitemtypes/{kind}/states")
                    && traceparent.get(3..35) == Some(hex(&s.trace_id).as_str())
            });
            if let Some(i) = call {
                break (i, spans);
            }
            assert!(
                Instant::now() < deadline,
                "{backend:?}: the provider call span never arrived; got {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
        let call = &spans[call];
        assert_eq!(
            call.name,
            "GET {project}/_apis/wit/workitemtypes/{kind}/states"
        );
        assert_eq!(attr(call, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(
            attr(call, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(attr(call, "integration_id"), Some(ado.to_string()));

        let chain = ancestors(call, &by_id);
        let names: Vec<&str> = chain.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "GET {project}/_apis/wit/workitemtypes/{kind}/states",
                "job sync_status_inbound",
                "job process_webhook",
                "POST /extensions/vsts/issue-updated/",
            ],
            "{backend:?}: the provider call does not descend from the webhook"
        );
        let (inbound, webhook_job, request) = (chain[1], chain[2], chain[3]);
        assert!(
            chain.iter().all(|s| s.trace_id == call.trace_id),
            "{backend:?}: more than one trace"
        );
        assert!(
            request.parent_span_id.is_empty(),
            "the request span is the root"
        );
        assert_eq!(attr(request, "request_id"), Some(request_id));
        assert_eq!(attr(webhook_job, "job_id"), Some(job_id));
        assert_eq!(attr(webhook_job, "attempt").as_deref(), Some("1"));
        assert_eq!(attr(webhook_job, "outcome").as_deref(), Some("done"));
        assert_eq!(attr(webhook_job, "integration_id"), Some(ado.to_string()));
        assert_eq!(attr(inbound, "outcome").as_deref(), Some("done"));
        assert_eq!(attr(inbound, "job").as_deref(), Some("sync_status_inbound"));
        // The stored traceparent names the request span of this trace.
        assert_eq!(
            traceparent,
            format!("00-{}-{}-01", hex(&request.trace_id), hex(&request.span_id))
        );
        // No span names the provider's address: URLs may carry tokens.
        let base = provider.uri();
        for s in &chain {
            for a in &s.attributes {
                let v = format!("{:?}", a.value);
                assert!(!v.contains(&base), "span {} shows a URL: {v}", s.name);
            }
        }
        drop(workers);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
