//! `ferry.v1.Queries`: data queries in batches with optional progress, event
//! subscriptions with a bounded buffer, and method calls.

use std::sync::Arc;

use ferry_proto::v1 as pb;
use pb::FinalStatusCode as Code;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use prost::Message;

use super::relay::{self, Broker};
use super::{admin_caller, convert, end_for_shutdown, job_id, BoxStream};
use crate::service::{Caller, EventFilter, Service};
use pb::queries_client::QueriesClient;

/// Objects per batch when the client does not say.
const DEFAULT_BATCH: usize = 100;
/// A batch stops before its objects pass this many encoded bytes (it always holds one),
/// so a message stays well under gRPC's usual 4 MiB limit whatever `batch_size` asks
/// (a stock client refuses a larger message with `RESOURCE_EXHAUSTED`): as a `ListJobs`
/// page.
pub const BATCH_BYTES: usize = super::jobs::PAGE_BYTES;
/// A data query with at least this many objects gives the memory it used back to the
/// system when it is done (the results are built in one go, then freed).
const TRIM_AFTER: u64 = 1000;
/// Event messages buffered per subscriber before it counts as overflowing.
pub const EVENT_BUFFER: usize = 1024;

/// The `Queries` service.
pub struct QueriesApi {
    pub svc: Arc<Service>,
    /// The system-wide daemon's broker (a worker only): an administrator's queries and
    /// methods reach the other users' jobs through it.
    pub broker: Option<Arc<dyn Broker>>,
}

impl QueriesApi {
    /// The objects a data query finds in the other users' workers, for an administrator
    /// (in a worker of the system-wide daemon); none otherwise.
    async fn other_users_objects(
        &self,
        caller: &Caller,
        wql: &str,
    ) -> Result<Vec<pb::Object>, Status> {
        let Some((broker, conn)) =
            relay::for_admin(&self.broker, caller, self.svc.is_admin(caller))
        else {
            return Ok(Vec::new());
        };
        let answers = relay::on_every_worker(broker, conn, |ch| {
            let request = pb::ExecQueryRequest {
                wql: wql.to_string(),
                flags: 0,
                batch_size: 0,
            };
            async move {
                use pb::exec_query_response::Kind;
                let mut stream = QueriesClient::new(ch)
                    .exec_query(request)
                    .await?
                    .into_inner();
                let mut objects = Vec::new();
                while let Some(m) = stream.message().await? {
                    match m.kind {
                        Some(Kind::Batch(b)) => objects.extend(b.objects),
                        Some(Kind::Status(st)) if st.code != Code::Ok as i32 => {
                            return Err(Status::internal(st.message))
                        }
                        _ => {}
                    }
                }
                Ok(objects)
            }
        })
        .await?;
        let mut objects = Vec::new();
        for (uid, a) in answers {
            match a {
                Ok(o) => objects.extend(o),
                Err(e) => tracing::warn!(
                    uid,
                    "the query could not run over the jobs of uid {uid}: {e}"
                ),
            }
        }
        Ok(objects)
    }
}

fn final_status(code: Code, message: impl Into<String>) -> pb::FinalStatus {
    pb::FinalStatus {
        code: code as i32,
        message: message.into(),
    }
}

fn query_message(kind: pb::exec_query_response::Kind) -> pb::ExecQueryResponse {
    pb::ExecQueryResponse { kind: Some(kind) }
}

/// `objects` in batches of at most `size` objects (at least one) and, past the first
/// object of a batch, at most [`BATCH_BYTES`] encoded.
fn batches(objects: Vec<pb::Object>, size: usize) -> impl Iterator<Item = Vec<pb::Object>> {
    let size = size.max(1);
    let mut objects = objects.into_iter().peekable();
    std::iter::from_fn(move || {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(o) = objects.peek() {
            let len = o.encoded_len();
            // Each repeated field costs a tag and a length prefix besides the object.
            let cost = len + prost::length_delimiter_len(len) + 1;
            if !batch.is_empty() && (batch.len() >= size || bytes + cost > BATCH_BYTES) {
                break;
            }
            bytes += cost;
            batch.extend(objects.next());
        }
        (!batch.is_empty()).then_some(batch)
    })
}

