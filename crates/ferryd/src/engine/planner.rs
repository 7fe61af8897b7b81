//! How a download goes, chosen by a pure function of what is known: the file's state, the
//! job's options, the origin's answer to one probe ([`OriginHead`]) and what the fleet's
//! peers said. [`plan`] answers with the next [`Step`]: probe the origin (one `HEAD`), ask
//! the peers, or run a [`Strategy`]. The driver (`download`) gathers what was asked for
//! and plans again, so the origin is probed at most once, and only when a choice depends
//! on its answer.
//!
//! | the file                          | the choice                                              |
//! |-----------------------------------|---------------------------------------------------------|
//! | segments recorded                 | finish them from the origin                             |
//! | bytes from one connection         | one connection, from the recorded offset                |
//! | new, peers may be asked           | ask them (by SHA-256, else by the probe's URL, strong validator and length; never content the origin marks `no-store`/`private`) |
//! | … some hold it whole              | whole from those that agree on length and SHA-256       |
//! | … none does                       | the swarm, for ≥ 2 MiB from an origin that serves ranges |
//! | new, several connections allowed  | segments from the origin when the probe gives ≥ 8 MiB, ranges and a strong validator |
//! | anything else                     | one connection                                          |
//!
//! May use: the strategies' inputs (`segmented`, `frompeers`, `swarm`), the segment
//! table's split, the probe's answer and the fleet port's types.

use std::fmt;

use super::fleet::{ContentQuery, PeerOffer};
use super::frompeers::FromPeers;
use super::probe::OriginHead;
use super::segmented::NewSegments;
use super::segtable::{split, MIN_SEGMENT};
use super::swarm::{Join, MIN_PIECE};

/// What the origin said to the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Not probed yet.
    NotAsked,
    /// No usable answer (none in time, a failure, not a 200).
    Nothing,
    Said(OriginHead),
}

/// What the fleet's peers answered to a query.
pub struct PeersSaid {
    pub query: ContentQuery,
    pub offers: Vec<PeerOffer>,
}

/// What is known when choosing.
pub struct Facts {
    /// The job's URL.
    pub url: String,
    /// Bytes on disk from one connection (the recorded offset).
    pub offset: u64,
    /// Segments are recorded: a multi-connection download is under way.
    pub segments: bool,
    /// The SHA-256 the file must have, lower-case hex.
    pub sha256: Option<String>,
    /// Connections the job may open to the origin.
    pub connections: u32,
    /// The fleet's peers may be asked for this file.
    pub peers: bool,
    pub head: Head,
    /// `None` until the peers were asked.
    pub peers_said: Option<PeersSaid>,
}

/// What the driver does next.
pub enum Step {
    /// Probe the origin (one `HEAD`), then plan again.
    Probe,
    /// Ask the fleet who holds the content whole, then plan again.
    AskPeers(ContentQuery),
    Run(Strategy),
}

/// A way to download the file.
pub enum Strategy {
    /// Every byte from the peers that hold the content whole, the origin in reserve.
    FromPeers(FromPeers),
    /// With the machines of the fleet that fetch the content now.
    Swarm(Join),
    /// Several connections to the origin, over new segments.
    Segmented(NewSegments),
    /// The recorded segments, finished from the origin.
    ResumeSegments,
    /// One connection to the origin.
    Single,
}

/// The next step for a download of which `f` is known.
pub fn plan(f: &Facts) -> Step {
    if f.segments {
        return Step::Run(Strategy::ResumeSegments);
    }
    if f.offset > 0 {
        // Under way over one connection: finish it that way.
        return Step::Run(Strategy::Single);
    }
    if f.peers {
        if let Some(step) = from_the_fleet(f) {
            return step;
        }
    }
    from_the_origin(f)
}

/// A new file the peers may be asked for: the step towards them; `None` when the fleet
/// cannot help (the origin then serves the file).
fn from_the_fleet(f: &Facts) -> Option<Step> {
    let Some(said) = &f.peers_said else {
        return ask_the_fleet(f);
    };
    let agreeing = agreeing(&said.query, &said.offers);
    let Some(first) = agreeing.first() else {
        // Nobody holds it whole: join the machines that want it now.
        return join_the_swarm(f);
    };
    if first.length == 0 {
        return None;
    }
    let (validator, final_url) = match fleet_key(&f.head) {
        Some((_, validator, head)) => (Some(validator.to_string()), head.final_url.clone()),
        None => (None, f.url.clone()),
    };
    Some(Step::Run(Strategy::FromPeers(FromPeers {
        length: first.length,
        sha256: first.sha256.clone(),
        offers: agreeing,
        validator,
        final_url,
    })))
}

