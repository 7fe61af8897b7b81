//! The tus 1.0 resumable upload protocol (core and creation extension) under
//! the path prefixes given to [`TestServer::enable_tus`].

use std::collections::VecDeque;
use std::io;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::conn::{Conn, Next};
use super::request::Head;
use super::state::{key_of, State};
use super::{Fault, TestServer};

/// The only protocol version spoken.
const TUS_VERSION: &str = "1.0.0";
/// The extensions announced by `OPTIONS`.
const TUS_EXTENSIONS: &str = "creation";
/// The media type of `PATCH` bodies.
const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// One tus upload resource.
pub(super) struct TusUpload {
    /// The last path segment of the upload URL.
    id: String,
    /// The key of the upload URL: its prefix followed by its id.
    path: String,
    /// The absolute URL answered in `Location`.
    location: String,
    /// `Upload-Length`.
    length: u64,
    /// The bytes received so far (`Upload-Offset` is their count).
    data: Vec<u8>,
    /// `Upload-Metadata` as sent on creation.
    metadata: Option<String>,
}

impl TusUpload {
    fn offset(&self) -> u64 {
        self.data.len() as u64
    }

    fn matches(&self, id_or_location: &str) -> bool {
        self.id == id_or_location
            || self.location == id_or_location
            || self.path == key_of(id_or_location)
    }
}

/// What a request to a tus URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// `OPTIONS` on the prefix.
    CollectionOptions,
    /// `POST` on the prefix.
    Create,
    /// `OPTIONS` on an upload URL.
    UploadOptions,
    /// `HEAD` on an upload URL.
    Head,
    /// `PATCH` on an upload URL.
    Patch,
}

/// A request that the tus side of the server answers.
pub(super) struct TusRoute {
    /// The enabled prefix (ending with `/`) the request falls under.
    prefix: String,
    action: Action,
}

impl TusRoute {
    pub(super) fn is_patch(&self) -> bool {
        self.action == Action::Patch
    }

    /// The keys whose fault queues and upload replies apply to the prefix.
    fn prefix_keys(&self) -> Vec<String> {
        let mut keys = vec![self.prefix.clone()];
        let trimmed = self.prefix.trim_end_matches('/');
        if !trimmed.is_empty() {
            keys.push(trimmed.to_string());
        }
        keys
    }

    /// Takes the fault that applies to this request, if any: requests to an
    /// upload URL take the faults queued on it; a `PATCH` with none takes one
    /// queued on its prefix. Requests to the prefix itself take none.
    pub(super) fn pop_fault(&self, state: &mut State, key: &str) -> Option<Fault> {
        let keys = match self.action {
            Action::CollectionOptions | Action::Create => return None,
            Action::UploadOptions | Action::Head => vec![key.to_string()],
            Action::Patch => {
                let mut keys = vec![key.to_string()];
                keys.extend(self.prefix_keys());
                keys
            }
        };
        keys.iter()
            .find_map(|k| state.faults.get_mut(k).and_then(VecDeque::pop_front))
    }
}

impl State {
    /// The tus route of a request, if `key` falls under an enabled prefix and
    /// the method is one tus defines there.
    pub(super) fn tus_route(&self, key: &str, method: &str) -> Option<TusRoute> {
        let prefix = self
            .tus_prefixes
            .iter()
            .filter(|p| {
                key == p.trim_end_matches('/')
                    || key
                        .strip_prefix(p.as_str())
                        .is_some_and(|rest| !rest.contains('/'))
            })
            .max_by_key(|p| p.len())?;
        let collection = key.len() <= prefix.len();
        let action = match (collection, method) {
            (true, "OPTIONS") => Action::CollectionOptions,
            (true, "POST") => Action::Create,
            (false, "OPTIONS") => Action::UploadOptions,
            (false, "HEAD") => Action::Head,
            (false, "PATCH") => Action::Patch,
            _ => return None,
        };
        Some(TusRoute {
            prefix: prefix.clone(),
            action,
        })
    }

    fn tus_find(&self, id_or_location: &str) -> Option<&TusUpload> {
        self.tus_uploads.iter().find(|u| u.matches(id_or_location))
    }

    fn tus_find_mut(&mut self, path: &str) -> Option<&mut TusUpload> {
        self.tus_uploads.iter_mut().find(|u| u.path == path)
    }
}

