//! The one probe of the origin before a download is planned: a `HEAD` whose answer
//! ([`OriginHead`]) gives the content's length, its strong validator, whether ranges are
//! served, whether caching it is forbidden (`no-store`/`private`) and the URL after
//! redirects. The planner asks for it only when a choice depends on it; a download that
//! goes over one connection anyway learns all of it from its `GET`.
//!
//! May use: the engine's HTTP metadata, range connection (the stop/stall race), request
//! decoration and task.

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::httpmeta;
use super::netclient::{self, for_download};
use super::rangeconn::{race, Raced};
use super::task::FileTask;

/// What the origin said to a `HEAD` answered with 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginHead {
    /// The `Content-Length` it announced.
    pub length: Option<u64>,
    /// Its strong validator (a strong ETag, else Last-Modified).
    pub validator: Option<String>,
    /// It serves byte ranges (`Accept-Ranges: bytes`).
    pub ranges: bool,
    /// It marks the content `Cache-Control: no-store` or `private`.
    pub no_store: bool,
    /// The URL after redirects.
    pub final_url: String,
}

impl OriginHead {
    /// Reads an answer to a `HEAD`: `None` unless it is a 200.
    pub fn read(status: StatusCode, headers: &HeaderMap, final_url: &str) -> Option<OriginHead> {
        (status == StatusCode::OK).then(|| OriginHead {
            length: httpmeta::content_length(headers),
            validator: httpmeta::validator(headers),
            ranges: httpmeta::accepts_ranges(headers),
            no_store: httpmeta::no_store(headers),
            final_url: final_url.to_string(),
        })
    }
}

/// How the probe went.
pub(super) enum Probed {
    Head(OriginHead),
    /// No answer within the stall timeout, a failed connection, or not a 200: nothing
    /// learned (the download goes on without it).
    Nothing,
    /// The run was stopped.
    Stopped,
}

/// Sends the `HEAD` for `task`'s file.
pub(super) async fn probe(task: &FileTask<'_>) -> Probed {
    task.events.connecting();
    let url = &task.record.remote_url;
    let req = for_download(task.client.head(url), task.options);
    let credentials = task.options.credentials.as_ref();
    let sent = netclient::send(req, credentials, url);
    match race(&task.cancel, task.stall_timeout, sent).await {
        Raced::Stopped => Probed::Stopped,
        Raced::Ready(Ok(resp)) => {
            match OriginHead::read(resp.status(), resp.headers(), resp.url().as_str()) {
                Some(head) => {
                    task.events.response_headers(resp.headers());
                    Probed::Head(head)
                }
                None => Probed::Nothing,
            }
        }
        Raced::Stalled | Raced::Ready(Err(_)) => Probed::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header;

    #[test]
    fn reads_what_the_planner_needs() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "16777216".parse().unwrap());
        h.insert(header::ETAG, "\"v1\"".parse().unwrap());
        h.insert(header::ACCEPT_RANGES, "bytes".parse().unwrap());
        h.insert(header::CACHE_CONTROL, "private".parse().unwrap());
        let head = OriginHead::read(StatusCode::OK, &h, "http://o/f").unwrap();
        assert_eq!(
            head,
            OriginHead {
                length: Some(16 << 20),
                validator: Some("\"v1\"".into()),
                ranges: true,
                no_store: true,
                final_url: "http://o/f".into(),
            }
        );
        assert_eq!(OriginHead::read(StatusCode::NOT_FOUND, &h, "u"), None);
        assert_eq!(
            OriginHead::read(StatusCode::OK, &HeaderMap::new(), "u"),
            Some(OriginHead {
                length: None,
                validator: None,
                ranges: false,
                no_store: false,
                final_url: "u".into(),
            })
        );
    }
}
