//! TLS to PostgreSQL, with libpq's meaning of the URL's `sslmode` and `sslrootcert`, over rustls.
//! Only turns `storage.url` into a connection config and a TLS connector; `postgres/mod.rs` connects.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | if the server offers it, else plain | not checked |
//! | `require` | always | not checked (checked as `verify-ca` when `sslrootcert` is given, as libpq does) |
//! | `verify-ca` | always | signed by a trusted root |
//! | `verify-full` | always | signed by a trusted root and naming the host connected to |
//!
//! Trusted roots: the PEM file `sslrootcert`, else (or with `sslrootcert=system`) the system's.
//! A client certificate, for servers that ask for one: `sslcert` (PEM, with its chain) and `sslkey`.

use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much the connection checks, from `sslmode` (and `sslrootcert`, see the table above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// `storage.url` as a connection config and the TLS connector its `sslmode` asks for.
#[derive(Clone)]
pub struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// The files the URL names: `sslrootcert`, `sslcert`, `sslkey`.
#[derive(Default)]
struct Files {
    root: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

/// Parses `url`, or says what is wrong with it (the message is about `storage.url`). tokio-postgres
/// knows `sslmode` up to `require` and none of the files, so these are taken out of the query here
/// and the rest is tokio-postgres's to parse.
pub fn parse(url: &str) -> Result<Connection, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut files) = (Mode::Prefer, Files::default());
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = || percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned();
        match key {
            "sslmode" => {
                mode = match value().as_str() {
                    "disable" => Mode::Disable,
                    "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other:?} is not supported; accepted: disable, prefer, require, verify-ca, verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => files.root = Some(value()),
            "sslcert" => files.cert = Some(value()),
            "sslkey" => files.key = Some(value()),
            _ => kept.push(pair),
        }
    }
    if mode == Mode::Require && files.root.is_some() {
        mode = Mode::VerifyCa;
    }
    kept.push(match mode {
        Mode::Disable => "sslmode=disable",
        Mode::Prefer => "sslmode=prefer",
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "sslmode=require",
    });
    let config = tokio_postgres::Config::from_str(&format!("{base}?{}", kept.join("&")))
        .map_err(|e| format!("not a valid PostgreSQL URL: {}", super::error::describe(&e)))?;
    Ok(Connection { config, tls: MakeRustlsConnect::new(client_config(mode, &files)?) })
}

fn client_config(mode: Mode, files: &Files) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let chain = match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => None,
        Mode::VerifyCa | Mode::VerifyFull => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(files.root.as_deref())?), provider.clone())
                .build()
                .map_err(|e| format!("TLS setup failed: {e}"))?,
        ),
    };
    let checks = Checks { provider, chain, name: mode == Mode::VerifyFull };
    let builder = builder.dangerous().with_custom_certificate_verifier(Arc::new(checks));
    let mut config = match (&files.cert, &files.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = pem_certs("sslcert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("sslkey {key}: cannot read a PEM private key: {e}"))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("sslcert and sslkey: {e}"))?
        }
        _ => return Err("sslcert and sslkey go together: a client certificate needs its private key".into()),
    };
    // PostgreSQL 17 accepts this protocol name, and refuses any other; older servers ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// The certificates in the PEM file at `path`, named by the URL's `param`.
fn pem_certs(param: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{param} {path}: cannot read PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{param} {path} holds no certificate"));
    }
    Ok(certs)
}

/// The roots a server certificate must chain to: the PEM file at `root`, or the system's.
fn roots(root: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root {
        Some(path) if path != "system" => {
            let (added, _) = store.add_parsable_certificates(pem_certs("sslrootcert", path)?);
            if added == 0 {
                return Err(format!("sslrootcert {path} holds no usable certificate"));
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(
                    "sslmode verify-ca and verify-full need trusted roots: no system certificates were found; \
                     name a PEM file with sslrootcert=PATH"
                        .into(),
                );
            }
        }
    }
    Ok(store)
}

/// Checks the server's certificate as far as the `sslmode` asks. The handshake's signatures are
/// always checked, so the server holds the key of the certificate it shows.
#[derive(Debug)]
struct Checks {
    provider: Arc<CryptoProvider>,
    /// The chain to trusted roots (`verify-ca`, `verify-full`); None accepts any certificate
    /// (`prefer`, `require`: encrypted, as libpq means them).
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Whether the certificate must name the host (`verify-full`).
    name: bool,
}

impl ServerCertVerifier for Checks {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        // The name is checked after the chain, so this error means the chain was good.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use tokio_postgres::config::SslMode;

    use super::*;

    fn message(url: &str) -> String {
        match parse(url) {
            Ok(_) => panic!("{url} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn sslmode_maps_to_what_tokio_postgres_knows() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&root, rcgen::CertificateParams::new(vec![]).unwrap().self_signed(&key).unwrap().pem()).unwrap();
        let root = root.display();
        for (query, want) in [
            (String::new(), SslMode::Prefer),
            ("?sslmode=disable".into(), SslMode::Disable),
            ("?sslmode=prefer".into(), SslMode::Prefer),
            ("?sslmode=require".into(), SslMode::Require),
            (format!("?sslmode=verify-ca&sslrootcert={root}"), SslMode::Require),
            (format!("?application_name=x&sslmode=verify-full&sslrootcert={root}&connect_timeout=3"), SslMode::Require),
        ] {
            let url = format!("postgres://u@localhost/db{query}");
            let parsed = parse(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(parsed.config.get_ssl_mode(), want, "{url}");
        }
        let parsed =
            parse(&format!("postgres://u@localhost/db?application_name=x&sslmode=verify-full&sslrootcert={root}"));
        assert_eq!(parsed.unwrap().config.get_application_name(), Some("x"));
    }

    #[test]
    fn bad_tls_settings_are_named() {
        let m = message("postgres://u@localhost/db?sslmode=allow");
        assert!(m.contains("sslmode=\"allow\"") && m.contains("verify-full"), "{m}");
        let m = message("postgres://u@localhost/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
        assert!(m.contains("sslrootcert /nonexistent/ca.pem") && m.contains("cannot read"), "{m}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let m = message(&format!("postgres://u@localhost/db?sslmode=verify-ca&sslrootcert={}", empty.display()));
        assert!(m.contains("holds no certificate"), "{m}");
        let m = message("postgres://u@localhost/db?sslcert=/tmp/client.crt");
        assert!(m.contains("sslcert and sslkey go together"), "{m}");
        let m = message("postgres://u@localhost/db?sslcert=/nonexistent/c.crt&sslkey=/nonexistent/c.key");
        assert!(m.contains("sslcert /nonexistent/c.crt: cannot read"), "{m}");
        let m = message("postgres://u@localhost/db?sslmode=require&frobnicate=1");
        assert!(m.starts_with("not a valid PostgreSQL URL"), "{m}");
    }
}
