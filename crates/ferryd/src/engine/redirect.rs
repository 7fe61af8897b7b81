//! A job's redirect policy (BITS's `BG_HTTP_REDIRECT_POLICY_*`) as reqwest's: which
//! redirects are followed, and the error of one that is refused ([`RedirectRefused`],
//! which `error.rs` tells apart as `redirect_refused`).

use crate::model::RedirectPolicy;

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
        } else {
            attempt.follow()
        }
    })
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
