//! The server thread: its single-threaded runtime, the accept loop (with the
//! TLS handshake when serving HTTPS), and the loop serving one connection's
//! requests until it closes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::conn::{Conn, Io, Next};
use super::state::Shared;

/// Body of the server thread.
pub(super) fn serve(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build test server runtime");
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("register test server listener");
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let _ = stream.set_nodelay(true);
                        let shared = shared.clone();
                        match &tls {
                            None => {
                                tokio::spawn(handle_connection(shared, Box::new(stream)));
                            }
                            Some(acceptor) => {
                                let handshake = acceptor.accept(stream);
                                tokio::spawn(async move {
                                    if let Ok(stream) = handshake.await {
                                        handle_connection(shared, Box::new(stream)).await;
                                    }
                                });
                            }
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
            }
        }
    });
    // Dropping the runtime drops every connection task, closing its socket.
    drop(rt);
}

async fn handle_connection(shared: Arc<Shared>, stream: Box<dyn Io>) {
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        shared,
        continue_owed: false,
        padding: 0,
    };
    while let Ok(Next::KeepAlive) = conn.serve_one().await {}
    let _ = conn.stream.shutdown().await;
}
