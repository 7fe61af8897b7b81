//! The cache process of the system-wide daemon (`ferryd --cache`, started by the broker
//! as the system user `_ferry`): peer caching for the whole machine. It holds the fleet's
//! identity (the node key, whose bytes the broker read as root and handed over), the
//! cache in its own folder (`STATE/cache`), the peer port and discovery — all of
//! `peers/`, run as it runs in a per-user daemon.
//!
//! Workers reach it on two local sockets the broker bound: the *cache socket*
//! (`cache_protocol.rs` frames: finding content among the peers, the files that qualify
//! for the cache and the downloads shared with the swarm, each handed over as an open
//! descriptor — never a path), and the *gateway* (`gateway.rs`: the ranges a worker
//! fetches from peers, over the fleet's mutual TLS, which only this process can speak).
//! Who connects is read from the kernel (`SO_PEERCRED`); the whole cache and the fleet's
//! status are shown to root and the admin group's members only.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use parking_lot::Mutex;

use super::cache_protocol::{
    Answer, Ask, EntryWire, HolderWire, Offer, PeerWire, Query, Start, StatusWire,
};
use super::ipc;
use super::protocol::{Refusal, RefusalKind};
use crate::config::Config;
use crate::engine::swarm::{ShareGuard, SharedDownload, SharedRanges};
use crate::engine::ContentQuery;
use crate::peers::{Incoming, Peers};
use crate::store::Store;

