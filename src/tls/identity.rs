//! The server's identity: its TLS key and certificate, made on first start in the data
//! directory (no set-up for a classroom) or read from `tls_cert`/`tls_key` (a real
//! certificate), and the [`Fingerprint`] students compare.

use super::fingerprint::Fingerprint;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The made-up certificate's file in the data directory.
pub const CERT_FILE: &str = "tls-cert.pem";
/// The made-up key's file in the data directory (mode 0600).
pub const KEY_FILE: &str = "tls-key.pem";

/// Why the server has no identity: always names the file at fault.
#[derive(Debug)]
pub struct IdentityError {
    /// The file that could not be read, written or understood.
    pub path: PathBuf,
    /// What is wrong with it, and what to do.
    pub problem: String,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for IdentityError {}

fn error(path: &Path, problem: impl Into<String>) -> IdentityError {
    IdentityError {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// A loaded identity, ready to accept TLS connections.
#[derive(Clone)]
pub struct Identity {
    /// What clients pin.
    pub fingerprint: Fingerprint,
    /// rustls' server side for every TLS door.
    pub config: Arc<ServerConfig>,
    /// Where the certificate came from (for the log).
    pub cert_path: PathBuf,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity({:?}, {})",
            self.fingerprint,
            self.cert_path.display()
        )
    }
}

/// The crypto every lanchat TLS connection uses: rustls with *ring* (no C toolchain beyond
/// what `ring` builds itself).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The fingerprint of a certificate's public key, or `None` if it is not a certificate.
pub fn fingerprint_of(cert: &CertificateDer<'_>) -> Option<Fingerprint> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    Some(Fingerprint::of_spki(
        parsed.subject_public_key_info().as_ref(),
    ))
}

impl Identity {
    /// The identity in `data_dir`, made there on first start; or, when `configured` names a
    /// certificate and key (`tls_cert`, `tls_key`), that one.
    pub fn load_or_create(
        data_dir: &Path,
        configured: Option<(&Path, &Path)>,
    ) -> Result<Identity, IdentityError> {
        match configured {
            Some((cert, key)) => Identity::load(cert, key),
            None => {
                let (cert, key) = (data_dir.join(CERT_FILE), data_dir.join(KEY_FILE));
                create_missing(&cert, &key)?;
                Identity::load(&cert, &key)
            }
        }
    }

    /// Reads a PEM certificate chain and its PEM private key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, IdentityError> {
        let cert_pem = fs::read(cert_path).map_err(|e| error(cert_path, e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| error(cert_path, format!("not a PEM certificate ({e})")))?;
        let first = certs
            .first()
            .ok_or_else(|| error(cert_path, "holds no PEM certificate"))?;
        let fingerprint = fingerprint_of(first).ok_or_else(|| {
            error(
                cert_path,
                "its first certificate is damaged (not valid X.509)",
            )
        })?;
        let key_pem = fs::read(key_path).map_err(|e| error(key_path, e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| error(key_path, format!("not a PEM private key ({e})")))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| error(cert_path, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                error(
                    key_path,
                    format!("does not go with {} ({e})", cert_path.display()),
                )
            })?;
        Ok(Identity {
            fingerprint,
            config: Arc::new(config),
            cert_path: cert_path.to_path_buf(),
        })
    }
}

/// Makes the key (if missing) and a self-signed certificate for it (if missing). A key
/// left without its certificate (a crash between the two writes) keeps its identity; a
/// certificate without its key is an error: making a new key would silently change the
/// fingerprint every client pinned.
fn create_missing(cert: &Path, key: &Path) -> Result<(), IdentityError> {
    let (has_cert, has_key) = (cert.exists(), key.exists());
    if has_cert && has_key {
        return Ok(());
    }
    if has_cert {
        return Err(error(
            key,
            format!(
                "is missing while {} is there; restore the key, or delete both files to make \
                 a new identity (every client will then see a changed fingerprint)",
                cert.display()
            ),
        ));
    }
    let key_pair = if has_key {
        let pem = fs::read_to_string(key).map_err(|e| error(key, e.to_string()))?;
        rcgen::KeyPair::from_pem(&pem)
            .map_err(|e| error(key, format!("not a PEM private key ({e})")))?
    } else {
        let pair = rcgen::KeyPair::generate().map_err(|e| error(key, e.to_string()))?;
        write_new(key, pair.serialize_pem().as_bytes(), 0o600)?;
        pair
    };
    let names = vec!["lanchat".to_string(), "localhost".to_string()];
    let made = rcgen::CertificateParams::new(names)
        .and_then(|mut params| {
            let mut name = rcgen::DistinguishedName::new();
            name.push(rcgen::DnType::CommonName, "lanchat server");
            params.distinguished_name = name;
            params.self_signed(&key_pair)
        })
        .map_err(|e| error(cert, e.to_string()))?;
    write_new(cert, made.pem().as_bytes(), 0o644)
}

/// Writes a file whole or not at all (a temporary file renamed over), with `mode`.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    let tmp = path.with_extension("pem.tmp");
    let written = (|| -> io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    #[cfg(not(unix))]
    let _ = mode;
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        error(path, format!("cannot write it: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_kept_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path(), None).unwrap();
        let again = Identity::load_or_create(dir.path(), None).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_key_without_its_certificate_keeps_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path(), None).unwrap();
        fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let again = Identity::load_or_create(dir.path(), None).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
    }

    #[test]
    fn damaged_or_missing_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path(), None).unwrap();
        let key = dir.path().join(KEY_FILE);
        fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot base64!\n").unwrap();
        let err = Identity::load_or_create(dir.path(), None).unwrap_err();
        assert_eq!(err.path, key, "{err}");
        fs::remove_file(&key).unwrap();
        let err = Identity::load_or_create(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
        let cert = dir.path().join(CERT_FILE);
        fs::write(&cert, "hello").unwrap();
        let err = Identity::load(&cert, &key).unwrap_err();
        assert_eq!(err.path, cert, "{err}");
    }
}
