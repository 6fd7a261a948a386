//! How the connector reaches the service: a storage connection string (SAS, or an account key
//! turned into an account SAS), or an account URL with an Entra ID credential; and queue clients
//! made from either.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::Url;
use azure_core::http::{RetryOptions, Transport};
use azure_storage_queue::{QueueClient, QueueClientOptions};

/// Azurite's well-known development account.
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_QUEUE_ENDPOINT: &str = "http://127.0.0.1:10001/devstoreaccount1";

/// How long a generated SAS is valid, and when a client is remade with a fresh one.
const SAS_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const SAS_RENEW_AFTER: Duration = Duration::from_secs(12 * 3600);
/// The deadline of a call when none is given (`request_timeout_ms`'s default).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Client options with a deadline on every call: the SDK's own HTTP client waits 60 s per read
/// and retries several times, so a service that accepts the connection and never answers would
/// hold a call for minutes. The SDK's retries are off (their clock starts only after the first
/// attempt, so they would double the deadline): the pipeline retries a failed call itself.
fn options_within(timeout: Duration) -> anyhow::Result<QueueClientOptions> {
    let http = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("azure_queue: HTTP client")?;
    let mut options = QueueClientOptions::default();
    options.client_options.transport = Some(Transport::new(Arc::new(http)));
    options.client_options.retry = RetryOptions::none();
    Ok(options)
}

/// The parts of a connection string a queue client needs.
#[derive(Clone)]
pub struct ConnectionString {
    account: String,
    endpoint: String,
    auth: Auth,
}

#[derive(Clone)]
enum Auth {
    Key(Secret),
    Sas(Secret),
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionString")
            .field("account", &self.account)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl ConnectionString {
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut parts = std::collections::HashMap::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                bail!("`{part}` is not Key=Value");
            };
            parts.insert(k.to_ascii_lowercase(), v.to_owned());
        }
        if parts
            .get("usedevelopmentstorage")
            .is_some_and(|v| v == "true")
        {
            return Ok(ConnectionString {
                account: DEV_ACCOUNT.into(),
                endpoint: DEV_QUEUE_ENDPOINT.into(),
                auth: Auth::Key(Secret::new(DEV_KEY)),
            });
        }
        let account = parts.get("accountname").cloned().unwrap_or_default();
        let endpoint = match (parts.get("queueendpoint"), parts.get("endpointsuffix")) {
            (Some(e), _) => e.trim_end_matches('/').to_owned(),
            (None, suffix) if !account.is_empty() => {
                let protocol = parts
                    .get("defaultendpointsprotocol")
                    .map_or("https", String::as_str);
                let suffix = suffix.map_or("core.windows.net", String::as_str);
                format!("{protocol}://{account}.queue.{suffix}")
            }
            _ => bail!("has neither QueueEndpoint nor AccountName"),
        };
        let auth = match (parts.get("accountkey"), parts.get("sharedaccesssignature")) {
            (Some(_), _) if account.is_empty() => bail!("AccountKey needs AccountName"),
            (Some(key), _) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(key)
                    .map_err(|_| anyhow::anyhow!("AccountKey is not base64"))?;
                Auth::Key(Secret::new(key.clone()))
            }
            (None, Some(sas)) => Auth::Sas(Secret::new(sas.trim_start_matches('?').to_owned())),
            (None, None) => bail!("has neither AccountKey nor SharedAccessSignature"),
        };
        Url::parse(&endpoint)
            .with_context(|| format!("queue endpoint `{endpoint}` is not a URL"))?;
        Ok(ConnectionString {
            account,
            endpoint,
            auth,
        })
    }

    /// A client for `queue`, authorised by SAS (the given one, or an account SAS signed now).
    pub fn queue_client(&self, queue: &str) -> anyhow::Result<QueueClient> {
        self.queue_client_within(queue, DEFAULT_REQUEST_TIMEOUT)
    }

    /// A client for `queue` whose calls give up after `timeout`.
    pub fn queue_client_within(
        &self,
        queue: &str,
        timeout: Duration,
    ) -> anyhow::Result<QueueClient> {
        let sas = match &self.auth {
            Auth::Sas(sas) => sas.secret().to_owned(),
            Auth::Key(key) => self.account_sas(key)?,
        };
        let url = Url::parse(&format!("{}/{queue}?{sas}", self.endpoint))
            .with_context(|| format!("queue URL for `{queue}`"))?;
        QueueClient::new(url, None, Some(options_within(timeout)?))
            .with_context(|| format!("client for queue `{queue}`"))
    }

    /// An account SAS for the queue service (read, add, update, process, delete, create, list),
    /// valid for [`SAS_LIFETIME`]; see "Create an account SAS" in the Azure Storage docs.
    fn account_sas(&self, key: &Secret) -> anyhow::Result<String> {
        const VERSION: &str = "2021-06-08";
        let now = time::OffsetDateTime::now_utc().replace_nanosecond(0)?;
        let fmt = time::format_description::well_known::Rfc3339;
        let start = (now - time::Duration::minutes(5)).format(&fmt)?;
        let expiry = (now + SAS_LIFETIME).format(&fmt)?;
        let (permissions, services, resource_types) = ("raupdcl", "q", "sco");
        let to_sign = format!(
            "{}\n{permissions}\n{services}\n{resource_types}\n{start}\n{expiry}\n\n\n{VERSION}\n\n",
            self.account
        );
        let sig =
            azure_core::hmac::hmac_sha256(&to_sign, key).context("signing the account SAS")?;
        let mut url = Url::parse("http://sas/").expect("static URL");
        url.query_pairs_mut()
            .append_pair("sv", VERSION)
            .append_pair("ss", services)
            .append_pair("srt", resource_types)
            .append_pair("sp", permissions)
            .append_pair("st", &start)
            .append_pair("se", &expiry)
            .append_pair("sig", &sig);
        Ok(url.query().unwrap_or_default().to_owned())
    }
}

