//! Queries in WMI's three call forms — synchronous, semisynchronous ([`Enumerator`]) and
//! asynchronous ([`ObjectSink`] + [`AsyncCall`]) — event queries, and asynchronous method
//! calls.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_proto::v1 as pb;
use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::conn::Retry;
use crate::error::{gone_reason, is_gone};
use crate::object::Object;
use crate::{Error, Job, JobInfo, Manager, Result};

bitflags::bitflags! {
    /// Flags of an asynchronous call (WMI's `WBEM_FLAG_*`; the bits of the wire's
    /// `CallFlag` enum).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct CallFlags: u32 {
        /// Send progress statuses (done, total) between batches.
        const SEND_STATUS = pb::CallFlag::SendStatus as u32;
    }
}

/// How a data query runs, beyond its text: the call's flags and the size of the batches
/// ferryd sends (`ExecQueryRequest.flags` and `batch_size`; WMI's `lFlags` and the batch
/// an `IEnumWbemClassObject` fetches at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryOptions {
    /// The call's flags; [`CallFlags::SEND_STATUS`] makes the asynchronous form report
    /// [`CallStatus::Progress`] after each batch.
    pub flags: CallFlags,
    /// Objects per batch; 0 lets ferryd choose (100). ferryd also ends a batch before
    /// about 1 MiB of objects, so no batch size makes a message larger than a gRPC client
    /// accepts.
    pub batch_size: u32,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// Every object was delivered.
    Ok,
    /// The call failed; the message says why.
    Failed,
    /// [`AsyncCall::cancel`] stopped it.
    CallCancelled,
    /// An event subscriber fell behind and events were dropped; the subscription ended.
    EventsDropped,
    /// The daemon went away before the call ended: it is shutting down (it ended the
    /// stream with `UNAVAILABLE`), or the connection broke. Not a normal end: call again
    /// once ferryd is back.
    ShuttingDown,
}

/// The final status of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalStatus {
    /// How it ended.
    pub code: StatusCode,
    /// Details.
    pub message: String,
}

impl FinalStatus {
    fn from_wire(s: pb::FinalStatus) -> FinalStatus {
        use pb::FinalStatusCode as C;
        let code = match C::try_from(s.code) {
            Ok(C::Ok) => StatusCode::Ok,
            Ok(C::CallCancelled) => StatusCode::CallCancelled,
            Ok(C::EventsDropped) => StatusCode::EventsDropped,
            Ok(C::Failed) | Ok(C::Unspecified) | Err(_) => StatusCode::Failed,
        };
        FinalStatus {
            code,
            message: s.message,
        }
    }

    /// How a stream that ended with an error status ended: `UNAVAILABLE` means the daemon
    /// went away.
    fn from_stream_error(e: tonic::Status) -> FinalStatus {
        FinalStatus {
            code: if e.code() == tonic::Code::Unavailable {
                StatusCode::ShuttingDown
            } else {
                StatusCode::Failed
            },
            message: e.message().to_string(),
        }
    }

    fn failed(message: impl Into<String>) -> FinalStatus {
        FinalStatus {
            code: StatusCode::Failed,
            message: message.into(),
        }
    }
}

/// What [`ObjectSink::set_status`] receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallStatus {
    /// Progress between batches (only with [`CallFlags::SEND_STATUS`]).
    Progress {
        /// Objects delivered so far.
        done: u64,
        /// Objects in all.
        total: u64,
    },
    /// The one final status; the sink is dropped after it.
    Complete(FinalStatus),
    /// An event subscription only: the daemon went away and came back, and the
    /// subscription was made again on the new daemon. Changes made while it was away
    /// (as the new daemon loaded its jobs) were not reported: query the current state if
    /// it matters.
    Reconnected,
}

/// Identifies one asynchronous call; every sink callback names its call.
pub type CallId = u64;

static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// Receives the results of an asynchronous call (WMI's `IWbemObjectSink`).
///
/// Calls for one call arrive in order, one at a time, on a runtime thread: keep them
/// short. After the final [`CallStatus::Complete`] the sink is dropped.
pub trait ObjectSink: Send + 'static {
    /// A batch of objects.
    fn indicate(&mut self, call: CallId, objects: &[Object]);
    /// Progress, or the final status.
    fn set_status(&mut self, call: CallId, status: CallStatus);
}

