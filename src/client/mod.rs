//! The typed client of the daemon's API, over its Unix socket or, for a remote daemon, over TLS
//! (`https://HOST:PORT`). The CLI and the console both use it, so they say and see exactly the
//! same things whichever way they reach the daemon. It never decides anything itself.
//! It sends a token only to a socket it can trust (`fs_trust::check_token_socket`), or over TLS
//! to the daemon whose certificate the context trusts (`tls`), and never to a remote daemon in
//! the clear.

pub mod agent;
mod endpoint;
mod follow;

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

pub use endpoint::{Address, Endpoint};
pub use follow::{EventStream, RunStream};

use crate::model::wire::*;
use crate::model::{Event, GrantId, RequestId, Run, RunId, TokenId};
use crate::tls::Trust;

/// How long an ordinary call may take. The event stream has no such limit.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the zsa daemon at {socket}: {detail}\n{}", unreachable_hint(.socket))]
    Unreachable { socket: String, detail: String },
    #[error("{message}")]
    Refused { status: u16, code: String, message: String },
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    /// The socket is not one a token may be sent to; nothing was sent.
    #[error("{0}")]
    UntrustedSocket(String),
    /// A remote daemon's certificate is not the one trusted (a changed pin above all); nothing was sent.
    #[error("{0}")]
    UntrustedCertificate(String),
    /// The client cannot talk to this daemon as set up: a remote one with no token or no trust.
    #[error("{0}")]
    Setup(String),
    /// An approval that must be signed could not be: no agent, no listed key in it, or it
    /// refused. Nothing was sent.
    #[error("{0}")]
    Signing(#[from] agent::AgentError),
}

/// What to do about a daemon that does not answer, by where it was looked for.
fn unreachable_hint(at: &str) -> &'static str {
    if at.starts_with("https://") {
        "check the address, and that the daemon listens there (zsa daemon --listen HOST:PORT)"
    } else {
        "start one with: zsa daemon --policy FILE (or point --socket / ZSA_SOCKET at a running one)"
    }
}

impl ClientError {
    pub fn code(&self) -> &str {
        match self {
            Self::Unreachable { .. } => "unreachable",
            Self::Refused { code, .. } => code,
            Self::Protocol(_) => "protocol",
            Self::UntrustedSocket(_) => "untrusted_socket",
            Self::UntrustedCertificate(_) => "untrusted_certificate",
            Self::Setup(_) => "client_setup",
            Self::Signing(_) => "not_signed",
        }
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    /// The base of every URL: `http://zsa` over the socket, `https://HOST:PORT` over TLS.
    base: String,
    token: Option<String>,
}

/// The query of `GET /v1/audit`, as the client sends it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail: Option<u32>,
}

impl Client {
    /// A client of the daemon on this Unix socket.
    pub fn new(socket: &Path, token: Option<String>) -> Result<Client, ClientError> {
        Self::connect(&Endpoint::unix(socket), token)
    }

    /// A client of the daemon at `endpoint`. A remote daemon knows people only by their token and
    /// is trusted only as the endpoint says: without either nothing is sent, and the error says
    /// how to set it up.
    pub fn connect(endpoint: &Endpoint, token: Option<String>) -> Result<Client, ClientError> {
        let token = token.filter(|t| !t.is_empty());
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // The daemon closes a kept-alive connection after 10 s without a request; let go of
            // it first, so a call never goes out on a connection the daemon is closing.
            .pool_idle_timeout(Duration::from_secs(5));
        let (builder, base) = match &endpoint.address {
            Address::Unix(socket) => (builder.unix_socket(socket.as_path()), "http://zsa".to_string()),
            remote @ Address::Https { host, port } => {
                if token.is_none() {
                    return Err(ClientError::Setup(format!(
                        "{remote} is a remote daemon: it knows you only by a token, and none is set up for it. \
                         Run: zsa login {remote} (or give one in ZSA_TOKEN or with --token-stdin)"
                    )));
                }
                let builder = match &endpoint.trust {
                    None => {
                        return Err(ClientError::Setup(format!(
                            "no certificate is trusted for {remote} yet, so nothing is sent there. Run: zsa login {remote}"
                        )));
                    }
                    Some(Trust::Pin(pin)) => {
                        let config = crate::tls::pinned_config(&format!("{host}:{port}"), pin).map_err(ClientError::Setup)?;
                        builder.tls_backend_preconfigured(config)
                    }
                    Some(Trust::Ca(file)) => builder.tls_certs_only(ca_certificates(file)?),
                    Some(Trust::SystemRoots) => builder,
                };
                (builder.https_only(true), format!("https://{host}:{port}"))
            }
        };
        let http = builder.build().map_err(|e| ClientError::Setup(format!("cannot set up the client: {}", crate::tls::innermost(&e))))?;
        Ok(Client { http, endpoint: endpoint.clone(), base, token })
    }

