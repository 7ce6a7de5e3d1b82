//! Typed REST client over reqwest, speaking the shared types of [`crate::api`].

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::api::{
    ApiInfo, ClusterView, DeleteRoomResponse, ErrorBody, Event, Health, HistoryResponse,
    ImportResponse, Metrics, PersistResponse, RestoreResponse, RoomInfo, RoomUser,
    SimulateAddResponse, SimulateRemoveResponse,
};

/// What went wrong talking to the server; the CLI maps each to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connection refused, DNS failure, timeout: the server was not reached.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// The server answered something that is not the expected JSON.
    #[error("{url} answered unexpected content: {reason}")]
    Protocol { url: String, reason: String },
}

/// A REST client for one server.
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A response body as received plus its parsed form, so `--json` can print exactly
/// what the server said.
pub struct Answer<T> {
    pub value: T,
    pub raw: serde_json::Value,
}

impl RestClient {
    /// `base` is the server's root, e.g. `http://127.0.0.1:8001`.
    pub fn new(base: &str, timeout: Duration, token: Option<String>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| ClientError::Unreachable {
                url: base.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<Answer<T>, ClientError> {
        let (url, body) = self.request(method, path, None).await?;
        parse(url, &body)
    }

    /// Sends a request (with `body`, if any) and returns the URL and the body of a
    /// successful answer; an error status becomes `ClientError::Status` with the
    /// server's reason.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(String, bytes::Bytes), ClientError> {
        let url = format!("{}/api{}", self.base, path);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| ClientError::Unreachable {
                url: url.clone(),
                reason: error_chain(&error),
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| ClientError::Unreachable {
                url: url.clone(),
                reason: error_chain(&error),
            })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|body| body.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_owned());
            // An empty body (a proxy's bare 404) still deserves words.
            let message = if message.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_owned()
            } else {
                message
            };
            return Err(ClientError::Status {
                url,
                status: status.as_u16(),
                message,
            });
        }
        Ok((url, body))
    }

    pub async fn info(&self) -> Result<Answer<ApiInfo>, ClientError> {
        self.call(reqwest::Method::GET, "/").await
    }

    pub async fn health(&self) -> Result<Answer<Health>, ClientError> {
        self.call(reqwest::Method::GET, "/health").await
    }

    pub async fn cluster(&self) -> Result<Answer<ClusterView>, ClientError> {
        self.call(reqwest::Method::GET, "/cluster").await
    }

    pub async fn metrics(&self) -> Result<Answer<Metrics>, ClientError> {
        self.call(reqwest::Method::GET, "/metrics").await
    }

    pub async fn events(&self, limit: Option<u32>) -> Result<Answer<Vec<Event>>, ClientError> {
        let path = match limit {
            Some(limit) => format!("/metrics/events?limit={limit}"),
            None => "/metrics/events".to_owned(),
        };
        self.call(reqwest::Method::GET, &path).await
    }

    pub async fn rooms(&self) -> Result<Answer<Vec<RoomInfo>>, ClientError> {
        self.call(reqwest::Method::GET, "/rooms").await
    }

    pub async fn room(&self, room_id: &str) -> Result<Answer<RoomInfo>, ClientError> {
        self.call(reqwest::Method::GET, &format!("/rooms/{}", encode(room_id)))
            .await
    }

    pub async fn room_users(&self, room_id: &str) -> Result<Answer<Vec<RoomUser>>, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/rooms/{}/users", encode(room_id)),
        )
        .await
    }

    pub async fn delete_room(
        &self,
        room_id: &str,
    ) -> Result<Answer<DeleteRoomResponse>, ClientError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/rooms/{}", encode(room_id)),
        )
        .await
    }

    /// The room's document in `format` (`yjs`, `text` or `json`), as the server sent
    /// it; `version` is a query naming an old one (`seq=N` or `at=TIME`), if any.
    pub async fn document(
        &self,
        room_id: &str,
        format: &str,
        version: Option<&str>,
    ) -> Result<bytes::Bytes, ClientError> {
        let mut path = format!("/rooms/{}/document?format={format}", encode(room_id));
        if let Some(version) = version {
            path.push('&');
            path.push_str(version);
        }
        let (_, body) = self.request(reqwest::Method::GET, &path, None).await?;
        Ok(body)
    }

    /// Merges `body` (a Yjs update, or text with `format` `text`) into the room.
    pub async fn import(
        &self,
        room_id: &str,
        format: &str,
        body: Vec<u8>,
    ) -> Result<Answer<ImportResponse>, ClientError> {
        let path = format!("/rooms/{}/import?format={format}", encode(room_id));
        let (url, answer) = self
            .request(reqwest::Method::POST, &path, Some(body))
            .await?;
        parse(url, &answer)
    }

    pub async fn history(
        &self,
        room_id: &str,
        limit: u32,
    ) -> Result<Answer<HistoryResponse>, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/rooms/{}/history?limit={limit}", encode(room_id)),
        )
        .await
    }

    /// Restores the version `version` names (`seq=N` or `at=TIME`).
    pub async fn restore(
        &self,
        room_id: &str,
        version: &str,
    ) -> Result<Answer<RestoreResponse>, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/rooms/{}/restore?{version}", encode(room_id)),
        )
        .await
    }

    pub async fn persist(&self, room_id: &str) -> Result<Answer<PersistResponse>, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/rooms/{}/persist", encode(room_id)),
        )
        .await
    }

    pub async fn load(&self, room_id: &str) -> Result<Answer<PersistResponse>, ClientError> {
        self.call(
            reqwest::Method::GET,
            &format!("/rooms/{}/load", encode(room_id)),
        )
        .await
    }

    pub async fn simulate_add(
        &self,
        room_id: &str,
        count: u32,
    ) -> Result<Answer<SimulateAddResponse>, ClientError> {
        self.call(
            reqwest::Method::POST,
            &format!("/simulate/users/{}?count={count}", encode(room_id)),
        )
        .await
    }

    pub async fn simulate_remove(
        &self,
        room_id: &str,
    ) -> Result<Answer<SimulateRemoveResponse>, ClientError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/simulate/users/{}", encode(room_id)),
        )
        .await
    }
}

/// A JSON answer, kept as received and parsed.
fn parse<T: DeserializeOwned>(url: String, body: &[u8]) -> Result<Answer<T>, ClientError> {
    let raw: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| ClientError::Protocol {
            url: url.clone(),
            reason: error.to_string(),
        })?;
    let value = serde_json::from_value(raw.clone()).map_err(|error| ClientError::Protocol {
        url,
        reason: error.to_string(),
    })?;
    Ok(Answer { value, raw })
}

/// Percent-encodes a path segment (or a query value).
pub fn encode(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// reqwest's top-level message hides the cause ("error sending request for url
/// (…)", repeating the URL the caller already names); its causes say "connection
/// refused" or "operation timed out".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    if causes.is_empty() {
        return error.to_string();
    }
    causes.join(": ")
}
