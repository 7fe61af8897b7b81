//! Exercises `TestServer::start_tls` with a tokio-rustls client that trusts
//! only the generated CA.

use std::sync::Arc;

use ferry_testkit::{random_bytes, Fault, TestServer, TlsMaterial};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn connector(trust: Option<&TlsMaterial>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(tls) = trust {
        for cert in CertificateDer::pem_file_iter(&tls.ca_pem_path).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Sends `request` over a new TLS connection and reads until the server
/// closes it.
async fn exchange(
    server: &TestServer,
    connector: &TlsConnector,
    name: &str,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(server.addr()).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(request).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(out)
}

fn split(response: &[u8]) -> (String, Vec<u8>) {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    (
        String::from_utf8_lossy(&response[..end]).into_owned(),
        response[end + 4..].to_vec(),
    )
}

#[tokio::test]
async fn https_get_with_generated_ca() {
    let (server, tls) = TestServer::start_tls();
    let port = server.addr().port();
    assert_eq!(server.base_url(), format!("https://localhost:{port}"));
    assert_eq!(
        server.url("/a.bin"),
        format!("https://localhost:{port}/a.bin")
    );
    assert_eq!(tls.cert_subject, "CN=localhost");
    let pem = std::fs::read_to_string(&tls.ca_pem_path).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    let data = random_bytes(100_000, 3);
    server.add_file("/a.bin", data.clone());
    let trusting = connector(Some(&tls));
    for name in ["localhost", "127.0.0.1"] {
        let out = exchange(
            &server,
            &trusting,
            name,
            b"GET /a.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let (head, body) = split(&out);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(head.contains("Content-Length: 100000"), "{head}");
        assert_eq!(body, data);
    }
    assert_eq!(server.request_count("/a.bin"), 2);

    // Ranges and faults behave as over plain HTTP.
    let out = exchange(
        &server,
        &trusting,
        "localhost",
        b"GET /a.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, body) = split(&out);
    assert!(head.starts_with("HTTP/1.1 206 "), "{head}");
    assert_eq!(body, &data[10..20]);
    server.push_fault("/a.bin", Fault::CutAfter(500));
    let out = exchange(
        &server,
        &trusting,
        "localhost",
        b"GET /a.bin HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, body) = split(&out);
    assert!(head.contains("Content-Length: 100000"), "{head}");
    assert_eq!(body, &data[..500]);
}

#[tokio::test]
async fn https_untrusted_client_fails_and_server_carries_on() {
    let (server, tls) = TestServer::start_tls();
    server.add_file("/x", b"hello".to_vec());
    let request = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let err = exchange(&server, &connector(None), "localhost", request)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    // A name not in the certificate is refused too.
    let err = exchange(&server, &connector(Some(&tls)), "example.com", request)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");

    let out = exchange(&server, &connector(Some(&tls)), "localhost", request)
        .await
        .unwrap();
    assert_eq!(split(&out).1, b"hello");
    assert_eq!(server.request_count("/x"), 1);
}

#[tokio::test]
async fn https_tus_and_material_lifetime() {
    let (server, tls) = TestServer::start_tls();
    server.enable_tus("/files/");
    let trusting = connector(Some(&tls));
    let out = exchange(
        &server,
        &trusting,
        "localhost",
        b"POST /files/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 3\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, _) = split(&out);
    assert!(head.starts_with("HTTP/1.1 201 "), "{head}");
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .unwrap()
        .to_string();
    assert!(
        location.starts_with(&format!("{}/files/", server.base_url())),
        "{location}"
    );
    let path = &location[server.base_url().len()..];
    let patch = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    );
    let out = exchange(&server, &trusting, "localhost", patch.as_bytes())
        .await
        .unwrap();
    assert!(split(&out).0.starts_with("HTTP/1.1 204 "));
    assert_eq!(server.tus_upload(&location).unwrap(), b"abc");

    let pem_path = tls.ca_pem_path.clone();
    assert!(pem_path.exists());
    drop(tls);
    assert!(!pem_path.exists());
}
