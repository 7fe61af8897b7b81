//! A job's redirect policy (BITS's `BG_HTTP_REDIRECT_POLICY_*`) as reqwest's: which
//! redirects are followed, and the error of one that is refused ([`RedirectRefused`],
//! which `error.rs` tells apart as `redirect_refused`).
//!
//! A redirect to another origin (scheme, host or port) is not followed by reqwest: its
//! 3xx comes back to `netclient::send`, which follows it with [`to_other_origin`]'s
//! request — without the job's secret headers ([`crate::model::is_secret_header`]:
//! `X-Api-Key`, tokens…) and credentials. reqwest itself drops only `Authorization`,
//! `Cookie` and `Proxy-Authorization` there (as curl does), which would hand a job's
//! API key to whatever host a server redirects to.

use reqwest::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Request, Response, StatusCode, Url};

use crate::model::{is_secret_header, RedirectPolicy};

/// At most this many redirects are followed for one request.
pub const MAX_REDIRECTS: usize = 10;

/// reqwest's redirect policy for a job's [`RedirectPolicy`]; a redirect it refuses is
/// the error [`RedirectRefused`].
pub fn policy(policy: RedirectPolicy) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let from = attempt
            .previous()
            .last()
            .map(|u| u.to_string())
            .unwrap_or_default();
        let to = attempt.url().to_string();
        let refused = match policy {
            RedirectPolicy::Disallow => true,
            RedirectPolicy::NoHttpsToHttp => {
                from.starts_with("https:") && attempt.url().scheme() == "http"
            }
            RedirectPolicy::AllowSilent | RedirectPolicy::AllowReport => false,
        };
        if refused {
            attempt.error(RedirectRefused { policy, from, to })
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if attempt
            .previous()
            .last()
            .is_some_and(|from| crosses_origin(from, attempt.url()))
        {
            // Followed by netclient::send, without the job's secrets.
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// True when `to` is on another origin than `from`: scheme, host or port differ.
pub fn crosses_origin(from: &Url, to: &Url) -> bool {
    from.scheme() != to.scheme()
        || from.host_str() != to.host_str()
        || from.port_or_known_default() != to.port_or_known_default()
}

/// `request`'s method, URL, headers, timeout and version, without its body.
pub fn without_body(request: &Request) -> Request {
    let mut r = Request::new(request.method().clone(), request.url().clone());
    *r.headers_mut() = request.headers().clone();
    *r.timeout_mut() = request.timeout().copied();
    *r.version_mut() = request.version();
    r
}

/// Where `response` redirects to when that is another origin (the redirects
/// [`policy`] leaves to the caller); `None` for any other response.
pub fn cross_origin_target(response: &Response) -> Option<Url> {
    let status = response.status().as_u16();
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    let next = response.url().join(location).ok()?;
    crosses_origin(response.url(), &next).then_some(next)
}

/// The request to send to `next` (another origin) after `request` was answered with
/// `status`: the method and body as reqwest would change them (303, and 301/302 after a
/// POST, become a GET without a body), and without the job's secret headers, its
/// credentials or cookies. `None` when the body would have to be sent again and cannot
/// (a streamed upload): the redirect is then the answer.
/// `body_kept`: `request` still has the body it was sent with.
pub fn to_other_origin(
    request: &Request,
    body_kept: bool,
    status: StatusCode,
    next: Url,
) -> Option<Request> {
    let to_get = status == StatusCode::SEE_OTHER && request.method() != Method::HEAD
        || matches!(status.as_u16(), 301 | 302) && request.method() == Method::POST;
    let mut out = if to_get {
        let mut r = without_body(request);
        *r.method_mut() = Method::GET;
        r.headers_mut().remove(CONTENT_TYPE);
        r.headers_mut().remove(CONTENT_LENGTH);
        r
    } else if body_kept {
        request.try_clone()?
    } else {
        return None;
    };
    *out.url_mut() = next;
    let secret: Vec<HeaderName> = out
        .headers()
        .keys()
        .filter(|n| {
            is_secret_header(n.as_str())
                || matches!(
                    n.as_str(),
                    "authorization" | "cookie" | "cookie2" | "proxy-authorization"
                )
        })
        .cloned()
        .collect();
    for name in secret {
        out.headers_mut().remove(name);
    }
    Some(out)
}

/// A redirect the job's redirect policy refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRefused {
    pub policy: RedirectPolicy,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.policy {
            RedirectPolicy::NoHttpsToHttp => "refuses redirects from https to http",
            _ => "refuses redirects",
        };
        write!(
            f,
            "the server redirected {} to {}; the job's redirect policy ({}) {what}",
            crate::model::mask_url(&self.from),
            crate::model::mask_url(&self.to),
            self.policy
        )
    }
}

impl std::error::Error for RedirectRefused {}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    #[test]
    fn origins_differ_by_scheme_host_or_port() {
        let a = url("https://a.example/x");
        assert!(!crosses_origin(&a, &url("https://a.example:443/y?z")));
        assert!(crosses_origin(&a, &url("http://a.example/x")));
        assert!(crosses_origin(&a, &url("https://b.example/x")));
        assert!(crosses_origin(&a, &url("https://a.example:8443/x")));
    }

    #[test]
    fn a_request_to_another_origin_carries_no_secret_and_keeps_the_rest() {
        let mut r = Request::new(Method::GET, url("http://a.example/f"));
        for (n, v) in [
            ("x-api-key", "SECRET"),
            ("authorization", "Basic SECRET"),
            ("cookie", "s=SECRET"),
            ("x-trace", "kept"),
            ("range", "bytes=10-"),
        ] {
            r.headers_mut().insert(n, v.parse().unwrap());
        }
        let out = to_other_origin(&r, true, StatusCode::FOUND, url("http://b.example/f")).unwrap();
        assert_eq!(out.url().as_str(), "http://b.example/f");
        assert_eq!(out.method(), Method::GET);
        let mut names: Vec<_> = out.headers().keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["range", "x-trace"]);
    }

    #[test]
    fn a_streamed_body_is_not_sent_again_without_its_bytes() {
        let r = Request::new(Method::PUT, url("http://a.example/up"));
        let next = url("http://b.example/up");
        assert!(to_other_origin(&r, false, StatusCode::TEMPORARY_REDIRECT, next.clone()).is_none());
        let get = to_other_origin(&r, false, StatusCode::SEE_OTHER, next).unwrap();
        assert_eq!(get.method(), Method::GET);
    }

    #[test]
    fn see_other_turns_a_put_into_a_get() {
        let r = Request::new(Method::PUT, url("http://a.example/up"));
        let out =
            to_other_origin(&r, true, StatusCode::SEE_OTHER, url("http://b.example/r")).unwrap();
        assert_eq!(out.method(), Method::GET);
        let kept =
            to_other_origin(&r, true, StatusCode::TEMPORARY_REDIRECT, url("http://b/r")).unwrap();
        assert_eq!(kept.method(), Method::PUT);
    }
}