/// Asks the fleet by SHA-256 when the file has one (the origin is not asked), else by the
/// probe's URL, validator and length.
fn ask_the_fleet(f: &Facts) -> Option<Step> {
    if let Some(sha256) = &f.sha256 {
        return Some(Step::AskPeers(ContentQuery {
            url: f.url.clone(),
            validator: None,
            length: None,
            sha256: Some(sha256.clone()),
        }));
    }
    if f.head == Head::NotAsked {
        return Some(Step::Probe);
    }
    let (length, validator, _) = fleet_key(&f.head)?;
    Some(Step::AskPeers(ContentQuery {
        url: f.url.clone(),
        validator: Some(validator.to_string()),
        length: Some(length),
        sha256: None,
    }))
}

/// Joins the swarm when the file is large enough to cut into pieces and the origin
/// serves them.
fn join_the_swarm(f: &Facts) -> Option<Step> {
    if f.head == Head::NotAsked {
        return Some(Step::Probe);
    }
    let (length, validator, head) = fleet_key(&f.head)?;
    if length < 2 * MIN_PIECE || !head.ranges {
        return None;
    }
    Some(Step::Run(Strategy::Swarm(Join {
        query: ContentQuery {
            url: f.url.clone(),
            validator: Some(validator.to_string()),
            length: Some(length),
            sha256: f.sha256.clone(),
        },
        length,
        validator: validator.to_string(),
        final_url: head.final_url.clone(),
    })))
}

/// The origin's length and strong validator, when its answer gives both and lets the
/// content be shared (`None`: the fleet is not told about it).
fn fleet_key(head: &Head) -> Option<(u64, &str, &OriginHead)> {
    let Head::Said(h) = head else { return None };
    if h.no_store {
        return None;
    }
    Some((h.length?, h.validator.as_deref()?, h))
}

/// The offers that answer `query` and agree with the first on length and SHA-256.
fn agreeing(query: &ContentQuery, offers: &[PeerOffer]) -> Vec<PeerOffer> {
    let answering: Vec<&PeerOffer> = offers
        .iter()
        .filter(|o| query.length.is_none_or(|l| o.length == l))
        .filter(|o| query.sha256.as_ref().is_none_or(|s| *s == o.sha256))
        .collect();
    let Some(first) = answering.first() else {
        return Vec::new();
    };
    answering
        .iter()
        .filter(|o| o.length == first.length && o.sha256 == first.sha256)
        .map(|o| (*o).clone())
        .collect()
}

