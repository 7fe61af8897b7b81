//! The streaming query calls: data queries in batches with optional progress, event
//! subscriptions with a bounded buffer, and method calls.

use std::sync::Arc;

use ferry_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert;
use super::handlers::BoxStream;
use crate::service::{EventFilter, Service};

/// `CallFlags::SEND_STATUS`.
pub const SEND_STATUS: u32 = 0x1;
/// Objects per batch when the client does not say.
const DEFAULT_BATCH: usize = 100;
/// A data query with at least this many objects gives the memory it used back to the
/// system when it is done (the results are built in one go, then freed).
const TRIM_AFTER: u64 = 1000;
/// Event messages buffered per subscriber before it counts as overflowing.
pub const EVENT_BUFFER: usize = 1024;

pub const STATUS_OK: (i32, &str) = (0, "OK");
pub const STATUS_FAILED: (i32, &str) = (1, "FAILED");
pub const STATUS_EVENTS_DROPPED: (i32, &str) = (3, "EVENTS_DROPPED");
pub const STATUS_SHUTTING_DOWN: (i32, &str) = (4, "SHUTTING_DOWN");

fn final_status((code, name): (i32, &str), message: impl Into<String>) -> pb::QueryMessage {
    pb::QueryMessage {
        kind: Some(pb::query_message::Kind::Status(pb::FinalStatus {
            code,
            code_name: name.into(),
            message: message.into(),
        })),
    }
}

fn batch(objects: Vec<pb::Object>) -> pb::QueryMessage {
    pb::QueryMessage {
        kind: Some(pb::query_message::Kind::Batch(pb::ObjectBatch { objects })),
    }
}

/// Runs a data query; the stream carries batches, progress (when asked) and one final
/// status. A client that goes away stops the call.
pub async fn exec_query(
    svc: Arc<Service>,
    owner: u32,
    req: pb::QueryRequest,
) -> Result<BoxStream<pb::QueryMessage>, Status> {
    let plan = svc.plan_select(&req.wql)?;
    let size = if req.batch_size == 0 {
        DEFAULT_BATCH
    } else {
        req.batch_size as usize
    };
    let send_status = req.flags & SEND_STATUS != 0;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let objects = svc.run_select(owner, &plan);
        let total = objects.len() as u64;
        let mut done = 0u64;
        for chunk in objects.chunks(size) {
            let msg = batch(chunk.iter().map(convert::object).collect());
            if tx.send(Ok(msg)).await.is_err() {
                return;
            }
            done += chunk.len() as u64;
            if send_status {
                let p = pb::QueryMessage {
                    kind: Some(pb::query_message::Kind::Progress(pb::Progress {
                        done,
                        total,
                    })),
                };
                if tx.send(Ok(p)).await.is_err() {
                    return;
                }
            }
        }
        drop(objects);
        if total >= TRIM_AFTER {
            crate::service::release_free_memory();
        }
        let _ = tx
            .send(Ok(final_status(STATUS_OK, format!("{total} objects"))))
            .await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Subscribes to events. Events are pushed as they happen, each in its own batch, in order.
/// A subscriber that lets `EVENT_BUFFER` messages pile up is cut off: it receives, after
/// what was buffered, a final `EVENTS_DROPPED` status — never a silent gap.
pub async fn exec_notification_query(
    svc: Arc<Service>,
    owner: u32,
    req: pb::QueryRequest,
) -> Result<BoxStream<pb::QueryMessage>, Status> {
    let plan = svc.plan_event(&req.wql)?;
    let mut events = svc.subscribe();
    let mut filter = EventFilter::new(plan, owner);
    let (tx, rx) = mpsc::channel(EVENT_BUFFER);
    tokio::spawn(async move {
        let reason = loop {
            let ev = tokio::select! {
                _ = tx.closed() => return,
                _ = svc.shutting_down() => break (STATUS_SHUTTING_DOWN, "ferryd is shutting down".to_string()),
                ev = events.recv() => ev,
            };
            let ev = match ev {
                Ok(ev) => ev,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    break (
                        STATUS_EVENTS_DROPPED,
                        format!("{n} events were dropped: the subscriber fell behind"),
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let Some(obj) = filter.accept(&ev) else {
                continue;
            };
            match tx.try_send(Ok(batch(vec![convert::object(&obj)]))) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    break (
                        STATUS_EVENTS_DROPPED,
                        format!(
                            "events were dropped: more than {EVENT_BUFFER} were waiting to be read"
                        ),
                    );
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        };
        drop(events);
        tracing::info!("event subscription ended: {}", reason.1);
        // Waits for room without holding up anyone else: this task only.
        let _ = tx.send(Ok(final_status(reason.0, reason.1))).await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