/// Runs the cache process until the broker closes its link (or SIGTERM).
pub async fn run(
    config: Config,
    state_dir: PathBuf,
    link: std::os::unix::net::UnixStream,
) -> anyhow::Result<()> {
    let (_tx, mut rx) = ipc::link(link)?;
    let (start, fds) = rx
        .recv::<Start>()
        .await?
        .context("the broker closed the link before starting the cache process")?;
    let [peer_port, local, gateway]: [OwnedFd; 3] = fds
        .try_into()
        .map_err(|_| anyhow::anyhow!("the broker passed the wrong number of sockets"))?;
    let store = Arc::new(Store::open(&state_dir)?);
    let material = crate::peers::tls::Material {
        ca_cert: start.ca_cert,
        node_cert: start.node_cert,
        node_key: start.node_key,
        crl: start.crl,
    };
    let fleet = crate::peers::tls::from_material(&config.peers, &material)?;
    drop(material);
    let peers = Peers::start_with(
        &config.peers,
        &state_dir,
        store.clone(),
        fleet,
        std::net::TcpListener::from(peer_port),
    )
    .await
    .context("peer caching ([peers] in ferryd.toml)")?;
    let admin_gid = crate::owner::group_id(&config.admin_group);
    let local = listener(local)?;
    let gateway = listener(gateway)?;
    tokio::spawn(super::gateway::serve(gateway, peers.clone()));
    let terminated = crate::daemon::termination();
    tokio::pin!(terminated);
    tracing::info!("cache process ready");
    loop {
        tokio::select! {
            conn = local.accept() => match conn {
                Ok((stream, _)) => {
                    let peers = peers.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_worker(peers, stream, admin_gid).await {
                            tracing::debug!("a worker's link to the cache ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("the cache socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            msg = rx.recv::<Start>() => {
                if !matches!(msg, Ok(Some(_))) {
                    break;
                }
            }
            _ = &mut terminated => break,
        }
    }
    peers.shutdown();
    store.close();
    tracing::info!("cache process stopped");
    Ok(())
}

fn listener(fd: OwnedFd) -> anyhow::Result<tokio::net::UnixListener> {
    let l = std::os::unix::net::UnixListener::from(fd);
    l.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(l)?)
}

fn query(q: Query) -> ContentQuery {
    ContentQuery {
        url: q.url,
        validator: q.validator,
        length: q.length,
        sha256: q.sha256,
    }
}

/// The ranges of a worker's shared download, as it last said.
#[derive(Default)]
struct RemoteRanges {
    durable: Mutex<Vec<(u64, u64)>>,
    pending: Mutex<Vec<(u64, u64)>>,
}

impl SharedRanges for RemoteRanges {
    fn durable(&self) -> Vec<(u64, u64)> {
        self.durable.lock().clone()
    }
    fn pending(&self) -> Vec<(u64, u64)> {
        self.pending.lock().clone()
    }
}

/// A regular file from a descriptor a worker handed over (anything else is refused:
/// a pipe or a socket would hang the reader).
fn regular_file(fd: Option<OwnedFd>) -> Result<std::fs::File, Refusal> {
    let file =
        std::fs::File::from(fd.ok_or_else(|| {
            Refusal::new(RefusalKind::PermissionDenied, "no file was handed over")
        })?);
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        _ => Err(Refusal::new(
            RefusalKind::PermissionDenied,
            "what was handed over is not a regular file",
        )),
    }
}

/// Serves one worker's link until it closes: its shares end with it.
async fn serve_worker(
    peers: Arc<Peers>,
    stream: tokio::net::UnixStream,
    admin_gid: Option<u32>,
) -> anyhow::Result<()> {
    let who = crate::rpc::peer_credentials(&stream)?;
    let admin = who.uid == 0
        || admin_gid.is_some_and(|g| crate::owner::Account::of(who.uid).groups.contains(&g));
    let (tx, mut rx) = ipc::link(stream.into_std()?)?;
    let mut shares: HashMap<u64, (ShareGuard, Arc<RemoteRanges>)> = HashMap::new();
    let refused = || {
        Refusal::new(
            RefusalKind::PermissionDenied,
            "only root and the members of the admin group may see or clear the machine's \
             peer cache and the fleet's status",
        )
    };
    while let Some((ask, mut fds)) = rx.recv::<Ask>().await? {
        let answer = match ask {
            Ask::Node { request } => Some(Answer::Node {
                request,
                node: peers.finder().node(),
            }),
            Ask::Find { request, query: q } => {
                let (peers, tx) = (peers.clone(), tx.clone());
                tokio::spawn(async move {
                    let offers = peers
                        .finder()
                        .find(&query(q))
                        .await
                        .into_iter()
                        .map(|o| Offer {
                            peer: o.peer,
                            content_url: o.content_url,
                            length: o.length,
                            sha256: o.sha256,
                        })
                        .collect();
                    let _ = tx.send(&Answer::Found { request, offers }, &[]).await;
                });
                None
            }
            Ask::Holders { request, query: q } => {
                let (peers, tx) = (peers.clone(), tx.clone());
                tokio::spawn(async move {
                    let holders = peers
                        .finder()
                        .holders(&query(q))
                        .await
                        .into_iter()
                        .map(|h| HolderWire {
                            peer: h.peer,
                            node: h.node,
                            content_url: h.content_url,
                            length: h.length,
                            complete: h.complete,
                            ranges: h.ranges,
                            pending: h.pending,
                        })
                        .collect();
                    let _ = tx.send(&Answer::Holders { request, holders }, &[]).await;
                });
                None
            }
            Ask::Fetched { peer, bytes } => {
                peers.finder().fetched(&peer, bytes);
                None
            }
            Ask::Failed { peer, why } => {
                peers.finder().failed(&peer, &why);
                None
            }
            Ask::Ban { peers: list, why } => {
                peers.ban(&list, &why);
                None
            }
            Ask::Offer {
                request,
                url,
                validator,
                sha256,
            } => {
                let file = regular_file(fds.pop());
                let (peers, tx) = (peers.clone(), tx.clone());
                tokio::spawn(async move {
                    let result = match file {
                        Ok(f) => {
                            peers
                                .offer(
                                    f,
                                    Incoming {
                                        url,
                                        validator,
                                        sha256,
                                    },
                                )
                                .await;
                            Ok(0)
                        }
                        Err(r) => Err(r),
                    };
                    let _ = tx.send(&Answer::Done { request, result }, &[]).await;
                });
                None
            }
            Ask::Holds { request, query: q } => {
                let held = peers.holds(&q.url, q.validator.as_deref(), q.sha256.as_deref());
                Some(Answer::Done {
                    request,
                    result: Ok(held as u64),
                })
            }
            Ask::Evict { request, query: q } => {
                let n = peers.evict(&q.url, q.validator.as_deref(), q.sha256.as_deref());
                Some(Answer::Done {
                    request,
                    result: Ok(n as u64),
                })
            }
            Ask::Share {
                share,
                query: q,
                length,
            } => {
                if let Ok(file) = regular_file(fds.pop()) {
                    let ranges = Arc::new(RemoteRanges::default());
                    let guard = peers.finder().share(SharedDownload {
                        query: query(q),
                        length,
                        file,
                        ranges: ranges.clone(),
                    });
                    shares.insert(share, (guard, ranges));
                }
                None
            }
            Ask::ShareRanges {
                share,
                durable,
                pending,
            } => {
                if let Some((_, r)) = shares.get(&share) {
                    *r.durable.lock() = durable;
                    *r.pending.lock() = pending;
                }
                None
            }
            Ask::Unshare { share } => {
                shares.remove(&share);
                None
            }
            Ask::Entries { request } => Some(Answer::Entries {
                request,
                result: if admin {
                    Ok(peers.entries().iter().map(EntryWire::from).collect())
                } else {
                    Err(refused())
                },
            }),
            Ask::Clear { request } => Some(Answer::Done {
                request,
                result: if admin {
                    let (entries, bytes) = peers.clear();
                    tracing::info!(uid = who.uid, entries, bytes, "the peer cache was cleared");
                    Ok(entries)
                } else {
                    Err(refused())
                },
            }),
            Ask::Status { request } => Some(Answer::Status {
                request,
                result: if admin {
                    Ok(status(&peers))
                } else {
                    Err(refused())
                },
            }),
        };
        if let Some(a) = answer {
            tx.send(&a, &[]).await?;
        }
    }
    Ok(())
}

fn status(peers: &Peers) -> StatusWire {
    let s = peers.status();
    StatusWire {
        fleet_id: s.fleet_id,
        node_name: s.node_name,
        listen_address: s.listen_address,
        discovery: s.discovery,
        peers: s
            .peers
            .into_iter()
            .map(|p| PeerWire {
                name: p.name,
                address: p.address,
                found: format!("{:?}", p.found).to_lowercase(),
                state: format!("{:?}", p.state).to_lowercase(),
                last_seen_ms: p.last_seen_ms,
                banned_until_ms: p.banned_until_ms,
                bytes_fetched: p.bytes_fetched,
                failures: p.failures,
                last_error: p.last_error,
            })
            .collect(),
        cache_entries: s.cache_entries,
        cache_bytes: s.cache_bytes,
        cache_limit: s.cache_limit,
        bytes_served: s.bytes_served,
        lookup_hits: s.lookup_hits,
        lookup_misses: s.lookup_misses,
        cert_expires_ms: s.cert_expires_ms,
    }
}