/// Sends the objects of a data query in batches (with progress after each when
/// `send_status`), then the final status; false if the client went away.
async fn deliver(
    tx: &mpsc::Sender<Result<pb::ExecQueryResponse, Status>>,
    objects: Vec<pb::Object>,
    size: usize,
    send_status: bool,
) -> bool {
    use pb::exec_query_response::Kind;
    let total = objects.len() as u64;
    let mut done = 0u64;
    for batch in batches(objects, size) {
        done += batch.len() as u64;
        let message = query_message(Kind::Batch(pb::ObjectBatch { objects: batch }));
        if tx.send(Ok(message)).await.is_err() {
            return false;
        }
        if send_status {
            let p = Kind::Progress(pb::Progress { done, total });
            if tx.send(Ok(query_message(p))).await.is_err() {
                return false;
            }
        }
    }
    let status = final_status(Code::Ok, format!("{total} objects"));
    tx.send(Ok(query_message(Kind::Status(status))))
        .await
        .is_ok()
}

fn event_message(
    kind: pb::exec_notification_query_response::Kind,
) -> pb::ExecNotificationQueryResponse {
    pb::ExecNotificationQueryResponse { kind: Some(kind) }
}

#[tonic::async_trait]
impl pb::queries_server::Queries for QueriesApi {
    type ExecQueryStream = BoxStream<pb::ExecQueryResponse>;