/// A running asynchronous call.
#[derive(Debug)]
pub struct AsyncCall {
    id: CallId,
    cancel: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AsyncCall {
    /// The call's id, as the sink sees it.
    pub fn id(&self) -> CallId {
        self.id
    }

    /// Cancels the call. Returns only after the sink has received its last call (the final
    /// status, `CALL_CANCELLED` unless the call had already ended) and has been dropped.
    /// Safe to call while the sink's `indicate` runs on another thread: it waits for it.
    pub async fn cancel(mut self) {
        if let Some(c) = self.cancel.take() {
            let _ = c.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the call has ended and its sink was dropped.
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// One message of a query stream, whichever call it came from.
enum Msg {
    Batch(pb::ObjectBatch),
    Progress(pb::Progress),
    Status(pb::FinalStatus),
    /// Not from the daemon: an event subscription was made again on a daemon that came
    /// back.
    Reconnected,
}

/// A response message of a query stream; `None` for one this library does not know.
trait IntoMsg {
    fn into_msg(self) -> Option<Msg>;
}

impl IntoMsg for pb::ExecQueryResponse {
    fn into_msg(self) -> Option<Msg> {
        use pb::exec_query_response::Kind;
        Some(match self.kind? {
            Kind::Batch(b) => Msg::Batch(b),
            Kind::Progress(p) => Msg::Progress(p),
            Kind::Status(s) => Msg::Status(s),
        })
    }
}

impl IntoMsg for pb::ExecNotificationQueryResponse {
    fn into_msg(self) -> Option<Msg> {
        use pb::exec_notification_query_response::Kind;
        Some(match self.kind? {
            Kind::Batch(b) => Msg::Batch(b),
            Kind::Status(s) => Msg::Status(s),
        })
    }
}

/// The messages of a data or event query (`None`: a message this library does not know).
/// Dropping it cancels the call on the daemon.
type MsgStream = Pin<Box<dyn Stream<Item = Result<Option<Msg>, tonic::Status>> + Send>>;

fn messages<T: IntoMsg + Send + 'static>(stream: tonic::Streaming<T>) -> MsgStream {
    Box::pin(stream.map(|r| r.map(IntoMsg::into_msg)))
}

fn spawn_call<S: ObjectSink>(mut stream: MsgStream, flags: CallFlags, mut sink: S) -> AsyncCall {
    let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
    let (cancel_tx, mut cancel_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let final_status = loop {
            let msg = tokio::select! {
                biased;
                _ = &mut cancel_rx => break FinalStatus {
                    code: StatusCode::CallCancelled,
                    message: "cancelled by the caller".into(),
                },
                m = stream.next() => m,
            };
            match msg {
                Some(Ok(Some(Msg::Batch(b)))) => {
                    let objects: Vec<Object> =
                        b.objects.into_iter().map(Object::from_wire).collect();
                    sink.indicate(id, &objects);
                }
                Some(Ok(Some(Msg::Progress(p)))) if flags.contains(CallFlags::SEND_STATUS) => {
                    sink.set_status(
                        id,
                        CallStatus::Progress {
                            done: p.done,
                            total: p.total,
                        },
                    );
                }
                Some(Ok(Some(Msg::Status(s)))) => break FinalStatus::from_wire(s),
                Some(Ok(Some(Msg::Reconnected))) => sink.set_status(id, CallStatus::Reconnected),
                Some(Ok(_)) => {}
                None => break FinalStatus::failed("the call ended without a final status"),
                Some(Err(e)) => break FinalStatus::from_stream_error(e),
            }
        };
        // Closing the stream tells ferryd to stop producing.
        drop(stream);
        sink.set_status(id, CallStatus::Complete(final_status));
        drop(sink);
    });
    AsyncCall {
        id,
        cancel: Some(cancel_tx),
        task,
    }
}

/// What [`Enumerator::next`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    /// The objects ready (at most the `max` asked for).
    pub objects: Vec<Object>,
    /// The end was reached: no more objects will come.
    pub done: bool,
    /// The timeout passed before `max` objects were ready.
    pub timed_out: bool,
    /// The final status, once `done`.
    pub status: Option<FinalStatus>,
    /// An event subscription only: the daemon went away and came back since the last
    /// call, and the subscription was made again (changes while it was away were not
    /// reported; see [`CallStatus::Reconnected`]).
    pub reconnected: bool,
}

/// The results of a semisynchronous call, pulled with [`Enumerator::next`] (WMI's
/// `IEnumWbemClassObject`). Dropping it cancels the call on the daemon.
pub struct Enumerator {
    stream: MsgStream,
    buffer: VecDeque<Object>,
    status: Option<FinalStatus>,
}

impl std::fmt::Debug for Enumerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enumerator")
            .field("buffered", &self.buffer.len())
            .field("status", &self.status)
            .finish()
    }
}

impl Enumerator {
    fn new(stream: MsgStream) -> Enumerator {
        Enumerator {
            stream,
            buffer: VecDeque::new(),
            status: None,
        }
    }
}

