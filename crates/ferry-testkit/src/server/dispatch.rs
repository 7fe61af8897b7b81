//! One request from head to answer: recording it, taking its fault and
//! mode, reading its body (or faulting while reading it), answering the
//! faults that replace the answer, and routing to files, uploads or tus.

use std::collections::VecDeque;
use std::io;

use super::body::BodyPlan;
use super::conn::{Conn, Next};
use super::request::Head;
use super::response::reason;
use super::state::key_of;
use super::Fault;

impl Conn {
    /// Reads, records and answers one request.
    pub(super) async fn serve_one(&mut self) -> io::Result<Next> {
        let Some(head) = self.read_head().await? else {
            return Ok(Next::Close);
        };
        let key = key_of(&head.target);
        let (fault, mode, generation, tus) = {
            let mut state = self.shared.lock();
            state.record(&key, &head);
            let tus = state.tus_route(&key, &head.method);
            let fault = match &tus {
                Some(route) => route.pop_fault(&mut state, &key),
                None => {
                    let fault = state.faults.get_mut(&key).and_then(VecDeque::pop_front);
                    if let Some(Fault::ChangeContent(data)) = &fault {
                        state.set_file(key.clone(), data.clone());
                    }
                    fault
                }
            };
            let mode = state.modes.get(&key).cloned().unwrap_or_default();
            (fault, mode, *self.shared.release.borrow(), tus)
        };
        let close = head.wants_close();
        self.continue_owed = head.has_token("expect", "100-continue");
        if let Some(&Fault::HugeHeader(n)) = fault.as_ref() {
            self.padding = n;
        }
        if let Some(route) = tus.as_ref().filter(|r| r.is_patch()) {
            return self
                .tus_patch(&head, &key, route, fault, generation, close)
                .await;
        }

        // The request body, if any.
        let mut body = Vec::new();
        if head.has_body()? {
            // How many body bytes a fault may wait for (not more than sent).
            let upto = |n: u64| {
                let n = if head.chunked() {
                    n
                } else {
                    n.min(head.content_length().unwrap_or(0))
                };
                usize::try_from(n).unwrap_or(usize::MAX)
            };
            match fault {
                Some(Fault::CutAfter(n)) => {
                    let _ = self.fill_to(upto(n)).await;
                    return Ok(Next::Close);
                }
                Some(Fault::StallAfter(n)) => {
                    self.fill_to(upto(n)).await?;
                    // The client is blocked sending: wait for the release only.
                    let mut rx = self.shared.release.subscribe();
                    if rx.wait_for(|g| *g != generation).await.is_err() {
                        return Ok(Next::Close);
                    }
                }
                _ => {}
            }
            body = self.read_body(&head).await?;
        }
        self.continue_owed = false;
        let digest = self.shared.lock().digest.get(&key).cloned();
        if let Some(d) = digest.filter(|d| !d.accepts(&head)) {
            let headers = vec![("WWW-Authenticate", d.challenge())];
            return self
                .simple(&head, 401, headers, b"unauthorized\n", close)
                .await;
        }

        let mut plan = BodyPlan {
            chunked: mode.chunked && !mode.no_content_length,
            throttle: mode.throttle_bytes_per_sec,
            cut_after: None,
            stall_after: None,
            endless: matches!(fault, Some(Fault::EndlessBody)),
            extra: None,
            wrong_range: None,
        };
        if matches!(fault, Some(Fault::Stall)) && !self.hold(generation).await {
            return Ok(Next::Close);
        }
        if let Some(next) = self.answer_fault(&head, fault.as_ref(), close).await? {
            return Ok(next);
        }
        match fault {
            Some(Fault::CutAfter(n)) if !head.has_body()? => plan.cut_after = Some(n),
            Some(Fault::StallAfter(n)) if !head.has_body()? => plan.stall_after = Some(n),
            Some(Fault::ExtraBytes(n)) => plan.extra = Some(n),
            Some(Fault::WrongContentRange(at)) => plan.wrong_range = Some(at),
            _ => {}
        }

        if let Some(route) = tus {
            // A cut or a stall of a bodiless tus request happens before its answer.
            if plan.cut_after.is_some() {
                return Ok(Next::Close);
            }
            if plan.stall_after.is_some() && !self.hold(generation).await {
                return Ok(Next::Close);
            }
            return self.serve_tus(&head, &key, &route, close).await;
        }

        match head.method.as_str() {
            "GET" | "HEAD" => {
                self.serve_file(&head, &key, &mode, plan, generation, close)
                    .await
            }
            "PUT" | "POST" => {
                let reply = {
                    let mut state = self.shared.lock();
                    // A POST's body is kept too (an upload with its own method).
                    state.uploads.insert(key.clone(), body);
                    state.upload_replies.get(&key).cloned()
                };
                let (status, body) = reply.unwrap_or_else(|| {
                    if head.method == "PUT" {
                        (201, Vec::new())
                    } else {
                        (200, b"ok\n".to_vec())
                    }
                });
                self.simple(&head, status, Vec::new(), &body, close).await
            }
            "PATCH" => self.simple(&head, 200, Vec::new(), b"ok\n", close).await,
            _ => {
                let headers = vec![("Allow", "GET, HEAD, PUT, POST, PATCH".to_string())];
                self.simple(&head, 405, headers, b"method not allowed\n", close)
                    .await
            }
        }
    }

    /// Answers as `fault` says if it is a fault that replaces the answer
    /// (statuses and redirects); `None` otherwise.
    pub(super) async fn answer_fault(
        &mut self,
        head: &Head,
        fault: Option<&Fault>,
        close: bool,
    ) -> io::Result<Option<Next>> {
        let next = match fault {
            Some(&Fault::Status(code)) => {
                let msg = format!("injected fault: {} {}\n", code, reason(code));
                self.simple(head, code, Vec::new(), msg.as_bytes(), close)
                    .await?
            }
            Some(&Fault::StatusRetryAfter(code, secs)) => {
                let msg = format!("injected fault: {} {}\n", code, reason(code));
                let headers = vec![("Retry-After", secs.to_string())];
                self.simple(head, code, headers, msg.as_bytes(), close)
                    .await?
            }
            Some(Fault::Redirect(location)) => {
                let headers = vec![("Location", location.clone())];
                self.simple(head, 302, headers, b"", close).await?
            }
            Some(&Fault::RedirectWith(code, ref location)) => {
                let headers = vec![("Location", location.clone())];
                self.simple(head, code, headers, b"", close).await?
            }
            _ => return Ok(None),
        };
        Ok(Some(next))
    }
}
