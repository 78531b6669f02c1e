//! The serving certificate, reloaded when its files change.
//!
//! Kubernetes updates a mounted Secret (cert-manager renewing it, or a new self-signed pair) by
//! swapping the files under the mount, with no signal to the process. So the files are read
//! again every `--tls-reload-interval`; when their bytes differ from what is served, the new
//! pair is parsed and, if it is valid, takes over for every new TLS handshake. A pair that does
//! not parse (half-written, key and cert not matching) is logged and counted, and the old one
//! keeps serving: a bad rotation never takes the webhook down.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The pair of files and what was last loaded from them.
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    loaded: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    bytes: (Vec<u8>, Vec<u8>),
    key: Arc<CertifiedKey>,
}

impl CertFiles {
    /// Loads the pair once; failing here fails the start (exit 1), as a webhook with no
    /// certificate can serve nothing.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertFiles>> {
        let bytes = read_pair(cert, key)?;
        let certified =
            parse(&bytes).with_context(|| format!("{} / {}", cert.display(), key.display()))?;
        Ok(Arc::new(CertFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            loaded: RwLock::new(Loaded {
                bytes,
                key: certified,
            }),
        }))
    }

    /// Reads the files again: Ok(true) when a new pair was loaded, Ok(false) when they are
    /// unchanged, Err when they changed into something that cannot be served.
    pub fn reload(&self) -> Result<bool> {
        let bytes = read_pair(&self.cert, &self.key)?;
        if self.loaded.read().bytes == bytes {
            return Ok(false);
        }
        let key = parse(&bytes)?;
        *self.loaded.write() = Loaded { bytes, key };
        Ok(true)
    }

    /// The TLS config for the webhook listener: rustls with the ring provider, HTTP/2 and
    /// HTTP/1.1 by ALPN (the API server speaks either), this pair as the certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.loaded.read().key.clone())
    }
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let c = std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let k = std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
    Ok((c, k))
}

fn parse((cert, key): &(Vec<u8>, Vec<u8>)) -> Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("the certificate file is not PEM: {e:?}"))?;
    if chain.is_empty() {
        return Err(anyhow!("the certificate file holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|e| anyhow!("the key file holds no PEM private key: {e:?}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| anyhow!("certificate and key do not make a pair: {e}"))?;
    Ok(Arc::new(certified))
}
