//! HTTP Negotiate (RFC 4559; BITS: `BG_AUTH_SCHEME_NEGOTIATE`): a job with Negotiate
//! credentials sends a request as it is; when the server answers `401` with
//! `WWW-Authenticate: Negotiate`, ferry gets a SPNEGO token for `HTTP@host` (the host
//! that answered, after redirects) from the job owner's Kerberos tickets through the
//! system's GSSAPI ([`super::gssapi`]) and sends the request again with
//! `Authorization: Negotiate <token>`. The origins that asked are remembered (for the
//! daemon's life), and later requests to them carry a fresh token at once; so does a
//! request that cannot be sent twice (an upload's streamed body).
//!
//! Every token is a new one (Kerberos servers refuse a replayed authenticator). The
//! server's own token in its answer (mutual authentication) is not checked: the
//! connection's TLS, where there is one, authenticates the server.
//!
//! May use: the GSSAPI binding and the engine's errors.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine as _;
use reqwest::header::{HeaderMap, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Client, Request, RequestBuilder, Response, StatusCode, Url};

use super::error::{self, TransferError};
use super::gssapi::{self, GssError};
use crate::model::{ErrorContext, ErrorKind};

/// The origins (`scheme://host:port`) that answered a request with a Negotiate challenge.
static ASKED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn asked(url: &Url) -> bool {
    ASKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|s| s.contains(&origin(url)))
}

fn remember(url: &Url) {
    ASKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(origin(url));
}

/// Whether an answer's `WWW-Authenticate` headers offer the Negotiate scheme.
pub fn offers_negotiate(headers: &HeaderMap) -> bool {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|challenge| {
            let scheme = challenge
                .trim_start()
                .split([' ', '\t'])
                .next()
                .unwrap_or("");
            scheme.eq_ignore_ascii_case("negotiate")
        })
}

/// The GSSAPI's host-based service name for a URL: `HTTP@host` (RFC 4559 §4.1).
pub fn service_name(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(format!("HTTP@{host}"))
}

/// Sends `req` with Negotiate credentials taking tickets from `ccache` (`None`: the
/// default credential cache of the job's owner).
pub async fn send(
    req: RequestBuilder,
    ccache: Option<&str>,
    label: &str,
) -> Result<Response, TransferError> {
    let (client, request) = req.build_split();
    let mut request = request.map_err(|e| error::from_reqwest(&e, label))?;
    let replay = request.try_clone();
    let Some(mut replay) = replay.filter(|_| !asked(request.url())) else {
        authorize(&mut request, ccache, label).await?;
        return accepted(execute(&client, request, label).await?, label);
    };
    let answer = execute(&client, request, label).await?;
    if answer.status() != StatusCode::UNAUTHORIZED || !offers_negotiate(answer.headers()) {
        return Ok(answer);
    }
    // Asked by the server that answered (after redirects): the token is for that one.
    let asker = answer.url().clone();
    drop(answer);
    remember(&asker);
    *replay.url_mut() = asker;
    authorize(&mut replay, ccache, label).await?;
    accepted(execute(&client, replay, label).await?, label)
}

async fn execute(
    client: &Client,
    request: Request,
    label: &str,
) -> Result<Response, TransferError> {
    client
        .execute(request)
        .await
        .map_err(|e| error::from_reqwest(&e, label))
}

/// An answer to a request that carried a token: a `401` that asks for Negotiate again
/// means the server refused the ticket.
fn accepted(answer: Response, label: &str) -> Result<Response, TransferError> {
    if answer.status() == StatusCode::UNAUTHORIZED && offers_negotiate(answer.headers()) {
        return Err(TransferError::new(
            ErrorContext::Authentication,
            ErrorKind::Http(401),
            format!(
                "{label}: the server refused the Kerberos ticket ferry sent (401 with \
                 WWW-Authenticate: Negotiate again): check that the job's owner may read it \
                 and that the server's keytab holds the key of {}",
                service_name(answer.url()).unwrap_or_default()
            ),
        ));
    }
    Ok(answer)
}

