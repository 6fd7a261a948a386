//! Entra ID for `azure_queue` (`account_url` + `credential`), against a second Azurite queue
//! service that checks bearer tokens: `--oauth basic` over HTTPS on 127.0.0.1:10011, started by
//! scripts/brokers.sh with the test CA's server certificate.
//!
//! The tokens come from a managed-identity endpoint served by this test on loopback, the App
//! Service way (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`). **It is a stand-in for Entra ID**, which
//! cannot be reached from here: it mints unsigned JWTs with an Entra issuer
//! (`https://sts.windows.net/<tenant>/`) and the requested resource as the audience, or Key
//! Vault's audience for the user-assigned client id `wrong-audience`. What is real around it:
//! `azure_identity`'s `ManagedIdentityCredential` finding the endpoint in the environment,
//! sending the secret header and caching the token; the SDK's bearer-token policy; TLS verified
//! against the test CA, trusted the way a user would (`SSL_CERT_FILE`, read by the
//! native-roots verifier of azure_core's reqwest/rustls); and Azurite's check of the token's
//! audience, issuer and expiry (not its signature).
//!
//! Independent checks (queue depths, what was written) use the account key over HTTPS, not the
//! code under test.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use sluice::connector::azure_queue::{
    AzureQueueSinkConfig, AzureQueueSourceConfig, ConnectionString, CredentialConfig,
};
use sluice::connector::{BuildContext, SinkFactory, SourceFactory};
use sluice_tests::azure::{queue_name, sink_config, source_config};
use sluice_tests::*;

/// The OAuth Azurite's queue service for the development account (path style).
const ACCOUNT_URL: &str = "https://127.0.0.1:10011/devstoreaccount1";
/// The same service through the account key, for checks that do not use the code under test.
const BY_KEY: &str = concat!(
    "DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;",
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;",
    "QueueEndpoint=https://127.0.0.1:10011/devstoreaccount1;"
);
const IDENTITY_SECRET: &str = "sluice-test-identity-header";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const WRONG_AUDIENCE: &str = "wrong-audience";

/// Tokens the stand-in endpoint issued, and requests it refused (no or wrong secret header).
static ISSUED: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);

fn broker_state() -> PathBuf {
    std::env::var_os("SLUICE_BROKER_STATE")
        .map_or_else(|| PathBuf::from("/var/tmp/sluice-brokers"), PathBuf::from)
}

/// Start the stand-in identity endpoint and point this process at it and at the test CA, once,
/// before any test here makes a client.
fn entra() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the identity endpoint");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream);
            }
        });
        let ca = broker_state().join("tls/ca.pem");
        assert!(
            ca.exists(),
            "{} (scripts/brokers.sh makes it)",
            ca.display()
        );
        #[allow(unsafe_code)]
        // SAFETY: every test in this binary calls `entra()` first and waits here until it
        // returns, so no thread of this process reads the environment while it changes.
        unsafe {
            std::env::set_var(
                "IDENTITY_ENDPOINT",
                format!("http://127.0.0.1:{port}/msi/token"),
            );
            std::env::set_var("IDENTITY_HEADER", IDENTITY_SECRET);
            std::env::set_var("SSL_CERT_FILE", &ca);
        }
    });
}

/// One request to the stand-in endpoint: App Service's managed identity protocol (2019-08-01).
fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    };
    let secret_ok = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("x-identity-header") && v.trim() == IDENTITY_SECRET
        })
    });
    let (status, body) = match param("resource") {
        Some(resource) if secret_ok && param("api-version").as_deref() == Some("2019-08-01") => {
            let client_id = param("client_id");
            let audience = if client_id.as_deref() == Some(WRONG_AUDIENCE) {
                "https://vault.azure.net".to_owned()
            } else {
                resource.clone()
            };
            let expires_on = unix_now() + 3600;
            ISSUED.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({
                "access_token": jwt(&audience, expires_on),
                "expires_on": expires_on.to_string(),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id.unwrap_or_else(|| "system-assigned".into()),
            });
            ("200 OK", body.to_string())
        }
        _ => {
            REFUSED.fetch_add(1, Ordering::SeqCst);
            (
                "400 Bad Request",
                r#"{"error":"invalid_request"}"#.to_owned(),
            )
        }
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An Entra-shaped access token (v1 issuer), not signed: Azurite's basic check does not verify
/// signatures.
fn jwt(audience: &str, expires_on: u64) -> String {
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = unix_now();
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(serde_json::json!({ "typ": "JWT", "alg": "RS256" })),
        b64(serde_json::json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{TENANT}/"),
            "tid": TENANT,
            "oid": "0c8b1bde-5d5f-4d4e-9a3e-2f4b8a2f9e11",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": expires_on,
        }))
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn managed_identity(client_id: Option<&str>) -> CredentialConfig {
    CredentialConfig::ManagedIdentity {
        client_id: client_id.map(str::to_owned),
        object_id: None,
        resource_id: None,
    }
}