/// What authorises the connector's requests.
#[derive(Clone)]
pub enum Access {
    /// A connection string: a SAS as given, or an account SAS signed from the key.
    Connection(ConnectionString),
    /// Entra ID bearer tokens for the queue service at `account_url` (HTTPS only).
    Token {
        account_url: Url,
        credential: Arc<dyn TokenCredential>,
    },
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Connection(c) => c.fmt(f),
            Access::Token { account_url, .. } => f
                .debug_struct("Token")
                .field("account_url", &account_url.as_str())
                .finish_non_exhaustive(),
        }
    }
}

/// `account_url` as a base URL: HTTPS (bearer tokens never travel in clear), no query.
pub fn parse_account_url(s: &str) -> anyhow::Result<Url> {
    let url = Url::parse(s).with_context(|| format!("`{s}` is not a URL"))?;
    if url.scheme() != "https" {
        bail!("must be an https:// URL (Entra ID tokens are sent only over TLS)");
    }
    if url.cannot_be_a_base() || url.query().is_some() || url.host_str().is_none() {
        bail!("must be the queue service URL, like https://<account>.queue.core.windows.net/");
    }
    Ok(url)
}

impl Access {
    /// From the connector's settings; `validate` has checked that exactly one form is given.
    pub fn from_settings(
        connection_string: Option<&str>,
        account_url: Option<&str>,
        credential: Option<&super::CredentialConfig>,
    ) -> anyhow::Result<Self> {
        match (connection_string, account_url, credential) {
            (Some(c), None, None) => Ok(Access::Connection(
                ConnectionString::parse(c).context("connection_string")?,
            )),
            (None, Some(url), Some(credential)) => Ok(Access::Token {
                account_url: parse_account_url(url).context("account_url")?,
                credential: credential.build()?,
            }),
            _ => bail!("give connection_string, or account_url with credential"),
        }
    }

    /// A client for `queue` whose calls give up after `timeout`.
    pub fn queue_client(&self, queue: &str, timeout: Duration) -> anyhow::Result<QueueClient> {
        match self {
            Access::Connection(c) => c.queue_client_within(queue, timeout),
            Access::Token {
                account_url,
                credential,
            } => {
                let url = Url::parse(&format!(
                    "{}/{queue}",
                    account_url.as_str().trim_end_matches('/')
                ))
                .with_context(|| format!("queue URL for `{queue}`"))?;
                QueueClient::new(
                    url,
                    Some(credential.clone()),
                    Some(options_within(timeout)?),
                )
                .with_context(|| format!("client for queue `{queue}`"))
            }
        }
    }

    /// A generated SAS expires: the client must be remade now and then.
    fn renews(&self) -> bool {
        matches!(
            self,
            Access::Connection(ConnectionString {
                auth: Auth::Key(_),
                ..
            })
        )
    }
}

/// A queue client that is remade before its generated SAS expires (token clients renew their
/// tokens themselves).
pub struct RenewingClient {
    connection: Access,
    queue: String,
    timeout: Duration,
    current: std::sync::Mutex<(Arc<QueueClient>, Instant)>,
}

impl RenewingClient {
    pub fn new(connection: Access, queue: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = Arc::new(connection.queue_client(queue, timeout)?);
        Ok(RenewingClient {
            connection,
            queue: queue.to_owned(),
            timeout,
            current: std::sync::Mutex::new((client, Instant::now())),
        })
    }

    pub fn get(&self) -> anyhow::Result<Arc<QueueClient>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if self.connection.renews() && current.1.elapsed() > SAS_RENEW_AFTER {
            *current = (
                Arc::new(self.connection.queue_client(&self.queue, self.timeout)?),
                Instant::now(),
            );
        }
        Ok(current.0.clone())
    }

    pub fn queue(&self) -> &str {
        &self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let dev = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(dev.endpoint, DEV_QUEUE_ENDPOINT);
        let cloud =
            ConnectionString::parse("DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=a2V5;EndpointSuffix=core.windows.net").unwrap();
        assert_eq!(cloud.endpoint, "https://acme.queue.core.windows.net");
        let sas = ConnectionString::parse(
            "QueueEndpoint=https://acme.queue.core.windows.net/;SharedAccessSignature=sv=2021&sig=x",
        )
        .unwrap();
        assert!(matches!(sas.auth, Auth::Sas(_)));
        assert_eq!(sas.endpoint, "https://acme.queue.core.windows.net");
        for bad in [
            "AccountName=acme",
            "nonsense",
            "AccountName=a;AccountKey=@@@",
        ] {
            assert!(ConnectionString::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn account_urls_are_https_service_urls() {
        assert!(parse_account_url("https://acme.queue.core.windows.net/").is_ok());
        assert!(parse_account_url("https://127.0.0.1:10011/devstoreaccount1").is_ok());
        for bad in [
            "http://acme.queue.core.windows.net/",
            "https://acme.queue.core.windows.net/?sv=x",
            "acme",
        ] {
            assert!(parse_account_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_debug_form_hides_the_key() {
        let c = ConnectionString::parse("UseDevelopmentStorage=true").unwrap();
        assert!(!format!("{c:?}").contains(DEV_KEY));
    }
}
