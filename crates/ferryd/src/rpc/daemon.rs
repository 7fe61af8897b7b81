//! `ferry.v1.Daemon`: the daemon's status, and shutdown on request.

use std::path::PathBuf;
use std::sync::Arc;

use ferry_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::relay::{self, Broker};
use super::{admin_caller, caller};
use crate::service::Service;

/// The `Daemon` service.
pub struct DaemonApi {
    pub svc: Arc<Service>,
    /// The system-wide daemon's broker (a worker only), which stops the machine's daemon.
    pub broker: Option<Arc<dyn Broker>>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

#[tonic::async_trait]
impl pb::daemon_server::Daemon for DaemonApi {
    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let caller = admin_caller(&req)?;
        let cost = self.svc.cost_state();
        // A user sees their own jobs; an administrator of the system-wide daemon the
        // machine's (every user's worker's counts added up).
        let mut jobs = self.svc.job_count() as u64;
        let mut active = self.svc.active_transfers() as u64;
        let mut rate = self.svc.bytes_per_second();
        if let Some((broker, conn)) =
            relay::for_admin(&self.broker, &caller, self.svc.is_admin(&caller))
        {
            let answers = relay::on_every_worker(broker, conn, |ch| async move {
                Ok(pb::daemon_client::DaemonClient::new(ch)
                    .status(pb::StatusRequest {})
                    .await?
                    .into_inner())
            })
            .await?;
            for s in answers.into_iter().filter_map(|(_, a)| a.ok()) {
                jobs += s.jobs;
                active += s.active_transfers;
                rate += s.bytes_per_second;
            }
        }
        Ok(Response::new(pb::StatusResponse {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            socket_path: self.socket.display().to_string(),
            state_dir: self.state_dir.display().to_string(),
            jobs,
            active_transfers: active,
            started_unix_ms: self.svc.started_ms(),
            bandwidth_limit: self.svc.config().bandwidth_limit,
            limits_in_force: self
                .svc
                .limits_in_force()
                .into_iter()
                .map(|l| pb::ScheduledLimit {
                    limit: l.limit,
                    priorities: l
                        .priorities
                        .into_iter()
                        .map(|p| super::convert::priority(p) as i32)
                        .collect(),
                    period: l.period,
                })
                .collect(),
            bytes_per_second: rate,
            network_metered: cost.metered,
            network_cost_state: super::convert::cost_state(cost.state()) as i32,
            network_roaming: cost.roaming,
            network_cost_source: cost.source,
            network_roaming_source: cost.roaming_source,
        }))
    }

    async fn shutdown(
        &self,
        req: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        let caller = caller(&req)?;
        self.svc.may_shut_down(&caller)?;
        if let (Some(broker), Some(conn)) = (&self.broker, caller.connection) {
            // The machine's daemon: the broker checks and stops every worker, this one too.
            broker.shutdown(conn).await?;
            return Ok(Response::new(pb::ShutdownResponse {}));
        }
        tracing::info!(uid = caller.uid, "shutdown requested by a client");
        self.svc.request_shutdown();
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}