    /// Where this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn call(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            rb = rb.bearer_auth(token);
        }
        rb
    }

    /// Why a request could not be sent: a certificate not trusted, a daemon not answering, or
    /// something else on the way.
    fn failed(&self, e: &reqwest::Error) -> ClientError {
        if let Some(rustls::Error::InvalidCertificate(problem)) = find_cause::<rustls::Error>(e) {
            if let rustls::CertificateError::Other(rustls::OtherError(inner)) = problem
                && let Some(changed) = inner.downcast_ref::<crate::tls::CertificateChanged>()
            {
                return ClientError::UntrustedCertificate(changed.to_string());
            }
            let address = &self.endpoint.address;
            let trust = self.endpoint.trust.as_ref().map(|t| t.to_string()).unwrap_or_default();
            return ClientError::UntrustedCertificate(format!(
                "the certificate of {} is not trusted ({problem}; this context trusts {trust}); nothing was sent. \
                 Check the address; if the daemon's certificate was replaced, run zsa login {address} again",
                address.host_port().unwrap_or_default()
            ));
        }
        if e.is_connect() || e.is_timeout() {
            return ClientError::Unreachable { socket: self.endpoint.describe(), detail: crate::tls::innermost(e) };
        }
        ClientError::Protocol(e.to_string())
    }

    /// Sends a request. A connection that fails means the daemon is unreachable; an answer that
    /// is not a success becomes the daemon's refusal. Every call goes through here.
    async fn open(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        if let (Some(socket), Some(_)) = (self.endpoint.address.socket(), &self.token) {
            // Checked on every call, not once: the daemon may be restarted between calls.
            let there = crate::fs_trust::check_token_socket(socket).map_err(|e| ClientError::UntrustedSocket(e.0))?;
            if !there {
                let socket = socket.display().to_string();
                return Err(ClientError::Unreachable { socket, detail: "there is no socket there".into() });
            }
        }
        let response = rb.send().await.map_err(|e| self.failed(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => ClientError::Refused { status: status.as_u16(), code: b.error.code, message: b.error.message },
            Err(_) => ClientError::Protocol(format!("{status} without an error body")),
        })
    }

    /// An ordinary call: a JSON answer within `CALL_TIMEOUT`.
    async fn send<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let response = self.open(rb.timeout(CALL_TIMEOUT)).await?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ClientError::Protocol(e.to_string()))?;
        let body: &[u8] = if status == StatusCode::NO_CONTENT || bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(body).map_err(|e| ClientError::Protocol(format!("{e} in a {status} answer")))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.call(Method::GET, path)).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(self.call(Method::POST, path).json(body)).await
    }

    /// `GET /v1/ready`, whose 503 is an answer (what is wrong), not a refusal. No token is sent:
    /// anyone may ask.
    pub async fn ready(&self) -> Result<crate::model::wire::Readiness, ClientError> {
        let rb = self.http.request(Method::GET, format!("{}/v1/ready", self.base)).timeout(CALL_TIMEOUT);
        let response = rb.send().await.map_err(|e| self.failed(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ClientError::Protocol(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("{e} in a {status} answer")))
    }

    /// `GET /v1/admin/backup`: the store's copy, as a body to stream (no timeout: it may be big).
    pub async fn backup(&self) -> Result<reqwest::Response, ClientError> {
        self.open(self.call(Method::GET, "/v1/admin/backup")).await
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self.open(self.call(Method::GET, "/metrics").timeout(CALL_TIMEOUT)).await?;
        response.text().await.map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get("/v1/whoami").await
    }

    pub async fn tasks(&self) -> Result<Vec<TaskView>, ClientError> {
        self.get("/v1/tasks").await
    }

    pub async fn request(&self, new: &NewRequest) -> Result<Outcome, ClientError> {
        self.post("/v1/requests", new).await
    }

    pub async fn requests(&self, all: bool) -> Result<Vec<RequestView>, ClientError> {
        self.get(if all { "/v1/requests?state=all" } else { "/v1/requests?state=pending" }).await
    }

    /// What is live: requests waiting for a decision, and those given an active grant.
    pub async fn live_requests(&self) -> Result<Vec<RequestView>, ClientError> {
        self.get("/v1/requests?state=live").await
    }

    /// The caller's own requests older than `before` (from the newest when `None`), newest
    /// first, at most `limit`.
    pub async fn my_requests(&self, before: Option<RequestId>, limit: u32) -> Result<Vec<RequestView>, ClientError> {
        match before {
            Some(id) => self.get(&format!("/v1/requests?state=mine&before={id}&limit={limit}")).await,
            None => self.get(&format!("/v1/requests?state=mine&limit={limit}")).await,
        }
    }

    pub async fn show_request(&self, id: RequestId) -> Result<Outcome, ClientError> {
        self.get(&format!("/v1/requests/{id}")).await
    }

    /// Approves `id`; where the daemon answers that the approval counts only signed (the task's
    /// `signed_approvals`), signs it through the SSH agent with a key the policy lists for the
    /// caller, over the request as the daemon holds it now, and sends it again. An ordinary
    /// approval costs one call, as before.
    pub async fn approve(&self, id: RequestId, comment: Option<String>) -> Result<Outcome, ClientError> {
        let unsigned = ApproveBody { comment, signature: None };
        match self.send_approval(id, &unsigned).await {
            Err(ClientError::Refused { code, .. }) if code == "signature_required" => {}
            answer => return answer,
        }
        let view = self.show_request(id).await?.request;
        let Some(listed) = view.actions.signing_keys(RowAction::Approve).map(<[String]>::to_vec) else {
            // Nothing to sign with by the daemon's own account of it: its refusal says why.
            return self.send_approval(id, &unsigned).await;
        };
        let me = self.whoami().await?.user;
        let request = view.request;
        let socket = agent::socket_from_env();
        let signed =
            tokio::task::spawn_blocking(move || agent::sign_approval(socket.as_deref(), &request, &me, &listed, chrono::Utc::now()))
                .await
                .map_err(|e| ClientError::Protocol(format!("signing stopped: {e}")))??;
        self.send_approval(id, &ApproveBody { signature: Some(signed), ..unsigned }).await
    }

    /// Sends exactly this approval of `id`, signed or not, as a script that signs by itself would.
    pub async fn send_approval(&self, id: RequestId, body: &ApproveBody) -> Result<Outcome, ClientError> {
        self.post(&format!("/v1/requests/{id}/approve"), body).await
    }

    pub async fn deny(&self, id: RequestId, comment: Option<String>) -> Result<Outcome, ClientError> {
        self.post(&format!("/v1/requests/{id}/deny"), &Comment { comment }).await
    }

    pub async fn cancel(&self, id: RequestId) -> Result<Outcome, ClientError> {
        self.post(&format!("/v1/requests/{id}/cancel"), &serde_json::json!({})).await
    }

    pub async fn grants(&self, all: bool) -> Result<Vec<GrantView>, ClientError> {
        self.get(if all { "/v1/grants?all=true" } else { "/v1/grants" }).await
    }

    /// Break-glass grants, live or ended, that nobody has reviewed yet.
    pub async fn grants_to_review(&self) -> Result<Vec<GrantView>, ClientError> {
        self.get("/v1/grants?review=needed").await
    }

    pub async fn show_grant(&self, id: GrantId) -> Result<GrantView, ClientError> {
        self.get(&format!("/v1/grants/{id}")).await
    }

    pub async fn revoke(&self, id: GrantId, reason: Option<String>) -> Result<GrantView, ClientError> {
        self.post(&format!("/v1/grants/{id}/revoke"), &Reason { reason }).await
    }

    /// Asks for grant `id` to run `by_secs` longer (its holder only).
    pub async fn extend(&self, id: GrantId, by_secs: u64, reason: Option<String>) -> Result<ExtendOutcome, ClientError> {
        self.post(&format!("/v1/grants/{id}/extend"), &ExtendBody { by_secs, reason }).await
    }

    pub async fn relinquish(&self, id: GrantId) -> Result<GrantView, ClientError> {
        self.post(&format!("/v1/grants/{id}/relinquish"), &serde_json::json!({})).await
    }

    pub async fn review(&self, id: GrantId, comment: Option<String>) -> Result<GrantView, ClientError> {
        self.post(&format!("/v1/grants/{id}/review"), &Comment { comment }).await
    }

    pub async fn check(&self, task: &str, user: Option<&str>) -> Result<CheckAnswer, ClientError> {
        #[derive(Serialize)]
        struct Q<'a> {
            task: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            user: Option<&'a str>,
        }
        self.send(self.call(Method::GET, "/v1/check").query(&Q { task, user })).await
    }

    /// One page of the audit log.
    pub async fn audit(&self, params: &AuditParams) -> Result<Vec<Event>, ClientError> {
        self.send(self.call(Method::GET, "/v1/audit").query(params)).await
    }

    pub async fn verify(&self) -> Result<VerifyReport, ClientError> {
        self.get("/v1/audit/verify").await
    }

    /// Up to `limit` events after `after`, exactly as stored (auditors).
    pub async fn raw_events(&self, after: u64, limit: u32) -> Result<Vec<crate::store::RawEvent>, ClientError> {
        self.get(&format!("/v1/audit/export?after={after}&limit={limit}")).await
    }

    pub async fn audit_key(&self) -> Result<crate::model::wire::AuditKey, ClientError> {
        self.get("/v1/audit/key").await
    }

    pub async fn checkpoint(&self) -> Result<crate::evidence::Checkpoint, ClientError> {
        self.post("/v1/audit/checkpoint", &serde_json::json!({})).await
    }

    pub async fn issue_token(&self, user: &str) -> Result<IssuedToken, ClientError> {
        self.issue_token_with(&IssueToken { user: user.to_string(), ..Default::default() }).await
    }

    /// A token with a lifetime (`ttl_secs`, `never_expires`) or scope of its own.
    pub async fn issue_token_with(&self, asked: &IssueToken) -> Result<IssuedToken, ClientError> {
        self.post("/v1/admin/tokens", asked).await
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        self.get("/v1/admin/tokens").await
    }

    pub async fn revoke_token(&self, id: TokenId) -> Result<(), ClientError> {
        self.post(&format!("/v1/admin/tokens/{id}/revoke"), &serde_json::json!({})).await
    }

    pub async fn disable(&self, user: &str, reason: Option<String>) -> Result<(), ClientError> {
        self.post(&format!("/v1/admin/users/{}/disable", path_segment(user)), &Reason { reason }).await
    }

    pub async fn enable(&self, user: &str) -> Result<(), ClientError> {
        self.post(&format!("/v1/admin/users/{}/enable", path_segment(user)), &serde_json::json!({})).await
    }

    pub async fn reload(&self) -> Result<PolicyLoad, ClientError> {
        self.post("/v1/admin/reload", &serde_json::json!({})).await
    }

    /// The outbox's deliveries (admins and auditors), or only the failed ones.
    pub async fn notices(&self, failed: bool) -> Result<Vec<NoticeView>, ClientError> {
        self.get(if failed { "/v1/notices?failed=true" } else { "/v1/notices" }).await
    }

    /// Puts a failed delivery back to be delivered again (admins).
    pub async fn retry_notice(&self, id: u64) -> Result<(), ClientError> {
        self.post(&format!("/v1/admin/notices/{id}/retry"), &serde_json::json!({})).await
    }

    /// Starts a task's command on the daemon; its output arrives as a stream of lines.
    pub async fn run(&self, req: &RunRequest) -> Result<RunStream, ClientError> {
        Ok(RunStream::new(self.open(self.call(Method::POST, "/v1/runs").json(req)).await?))
    }

    pub async fn show_run(&self, id: RunId) -> Result<Run, ClientError> {
        self.get(&format!("/v1/runs/{id}")).await
    }

    /// A finished run's transcript, as the daemon kept it.
    pub async fn transcript(&self, id: RunId) -> Result<Vec<u8>, ClientError> {
        let response = self.open(self.call(Method::GET, &format!("/v1/runs/{id}/transcript")).timeout(CALL_TIMEOUT)).await?;
        Ok(response.bytes().await.map_err(|e| ClientError::Protocol(e.to_string()))?.to_vec())
    }

    /// Opens the live event stream, resuming after `after` if given (else from now).
    pub async fn events(&self, after: Option<u64>) -> Result<EventStream, ClientError> {
        let mut rb = self.call(Method::GET, "/v1/events").header("accept", "text/event-stream");
        if let Some(after) = after {
            rb = rb.header("last-event-id", after.to_string());
        }
        Ok(EventStream::new(self.open(rb).await?))
    }
}

