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
//! | … none does                       | the swarm, for ≥ 2 MiB with a SHA-256, from an origin that serves ranges |
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

/// Joins the swarm when the file is large enough to cut into pieces, the origin serves
/// them, and the job gave a SHA-256: a download under way is shared only while every
/// machine can check its bytes (the seed's rule; without one, a machine's bytes reach
/// the others only once its application validated the file or completed the job).
fn join_the_swarm(f: &Facts) -> Option<Step> {
    f.sha256.as_ref()?;
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

    const PEERS: bool = true;
    const NO_PEERS: bool = false;
    const BY_SHA: bool = true;
    const BY_URL: bool = false;

    /// A new file: the job's connections, whether peers may be asked, whether its SHA-256
    /// is known, and what the origin said.
    fn new(connections: u32, peers: bool, by_sha: bool, head: Head) -> Facts {
        Facts {
            connections,
            peers,
            sha256: by_sha.then(|| SHA.to_string()),
            head,
            ..new_file()
        }
    }

    /// What the origin said: `length` bytes, a strong validator, ranges, then `change`.
    fn head(length: u64, change: fn(&mut OriginHead)) -> Head {
        let mut h = said(length);
        change(&mut h);
        Head::Said(h)
    }

    const AS_IS: fn(&mut OriginHead) = |_| {};
    const NO_STORE: fn(&mut OriginHead) = |h| h.no_store = true;

    /// `f` after the peers answered what it asks them with `offers`.
    fn answered(mut f: Facts, offers: Vec<PeerOffer>) -> Facts {
        f.peers_said = peers_said(&f, offers);
        f
    }

    /// Plans every situation of `table`; the ones whose step is not the one expected.
    fn check(table: Vec<(&str, Facts, &str)>) {
        let wrong: Vec<String> = table
            .iter()
            .filter_map(|(situation, facts, expected)| {
                let got = plan(facts).to_string();
                (got != *expected).then(|| format!("{situation}: {got}, expected {expected}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_file_and_the_origin_choose_without_peers() {
        let big = || head(64 * MIB, AS_IS);
        let under_way = |change: fn(&mut Facts)| {
            let mut f = new(4, PEERS, BY_URL, Head::NotAsked);
            change(&mut f);
            f
        };
        check(vec![
            (
                "segments recorded",
                under_way(|f| f.segments = true),
                "the recorded segments",
            ),
            (
                "bytes from one connection",
                under_way(|f| f.offset = 100),
                "one connection",
            ),
            (
                "one connection",
                new(1, NO_PEERS, BY_URL, Head::NotAsked),
                "one connection",
            ),
            (
                "four, not probed",
                new(4, NO_PEERS, BY_URL, Head::NotAsked),
                "probe the origin",
            ),
            (
                "four, 64 MiB",
                new(4, NO_PEERS, BY_URL, big()),
                "4 segments from the origin",
            ),
            (
                "four, 12 MiB: segments of 4 MiB at least",
                new(4, NO_PEERS, BY_URL, head(12 * MIB, AS_IS)),
                "3 segments from the origin",
            ),
            (
                "four, under 8 MiB",
                new(4, NO_PEERS, BY_URL, head(8 * MIB - 1, AS_IS)),
                "one connection",
            ),
            (
                "four, no ranges",
                new(4, NO_PEERS, BY_URL, head(64 * MIB, |h| h.ranges = false)),
                "one connection",
            ),
            (
                "four, no strong validator",
                new(4, NO_PEERS, BY_URL, head(64 * MIB, |h| h.validator = None)),
                "one connection",
            ),
            (
                "four, no length",
                new(4, NO_PEERS, BY_URL, head(64 * MIB, |h| h.length = None)),
                "one connection",
            ),
            (
                "four, the probe failed",
                new(4, NO_PEERS, BY_URL, Head::Nothing),
                "one connection",
            ),
            (
                "four, no-store: segments all the same",
                new(4, NO_PEERS, BY_URL, head(64 * MIB, NO_STORE)),
                "4 segments from the origin",
            ),
        ]);
    }

    #[test]
    fn what_the_peers_say_chooses_with_them() {
        let big = || head(64 * MIB, AS_IS);
        let by_url = |offers| answered(new(1, PEERS, BY_URL, big()), offers);
        let by_sha = |offers| answered(new(1, PEERS, BY_SHA, Head::NotAsked), offers);
        let (a, b, c) = (
            offer("a", 64 * MIB, SHA),
            offer("b", 64 * MIB + 1, SHA),
            offer("c", 64 * MIB, SHA),
        );
        check(vec![
            (
                "not probed",
                new(1, PEERS, BY_URL, Head::NotAsked),
                "probe the origin",
            ),
            (
                "probed",
                new(1, PEERS, BY_URL, big()),
                "ask the peers by URL, validator and length",
            ),
            (
                "SHA-256 known: no probe",
                new(1, PEERS, BY_SHA, Head::NotAsked),
                "ask the peers by SHA-256",
            ),
            (
                "no-store: not asked",
                new(1, PEERS, BY_URL, head(64 * MIB, NO_STORE)),
                "one connection",
            ),
            (
                "no-store, four connections",
                new(4, PEERS, BY_URL, head(64 * MIB, NO_STORE)),
                "4 segments from the origin",
            ),
            (
                "no validator: not asked",
                new(1, PEERS, BY_URL, head(64 * MIB, |h| h.validator = None)),
                "one connection",
            ),
            (
                "the probe failed",
                new(1, PEERS, BY_URL, Head::Nothing),
                "one connection",
            ),
            (
                "two hold it",
                by_url(vec![a.clone(), c.clone()]),
                "whole from 2 peers",
            ),
            (
                "one disagrees with the first",
                by_sha(vec![a.clone(), b.clone(), c]),
                "whole from 2 peers",
            ),
            (
                "another length is no offer; no SHA-256: no swarm",
                by_url(vec![b]),
                "one connection",
            ),
            (
                "another SHA-256 is no offer",
                by_sha(vec![offer("a", 1, "bb22")]),
                "probe the origin",
            ),
            (
                "an empty content: the origin",
                by_sha(vec![offer("a", 0, SHA)]),
                "one connection",
            ),
            (
                "nobody holds 2 MiB with ranges, SHA-256 known: the swarm",
                answered(new(1, PEERS, BY_SHA, head(2 * MIB, AS_IS)), vec![]),
                "join the swarm",
            ),
            (
                "nobody holds 2 MiB with ranges, no SHA-256: its bytes cannot be checked",
                answered(new(1, PEERS, BY_URL, head(2 * MIB, AS_IS)), vec![]),
                "one connection",
            ),
            (
                "nobody holds it, under 2 MiB",
                answered(new(1, PEERS, BY_SHA, head(2 * MIB - 1, AS_IS)), vec![]),
                "one connection",
            ),
            (
                "nobody holds it, no ranges, four connections",
                answered(
                    new(4, PEERS, BY_URL, head(64 * MIB, |h| h.ranges = false)),
                    vec![],
                ),
                "one connection",
            ),
            (
                "by SHA-256, nobody holds it, probed",
                Facts {
                    head: big(),
                    ..by_sha(vec![])
                },
                "join the swarm",
            ),
            (
                "by SHA-256, nobody holds it, private, four connections",
                Facts {
                    head: head(64 * MIB, NO_STORE),
                    connections: 4,
                    ..by_sha(vec![])
                },
                "4 segments from the origin",
            ),
        ]);
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