impl TestServer {
    /// Serves the [tus 1.0](https://tus.io/protocols/resumable-upload)
    /// resumable upload protocol (core and `creation` extension) under
    /// `prefix`, e.g. `/files/` (a missing leading or trailing `/` is added;
    /// the prefix without its trailing `/` is accepted as well). Several
    /// prefixes may be enabled.
    ///
    /// * `OPTIONS prefix` (or an upload URL): `204` with `Tus-Resumable`,
    ///   `Tus-Version: 1.0.0` and `Tus-Extension: creation`.
    /// * `POST prefix` with `Tus-Resumable: 1.0.0` and `Upload-Length: N`:
    ///   creates an upload and answers `201` with `Location:` the absolute URL
    ///   `base_url() + prefix + id`. `Upload-Metadata` is kept (see
    ///   [`tus_metadata`](Self::tus_metadata)). A missing or other
    ///   `Tus-Resumable` gets `412` (with `Tus-Version`), a missing or invalid
    ///   `Upload-Length` `400`.
    /// * `HEAD prefix+id`: `200` with `Upload-Offset`, `Upload-Length`,
    ///   `Cache-Control: no-store` (and `Upload-Metadata` if any); `404` for an
    ///   unknown (or [forgotten](Self::tus_forget)) upload, `412` as above.
    /// * `PATCH prefix+id` with `Content-Type: application/offset+octet-stream`
    ///   (else `415`) and `Upload-Offset` equal to the current offset (else
    ///   `409`; missing or invalid: `400`): the body (`Content-Length`; a
    ///   chunked body is read whole first) is appended as it arrives, so a
    ///   client that goes away mid-body keeps what was received. A body going
    ///   past `Upload-Length` gets `400` and nothing is kept. Answers `204` with
    ///   the new `Upload-Offset`; the `PATCH` that completes the upload answers
    ///   what [`set_upload_reply`](Self::set_upload_reply) set for the upload
    ///   URL or the prefix, if anything. `404`, `412` as above.
    ///
    /// Every tus response carries `Tus-Resumable: 1.0.0`. Error responses
    /// read and drop the request body first, except that a client waiting
    /// for `100 Continue` gets none: the answer comes at once and the
    /// connection is closed. Other methods fall through to the plain server.
    ///
    /// Requests are recorded under their path as usual (the prefix for
    /// `OPTIONS`/`POST`, prefix + id for the others). Faults queued on an
    /// upload URL apply to its next request; since ids are not known in
    /// advance, faults queued on the prefix itself apply to the next `PATCH`
    /// of any upload under it (and never to the `POST` or `OPTIONS`). For a
    /// `PATCH`, [`Fault::CutAfter(n)`](Fault::CutAfter) keeps the first `n`
    /// body bytes (so the offset advances by `n`) then closes the connection
    /// without an answer; [`Fault::StallAfter(n)`](Fault::StallAfter) keeps
    /// `n` bytes then stops reading until released; [`Fault::Stall`] keeps the
    /// whole body and holds the answer; statuses and redirects drop the body
    /// and answer instead, leaving the offset unchanged;
    /// [`Fault::ChangeContent`] is ignored.
    pub fn enable_tus(&self, prefix: &str) {
        let mut prefix = key_of(prefix);
        if !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        let mut state = self.shared.lock();
        if !state.tus_prefixes.contains(&prefix) {
            state.tus_prefixes.push(prefix);
        }
    }

    /// The bytes of a complete tus upload (its offset reached its
    /// `Upload-Length`); `None` while incomplete or unknown. The upload is
    /// named by its id, its path (prefix + id) or its `Location` URL.
    pub fn tus_upload(&self, id_or_location: &str) -> Option<Vec<u8>> {
        self.shared
            .lock()
            .tus_find(id_or_location)
            .filter(|u| u.offset() == u.length)
            .map(|u| u.data.clone())
    }

    /// Every tus upload in order of creation, complete or not:
    /// `(location, offset, length, data received so far)`, where `location` is
    /// the absolute URL answered on creation and `offset` is `data.len()`.
    pub fn tus_uploads(&self) -> Vec<(String, u64, u64, Vec<u8>)> {
        self.shared
            .lock()
            .tus_uploads
            .iter()
            .map(|u| (u.location.clone(), u.offset(), u.length, u.data.clone()))
            .collect()
    }

    /// The `Upload-Metadata` header sent when the upload (named as for
    /// [`tus_upload`](Self::tus_upload)) was created, as sent.
    pub fn tus_metadata(&self, id_or_location: &str) -> Option<String> {
        self.shared
            .lock()
            .tus_find(id_or_location)
            .and_then(|u| u.metadata.clone())
    }

    /// Forgets a tus upload (named as for [`tus_upload`](Self::tus_upload)),
    /// as a server that expired it would: its URL then answers `404`.
    /// Returns whether there was such an upload.
    pub fn tus_forget(&self, id_or_location: &str) -> bool {
        let mut state = self.shared.lock();
        let before = state.tus_uploads.len();
        state.tus_uploads.retain(|u| !u.matches(id_or_location));
        state.tus_uploads.len() != before
    }
}

/// Whether the request speaks our tus version.
fn resumable_ok(head: &Head) -> bool {
    head.header("tus-resumable").map(str::trim) == Some(TUS_VERSION)
}

