//! The broker's side of the cache process: it starts it as the cache user (`_ferry`,
//! `[system] cache_user`), hands it the fleet's trust material and the three listening
//! sockets it bound as root (the peer port, the cache socket, the gateway), and starts
//! it again after a crash.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::cache_protocol::Start;
use super::{ipc, spawn};
use crate::owner::Account;

/// What the cache process is given.
pub struct CacheSetup {
    /// The fleet's CA certificate, node certificate and key (PEM), read as root.
    pub ca_cert: Vec<u8>,
    pub node_cert: Vec<u8>,
    pub node_key: Vec<u8>,
    /// The fleet's revocation list (PEM); empty when there is none.
    pub crl: Vec<u8>,
    /// The peer port, the cache socket and the gateway socket, bound as root.
    pub listeners: [OwnedFd; 3],
}

/// The cache user's account; an error naming the setting when it does not exist.
pub fn cache_account(name: &str) -> anyhow::Result<Account> {
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("looking up the cache user '{name}'"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the cache user '{name}' does not exist: the Debian package creates it \
                 (`adduser --system --group _ferry`), or name another in [system] cache_user"
            )
        })?;
    Ok(Account::of(user.uid.as_raw()))
}

/// Runs the cache process until `stop`, starting it again (after a pause) whenever it
/// ends before.
pub async fn supervise(
    setup: CacheSetup,
    account: Account,
    program: std::fs::File,
    state_dir: PathBuf,
    config_path: PathBuf,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        match run_once(&setup, &account, &program, &state_dir, &config_path, &stop).await {
            Ok(()) if stop.is_cancelled() => return,
            Ok(()) => tracing::warn!("the cache process ended; starting it again"),
            Err(e) => tracing::error!("the cache process: {e:#}"),
        }
        failures += 1;
        let pause = Duration::from_millis(250 << failures.min(8)).min(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
    }
}

async fn run_once(
    setup: &CacheSetup,
    account: &Account,
    program: &std::fs::File,
    state_dir: &std::path::Path,
    config_path: &std::path::Path,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let (ours, theirs) = ipc::pair()?;
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(program));
    let mut cmd = spawn::command(spawn::Start {
        program: std::path::Path::new(&path),
        args: vec![
            "--cache".into(),
            "--state-dir".into(),
            state_dir.into(),
            "--config".into(),
            config_path.into(),
        ],
        account,
        control: OwnedFd::from(theirs),
        max_files: 65536,
        env: Vec::new(),
    })?;
    let mut child = cmd.spawn().context("starting the cache process")?;
    drop(cmd);
    tracing::info!(pid = child.id(), user = %account.name, "cache process started");
    let (tx, mut rx) = ipc::link(ours)?;
    let fds: Vec<_> = setup.listeners.iter().map(|f| f.as_fd()).collect();
    tx.send(
        &Start {
            ca_cert: setup.ca_cert.clone(),
            node_cert: setup.node_cert.clone(),
            node_key: setup.node_key.clone(),
            crl: setup.crl.clone(),
        },
        &fds,
    )
    .await?;
    tokio::select! {
        status = child.wait() => {
            let status = status?;
            if !stop.is_cancelled() {
                anyhow::bail!("the cache process ended ({status})");
            }
        }
        // The cache process says nothing on its link; it ends when it ends.
        _ = rx.recv::<Start>() => {
            let _ = child.wait().await;
        }
        _ = stop.cancelled() => {
            // Closing the link stops it; it is killed if it does not.
            drop(tx);
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
    Ok(())
}
