//! TLS for listeners marked `tls: true`: the certificate chain and private key
//! come from the PEM files named by Synapse's `tls_certificate_path` and
//! `tls_private_key_path`, served with rustls on the ring provider.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS listener cannot start; the message names the file at fault.
#[derive(Debug)]
pub struct TlsSetupError(String);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// Builds the acceptor every TLS listener shares. HTTP/2 and HTTP/1.1 are
/// both offered through ALPN; the connection builder serves either.
pub fn tls_acceptor(
    certificate_path: &Path,
    private_key_path: &Path,
) -> Result<TlsAcceptor, TlsSetupError> {
    let chain = read_certificate_chain(certificate_path)?;
    let key = read_private_key(private_key_path)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsSetupError(format!("TLS setup failed: {error}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            TlsSetupError(format!(
                "the key in {} does not fit the certificate in {}: {error}",
                private_key_path.display(),
                certificate_path.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_pem_file(path: &Path, what: &str) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path)
        .map_err(|error| TlsSetupError(format!("cannot read {what} {}: {error}", path.display())))
}

fn read_certificate_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_pem_file(path, "the TLS certificate")?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsSetupError(format!("bad PEM in {}: {error}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsSetupError(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let pem = read_pem_file(path, "the TLS private key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        TlsSetupError(format!(
            "{} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {error}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup_error(certificate: &Path, key: &Path) -> String {
        match tls_acceptor(certificate, key) {
            Ok(_) => panic!("TLS setup accepted {}", certificate.display()),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_missing_certificate_is_named_in_the_error() {
        let error = setup_error(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        );
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }

    #[test]
    fn a_file_without_pem_blocks_is_refused() {
        let dir = std::env::temp_dir().join(format!("myelin-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("cert.pem");
        std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
        let error = setup_error(&not_pem, &not_pem);
        assert!(error.contains("holds no PEM certificate"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
