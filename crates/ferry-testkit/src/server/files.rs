//! `GET`/`HEAD` of a served file: validators, `Range` and `If-Range`, the
//! path's [`Mode`] (gzip, chunked, close-delimited, ...) and the body plan.

use std::io;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::body::BodyPlan;
use super::conn::{Conn, Next};
use super::data::gzip;
use super::range::{parse_range, ByteRange};
use super::request::Head;
use super::Mode;

impl Conn {
    pub(super) async fn serve_file(
        &mut self,
        head: &Head,
        key: &str,
        mode: &Mode,
        plan: BodyPlan,
        generation: u64,
        close: bool,
    ) -> io::Result<Next> {
        let file = self.shared.lock().files.get(key).cloned();
        let Some(file) = file else {
            return self
                .simple(head, 404, Vec::new(), b"not found\n", close)
                .await;
        };
        let data = if mode.gzip {
            Arc::new(gzip(&file.data))
        } else {
            file.data.clone()
        };
        let total = data.len() as u64;
        let last_modified = httpdate::fmt_http_date(file.last_modified);
        let validators = !mode.no_validators && !mode.no_content_length;

        let mut range = if mode.ignore_range || mode.no_content_length {
            None
        } else {
            head.header("range").and_then(parse_range)
        };
        if let (Some(_), Some(if_range)) = (&range, head.header("if-range")) {
            let if_range = if_range.trim();
            if !validators || (if_range != file.etag && if_range != last_modified) {
                range = None;
            }
        }

        let mut headers: Vec<(&str, String)> = Vec::new();
        headers.push(("Content-Type", "application/octet-stream".to_string()));
        if !mode.no_content_length {
            headers.push(("Accept-Ranges", "bytes".to_string()));
        }
        if validators {
            headers.push(("ETag", file.etag.clone()));
            headers.push(("Last-Modified", last_modified));
        }
        if mode.gzip {
            headers.push(("Content-Encoding", "gzip".to_string()));
        }
        if let Some(at) = plan.wrong_range.filter(|_| head.method == "GET") {
            // Whatever was asked: the bytes from `at`, described truthfully.
            range = Some(ByteRange::From(at));
        }

        let (status, start, end) = match range.map(|r| r.resolve(total)) {
            None => (200, 0, total),
            Some(None) => {
                headers.push(("Content-Range", format!("bytes */{total}")));
                return self.simple(head, 416, headers, b"", close).await;
            }
            Some(Some((start, end))) => {
                headers.push((
                    "Content-Range",
                    format!("bytes {}-{}/{}", start, end - 1, total),
                ));
                (206, start, end)
            }
        };

        let close = close || mode.no_content_length;
        let mut plan = plan;
        if plan.endless && !mode.no_content_length {
            plan.chunked = true;
        }
        if mode.no_content_length {
            // Close-delimited body.
        } else if plan.chunked {
            headers.push(("Transfer-Encoding", "chunked".to_string()));
        } else {
            headers.push(("Content-Length", (end - start).to_string()));
        }
        self.write_head(status, &headers, close).await?;
        if head.method == "HEAD" {
            self.stream.flush().await?;
            return Ok(if close { Next::Close } else { Next::KeepAlive });
        }
        let next = self
            .send_body(&data[start as usize..end as usize], &plan, generation)
            .await?;
        Ok(if close { Next::Close } else { next })
    }
}
