//! Request parsing: the request head ([`Head`], read with [`httparse`]) and
//! request bodies (`Content-Length` or chunked).

use std::io;

use super::conn::{Conn, PIECE};

/// Largest request head (request line + headers) accepted.
const MAX_HEAD: usize = 64 * 1024;

/// A parsed request head.
pub(super) struct Head {
    pub(super) method: String,
    pub(super) target: String,
    /// Minor HTTP version (0 for HTTP/1.0, 1 for HTTP/1.1).
    pub(super) minor: u8,
    pub(super) headers: Vec<(String, String)>,
}

impl Head {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub(super) fn chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    pub(super) fn content_length(&self) -> io::Result<u64> {
        match self.header("content-length") {
            None => Ok(0),
            Some(v) => v.trim().parse().map_err(|_| bad("bad Content-Length")),
        }
    }

    pub(super) fn has_body(&self) -> io::Result<bool> {
        Ok(self.chunked() || self.content_length()? > 0)
    }

    pub(super) fn wants_close(&self) -> bool {
        if self.minor == 0 {
            !self.has_token("connection", "keep-alive")
        } else {
            self.has_token("connection", "close")
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl Conn {
    /// Reads the next request head; `None` at a clean end of stream.
    pub(super) async fn read_head(&mut self) -> io::Result<Option<Head>> {
        loop {
            if !self.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; 96];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let head = Head {
                            method: req.method.unwrap_or("").to_string(),
                            target: req.path.unwrap_or("/").to_string(),
                            minor: req.version.unwrap_or(1),
                            headers: req
                                .headers
                                .iter()
                                .map(|h| {
                                    (
                                        h.name.to_ascii_lowercase(),
                                        String::from_utf8_lossy(h.value).into_owned(),
                                    )
                                })
                                .collect(),
                        };
                        self.buf.drain(..len);
                        return Ok(Some(head));
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => {}
                    Ok(httparse::Status::Partial) => return Err(bad("request head too large")),
                    Err(e) => return Err(bad(&e.to_string())),
                }
            }
            if self.fill(PIECE).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF).
    async fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad("line too long"));
            }
            if self.fill(PIECE).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads the whole request body (`Content-Length` or chunked).
    pub(super) async fn read_body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if head.chunked() {
            let mut body = Vec::new();
            loop {
                let line = self.read_line().await?;
                let size = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to an empty line.
                    while !self.read_line().await?.is_empty() {}
                    return Ok(body);
                }
                self.fill_to(size + 2).await?;
                body.extend_from_slice(&self.buf[..size]);
                if &self.buf[size..size + 2] != b"\r\n" {
                    return Err(bad("chunk not followed by CRLF"));
                }
                self.buf.drain(..size + 2);
            }
        } else {
            let len = usize::try_from(head.content_length()?).map_err(|_| bad("body too large"))?;
            self.fill_to(len).await?;
            Ok(self.buf.drain(..len).collect())
        }
    }
}