    /// Runs a data query; the stream carries batches, progress (when asked) and one final
    /// status. A batch holds `batch_size` objects (100 when 0) but stops before
    /// [`BATCH_BYTES`]. A client that goes away stops the call; a shutdown ends it with
    /// `UNAVAILABLE`.
    async fn exec_query(
        &self,
        req: Request<pb::ExecQueryRequest>,
    ) -> Result<Response<Self::ExecQueryStream>, Status> {
        let caller = admin_caller(&req)?;
        let scope = self.svc.scope_of(&caller);
        let req = req.into_inner();
        let plan = self.svc.plan_select(&req.wql)?;
        let others = self.other_users_objects(&caller, &req.wql).await?;
        let size = if req.batch_size == 0 {
            DEFAULT_BATCH
        } else {
            req.batch_size as usize
        };
        let send_status = req.flags & pb::CallFlag::SendStatus as u32 != 0;
        let svc = self.svc.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut objects: Vec<pb::Object> = svc
                .run_select(scope, &plan)
                .iter()
                .map(convert::object)
                .collect();
            objects.extend(others);
            let total = objects.len() as u64;
            // A client that stops reading must not hold the shutdown: the stream ends
            // with UNAVAILABLE as every other (and the drain closes the connection).
            tokio::select! {
                _ = deliver(&tx, objects, size, send_status) => {}
                _ = svc.shutting_down() => {
                    tracing::info!("a data query ended unfinished: ferryd is shutting down");
                    end_for_shutdown(&tx).await;
                }
            }
            if total >= TRIM_AFTER {
                crate::service::release_free_memory();
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ExecNotificationQueryStream = BoxStream<pb::ExecNotificationQueryResponse>;

    /// Subscribes to events. Events are pushed as they happen, each in its own batch, in
    /// order. A subscriber that lets `EVENT_BUFFER` messages pile up is cut off: it
    /// receives, after what was buffered, a final `EVENTS_DROPPED` status — never a silent
    /// gap. A shutdown ends the stream with `UNAVAILABLE`.
    async fn exec_notification_query(
        &self,
        req: Request<pb::ExecNotificationQueryRequest>,
    ) -> Result<Response<Self::ExecNotificationQueryStream>, Status> {
        use pb::exec_notification_query_response::Kind;
        let scope = self.svc.scope_of(&admin_caller(&req)?);
        let plan = self.svc.plan_event(&req.get_ref().wql)?;
        let svc = self.svc.clone();
        let mut events = svc.subscribe();
        let mut filter = EventFilter::new(plan, scope);
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(async move {
            let reason = loop {
                let ev = tokio::select! {
                    _ = tx.closed() => return,
                    _ = svc.shutting_down() => {
                        drop(events);
                        tracing::info!("event subscription ended: ferryd is shutting down");
                        end_for_shutdown(&tx).await;
                        return;
                    }
                    ev = events.recv() => ev,
                };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        break format!("{n} events were dropped: the subscriber fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(obj) = filter.accept(&ev) else {
                    continue;
                };
                let batch = pb::ObjectBatch {
                    objects: vec![convert::object(&obj)],
                };
                match tx.try_send(Ok(event_message(Kind::Batch(batch)))) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        break format!(
                            "events were dropped: more than {EVENT_BUFFER} were waiting to be read"
                        );
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            };
            drop(events);
            tracing::info!("event subscription ended: {reason}");
            // Waits for room without holding up anyone else: this task only.
            let status = final_status(Code::EventsDropped, reason);
            let _ = tx.send(Ok(event_message(Kind::Status(status)))).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn exec_method(
        &self,
        req: Request<pb::ExecMethodRequest>,
    ) -> Result<Response<pb::ExecMethodResponse>, Status> {
        let caller = admin_caller(&req)?;
        let r = req.into_inner();
        let id = job_id(&r.job_id)?;
        let local = match r.method.to_ascii_lowercase().as_str() {
            "resume" => self.svc.resume_as(&caller, id).await,
            "suspend" => self.svc.suspend_as(&caller, id).await,
            "cancel" => self.svc.cancel_as(&caller, id).await,
            "complete" => self.svc.complete_as(&caller, id).await.map(|o| o.view),
            other => {
                return Err(Status::invalid_argument(format!(
                    "Job has no method '{other}' (it has Resume, Suspend, Cancel, Complete)"
                )))
            }
        };
        let local = local.map_err(Status::from);
        let local = match local {
            Err(e) if e.code() == tonic::Code::NotFound => {
                // Another user's job, for an administrator: called where it lives.
                match relay::for_admin(&self.broker, &caller, self.svc.is_admin(&caller)) {
                    Some((broker, conn)) => {
                        let answers =
                            relay::on_every_worker(broker, conn, |ch| {
                                let r = r.clone();
                                async move {
                                    Ok(QueriesClient::new(ch).exec_method(r).await?.into_inner())
                                }
                            })
                            .await?;
                        return relay::the_one_that_has_it(answers, e).map(Response::new);
                    }
                    None => Err(e),
                }
            }
            other => other,
        };
        Ok(Response::new(pb::ExecMethodResponse {
            job: Some(convert::job(&local?)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bytes: usize) -> pb::Object {
        pb::Object {
            class_name: "File".into(),
            properties: vec![pb::Property {
                name: "remote_url".into(),
                value: Some(pb::Value {
                    kind: Some(pb::value::Kind::StringValue("u".repeat(bytes))),
                }),
            }],
        }
    }

    /// A client asking for 10 000 objects a batch gets batches of about 1 MiB at most:
    /// a stock client's 4 MiB limit is never reached (it was: `RESOURCE_EXHAUSTED`).
    #[test]
    fn parity_batches_stop_before_1_mib_whatever_batch_size_asks() {
        let objects: Vec<pb::Object> = (0..120).map(|_| object(40_000)).collect();
        let sizes: Vec<usize> = batches(objects.clone(), 10_000)
            .map(|b| {
                let len = pb::ObjectBatch { objects: b.clone() }.encoded_len();
                assert!(len <= BATCH_BYTES, "a batch of {len} bytes");
                b.len()
            })
            .collect();
        assert_eq!(sizes.iter().sum::<usize>(), 120, "every object once");
        assert!(sizes.len() >= 5, "{sizes:?}");
        assert!(
            (20..=26).contains(&sizes[0]),
            "about 1 MiB of 40 KB objects: {sizes:?}"
        );

        // The count still applies, and an object larger than the cap goes alone.
        let small: Vec<usize> = batches(objects[..5].to_vec(), 2).map(|b| b.len()).collect();
        assert_eq!(small, [2, 2, 1]);
        let huge = vec![object(BATCH_BYTES + 1), object(1), object(1)];
        let split: Vec<usize> = batches(huge, 100).map(|b| b.len()).collect();
        assert_eq!(split, [1, 2]);
        assert_eq!(batches(Vec::new(), 0).count(), 0);
    }
}