/// From the origin: over several connections when the job allows them and the probe
/// shows a large file with ranges and a strong validator, else over one.
fn from_the_origin(f: &Facts) -> Step {
    if f.connections <= 1 {
        return Step::Run(Strategy::Single);
    }
    let h = match &f.head {
        Head::NotAsked => return Step::Probe,
        Head::Nothing => return Step::Run(Strategy::Single),
        Head::Said(h) => h,
    };
    match (h.length, &h.validator) {
        (Some(total), Some(validator)) if h.ranges && total >= 2 * MIN_SEGMENT => {
            let n = (f.connections as u64).min(total / MIN_SEGMENT);
            Step::Run(Strategy::Segmented(NewSegments {
                total,
                validator: validator.clone(),
                final_url: h.final_url.clone(),
                no_store: h.no_store,
                segments: split(total, n),
            }))
        }
        _ => Step::Run(Strategy::Single),
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::FromPeers(p) => write!(f, "whole from {} peers", p.offers.len()),
            Strategy::Swarm(_) => write!(f, "join the swarm"),
            Strategy::Segmented(s) => write!(f, "{} segments from the origin", s.segments.len()),
            Strategy::ResumeSegments => write!(f, "the recorded segments"),
            Strategy::Single => write!(f, "one connection"),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Probe => write!(f, "probe the origin"),
            Step::AskPeers(q) if q.sha256.is_some() => write!(f, "ask the peers by SHA-256"),
            Step::AskPeers(_) => write!(f, "ask the peers by URL, validator and length"),
            Step::Run(s) => s.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const URL: &str = "http://origin/f";
    const SHA: &str = "aa11";

    /// A new file, one connection, no peers, nothing asked.
    fn new_file() -> Facts {
        Facts {
            url: URL.into(),
            offset: 0,
            segments: false,
            sha256: None,
            connections: 1,
            peers: false,
            head: Head::NotAsked,
            peers_said: None,
        }
    }

    /// An origin's answer: `length` bytes, a strong validator, ranges.
    fn said(length: u64) -> OriginHead {
        OriginHead {
            length: Some(length),
            validator: Some("\"v1\"".into()),
            ranges: true,
            no_store: false,
            final_url: "http://origin/final".into(),
        }
    }

    fn offer(peer: &str, length: u64, sha256: &str) -> PeerOffer {
        PeerOffer {
            peer: peer.into(),
            content_url: format!("https://{peer}/v1/content/1"),
            length,
            sha256: sha256.into(),
            client: client(),
        }
    }

    /// One HTTP client for every offer of the tests.
    fn client() -> reqwest::Client {
        static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        CLIENT.get_or_init(super::super::netclient::shared).clone()
    }

    /// The peers' answer to what `f` would ask them.
    fn peers_said(f: &Facts, offers: Vec<PeerOffer>) -> Option<PeersSaid> {
        let Step::AskPeers(query) = plan(f) else {
            panic!("the planner did not ask the peers: {}", plan(f))
        };
        Some(PeersSaid { query, offers })
    }

    #[test]
    fn each_situation_has_its_strategy() {
        let with = |change: &dyn Fn(&mut Facts)| {
            let mut f = new_file();
            change(&mut f);
            f
        };
        let peers_by_url = |head: OriginHead, offers: Vec<PeerOffer>| {
            let mut f = with(&|f| f.peers = true);
            f.head = Head::Said(head);
            f.peers_said = peers_said(&f, offers);
            f
        };
        let peers_by_sha = |offers: Vec<PeerOffer>| {
            let mut f = with(&|f| {
                f.peers = true;
                f.sha256 = Some(SHA.into());
            });
            f.peers_said = peers_said(&f, offers);
            f
        };
        let table: Vec<(&str, Facts, &str)> = vec![
            (
                "segments recorded",
                with(&|f| {
                    f.segments = true;
                    f.offset = 5;
                    f.peers = true;
                    f.connections = 4;
                }),
                "the recorded segments",
            ),
            (
                "bytes from one connection",
                with(&|f| {
                    f.offset = 100;
                    f.peers = true;
                    f.connections = 4;
                }),
                "one connection",
            ),
            ("new, one connection", new_file(), "one connection"),
            (
                "new, four connections, not probed",
                with(&|f| f.connections = 4),
                "probe the origin",
            ),
            (
                "four connections, 64 MiB",
                with(&|f| {
                    f.connections = 4;
                    f.head = Head::Said(said(64 * MIB));
                }),
                "4 segments from the origin",
            ),
            (
                "four connections, 12 MiB: 4 MiB segments at least",
                with(&|f| {
                    f.connections = 4;
                    f.head = Head::Said(said(12 * MIB));
                }),
                "3 segments from the origin",
            ),
            (
                "four connections, under 8 MiB",
                with(&|f| {
                    f.connections = 4;
                    f.head = Head::Said(said(8 * MIB - 1));
                }),
                "one connection",
            ),
            (
                "four connections, no ranges",
                with(&|f| {
                    f.connections = 4;
                    f.head = Head::Said(OriginHead {
                        ranges: false,
                        ..said(64 * MIB)
                    });
                }),
                "one connection",
            ),
            (
                "four connections, no strong validator",
                with(&|f| {
                    f.connections = 4;
                    f.head = Head::Said(OriginHead {
                        validator: None,
                        ..said(64 * MIB)
                    });
                }),
                "one connection",
            ),
            (
                "four connections, no length",
                with(&|f| {
                    f.connections = 4;
                    f.head = Head::Said(OriginHead {
                        length: None,
                        ..said(64 * MIB)
                    });
                }),
                "one connection",
            ),
            (
                "four connections, the probe failed",
                with(&|f| {
                    f.connections = 4;
                    f.head = Head::Nothing;
                }),
                "one connection",
            ),
            (
                "four connections, no-store: still segments",
                with(&|f| {
                    f.connections = 4;
                    f.head = Head::Said(OriginHead {
                        no_store: true,
                        ..said(64 * MIB)
                    });
                }),
                "4 segments from the origin",
            ),
            (
                "peers, no SHA-256, not probed",
                with(&|f| f.peers = true),
                "probe the origin",
            ),
            (
                "peers, no SHA-256, probed",
                with(&|f| {
                    f.peers = true;
                    f.head = Head::Said(said(64 * MIB));
                }),
                "ask the peers by URL, validator and length",
            ),
            (
                "peers, no-store: never asked",
                with(&|f| {
                    f.peers = true;
                    f.head = Head::Said(OriginHead {
                        no_store: true,
                        ..said(64 * MIB)
                    });
                }),
                "one connection",
            ),
            (
                "peers, no-store, four connections",
                with(&|f| {
                    f.peers = true;
                    f.connections = 4;
                    f.head = Head::Said(OriginHead {
                        no_store: true,
                        ..said(64 * MIB)
                    });
                }),
                "4 segments from the origin",
            ),
            (
                "peers, no validator: never asked",
                with(&|f| {
                    f.peers = true;
                    f.head = Head::Said(OriginHead {
                        validator: None,
                        ..said(64 * MIB)
                    });
                }),
                "one connection",
            ),
            (
                "peers, the probe failed",
                with(&|f| {
                    f.peers = true;
                    f.head = Head::Nothing;
                }),
                "one connection",
            ),
            (
                "peers, SHA-256 known: no probe first",
                with(&|f| {
                    f.peers = true;
                    f.sha256 = Some(SHA.into());
                }),
                "ask the peers by SHA-256",
            ),
            (
                "two peers hold it",
                peers_by_url(
                    said(64 * MIB),
                    vec![offer("a", 64 * MIB, SHA), offer("b", 64 * MIB, SHA)],
                ),
                "whole from 2 peers",
            ),
            (
                "three peers, one disagrees with the first",
                peers_by_sha(vec![
                    offer("a", 64 * MIB, SHA),
                    offer("b", 64 * MIB + 1, SHA),
                    offer("c", 64 * MIB, SHA),
                ]),
                "whole from 2 peers",
            ),
            (
                "an offer of another length is no offer: the swarm",
                peers_by_url(said(64 * MIB), vec![offer("a", 64 * MIB + 1, SHA)]),
                "join the swarm",
            ),
            (
                "nobody holds it, 2 MiB with ranges: the swarm",
                peers_by_url(said(2 * MIB), vec![]),
                "join the swarm",
            ),
            (
                "nobody holds it, under 2 MiB",
                peers_by_url(said(2 * MIB - 1), vec![]),
                "one connection",
            ),
            (
                "nobody holds it, no ranges, four connections",
                {
                    let mut f = peers_by_url(
                        OriginHead {
                            ranges: false,
                            ..said(64 * MIB)
                        },
                        vec![],
                    );
                    f.connections = 4;
                    f
                },
                "one connection",
            ),
            (
                "by SHA-256, another content offered, not probed yet",
                peers_by_sha(vec![offer("a", 64 * MIB, "bb22")]),
                "probe the origin",
            ),
            (
                "by SHA-256, nobody holds it, probed",
                {
                    let mut f = peers_by_sha(vec![]);
                    f.head = Head::Said(said(64 * MIB));
                    f
                },
                "join the swarm",
            ),
            (
                "by SHA-256, nobody holds it, private: segments",
                {
                    let mut f = peers_by_sha(vec![]);
                    f.connections = 4;
                    f.head = Head::Said(OriginHead {
                        no_store: true,
                        ..said(64 * MIB)
                    });
                    f
                },
                "4 segments from the origin",
            ),
            (
                "an empty content offered: the origin",
                peers_by_sha(vec![offer("a", 0, SHA)]),
                "one connection",
            ),
        ];
        let mut wrong = Vec::new();
        for (situation, facts, expected) in &table {
            let got = plan(facts).to_string();
            if got != *expected {
                wrong.push(format!("{situation}: {got}, expected {expected}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_strategies_get_what_the_answers_said() {
        // Asked by URL: the query carries the probe's validator and length, and the
        // download the origin's final URL.
        let mut f = new_file();
        f.peers = true;
        f.head = Head::Said(said(64 * MIB));
        let Step::AskPeers(q) = plan(&f) else {
            panic!("{}", plan(&f))
        };
        assert_eq!(
            q,
            ContentQuery {
                url: URL.into(),
                validator: Some("\"v1\"".into()),
                length: Some(64 * MIB),
                sha256: None,
            }
        );
        f.peers_said = Some(PeersSaid {
            query: q,
            offers: vec![offer("a", 64 * MIB, SHA)],
        });
        let Step::Run(Strategy::FromPeers(p)) = plan(&f) else {
            panic!("{}", plan(&f))
        };
        assert_eq!((p.length, p.sha256.as_str()), (64 * MIB, SHA));
        assert_eq!(p.validator.as_deref(), Some("\"v1\""));
        assert_eq!(p.final_url, "http://origin/final");

        // Asked by SHA-256 only: the origin's URL as the job gave it, no validator.
        let mut f = new_file();
        f.peers = true;
        f.sha256 = Some(SHA.into());
        f.peers_said = peers_said(&f, vec![offer("a", 3, SHA)]);
        let Step::Run(Strategy::FromPeers(p)) = plan(&f) else {
            panic!("{}", plan(&f))
        };
        assert_eq!((p.validator, p.final_url.as_str()), (None, URL));

        // The swarm's key: URL, validator, length and the SHA-256 when known.
        f.peers_said = None;
        f.peers_said = peers_said(&f, vec![]);
        f.head = Head::Said(said(64 * MIB));
        let Step::Run(Strategy::Swarm(join)) = plan(&f) else {
            panic!("{}", plan(&f))
        };
        assert_eq!(
            join.query,
            ContentQuery {
                url: URL.into(),
                validator: Some("\"v1\"".into()),
                length: Some(64 * MIB),
                sha256: Some(SHA.into()),
            }
        );
        assert_eq!(join.final_url, "http://origin/final");

        // Segments: the cut of the file, the no-store mark carried.
        let mut f = new_file();
        f.connections = 16;
        f.head = Head::Said(OriginHead {
            no_store: true,
            ..said(10 * MIB)
        });
        let Step::Run(Strategy::Segmented(s)) = plan(&f) else {
            panic!("{}", plan(&f))
        };
        assert_eq!(s.segments, split(10 * MIB, 2));
        assert!(s.no_store);
        assert_eq!(s.validator, "\"v1\"");
    }

    /// Every combination of the file's state and the job's options.
    fn file_and_job_states() -> Vec<(bool, u64, Option<String>, u32, bool)> {
        let mut out = Vec::new();
        for segments in [false, true] {
            for offset in [0, 7] {
                for sha256 in [None, Some(SHA.to_string())] {
                    for connections in [1, 4] {
                        for peers in [false, true] {
                            out.push((segments, offset, sha256.clone(), connections, peers));
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn nothing_is_asked_twice() {
        // Whatever is known, the planner asks only for what it does not know yet: the
        // driver's loop ends.
        let heads = [
            Head::NotAsked,
            Head::Nothing,
            Head::Said(said(64 * MIB)),
            Head::Said(said(MIB)),
            Head::Said(OriginHead {
                no_store: true,
                ..said(64 * MIB)
            }),
        ];
        let mut all = Vec::new();
        for (segments, offset, sha256, connections, peers) in file_and_job_states() {
            for head in &heads {
                for offers in [None, Some(vec![]), Some(vec![offer("a", MIB, SHA)])] {
                    all.push(Facts {
                        url: URL.into(),
                        offset,
                        segments,
                        sha256: sha256.clone(),
                        connections,
                        peers,
                        head: head.clone(),
                        peers_said: offers.map(|offers| PeersSaid {
                            query: ContentQuery {
                                url: URL.into(),
                                validator: None,
                                length: None,
                                sha256: sha256.clone(),
                            },
                            offers,
                        }),
                    });
                }
            }
        }
        assert_eq!(all.len(), 32 * heads.len() * 3);
        for f in &all {
            match plan(f) {
                Step::Probe => assert_eq!(f.head, Head::NotAsked),
                Step::AskPeers(_) => assert!(f.peers && f.peers_said.is_none()),
                Step::Run(_) => {}
            }
        }
    }
}