/// The certificates of a private CA, from the PEM file a context names. Whoever can write that
/// file decides which daemon the token goes to, so it is read under the config file's rules.
fn ca_certificates(file: &Path) -> Result<Vec<reqwest::Certificate>, ClientError> {
    use std::io::Read;
    let mut pem = Vec::new();
    crate::fs_trust::open_client_file(file, "the CA file")
        .map_err(|e| ClientError::Setup(e.0))?
        .take(1 << 20)
        .read_to_end(&mut pem)
        .map_err(|e| ClientError::Setup(format!("cannot read the CA file {}: {e}", file.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        ClientError::Setup(format!("{} holds no PEM certificate zsa can read: {}", file.display(), crate::tls::innermost(&e)))
    })?;
    if certs.is_empty() {
        return Err(ClientError::Setup(format!("{} holds no certificate (-----BEGIN CERTIFICATE-----)", file.display())));
    }
    Ok(certs)
}

/// The first cause of type `T` in an error's chain, looking inside I/O errors too (an
/// `io::Error` carries the TLS error as its payload, which `source` skips).
fn find_cause<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        let payload = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|p| p as &(dyn std::error::Error + 'static));
        at = payload.or_else(|| e.source());
    }
    None
}

/// User names are restricted to URL-safe characters by the daemon; anything else is escaped
/// so it cannot change the path, and the daemon then refuses it as an invalid name.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@') { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}
