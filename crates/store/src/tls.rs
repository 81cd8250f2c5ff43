//! TLS to PostgreSQL with rustls, as libpq's `sslmode` asks: `disable` (never), `prefer` (the
//! default: encrypt when the server offers it), `require` (encrypt, or refuse), `verify-full`
//! (encrypt, and the server's certificate must chain to `sslrootcert` and name the host).
//! `verify-ca` (the chain without the name) is refused: ask for `verify-full`.

use std::path::PathBuf;
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What a connection string asks of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tls {
    Disable,
    /// Encrypt when the server offers it; no certificate check (libpq's `prefer`).
    Prefer,
    /// Encrypt or refuse; no certificate check (libpq's `require` without a root certificate).
    Require,
    /// Encrypt, and verify the chain to this CA file and the host name.
    VerifyFull {
        ca: PathBuf,
    },
}

/// Splits the TLS settings sfbpatch handles itself (`sslmode` values the driver does not
/// know, `sslrootcert`) off `conninfo` (a URL or `key=value` pairs): the TLS wanted, and the
/// connection string for the driver (with `sslmode` `disable`, `prefer` or `require`).
pub(crate) fn split(conninfo: &str) -> Result<(Tls, String), String> {
    let url = conninfo.starts_with("postgres://") || conninfo.starts_with("postgresql://");
    let mut mode: Option<String> = None;
    let mut root: Option<String> = None;
    let rest = if url {
        let (base, query) = conninfo.split_once('?').unwrap_or((conninfo, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.to_string()),
                Some(("sslrootcert", v)) => root = Some(percent_decode(v)),
                _ => kept.push(pair),
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for pair in conninfo.split_whitespace() {
            match pair.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.trim_matches('\'').to_string()),
                Some(("sslrootcert", v)) => root = Some(v.trim_matches('\'').to_string()),
                _ => kept.push(pair),
            }
        }
        kept.join(" ")
    };
    let tls = match mode.as_deref() {
        Some("disable") => Tls::Disable,
        None | Some("prefer" | "allow") => Tls::Prefer,
        Some("require") => Tls::Require,
        Some("verify-full") => Tls::VerifyFull {
            ca: root.clone().map(PathBuf::from).ok_or(
                "sslmode=verify-full needs sslrootcert=FILE (the CA certificate, PEM)".to_string(),
            )?,
        },
        Some("verify-ca") => {
            return Err(
                "sslmode=verify-ca is not supported: use sslmode=verify-full (it also \
                        checks that the certificate names the host)"
                    .to_string(),
            );
        }
        Some(other) => {
            return Err(format!(
                "sslmode={other}: expected disable, prefer, require or verify-full"
            ));
        }
    };
    let driver_mode = match tls {
        Tls::Disable => "disable",
        Tls::Prefer => "prefer",
        Tls::Require | Tls::VerifyFull { .. } => "require",
    };
    let rest = if url {
        let sep = if rest.contains('?') { '&' } else { '?' };
        format!("{rest}{sep}sslmode={driver_mode}")
    } else {
        format!("{rest} sslmode={driver_mode}")
    };
    Ok((tls, rest))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Tls {
    pub(crate) fn ssl_mode(&self) -> SslMode {
        match self {
            Tls::Disable => SslMode::Disable,
            Tls::Prefer => SslMode::Prefer,
            Tls::Require | Tls::VerifyFull { .. } => SslMode::Require,
        }
    }

    /// The rustls connector, or `None` for `disable`.
    pub(crate) fn connector(&self) -> Result<Option<MakeRustlsConnect>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let config = match self {
            Tls::Disable => return Ok(None),
            Tls::Prefer | Tls::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
                .with_no_client_auth(),
            Tls::VerifyFull { ca } => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(ca)
                    .map_err(|e| format!("sslrootcert {}: {e}", ca.display()))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("sslrootcert {}: {e}", ca.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert {}: {e}", ca.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!(
                        "sslrootcert {}: no certificate in it (PEM expected)",
                        ca.display()
                    ));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(Some(MakeRustlsConnect::new(config)))
    }
}

/// libpq's `require` and `prefer`: the connection is encrypted, the server's certificate is
/// not checked (its signature over the handshake is).
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_what_the_driver_does_not_know() {
        assert_eq!(
            split("postgres://u@h/db").unwrap(),
            (Tls::Prefer, "postgres://u@h/db?sslmode=prefer".to_string())
        );
        assert_eq!(
            split("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x")
                .unwrap(),
            (
                Tls::VerifyFull {
                    ca: "/tmp/ca.pem".into()
                },
                "postgres://u@h/db?application_name=x&sslmode=require".to_string()
            )
        );
        assert_eq!(
            split("host=h dbname=db sslmode=disable").unwrap(),
            (Tls::Disable, "host=h dbname=db sslmode=disable".to_string())
        );
        assert_eq!(
            split("postgres://u@h/db?sslmode=verify-full").unwrap_err(),
            "sslmode=verify-full needs sslrootcert=FILE (the CA certificate, PEM)"
        );
        assert!(
            split("postgres://u@h/db?sslmode=verify-ca")
                .unwrap_err()
                .starts_with("sslmode=verify-ca is not supported")
        );
        assert!(split("postgres://u@h/db?sslmode=sometimes").is_err());
    }
}
