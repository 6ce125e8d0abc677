//! Remote mode: with `--server URL` (`WEFT_SERVER_URL`) and `--token`
//! (`WEFT_TOKEN`), the commands that read and steer runs (`submit`,
//! `status`, `list`, `watch`, `logs`, `explain`, `cancel`, `retry`,
//! `validate`, `workers`) talk to a `weft server` over HTTP instead of to
//! the database — the user needs no database credentials. They print what
//! they print in direct mode: the API answers with the store's own types
//! (the one query layer), deserialized here and shown by the same code.
//!
//! The commands only an operator runs next to the database (`migrate`,
//! `audit`, `prune`, `executor`, `worker`, `server`, `token`, `dev`) have
//! no `--server` flag and ignore `WEFT_SERVER_URL`.
//!
//! Errors: a problem (`application/problem+json`) is shown by its
//! `detail`; 401 and 403 say what to do (set `WEFT_TOKEN`; a token with
//! role X); a server that cannot be reached is one line naming its URL.

use std::fmt;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use weft_common::RunRef;

/// Where the server is, for the commands that can use one.
#[derive(Debug, Clone, Args)]
pub(crate) struct RemoteArgs {
    /// Talk to this `weft server` (e.g. `http://127.0.0.1:8080`) instead
    /// of the database: no database credentials needed.
    #[arg(long = "server", env = "WEFT_SERVER_URL", value_name = "URL")]
    pub(crate) server: Option<String>,
    /// The API token to present to `--server` (from `weft token create`);
    /// never printed.
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
}

impl RemoteArgs {
    /// A client when a server was given (an empty one counts as none).
    ///
    /// # Errors
    /// A URL that is not `http://…` (there is no TLS in this build).
    pub(crate) fn client(&self) -> anyhow::Result<Option<Client>> {
        let Some(url) = self
            .server
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        Client::new(url, self.token.as_deref()).map(Some)
    }
}

/// How long one request may take (the server bounds its own at 30 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP client of one server.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// For event streams, which last as long as the run: no overall
    /// timeout, only on connecting.
    streams: reqwest::Client,
}

