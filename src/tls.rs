//! TLS for the listeners: a PEM certificate chain and key made into a rustls `ServerConfig`
//! (HTTP/2 and HTTP/1.1 offered by ALPN), and [`Certificates`], the files behind a lock that a
//! reload replaces, so new connections get the new certificate and open ones keep theirs.
//! Imports nothing of ours: config checks a pair with [`server_config`], `http/server.rs`
//! handshakes with [`Certificates::current`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What ALPN offers, preferred first.
pub const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A server config from PEM text: the chain (leaf first) and its private key (PKCS#8, PKCS#1 or
/// SEC1). Refuses a file without a certificate or a key, and a key that is not the certificate's.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cert_file is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("cert_file holds no certificate (a PEM \"BEGIN CERTIFICATE\" block)".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("key_file holds no private key (PEM PKCS#8, RSA or EC): {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                "key_file does not belong to cert_file (its public key is not the certificate's)".to_string()
            }
            e => format!("cert_file and key_file are not a usable pair: {e}"),
        })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A listener's certificate files and the config last made from them.
#[derive(Debug)]
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Certificates {
    /// Reads the pair; the error names the file and what is wrong.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Certificates, String> {
        let config = read_pair(cert_file, key_file)?;
        Ok(Certificates {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: RwLock::new(config),
        })
    }

    /// What a new connection handshakes with.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the files again and, if they make a valid pair, serves them to new connections from
    /// now on. If not, the old pair stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let config = read_pair(&self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }
}

fn read_pair(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, String> {
    let cert = std::fs::read(cert_file).map_err(|e| format!("cannot read cert_file {}: {e}", cert_file.display()))?;
    let key = std::fs::read(key_file).map_err(|e| format!("cannot read key_file {}: {e}", key_file.display()))?;
    server_config(&cert, &key).map_err(|e| format!("{e} ({}, {})", cert_file.display(), key_file.display()))
}
