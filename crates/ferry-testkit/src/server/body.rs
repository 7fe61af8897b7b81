//! Streaming a response body as planned: `Content-Length` or chunked,
//! throttled, cut, stalled, endless or followed by extra bytes.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::conn::{Conn, Next, PIECE};
#[cfg(doc)]
use super::Fault;

/// How a body is to be sent.
pub(super) struct BodyPlan {
    pub(super) chunked: bool,
    pub(super) throttle: Option<u64>,
    pub(super) cut_after: Option<u64>,
    pub(super) stall_after: Option<u64>,
    /// [`Fault::EndlessBody`]: filler after the body, for ever.
    pub(super) endless: bool,
    /// [`Fault::ExtraBytes`]: this many filler bytes after the body, then close.
    pub(super) extra: Option<u64>,
    /// [`Fault::WrongContentRange`]: answer `206` from this offset.
    pub(super) wrong_range: Option<u64>,
}

/// The filler byte of [`Fault::EndlessBody`] and [`Fault::ExtraBytes`].
const FILLER: u8 = 0xEE;

impl Conn {
    /// Sends `data` as a body according to `plan`, starting right after the head.
    pub(super) async fn send_body(
        &mut self,
        data: &[u8],
        plan: &BodyPlan,
        generation: u64,
    ) -> io::Result<Next> {
        let total = data.len() as u64;
        let piece = match plan.throttle {
            Some(rate) => (rate / 20).clamp(1, PIECE as u64),
            None => PIECE as u64,
        };
        let mut sent = 0u64;
        let mut stall_after = plan.stall_after;
        let mut pace_start = Instant::now();
        let mut pace_base = 0u64;
        loop {
            if let Some(cut) = plan.cut_after.filter(|&c| c < total) {
                if sent >= cut {
                    self.stream.flush().await?;
                    return Ok(Next::Close);
                }
            }
            if let Some(stall) = stall_after {
                if sent >= stall.min(total) {
                    self.stream.flush().await?;
                    if !self.hold(generation).await {
                        return Ok(Next::Close);
                    }
                    stall_after = None;
                    pace_start = Instant::now();
                    pace_base = sent;
                }
            }
            if sent >= total {
                if plan.endless {
                    // Filler for ever: the write fails once the client goes away.
                    let filler = vec![FILLER; piece as usize];
                    if plan.chunked {
                        let mut framed = format!("{:x}\r\n", filler.len()).into_bytes();
                        framed.extend_from_slice(&filler);
                        framed.extend_from_slice(b"\r\n");
                        self.stream.write_all(&framed).await?;
                    } else {
                        self.stream.write_all(&filler).await?;
                    }
                    if let Some(rate) = plan.throttle.filter(|&r| r > 0) {
                        tokio::time::sleep(Duration::from_secs_f64(piece as f64 / rate as f64))
                            .await;
                    }
                    continue;
                }
                break;
            }
            let mut end = (sent + piece).min(total);
            for stop in [plan.cut_after, stall_after].into_iter().flatten() {
                if stop > sent {
                    end = end.min(stop);
                }
            }
            let bytes = &data[sent as usize..end as usize];
            if plan.chunked {
                let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
                framed.extend_from_slice(bytes);
                framed.extend_from_slice(b"\r\n");
                self.stream.write_all(&framed).await?;
            } else {
                self.stream.write_all(bytes).await?;
            }
            sent = end;
            if let Some(rate) = plan.throttle.filter(|&r| r > 0) {
                let due =
                    pace_start + Duration::from_secs_f64((sent - pace_base) as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if plan.chunked {
            self.stream.write_all(b"0\r\n\r\n").await?;
        }
        if let Some(extra) = plan.extra {
            let filler = vec![FILLER; usize::try_from(extra).unwrap_or(usize::MAX)];
            self.stream.write_all(&filler).await?;
            self.stream.flush().await?;
            return Ok(Next::Close);
        }
        self.stream.flush().await?;
        // A cut longer than the body still ends the connection.
        Ok(if plan.cut_after.is_some() {
            Next::Close
        } else {
            Next::KeepAlive
        })
    }
}
