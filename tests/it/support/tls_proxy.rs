//! PostgreSQL behind TLS with a certificate of the test's choosing: a proxy that answers
//! PostgreSQL's SSLRequest, terminates TLS with a certificate from a [`TestCa`] and passes the
//! bytes on to the test server in plain. Connections that do not ask for TLS pass through as they
//! are; without a certificate the proxy answers every SSLRequest "no TLS here", as a server with
//! `ssl = off` does. It counts both kinds, so a test can tell which one hookgate used.
//! [`TlsFront`] does the same for HTTPS in front of a plain HTTP receiver.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A certificate authority made for one test.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    /// Its certificate, PEM: what `sslrootcert` names.
    pub pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { pem: cert.pem(), der: cert.der().clone(), params, key }
    }

    /// Its certificate.
    pub fn der(&self) -> CertificateDer<'static> {
        self.der.clone()
    }

    /// A client certificate and its key, as PEM files in `dir`: what `sslcert` and `sslkey` name.
    pub fn client_files(&self, dir: &std::path::Path) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["hookgate".to_string()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key)).unwrap();
        let (cert_path, key_path) = (dir.join("client.crt"), dir.join("client.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path.display().to_string(), key_path.display().to_string())
    }

    /// A server certificate for `names` and its key, as PEM text: what `tls = { cert_file, key_file }` reads.
    pub fn issue_pem(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key)).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for `names` (DNS names or IP addresses), with its key.
    pub fn issue(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key)).unwrap();
        (cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
    }
}

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

pub struct TlsProxy {
    pub port: u16,
    tls: Arc<AtomicUsize>,
    plain: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    /// Listens on 127.0.0.1 (port 0) in front of the server of `database_url`, presenting `cert`.
    pub async fn start(database_url: &str, cert: (CertificateDer<'static>, PrivateKeyDer<'static>)) -> TlsProxy {
        Self::listen(database_url, Some(cert), None).await
    }

    /// Like [`TlsProxy::start`], and the client must present a certificate that `clients` issued.
    pub async fn requiring_client_cert(
        database_url: &str,
        cert: (CertificateDer<'static>, PrivateKeyDer<'static>),
        clients: &TestCa,
    ) -> TlsProxy {
        Self::listen(database_url, Some(cert), Some(clients)).await
    }

    /// A proxy that offers no TLS.
    pub async fn without_tls(database_url: &str) -> TlsProxy {
        Self::listen(database_url, None, None).await
    }

    async fn listen(
        database_url: &str,
        cert: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
        clients: Option<&TestCa>,
    ) -> TlsProxy {
        let config = tokio_postgres::Config::from_str(database_url).unwrap();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            other => panic!("the TLS proxy needs a TCP host, not {other:?}"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream: SocketAddr = tokio::net::lookup_host((host.as_str(), port)).await.unwrap().next().unwrap();
        let acceptor = cert.map(|cert| acceptor(cert, clients, &[]));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tls, plain) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (t, p) = (tls.clone(), plain.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, t, p) = (acceptor.clone(), t.clone(), p.clone());
                tokio::spawn(async move {
                    let _ = relay(client, upstream, acceptor, &t, &p).await;
                });
            }
        });
        TlsProxy { port, tls, plain, task }
    }

    /// Connections that asked for TLS and completed the handshake.
    pub fn tls_connections(&self) -> usize {
        self.tls.load(Ordering::SeqCst)
    }

    /// Connections that did not ask for TLS.
    pub fn plain_connections(&self) -> usize {
        self.plain.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS acceptor presenting `cert`, asking for a client certificate from `clients` if given,
/// offering `alpn`.
fn acceptor(
    (cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
    clients: Option<&TestCa>,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(vec![cert], key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// HTTPS in front of a plain HTTP server (a [`crate::support::TestReceiver`]): terminates TLS with
/// a certificate from a [`TestCa`], offering HTTP/1.1 by ALPN, and passes the bytes on.
pub struct TlsFront {
    pub port: u16,
    handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    pub async fn start(upstream: SocketAddr, cert: (CertificateDer<'static>, PrivateKeyDer<'static>)) -> TlsFront {
        let acceptor = acceptor(cert, None, &[b"http/1.1"]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let done = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (acceptor, done) = (acceptor.clone(), done.clone());
                tokio::spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else { return };
                    done.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        TlsFront { port, handshakes, task }
    }

    /// TLS handshakes completed.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    tls: &AtomicUsize,
    plain: &AtomicUsize,
) -> std::io::Result<()> {
    let mut first = [0u8; 8];
    client.read_exact(&mut first).await?;
    let mut server = TcpStream::connect(upstream).await?;
    if first == SSL_REQUEST {
        let Some(acceptor) = acceptor else {
            // "No TLS here": a client that may go on in plain sends its startup message next.
            client.write_all(b"N").await?;
            plain.fetch_add(1, Ordering::SeqCst);
            tokio::io::copy_bidirectional(&mut client, &mut server).await?;
            return Ok(());
        };
        client.write_all(b"S").await?;
        let mut client = acceptor.accept(client).await?;
        tls.fetch_add(1, Ordering::SeqCst);
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    } else {
        plain.fetch_add(1, Ordering::SeqCst);
        server.write_all(&first).await?;
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    }
    Ok(())
}
