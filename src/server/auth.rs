//! Who may do what. Both checks are off unless configured, so the original browser
//! client keeps working out of the box:
//! - an admin token guards the mutating and listing REST endpoints;
//! - an auth secret makes every WebSocket client present a signed room token
//!   (an HS256 JWT naming the rooms it may join, read-only or read-write, and an
//!   expiry), minted with `coedit token`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::rest::ApiError;
use super::AppState;

/// The claims of a room token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoomClaims {
    /// Rooms the bearer may join: exact names, `prefix/*` for every room under a
    /// prefix, or `*` for all.
    pub rooms: Vec<String>,
    /// When set, the bearer sees the document and presence but may not change the
    /// document.
    #[serde(default)]
    pub read_only: bool,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Who the token was minted for, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

/// What a connection may do in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a room token is required (token query parameter)")]
    Missing,
    #[error("the room token has expired")]
    Expired,
    #[error("the room token is invalid")]
    Invalid,
    #[error("the room token does not grant room {0}")]
    WrongRoom(String),
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Signs a room token valid for `ttl`.
pub fn mint(
    secret: &str,
    rooms: Vec<String>,
    read_only: bool,
    ttl: Duration,
    subject: Option<String>,
) -> Result<String, AuthError> {
    let claims = RoomClaims {
        rooms,
        read_only,
        exp: now_seconds().saturating_add(ttl.as_secs()),
        sub: subject,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|error| AuthError::Mint(error.to_string()))
}

/// Checks a room token for `room`: signature, expiry (no leeway) and the room grant.
pub fn verify(secret: &str, token: Option<&str>, room: &str) -> Result<Access, AuthError> {
    let token = token
        .filter(|token| !token.is_empty())
        .ok_or(AuthError::Missing)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    let claims = decode::<RoomClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|error| match error.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
        _ => AuthError::Invalid,
    })?
    .claims;
    if !claims
        .rooms
        .iter()
        .any(|pattern| room_matches(pattern, room))
    {
        return Err(AuthError::WrongRoom(room.to_owned()));
    }
    Ok(if claims.read_only {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    })
}

/// `*` grants every room and `prefix/*` every room under `prefix/`; any other
/// pattern is one room's exact name, `*` and all (room ids may hold a `*`, and a
/// grant minted for a room named `team*` must not reach `teammates`).
fn room_matches(pattern: &str, room: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => room
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/')),
        None => pattern == room,
    }
}

/// Middleware for the admin endpoints: with an admin token configured, requires
/// `Authorization: Bearer <token>`, compared in constant time.
pub async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if is_admin(app.config.admin_token.as_deref(), request.headers()) {
        next.run(request).await
    } else {
        ApiError::Unauthorized(
            "this endpoint requires the admin token (Authorization: Bearer …)".into(),
        )
        .into_response()
    }
}

/// Whether a request may see what the admin token guards: no token configured,
/// or the request's bearer token is it (compared in constant time).
pub fn is_admin(expected: Option<&str>, headers: &axum::http::HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_their_rooms_only() {
        let token = mint(
            "s3cret",
            vec!["team/*".into(), "lobby".into()],
            false,
            Duration::from_secs(60),
            None,
        )
        .unwrap();
        assert_eq!(
            verify("s3cret", Some(&token), "lobby"),
            Ok(Access::ReadWrite)
        );
        assert_eq!(
            verify("s3cret", Some(&token), "team/notes"),
            Ok(Access::ReadWrite)
        );
        assert_eq!(
            verify("s3cret", Some(&token), "other"),
            Err(AuthError::WrongRoom("other".into()))
        );
        assert_eq!(
            verify("wrong", Some(&token), "lobby"),
            Err(AuthError::Invalid)
        );
        assert_eq!(verify("s3cret", None, "lobby"), Err(AuthError::Missing));
    }

    #[test]
    fn only_star_and_a_trailing_slash_star_are_wildcards() {
        let token = mint(
            "k",
            vec!["team*".into(), "docs/*".into()],
            false,
            Duration::from_secs(60),
            None,
        )
        .unwrap();
        let granted = |room: &str| verify("k", Some(&token), room).is_ok();
        assert!(granted("team*"));
        assert!(!granted("teammates"));
        assert!(!granted("team"));
        assert!(granted("docs/a"));
        assert!(granted("docs/a/b"));
        assert!(!granted("docs"));
        assert!(!granted("docs-private"));
        assert!(!granted("docsx/a"));
    }

    #[test]
    fn read_only_and_expired_tokens() {
        let read_only = mint("k", vec!["*".into()], true, Duration::from_secs(60), None).unwrap();
        assert_eq!(verify("k", Some(&read_only), "any"), Ok(Access::ReadOnly));
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &RoomClaims {
                rooms: vec!["*".into()],
                read_only: false,
                exp: now_seconds() - 10,
                sub: None,
            },
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(verify("k", Some(&expired), "any"), Err(AuthError::Expired));
    }

    #[test]
    fn a_tampered_token_is_invalid() {
        let token = mint(
            "k",
            vec!["mine".into()],
            true,
            Duration::from_secs(60),
            None,
        )
        .unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Swap in claims that grant everything, keeping the old signature.
        use base64_claims::encode_claims;
        parts[1] = encode_claims(r#"{"rooms":["*"],"read_only":false,"exp":99999999999}"#);
        let forged = parts.join(".");
        assert_eq!(verify("k", Some(&forged), "mine"), Err(AuthError::Invalid));
    }

    /// Base64url without padding, enough to forge a claims segment.
    mod base64_claims {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

        pub fn encode_claims(json: &str) -> String {
            let bytes = json.as_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                    << (8 * (3 - chunk.len()));
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