fn token_source(queue: &str, credential: CredentialConfig) -> AzureQueueSourceConfig {
    let mut cfg = source_config(queue);
    cfg.connection_string = None;
    cfg.account_url = Some(ACCOUNT_URL.into());
    cfg.credential = Some(credential);
    cfg
}

fn token_sink(queue: &str, credential: CredentialConfig) -> AzureQueueSinkConfig {
    let mut cfg = sink_config(queue);
    cfg.connection_string = None;
    cfg.account_url = Some(ACCOUNT_URL.into());
    cfg.credential = Some(credential);
    cfg
}

fn ctx() -> BuildContext {
    BuildContext {
        pipeline: "azure-entra-test".into(),
        max_in_flight: 16,
        base_dir: repo_root(),
    }
}

fn by_key(queue: &str) -> azure_storage_queue::QueueClient {
    ConnectionString::parse(BY_KEY)
        .unwrap()
        .queue_client(queue)
        .unwrap()
}

async fn depth(queue: &str) -> usize {
    use azure_storage_queue::models::QueueClientGetPropertiesResultHeaders as _;
    by_key(queue)
        .get_properties(None)
        .await
        .expect("queue properties (Azurite with OAuth on 127.0.0.1:10011, scripts/brokers.sh)")
        .approximate_messages_count()
        .unwrap()
        .unwrap_or(0) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_identity_pipeline_sends_and_receives_through_azurite_with_oauth() {
    entra();
    let queue = queue_name("entra");
    let payloads: Vec<String> = (0..40).map(|i| format!("entra-{i}")).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();

    // memory → azure_queue sink (creates the queue with its token).
    let (input, input_q) = queue_with("entra-in", &refs);
    let mut sink = token_sink(&queue, managed_identity(None));
    sink.create = true;
    let (dead, dead_q) = memory_sink("entra-dead");
    let (p, _) = memory_pipeline(
        &input,
        30_000,
        Vec::new(),
        sink.build(&ctx()).expect("token sink"),
        dead.clone(),
        fast_delivery(16, 8, 3),
    );
    run_until_acked(p, &input_q, 40).await;
    assert_eq!(depth(&queue).await, 40, "all 40 written, read back by key");

    // azure_queue source → memory.
    let (out, out_q) = memory_sink("entra-out");
    let (p, stats) = test_pipeline(
        token_source(&queue, managed_identity(None))
            .build(&ctx())
            .expect("token source"),
        Vec::new(),
        out,
        dead,
        fast_delivery(16, 8, 3),
    );
    let running = start(p);
    wait_until("40 through the source", Duration::from_secs(60), || {
        stats.acked.load(Ordering::SeqCst) == 40
    })
    .await;
    running.stop().await;
    let mut got = sorted_payloads(&out_q.drain());
    let mut want = payloads.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "each payload once");
    assert!(dead_q.drain().is_empty(), "nothing dead-lettered");
    assert_eq!(depth(&queue).await, 0, "every message deleted on ack");
    assert!(
        ISSUED.load(Ordering::SeqCst) >= 1,
        "tokens came from the identity endpoint"
    );
    assert_eq!(REFUSED.load(Ordering::SeqCst), 0, "with the secret header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_refused_and_nothing_is_lost() {
    entra();
    let queue = queue_name("entra-aud");
    by_key(&queue).create(None).await.expect("create by key");
    for text in ["one", "two", "three"] {
        let message = azure_storage_queue::models::QueueMessage {
            message_text: Some(text.to_owned()),
        };
        by_key(&queue)
            .send_message(message.try_into().unwrap(), None)
            .await
            .unwrap();
    }
    let wrong = managed_identity(Some(WRONG_AUDIENCE));

    // The source: receiving fails with the service's refusal; the messages stay.
    let mut source = token_source(&queue, wrong.clone()).build(&ctx()).unwrap();
    let Err(err) = source.next_batch(8).await else {
        panic!("the token was accepted")
    };
    let text = format!("{err:#}");
    assert!(
        text.contains("403") && text.contains("Invalid token audience"),
        "Azurite's reason: {text}"
    );
    assert_eq!(depth(&queue).await, 3, "nothing received, nothing lost");

    // The sink: refused likewise.
    let sink = token_sink(&queue, wrong).build(&ctx()).unwrap();
    let one = sluice::message::Output {
        payload: bytes::Bytes::from_static(b"x"),
        key: None,
        headers: Vec::new(),
        route: None,
        timestamp_ms: None,
    };
    let Err(err) = sink.send(&[one]).await else {
        panic!("the token was accepted")
    };
    let text = format!("{err:#}");
    assert!(text.contains("Invalid token audience"), "{text}");

    // The sink in a pipeline: every write refused, so every delivery goes back to its source;
    // nothing is acknowledged, dead-lettered or written.
    let (input, input_q) = queue_with("entra-aud-in", &[b"a", b"b", b"c", b"d"]);
    let (dead, dead_q) = memory_sink("entra-aud-dead");
    let (p, stats) = memory_pipeline(
        &input,
        30_000,
        Vec::new(),
        sink,
        dead,
        fast_delivery(8, 8, 2),
    );
    let running = start(p);
    wait_until("the writes refused", Duration::from_secs(60), || {
        input_q.stats.nacked.load(Ordering::SeqCst) >= 4
    })
    .await;
    running.stop().await;
    assert!(stats.sink_errors.load(Ordering::SeqCst) >= 1);
    assert_eq!(input_q.stats.acked.load(Ordering::SeqCst), 0, "none acked");
    assert_eq!(
        input_q.outstanding(),
        4,
        "all four still owed by the source"
    );
    assert!(dead_q.drain().is_empty(), "nothing dead-lettered");
    assert_eq!(depth(&queue).await, 3, "nothing written");
}

fn errors(text: &str) -> Vec<String> {
    match sluice::config::parse(Path::new("pipelines/azure.yaml"), text, |_| None) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn validation_wants_exactly_one_of_connection_string_and_account_url() {
    let file = |source: &str, sink: &str| {
        format!("source: {source}\nsinks: {{ out: {sink} }}\ndead_letter: {{ type: drop }}\n")
    };
    let ok = file(
        "{ type: azure_queue, queue: q-in, account_url: 'https://acme.queue.core.windows.net/', credential: managed_identity }",
        "{ type: azure_queue, queue: q-out, account_url: 'https://acme.queue.core.windows.net/', credential: { type: managed_identity, client_id: 6f1c0e59-5d3c-4f7e-9f0a-2b7d9c1e4a10 } }",
    );
    assert_eq!(errors(&ok), Vec::<String>::new());
    let ok = file(
        "{ type: azure_queue, queue: q-in, account_url: 'https://acme.queue.core.windows.net/', credential: workload_identity }",
        "{ type: azure_queue, queue: q-out, account_url: 'https://acme.queue.core.windows.net/', credential: { type: developer_tools } }",
    );
    assert_eq!(errors(&ok), Vec::<String>::new());

    // Both, and neither.
    let bad = file(
        "{ type: azure_queue, queue: q-in, connection_string: UseDevelopmentStorage=true, account_url: 'https://acme.queue.core.windows.net/', credential: managed_identity }",
        "{ type: azure_queue, queue: q-out }",
    );
    assert_eq!(
        errors(&bad),
        vec![
            "pipelines/azure.yaml:1:90: source.account_url: cannot be combined with connection_string: give one of them",
            "pipelines/azure.yaml:2:15: sinks.out.connection_string: missing field (or give account_url with credential)",
        ]
    );

    // An account URL without a credential, over plain HTTP; a credential that does not exist;
    // two user-assigned identities at once; a credential beside a connection string.
    let bad = file(
        "{ type: azure_queue, queue: q-in, account_url: 'http://acme.queue.core.windows.net/' }",
        "{ type: azure_queue, queue: q-out, account_url: 'https://acme.queue.core.windows.net/', credential: password }",
    );
    assert_eq!(
        errors(&bad),
        vec![
            "pipelines/azure.yaml:1:9: source.credential: missing field: account_url needs managed_identity, workload_identity or developer_tools",
            "pipelines/azure.yaml:1:43: source.account_url: must be an https:// URL (Entra ID tokens are sent only over TLS)",
            "pipelines/azure.yaml:2:103: sinks.out.credential: unknown credential `password`, expected one of `managed_identity`, `workload_identity`, `developer_tools`",
        ]
    );
    let bad = file(
        "{ type: azure_queue, queue: q-in, account_url: 'https://acme.queue.core.windows.net/', credential: { type: managed_identity, client_id: a, object_id: b } }",
        "{ type: azure_queue, queue: q-out, connection_string: UseDevelopmentStorage=true, credential: developer_tools }",
    );
    assert_eq!(
        errors(&bad),
        vec![
            "pipelines/azure.yaml:1:148: source.credential.object_id: cannot be combined with client_id: one user-assigned identity",
            "pipelines/azure.yaml:2:97: sinks.out.credential: goes with account_url; a connection string carries its own authorisation",
        ]
    );
    let bad = file(
        "{ type: azure_queue, queue: q-in, account_url: 'https://acme.queue.core.windows.net/', credential: { type: workload_identity, tenant: t } }",
        "{ type: azure_queue, queue: q-out, account_url: 'https://acme.queue.core.windows.net/', credential: { client_id: a } }",
    );
    assert_eq!(
        errors(&bad),
        vec![
            "pipelines/azure.yaml:1:135: source.credential.tenant: unknown field, expected one of `client_id`, `tenant_id`, `token_file`",
            "pipelines/azure.yaml:2:115: sinks.out.credential.type: missing field",
        ]
    );
}