/// Adds `Authorization: Negotiate <token>` for the request's host.
async fn authorize(
    request: &mut Request,
    ccache: Option<&str>,
    label: &str,
) -> Result<(), TransferError> {
    let service = service_name(request.url()).ok_or_else(|| {
        TransferError::new(
            ErrorContext::Authentication,
            ErrorKind::Negotiate,
            format!("{label}: Negotiate needs a URL with a host name"),
        )
    })?;
    let cache = ccache.map(str::to_string);
    let for_service = service.clone();
    let token =
        tokio::task::spawn_blocking(move || gssapi::initial_token(&for_service, cache.as_deref()))
            .await
            .map_err(TransferError::internal)?
            .map_err(|e| gss_error(e, &service, ccache, label))?;
    let value = format!(
        "Negotiate {}",
        base64::engine::general_purpose::STANDARD.encode(token)
    );
    let value = reqwest::header::HeaderValue::from_str(&value).map_err(TransferError::internal)?;
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

/// The job's error for a token the GSSAPI did not make.
pub fn gss_error(e: GssError, service: &str, ccache: Option<&str>, label: &str) -> TransferError {
    let cache = match ccache {
        Some(c) => format!("the credential cache {c}"),
        None => "the default credential cache of the job's owner".to_string(),
    };
    let (kind, message) = match e {
        GssError::Unavailable(why) => (
            ErrorKind::NegotiateUnavailable,
            format!(
                "{label}: Negotiate (Kerberos) needs MIT Kerberos's GSSAPI library {}, which \
                 ferryd could not load ({why}): install it (Debian and Ubuntu: \
                 libgssapi-krb5-2; Fedora: krb5-libs), then resume the job",
                gssapi::LIBRARY
            ),
        ),
        GssError::NoTicket(words) => (
            ErrorKind::KerberosNoTicket,
            format!(
                "{label}: the server asks for Negotiate (Kerberos) and {cache} holds no usable \
                 ticket ({words}): run kinit as the job's owner, then resume the job"
            ),
        ),
        GssError::Failed(words) => (
            ErrorKind::Negotiate,
            format!(
                "{label}: no Kerberos ticket for {service} could be had from {cache} ({words}); \
                 if the ticket-granting ticket expired, run kinit as the job's owner, then \
                 resume the job"
            ),
        ),
    };
    TransferError::new(ErrorContext::Authentication, kind, message)
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
    fn parity_negotiate_challenges_are_found_among_others() {
        assert!(offers_negotiate(&headers(&["Negotiate"])));
        assert!(offers_negotiate(&headers(&[
            "Basic realm=\"x\"",
            "negotiate"
        ])));
        assert!(offers_negotiate(&headers(&[
            "Basic realm=\"x\", Negotiate"
        ])));
        assert!(offers_negotiate(&headers(&["Negotiate oRQwEqADCgEA"])));
        assert!(!offers_negotiate(&headers(&["Basic realm=\"Negotiate\""])));
        assert!(!offers_negotiate(&headers(&["NegotiateX"])));
        assert!(!offers_negotiate(&HeaderMap::new()));
    }

    #[test]
    fn parity_negotiate_service_is_http_at_the_host() {
        let url = |u: &str| Url::parse(u).unwrap();
        assert_eq!(
            service_name(&url("https://Files.Example.COM:8443/a?b")).as_deref(),
            Some("HTTP@files.example.com")
        );
        assert_eq!(
            service_name(&url("http://10.77.0.2/f")).as_deref(),
            Some("HTTP@10.77.0.2")
        );
        assert_eq!(
            service_name(&url("http://[::1]:80/f")).as_deref(),
            Some("HTTP@::1")
        );
    }

    #[test]
    fn parity_negotiate_errors_say_what_to_do() {
        let e = gss_error(
            GssError::NoTicket("No credentials cache found".into()),
            "HTTP@h",
            Some("FILE:/tmp/cc"),
            "http://h/f",
        );
        assert_eq!(e.context, ErrorContext::Authentication);
        assert_eq!(e.kind, ErrorKind::KerberosNoTicket);
        assert!(!e.transient);
        assert!(e.message.contains("run kinit"), "{}", e.message);
        assert!(e.message.contains("FILE:/tmp/cc"), "{}", e.message);
        let e = gss_error(GssError::Unavailable("no file".into()), "HTTP@h", None, "u");
        assert_eq!(e.kind, ErrorKind::NegotiateUnavailable);
        assert!(e.message.contains("libgssapi-krb5-2"), "{}", e.message);
    }
}