impl Enumerator {
    /// Waits at most `timeout` for up to `max` objects; returns what is ready. When the
    /// daemon goes away (it shuts down) the enumeration is done with the final status
    /// [`StatusCode::ShuttingDown`], after the objects that had arrived.
    pub async fn next(&mut self, timeout: Duration, max: usize) -> Result<Next> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut timed_out = false;
        let mut reconnected = false;
        while self.buffer.len() < max && self.status.is_none() && !reconnected {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => {
                    timed_out = true;
                    break;
                }
                Ok(Some(Err(e))) => self.status = Some(FinalStatus::from_stream_error(e)),
                Ok(None) => {
                    self.status = Some(FinalStatus::failed("the call ended without a final status"))
                }
                Ok(Some(Ok(Some(Msg::Batch(b))))) => self
                    .buffer
                    .extend(b.objects.into_iter().map(Object::from_wire)),
                Ok(Some(Ok(Some(Msg::Status(s))))) => self.status = Some(FinalStatus::from_wire(s)),
                Ok(Some(Ok(Some(Msg::Reconnected)))) => reconnected = true,
                Ok(Some(Ok(_))) => {}
            }
        }
        let n = max.min(self.buffer.len());
        let objects: Vec<Object> = self.buffer.drain(..n).collect();
        let done = self.status.is_some() && self.buffer.is_empty();
        Ok(Next {
            objects,
            done,
            timed_out,
            status: if done { self.status.clone() } else { None },
            reconnected,
        })
    }
}

impl Manager {
    /// Opens a data query (waiting for the daemon if it is away: nothing was delivered
    /// yet, so asking again is safe).
    async fn open_query(&self, wql: &str, options: QueryOptions) -> Result<MsgStream> {
        let request = pb::ExecQueryRequest {
            wql: wql.into(),
            flags: options.flags.bits(),
            batch_size: options.batch_size,
        };
        let stream = self
            .conn
            .call(Retry::Always, |mut rpc| {
                let request = request.clone();
                async move { rpc.queries.exec_query(request).await }
            })
            .await?;
        Ok(messages(stream))
    }

    /// Opens an event subscription that is made again when the daemon comes back after
    /// going away (then [`Msg::Reconnected`] comes in between); when it does not come
    /// back, the stream ends with the `UNAVAILABLE` that says so.
    async fn open_events(&self, wql: &str) -> Result<MsgStream> {
        let (stream, generation) = self.open_event_stream(wql).await?;
        let state = (self.clone(), wql.to_string(), Some((stream, generation)));
        Ok(Box::pin(futures::stream::unfold(
            state,
            |(manager, wql, open)| async move {
                let (mut stream, generation) = open?;
                match stream.next().await {
                    Some(Err(s)) if is_gone(&s) && manager.conn.reconnects() => {
                        let reason = gone_reason(&s);
                        let reopened = match manager.conn.reconnect(generation, reason).await {
                            Ok(()) => manager.open_event_stream(&wql).await,
                            Err(e) => Err(e),
                        };
                        match reopened {
                            Ok(open) => {
                                Some((Ok(Some(Msg::Reconnected)), (manager, wql, Some(open))))
                            }
                            Err(e) => {
                                let end = tonic::Status::unavailable(e.to_string());
                                Some((Err(end), (manager, wql, None)))
                            }
                        }
                    }
                    Some(item) => Some((item, (manager, wql, Some((stream, generation))))),
                    None => None,
                }
            },
        )))
    }

    /// One event subscription on the current connection (waiting for the daemon if it is
    /// away), with the generation of that connection.
    async fn open_event_stream(&self, wql: &str) -> Result<(MsgStream, u64)> {
        let generation = AtomicU64::new(0);
        let stream = self
            .conn
            .call(Retry::Always, |mut rpc| {
                let request = pb::ExecNotificationQueryRequest { wql: wql.into() };
                let generation = &generation;
                async move {
                    generation.store(rpc.generation, Ordering::Relaxed);
                    rpc.queries.exec_notification_query(request).await
                }
            })
            .await?;
        Ok((messages(stream), generation.into_inner()))
    }

    /// Runs a WQL data query and returns every object (synchronous form).
    ///
    /// `SELECT * | prop, … FROM Job | File | Handler [WHERE …]`; a malformed query fails
    /// with `InvalidArgument` naming the position and what was expected.
    pub async fn exec_query(&self, wql: &str) -> Result<Vec<Object>> {
        self.exec_query_with(wql, QueryOptions::default()).await
    }