fn parse_u64(value: Option<&str>) -> Option<u64> {
    value?.trim().parse().ok()
}

impl Conn {
    /// Answers a tus request other than `PATCH` (its body, if any, was read).
    pub(super) async fn serve_tus(
        &mut self,
        head: &Head,
        key: &str,
        route: &TusRoute,
        close: bool,
    ) -> io::Result<Next> {
        let resumable = ("Tus-Resumable", TUS_VERSION.to_string());
        match route.action {
            Action::CollectionOptions | Action::UploadOptions => {
                let headers = vec![
                    resumable,
                    ("Tus-Version", TUS_VERSION.to_string()),
                    ("Tus-Extension", TUS_EXTENSIONS.to_string()),
                ];
                self.simple(head, 204, headers, b"", close).await
            }
            _ if !resumable_ok(head) => {
                let headers = vec![resumable, ("Tus-Version", TUS_VERSION.to_string())];
                self.simple(head, 412, headers, b"unsupported tus version\n", close)
                    .await
            }
            Action::Create => {
                let Some(length) = parse_u64(head.header("upload-length")) else {
                    let msg = b"missing or invalid Upload-Length\n";
                    return self.simple(head, 400, vec![resumable], msg, close).await;
                };
                let location = {
                    let mut state = self.shared.lock();
                    state.tus_created += 1;
                    let mut hasher = Sha256::new();
                    hasher.update(self.shared.base_url.as_bytes());
                    hasher.update(state.tus_created.to_le_bytes());
                    hasher.update(format!("{:?}", SystemTime::now()).as_bytes());
                    let id = hex::encode(hasher.finalize())[..32].to_string();
                    let path = format!("{}{}", route.prefix, id);
                    let location = format!("{}{}", self.shared.base_url, path);
                    state.tus_uploads.push(TusUpload {
                        id,
                        path,
                        location: location.clone(),
                        length,
                        data: Vec::new(),
                        metadata: head.header("upload-metadata").map(str::to_string),
                    });
                    location
                };
                let headers = vec![("Location", location), resumable];
                self.simple(head, 201, headers, b"", close).await
            }
            Action::Head => {
                let found = self
                    .shared
                    .lock()
                    .tus_find_mut(key)
                    .map(|u| (u.offset(), u.length, u.metadata.clone()));
                let Some((offset, length, metadata)) = found else {
                    return self
                        .simple(head, 404, vec![resumable], b"no such upload\n", close)
                        .await;
                };
                let mut headers = vec![
                    ("Upload-Offset", offset.to_string()),
                    ("Upload-Length", length.to_string()),
                    ("Cache-Control", "no-store".to_string()),
                    resumable,
                ];
                if let Some(metadata) = metadata {
                    headers.push(("Upload-Metadata", metadata));
                }
                self.simple(head, 200, headers, b"", close).await
            }
            Action::Patch => {
                // Routed to `tus_patch`; never here.
                self.simple(head, 500, vec![resumable], b"misrouted PATCH\n", close)
                    .await
            }
        }
    }

    /// Reads and drops the request body, unless the client waits for a
    /// `100 Continue` (then nothing is read). `false` if the connection has to
    /// be closed after the answer.
    async fn skip_body(&mut self, head: &Head) -> bool {
        if std::mem::take(&mut self.continue_owed) {
            return false;
        }
        match head.has_body() {
            Ok(false) => true,
            Ok(true) => self.read_body(head).await.is_ok(),
            Err(_) => false,
        }
    }

    /// Drops the body and answers a `PATCH` with an error.
    async fn tus_reject(
        &mut self,
        head: &Head,
        status: u16,
        msg: &str,
        close: bool,
    ) -> io::Result<Next> {
        let close = !self.skip_body(head).await || close;
        let mut headers = vec![("Tus-Resumable", TUS_VERSION.to_string())];
        if status == 412 {
            headers.push(("Tus-Version", TUS_VERSION.to_string()));
        }
        self.simple(head, status, headers, msg.as_bytes(), close)
            .await
    }

    /// Appends received bytes to the upload at `key` (dropped if it was
    /// forgotten meanwhile).
    fn tus_append(&self, key: &str, bytes: &[u8]) {
        if let Some(upload) = self.shared.lock().tus_find_mut(key) {
            upload.data.extend_from_slice(bytes);
        }
    }

    /// Reads, records and answers a `PATCH` to the upload at `key`.
    pub(super) async fn tus_patch(
        &mut self,
        head: &Head,
        key: &str,
        route: &TusRoute,
        fault: Option<Fault>,
        generation: u64,
        close: bool,
    ) -> io::Result<Next> {
        let next = self
            .tus_patch_inner(head, key, route, fault, generation, close)
            .await;
        self.continue_owed = false;
        next
    }

