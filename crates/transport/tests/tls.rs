//! `https://` upstreams: a server with a certificate from a CA made for the test
//! is trusted once that CA is given, and refused with a connect error otherwise.

use framex_transport::tls::{self, TlsError};
use framex_transport::wire::{self, Envelope};
use framex_transport::{Client, ClientSettings, ErrorKind};
use serde_json::{Map, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA and a certificate it signed for `127.0.0.1`, as PEM: (ca, cert, key).
fn test_pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "FrameX test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// A TLS server answering every request with a FrameX success envelope.
async fn tls_server(cert_pem: &str, key_pem: &str, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("cert.pem"), cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), key_pem).unwrap();
    let config = tls::server_config(
        tls::read_pem_certificates(&dir.join("cert.pem")).unwrap(),
        tls::read_pem_private_key(&dir.join("key.pem")).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let body =
        serde_json::to_string(&Envelope::success(wire::encode(&json!("secret")).unwrap())).unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buffer = vec![0; 16 * 1024];
                let _ = stream.read(&mut buffer).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("framex-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn an_https_upstream_is_trusted_through_a_given_ca() {
    let dir = temp_dir("trusted");
    let (ca, cert, key) = test_pki();
    let url = tls_server(&cert, &key, &dir).await;
    std::fs::write(dir.join("ca.pem"), ca).unwrap();

    let roots = tls::read_pem_certificates(&dir.join("ca.pem")).unwrap();
    let client = Client::try_new(ClientSettings::default().with_root_certificates(roots)).unwrap();
    let result = client.call(&url, None, "m.f", &Map::new()).await.unwrap();
    assert_eq!(result, json!("secret"));

    let untrusting = Client::default();
    let error = untrusting
        .call(&url, None, "m.f", &Map::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), &ErrorKind::Connect, "{error}");
    let mut causes = String::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push_str(&format!("{cause}; "));
        source = cause.source();
    }
    assert!(causes.contains("UnknownIssuer"), "{causes}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unusable_certificate_files_are_named() {
    let dir = temp_dir("files");
    let missing = dir.join("missing.pem");
    let error = tls::read_pem_certificates(&missing).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "cannot read certificates from {}: ",
            missing.display()
        )),
        "{error}"
    );
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "no PEM here\n").unwrap();
    assert_eq!(
        tls::read_pem_certificates(&empty).unwrap_err().to_string(),
        format!(
            "cannot read certificates from {}: the file holds no PEM certificate",
            empty.display()
        )
    );
    let error = tls::read_pem_private_key(&empty).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "cannot read a private key from {}: ",
            empty.display()
        )),
        "{error}"
    );
    assert!(matches!(error, TlsError::File { .. }));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_key_that_does_not_match_its_certificate_is_refused() {
    let dir = temp_dir("mismatch");
    let (_, cert, _) = test_pki();
    let (_, _, other_key) = test_pki();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), other_key).unwrap();
    let error = tls::server_config(
        tls::read_pem_certificates(&dir.join("cert.pem")).unwrap(),
        tls::read_pem_private_key(&dir.join("key.pem")).unwrap(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid TLS configuration: the certificate and key do not work together"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
