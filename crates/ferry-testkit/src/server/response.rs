//! Writing responses: the status line and headers (with the padding of
//! [`Fault::HugeHeader`]) and short, complete responses.

use std::io;
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;

use super::conn::{Conn, Next};
use super::request::Head;
#[cfg(doc)]
use super::Fault;

impl Conn {
    pub(super) async fn write_head(
        &mut self,
        status: u16,
        headers: &[(&str, String)],
        close: bool,
    ) -> io::Result<()> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", status, reason(status));
        out.push_str(&format!(
            "Date: {}\r\n",
            httpdate::fmt_http_date(SystemTime::now())
        ));
        out.push_str("Server: ferry-testkit\r\n");
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        let padding = std::mem::take(&mut self.padding);
        if padding > 0 {
            out.push_str("X-Padding: ");
            out.extend(std::iter::repeat_n('a', padding));
            out.push_str("\r\n");
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        self.stream.write_all(out.as_bytes()).await
    }

    /// Sends a short, complete response.
    pub(super) async fn simple(
        &mut self,
        head: &Head,
        status: u16,
        mut headers: Vec<(&str, String)>,
        body: &[u8],
        close: bool,
    ) -> io::Result<Next> {
        let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
        if !bodiless {
            headers.push(("Content-Length", body.len().to_string()));
            if !body.is_empty() {
                headers.push(("Content-Type", "text/plain".to_string()));
            }
        }
        self.write_head(status, &headers, close).await?;
        if !bodiless && head.method != "HEAD" {
            self.stream.write_all(body).await?;
        }
        self.stream.flush().await?;
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