    async fn tus_patch_inner(
        &mut self,
        head: &Head,
        key: &str,
        route: &TusRoute,
        fault: Option<Fault>,
        generation: u64,
        close: bool,
    ) -> io::Result<Next> {
        if matches!(
            fault,
            Some(
                Fault::Status(_)
                    | Fault::StatusRetryAfter(..)
                    | Fault::Redirect(_)
                    | Fault::RedirectWith(..)
            )
        ) {
            let close = !self.skip_body(head).await || close;
            let next = self.answer_fault(head, fault.as_ref(), close).await?;
            return Ok(next.unwrap_or(Next::Close));
        }
        if !resumable_ok(head) {
            return self
                .tus_reject(head, 412, "unsupported tus version\n", close)
                .await;
        }
        let found = self
            .shared
            .lock()
            .tus_find_mut(key)
            .map(|u| (u.offset(), u.length));
        let Some((offset, length)) = found else {
            return self.tus_reject(head, 404, "no such upload\n", close).await;
        };
        let media_type = head
            .header("content-type")
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(OFFSET_OCTET_STREAM)) {
            let msg = format!("Content-Type must be {OFFSET_OCTET_STREAM}\n");
            return self.tus_reject(head, 415, &msg, close).await;
        }
        let Some(claimed) = parse_u64(head.header("upload-offset")) else {
            return self
                .tus_reject(head, 400, "missing or invalid Upload-Offset\n", close)
                .await;
        };
        if claimed != offset {
            let msg = format!("Upload-Offset is {offset}, not {claimed}\n");
            return self.tus_reject(head, 409, &msg, close).await;
        }
        let Ok(chunked_or_length) = (if head.chunked() {
            Ok(None)
        } else {
            head.content_length().map(Some)
        }) else {
            return self
                .tus_reject(head, 400, "invalid Content-Length\n", true)
                .await;
        };
        let too_long = "the body goes past Upload-Length\n";

        let new_offset = match chunked_or_length {
            None => {
                // Chunked: read whole, then keep as a faulted stream would.
                let Ok(body) = self.read_body(head).await else {
                    return Ok(Next::Close);
                };
                if offset + body.len() as u64 > length {
                    return self.tus_reject(head, 400, too_long, close).await;
                }
                if let Some(Fault::CutAfter(n)) = fault {
                    let keep = usize::try_from(n).unwrap_or(usize::MAX).min(body.len());
                    self.tus_append(key, &body[..keep]);
                    return Ok(Next::Close);
                }
                self.tus_append(key, &body);
                offset + body.len() as u64
            }
            Some(total) => {
                if offset.saturating_add(total) > length {
                    return self.tus_reject(head, 400, too_long, close).await;
                }
                let cut = match fault {
                    Some(Fault::CutAfter(n)) => Some(n.min(total)),
                    _ => None,
                };
                let mut stall = match fault {
                    Some(Fault::StallAfter(n)) => Some(n.min(total)),
                    _ => None,
                };
                let mut got = 0u64;
                loop {
                    if cut.is_some_and(|c| got >= c) {
                        self.stream.flush().await?;
                        return Ok(Next::Close);
                    }
                    if stall.is_some_and(|s| got >= s) {
                        // The client is blocked sending: wait for the release only.
                        let mut rx = self.shared.release.subscribe();
                        if rx.wait_for(|g| *g != generation).await.is_err() {
                            return Ok(Next::Close);
                        }
                        stall = None;
                    }
                    if got >= total {
                        break;
                    }
                    let mut want = total - got;
                    for stop in [cut, stall].into_iter().flatten() {
                        if stop > got {
                            want = want.min(stop - got);
                        }
                    }
                    let want = usize::try_from(want).unwrap_or(usize::MAX);
                    if self.buf.is_empty() {
                        match self.fill(want).await {
                            Ok(0) | Err(_) => return Ok(Next::Close),
                            Ok(_) => {}
                        }
                    }
                    let take = want.min(self.buf.len());
                    let bytes: Vec<u8> = self.buf.drain(..take).collect();
                    self.tus_append(key, &bytes);
                    got += take as u64;
                }
                offset + total
            }
        };

        if matches!(fault, Some(Fault::Stall)) && !self.hold(generation).await {
            return Ok(Next::Close);
        }
        let headers = vec![
            ("Upload-Offset", new_offset.to_string()),
            ("Tus-Resumable", TUS_VERSION.to_string()),
        ];
        let reply = if new_offset == length {
            let state = self.shared.lock();
            std::iter::once(key.to_string())
                .chain(route.prefix_keys())
                .find_map(|k| state.upload_replies.get(&k).cloned())
        } else {
            None
        };
        match reply {
            Some((status, body)) => self.simple(head, status, headers, &body, close).await,
            None => self.simple(head, 204, headers, b"", close).await,
        }
    }
}
