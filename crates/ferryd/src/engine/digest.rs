//! HTTP Digest authentication (RFC 7616; BITS's `BG_AUTH_SCHEME_DIGEST`) for jobs whose
//! credentials are `digest`: the digest_auth crate parses the server's challenge and
//! computes each request's `Authorization` (MD5 or SHA-256, `qop=auth`, the nonce count
//! going up).
//!
//! A Digest answer needs the server's challenge first. Before a run's first request,
//! [`prime`] asks each of the job's unfinished files once without credentials and keeps
//! the challenge of its `401` under the file's URL (origin and path: paths of one server
//! may sit in different realms, or ask for different algorithms) and, as a fallback for
//! other paths, under its origin (in this process's memory); [`authorize`] then adds an
//! answer to every request for that URL, `HEAD`, `GET` of a range or an upload alike. A
//! `401` whose challenge says `stale=true` (the nonce expired) replaces the challenge
//! ([`remember`], from the status check), and the retry answers the new one.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use digest_auth::{AuthContext, HttpMethod, WwwAuthenticateHeader};
use reqwest::header::{HeaderMap, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, StatusCode};

/// At most this many challenges are kept (all are forgotten at once past it).
const MAX_KEPT: usize = 1024;

/// The latest Digest challenge of each URL (origin and path) and of each origin
/// (`scheme://host:port`).
fn challenges() -> &'static Mutex<HashMap<String, WwwAuthenticateHeader>> {
    static CHALLENGES: OnceLock<Mutex<HashMap<String, WwwAuthenticateHeader>>> = OnceLock::new();
    CHALLENGES.get_or_init(Default::default)
}

fn origin(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

/// The key of a URL's own challenge: its origin and path.
fn url_key(url: &url::Url) -> String {
    format!("{}{}", origin(url), url.path())
}

/// The Digest challenge among a response's `WWW-Authenticate` headers, SHA-256 before
/// MD5 when the server offers both (RFC 7616 §3.7).
fn digest_challenge(headers: &HeaderMap) -> Option<WwwAuthenticateHeader> {
    let mut found: Vec<WwwAuthenticateHeader> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| {
            v.trim_start()
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("digest "))
        })
        .filter_map(|v| WwwAuthenticateHeader::parse(v).ok())
        .collect();
    found.sort_by_key(|c| match c.algorithm.algo {
        digest_auth::AlgorithmType::SHA2_256 => 0,
        digest_auth::AlgorithmType::SHA2_512_256 => 1,
        digest_auth::AlgorithmType::MD5 => 2,
    });
    found.into_iter().next()
}

/// Keeps the Digest challenge of a `401` from `url`, if it has one. Returns whether it
/// did and whether the challenge says the previous nonce was stale.
pub fn remember(url: &url::Url, status: StatusCode, headers: &HeaderMap) -> Option<bool> {
    if status != StatusCode::UNAUTHORIZED {
        return None;
    }
    let challenge = digest_challenge(headers)?;
    let stale = challenge.stale;
    let mut all = challenges().lock().unwrap_or_else(|p| p.into_inner());
    if all.len() + 2 > MAX_KEPT {
        all.clear();
    }
    all.insert(url_key(url), challenge.clone());
    all.insert(origin(url), challenge);
    Some(stale)
}

/// Asks `url` once without credentials for the server's Digest challenge (a `HEAD`), and
/// keeps it under `url` and under the URL the answer came from (after redirects).
/// Nothing is kept when the server asks for nothing; a failure here is left to the real
/// request to report.
pub async fn prime(client: &Client, url: &str) {
    let Ok(resp) = client.head(url).send().await else {
        return;
    };
    let answered = resp.url().clone();
    if remember(&answered, resp.status(), resp.headers()).is_some() {
        if let Ok(asked) = url::Url::parse(url) {
            remember(&asked, resp.status(), resp.headers());
        }
    }
}

/// True when a challenge of `url` itself (its origin and path) is known.
pub fn knows(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let all = challenges().lock().unwrap_or_else(|p| p.into_inner());
    all.contains_key(&url_key(&url))
}

/// `req` with a Digest answer to its origin's challenge, when one is known (else as it
/// is: the server's `401` then says what it wants).
pub fn authorize(req: RequestBuilder, user: &str, password: &str) -> RequestBuilder {
    let Some(probe) = req.try_clone().and_then(|r| r.build().ok()) else {
        return req;
    };
    let url = probe.url();
    let uri = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let method = HttpMethod::from(probe.method().as_str().to_string());
    let context = AuthContext::new_with_method(user, password, uri, Option::<&[u8]>::None, method);
    let answer = {
        let mut all = challenges().lock().unwrap_or_else(|p| p.into_inner());
        let own = url_key(url);
        let key = if all.contains_key(&own) {
            own
        } else {
            origin(url)
        };
        let Some(challenge) = all.get_mut(&key) else {
            return req;
        };
        match challenge.respond(&context) {
            Ok(a) => a.to_header_string(),
            Err(e) => {
                tracing::debug!("no Digest answer to the challenge of {}: {e}", origin(url));
                return req;
            }
        }
    };
    req.header(AUTHORIZATION, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(WWW_AUTHENTICATE, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn digest_parity_sha256_is_preferred_and_basic_ignored() {
        let h = headers(&[
            r#"Basic realm="r""#,
            r#"Digest realm="r", qop="auth", algorithm=MD5, nonce="n1""#,
            r#"Digest realm="r", qop="auth", algorithm=SHA-256, nonce="n2""#,
        ]);
        let c = digest_challenge(&h).unwrap();
        assert_eq!(c.nonce, "n2");
        assert!(digest_challenge(&headers(&[r#"Basic realm="r""#])).is_none());
    }

    #[test]
    fn digest_parity_requests_answer_the_remembered_challenge() {
        let url = url::Url::parse("http://digest-unit.ferry.test:8080/a/b?c=1").unwrap();
        let client = Client::new();
        // Nothing known: no header.
        let req = authorize(client.get(url.as_str()), "u", "p")
            .build()
            .unwrap();
        assert!(req.headers().get(AUTHORIZATION).is_none());
        let h = headers(&[r#"Digest realm="r", qop="auth", algorithm=MD5, nonce="abc""#]);
        assert_eq!(remember(&url, StatusCode::UNAUTHORIZED, &h), Some(false));
        assert_eq!(remember(&url, StatusCode::OK, &h), None);
        assert!(knows(url.as_str()));
        let req = authorize(client.get(url.as_str()), "u", "p")
            .build()
            .unwrap();
        let v = req.headers()[AUTHORIZATION].to_str().unwrap().to_string();
        assert!(v.starts_with("Digest "), "{v}");
        assert!(v.contains(r#"uri="/a/b?c=1""#), "{v}");
        assert!(v.contains("nc=00000001"), "{v}");
        let again = authorize(client.head(url.as_str()), "u", "p")
            .build()
            .unwrap();
        let v = again.headers()[AUTHORIZATION].to_str().unwrap();
        assert!(v.contains("nc=00000002"), "{v}");
    }
}