    /// [`Manager::exec_query`] with `options` (the batch size ferryd sends).
    pub async fn exec_query_with(&self, wql: &str, options: QueryOptions) -> Result<Vec<Object>> {
        let mut e = self.exec_query_semisync_with(wql, options).await?;
        let mut all = Vec::new();
        loop {
            let next = e.next(Duration::from_secs(3600), usize::MAX).await?;
            all.extend(next.objects);
            if next.done {
                match next.status {
                    Some(s) if s.code == StatusCode::Ok => return Ok(all),
                    Some(s) if s.code == StatusCode::ShuttingDown => {
                        return Err(Error::DaemonGone {
                            socket: self.socket().to_owned(),
                            reason: format!("{} while the query ran: run it again", s.message),
                        })
                    }
                    Some(s) => return Err(Error::Status(tonic::Status::internal(s.message))),
                    None => return Ok(all),
                }
            }
        }
    }

    /// Starts a data query and returns at once an [`Enumerator`] to pull results from
    /// (semisynchronous form).
    pub async fn exec_query_semisync(&self, wql: &str) -> Result<Enumerator> {
        self.exec_query_semisync_with(wql, QueryOptions::default())
            .await
    }

    /// [`Manager::exec_query_semisync`] with `options` (the batch size ferryd sends; the
    /// flags do not apply to this form).
    pub async fn exec_query_semisync_with(
        &self,
        wql: &str,
        options: QueryOptions,
    ) -> Result<Enumerator> {
        Ok(Enumerator::new(self.open_query(wql, options).await?))
    }

    /// Starts a data query whose results go to `sink` (asynchronous form). The query is
    /// checked before this returns: a malformed one fails here, not in the sink.
    pub async fn exec_query_async<S: ObjectSink>(
        &self,
        wql: &str,
        flags: CallFlags,
        sink: S,
    ) -> Result<AsyncCall> {
        let options = QueryOptions {
            flags,
            ..QueryOptions::default()
        };
        self.exec_query_async_with(wql, options, sink).await
    }

    /// [`Manager::exec_query_async`] with `options`: its flags and the batch size ferryd
    /// sends (each batch is one [`ObjectSink::indicate`]).
    pub async fn exec_query_async_with<S: ObjectSink>(
        &self,
        wql: &str,
        options: QueryOptions,
        sink: S,
    ) -> Result<AsyncCall> {
        let stream = self.open_query(wql, options).await?;
        Ok(spawn_call(stream, options.flags, sink))
    }

    /// Subscribes to events (a temporary consumer): `SELECT * FROM
    /// __InstanceCreationEvent | __InstanceModificationEvent | __InstanceDeletionEvent
    /// [WITHIN s] WHERE TargetInstance ISA 'Job' [AND …]`. Each event is one `indicate`.
    /// When the daemon goes away the subscription waits for it to come back, is made
    /// again, and the sink hears [`CallStatus::Reconnected`]; if it does not come back,
    /// the final status is [`StatusCode::ShuttingDown`].
    pub async fn exec_notification_query_async<S: ObjectSink>(
        &self,
        wql: &str,
        sink: S,
    ) -> Result<AsyncCall> {
        let stream = self.open_events(wql).await?;
        Ok(spawn_call(stream, CallFlags::empty(), sink))
    }

    /// Subscribes to events, semisynchronous form.
    pub async fn exec_notification_query_semisync(&self, wql: &str) -> Result<Enumerator> {
        Ok(Enumerator::new(self.open_events(wql).await?))
    }

    /// Calls `method` (`Resume`, `Suspend`, `Cancel`, `Complete`) on `job`; the job as it
    /// is afterwards is indicated to `sink`, then the final status.
    pub async fn exec_method_async<S: ObjectSink>(
        &self,
        job: &Job,
        method: &str,
        mut sink: S,
    ) -> Result<AsyncCall> {
        let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
        let conn = self.conn.clone();
        let req = pb::ExecMethodRequest {
            job_id: job.id().to_string(),
            method: method.into(),
        };
        let (cancel_tx, mut cancel_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let status = tokio::select! {
                biased;
                _ = &mut cancel_rx => FinalStatus { code: StatusCode::CallCancelled, message: "cancelled by the caller".into() },
                r = conn.call(Retry::IfNeverRan, |mut rpc| {
                    let req = req.clone();
                    async move { rpc.queries.exec_method(req).await }
                }) => match r.and_then(|r| {
                    JobInfo::from_wire(r.job.ok_or_else(|| Error::Protocol("ExecMethod returned no job".into()))?)
                }) {
                    Ok(info) => {
                        let json = serde_json::to_value(&info).unwrap_or_default();
                        sink.indicate(id, &[Object::from_json("Job", json)]);
                        FinalStatus { code: StatusCode::Ok, message: String::new() }
                    }
                    Err(e) => FinalStatus::failed(e.to_string()),
                },
            };
            sink.set_status(id, CallStatus::Complete(status));
            drop(sink);
        });
        Ok(AsyncCall {
            id,
            cancel: Some(cancel_tx),
            task,
        })
    }
}