/// A problem (RFC 9457) as the server sends it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Problem {
    /// The HTTP status.
    pub(crate) status: u16,
    /// What is wrong.
    pub(crate) detail: String,
    /// For an invalid workflow: each problem at its place.
    #[serde(default)]
    pub(crate) diagnostics: Vec<weft_server::problem::Diagnostic>,
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum RemoteError {
    /// No answer from the server.
    Unreachable {
        /// Its URL.
        url: String,
        /// Why, in a few words.
        why: String,
    },
    /// The server answered with a problem.
    Problem {
        /// The problem.
        problem: Problem,
        /// Whether a token was sent (for the 401 advice).
        had_token: bool,
        /// The server, for messages.
        url: String,
    },
    /// An answer that is not what the API promises.
    Unexpected(String),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { url, why } => write!(
                f,
                "cannot reach the Weft server at {url} ({why}); is `weft server` running there? (--server / WEFT_SERVER_URL)"
            ),
            Self::Problem {
                problem,
                had_token,
                url,
            } => match problem.status {
                401 if !had_token => write!(
                    f,
                    "the server at {url} needs a token: set WEFT_TOKEN (or --token) to one from `weft token create --role viewer|operator|admin`"
                ),
                401 => write!(
                    f,
                    "the server at {url} refused the token (unknown, revoked or expired): set WEFT_TOKEN (or --token) to a valid one from `weft token create`"
                ),
                403 => write!(
                    f,
                    "{}; the token given (WEFT_TOKEN / --token) has a lesser role",
                    problem.detail
                ),
                _ => f.write_str(&problem.detail),
            },
            Self::Unexpected(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for RemoteError {}

impl Client {
    fn new(url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        if url.starts_with("https://") {
            anyhow::bail!(
                "--server / WEFT_SERVER_URL `{url}`: this weft speaks plain http:// only (no TLS yet); reach the server over a loopback address or an SSH tunnel"
            );
        }
        if !url.starts_with("http://") {
            anyhow::bail!(
                "--server / WEFT_SERVER_URL `{url}` is not an http:// URL (e.g. http://127.0.0.1:8080)"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("weft-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
        let streams = reqwest::Client::builder()
            .connect_timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("weft-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client: {e}"))?;
        Ok(Self {
            streams,
            base: url.trim_end_matches('/').to_owned(),
            token: token
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            http,
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.authorized(self.http.request(method, format!("{}{path}", self.base)))
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Wake-ups from the server-sent events at `path` (`GET
    /// /api/v1/runs/{run}/events`): one `()` per event, coalesced (the
    /// reader reads the state itself). The channel closes when the stream
    /// ends or fails — the reader then polls, as it would against a server
    /// without streams.
    pub(crate) fn wake_on_events(&self, path: &str) -> tokio::sync::mpsc::Receiver<()> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let request = self.authorized(
            self.streams
                .get(format!("{}{path}", self.base))
                .header(reqwest::header::ACCEPT, "text/event-stream"),
        );
        tokio::spawn(async move {
            let Ok(mut response) = request.send().await else {
                return;
            };
            if !response.status().is_success() {
                return;
            }
            let mut pending = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                pending.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
                // An event ends at a blank line; keep-alive comments
                // (`:` lines) wake nobody.
                while let Some(end) = pending.find("\n\n") {
                    let event: String = pending.drain(..end + 2).collect();
                    if event
                        .lines()
                        .any(|l| l.starts_with("event:") || l.starts_with("data:"))
                    {
                        if tx.is_closed() {
                            return;
                        }
                        let _ = tx.try_send(());
                    }
                }
            }
        });
        rx
    }

    /// `GET path?query` → `T`.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, RemoteError> {
        let (_, value) = self
            .send(self.request(Method::GET, path).query(query))
            .await?;
        Ok(value)
    }

    /// `POST path` with a JSON body → the status and `T`.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(StatusCode, T), RemoteError> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<(StatusCode, T), RemoteError> {
        let response = request.send().await.map_err(|e| RemoteError::Unreachable {
            url: self.base.clone(),
            why: why(&e),
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RemoteError::Unreachable {
                url: self.base.clone(),
                why: why(&e),
            })?;
        if !status.is_success() {
            let problem = serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| {
                let body = String::from_utf8_lossy(&bytes);
                let body = body.trim();
                Problem {
                    status: status.as_u16(),
                    detail: if body.is_empty() {
                        format!("the server at {} answered {status}", self.base)
                    } else {
                        format!("the server at {} answered {status}: {body}", self.base)
                    },
                    diagnostics: Vec::new(),
                }
            });
            return Err(RemoteError::Problem {
                problem,
                had_token: self.token.is_some(),
                url: self.base.clone(),
            });
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            RemoteError::Unexpected(format!(
                "the server at {} answered what this weft does not understand ({e}); are the two the same version?",
                self.base
            ))
        })?;
        Ok((status, value))
    }
}

/// What went wrong on the wire, in a few words (reqwest's own message
/// names the whole URL and nests its causes).
fn why(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s", REQUEST_TIMEOUT.as_secs());
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut deepest = e.to_string();
    while let Some(s) = source {
        deepest = s.to_string();
        source = s.source();
    }
    if e.is_connect() {
        return format!("connection failed: {deepest}");
    }
    deepest
}

/// The path of a run: `/api/v1/runs/{run}` (an id, hex prefix or `last`
/// needs no escaping; a prefix is sent bare, not as it is displayed).
pub(crate) fn run_path(run: &RunRef) -> String {
    match run {
        RunRef::Id(id) => format!("/api/v1/runs/{id}"),
        RunRef::Prefix(prefix) => format!("/api/v1/runs/{prefix}"),
        RunRef::Last => "/api/v1/runs/last".to_owned(),
    }
}

/// Renders a problem's diagnostics as the validator shows a workflow's:
/// `[file:line:column] message`, its hint, then a count. `file` is the
/// path the user gave (the server names the text it was sent
/// `workflow.yaml`).
pub(crate) fn render_diagnostics(
    diagnostics: &[weft_server::problem::Diagnostic],
    file: &str,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for d in diagnostics {
        let _ = writeln!(
            out,
            "  × {}{}\n   ╭─[{}:{}:{}]",
            if d.severity == "warning" {
                "warning: "
            } else {
                ""
            },
            d.message,
            file,
            d.line,
            d.column
        );
        if let Some(hint) = &d.hint {
            let _ = writeln!(out, "  help: {hint}");
        }
        out.push('\n');
    }
    let n = diagnostics.len();
    let _ = writeln!(out, "{file}: {n} problem{}", if n == 1 { "" } else { "s" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_url_must_be_http() {
        let err = Client::new("127.0.0.1:8080", None).unwrap_err().to_string();
        assert!(err.contains("not an http:// URL"), "{err}");
        let c = Client::new("http://127.0.0.1:8080/", Some(" ")).unwrap();
        assert_eq!(c.base, "http://127.0.0.1:8080");
        assert!(c.token.is_none());
    }

    #[test]
    fn a_prefix_is_sent_bare() {
        let run: RunRef = "01a2308b3e97".parse().unwrap();
        assert_eq!(run_path(&run), "/api/v1/runs/01a2308b3e97");
        assert_eq!(run_path(&RunRef::Last), "/api/v1/runs/last");
    }

    #[test]
    fn auth_problems_say_what_to_do() {
        let problem = |status| RemoteError::Problem {
            problem: Problem {
                status,
                detail: "this needs a token with the operator role or higher".into(),
                diagnostics: Vec::new(),
            },
            had_token: status != 401,
            url: "http://h:1".into(),
        };
        assert!(problem(401).to_string().contains("set WEFT_TOKEN"));
        assert!(problem(403).to_string().contains("operator role"));
    }
}
