//! TLS to the server (issue 23): the URL's `sslmode` and `sslrootcert`, read as libpq reads
//! them, turned into the driver's TLS mode and an OpenSSL connector that every connection
//! uses (the pooled ones and the listener's).
//!
//! The driver itself knows only `disable`, `prefer` and `require`, so both parameters are
//! taken out of the URL here and the driver gets the mode it understands:
//!
//! | `sslmode`     | encrypted                  | certificate chain | host name |
//! |---------------|----------------------------|-------------------|-----------|
//! | `disable`     | no                         | –                 | –         |
//! | `prefer`      | if the server offers it    | not checked       | no        |
//! | `require`     | yes, or the connect fails  | not checked¹      | no        |
//! | `verify-ca`   | yes                        | checked           | no        |
//! | `verify-full` | yes                        | checked           | checked   |
//!
//! ¹ As libpq: `require` with an explicit `sslrootcert` checks the chain, like `verify-ca`.
//!
//! The roots: the PEM file `sslrootcert` names; without it, `~/.postgresql/root.crt` when
//! that file exists (libpq's default), else the system's trust store (what libpq 16 calls
//! `sslrootcert=system`, which is also accepted).

use crate::error::{Error, Result};
use crate::location::percent_decode;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio_postgres::config::SslMode as DriverMode;

/// Why the last certificate check failed, for the connect error's message.
#[derive(Clone, Default)]
pub(crate) struct VerifyFailure(Arc<Mutex<Option<String>>>);

impl VerifyFailure {
    /// Adds the reason of the last failed certificate check to a connect error's text that
    /// says the check failed.
    pub fn explain(&self, text: String) -> String {
        if !text.contains("certificate verify failed") {
            return text;
        }
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(why) => format!("the server's certificate was refused: {why}; {text}"),
            None => text,
        }
    }
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// The TLS settings found in a URL's query.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsParams {
    mode: Option<SslMode>,
    root_cert: Option<String>,
}

impl TlsParams {
    /// Takes `kv` (one `key=value` of the query) when it is a TLS setting; `Ok(false)` when it
    /// is not ours. `shown` is the redacted URL, for messages.
    pub fn take(&mut self, kv: &str, shown: &str) -> Result<bool> {
        match kv.split_once('=') {
            Some(("sslmode", v)) => {
                let v = percent_decode(v);
                self.mode = Some(SslMode::parse(&v).ok_or_else(|| {
                    Error::invalid(format!(
                        "{shown}: sslmode {v:?} is not one of disable, prefer, require, verify-ca, verify-full"
                    ))
                })?);
                Ok(true)
            }
            Some(("sslrootcert", v)) => {
                let v = percent_decode(v);
                if v.is_empty() {
                    return Err(Error::invalid(format!("{shown}: sslrootcert is empty")));
                }
                self.root_cert = Some(v);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The mode in effect (libpq's default is `prefer`).
    pub fn mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (None, _) => SslMode::Prefer,
            // libpq: "require" with a root certificate given verifies the chain.
            (Some(SslMode::Require), Some(_)) => SslMode::VerifyCa,
            (Some(m), _) => m,
        }
    }

    /// The mode the driver is given: it negotiates, the connector verifies.
    pub fn driver_mode(&self) -> DriverMode {
        match self.mode() {
            SslMode::Disable => DriverMode::Disable,
            SslMode::Prefer => DriverMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
        }
    }

    /// The connector every connection of this database uses. A root file that cannot be read
    /// is an [`Error::Invalid`] here, at open, rather than a failure at each connect.
    pub fn connector(&self, shown: &str) -> Result<(MakeTlsConnector, VerifyFailure)> {
        let mode = self.mode();
        let tls_err =
            |what: &str, e: openssl::error::ErrorStack| Error::invalid(format!("{shown}: {what}: {e}"));
        let mut b =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| tls_err("cannot set up TLS", e))?;
        let verify = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
        if verify {
            b.set_verify(SslVerifyMode::PEER);
            // Without a file: the system's trust store, which the builder loaded already.
            if let Some(path) = self.roots() {
                if !path.is_file() {
                    return Err(Error::invalid(format!(
                        "{shown}: sslrootcert {} is not a readable file",
                        path.display()
                    )));
                }
                b.set_ca_file(&path).map_err(|e| {
                    tls_err(&format!("sslrootcert {} holds no usable PEM certificate", path.display()), e)
                })?;
            }
        } else {
            b.set_verify(SslVerifyMode::NONE);
        }
        let mut c = MakeTlsConnector::new(b.build());
        let check_host = mode == SslMode::VerifyFull;
        let why = VerifyFailure::default();
        let slot = why.0.clone();
        c.set_callback(move |cfg, host| {
            cfg.set_verify_hostname(check_host);
            if verify {
                // OpenSSL's own error says only "certificate verify failed"; keep the reason
                // (wrong CA, host name mismatch, expired…) for the message.
                let (slot, host) = (slot.clone(), host.to_string());
                cfg.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
                    if !ok {
                        let depth = ctx.error_depth();
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                            "{} (connecting to {host:?}, certificate depth {depth})",
                            ctx.error()
                        ));
                    }
                    ok
                });
            }
            Ok(())
        });
        Ok((c, why))
    }

    /// The PEM file of trusted roots, or `None` for the system's trust store.
    fn roots(&self) -> Option<PathBuf> {
        match self.root_cert.as_deref() {
            Some("system") => None,
            Some(p) => Some(PathBuf::from(p)),
            None => {
                let home = std::env::var_os("HOME")?;
                let p = PathBuf::from(home).join(".postgresql").join("root.crt");
                p.is_file().then_some(p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[&str]) -> Result<TlsParams> {
        let mut p = TlsParams::default();
        for kv in q {
            assert!(p.take(kv, "url")?);
        }
        Ok(p)
    }

    #[test]
    fn modes_as_libpq_reads_them() {
        assert_eq!(params(&[]).unwrap().mode(), SslMode::Prefer);
        assert_eq!(params(&["sslmode=disable"]).unwrap().driver_mode(), DriverMode::Disable);
        assert_eq!(params(&["sslmode=require"]).unwrap().mode(), SslMode::Require);
        assert_eq!(params(&["sslmode=require", "sslrootcert=/x.pem"]).unwrap().mode(), SslMode::VerifyCa);
        assert_eq!(params(&["sslmode=verify-full"]).unwrap().driver_mode(), DriverMode::Require);
        assert_eq!(params(&["sslmode=verify-ca"]).unwrap().mode(), SslMode::VerifyCa);
        assert_eq!(
            params(&["sslrootcert=%2Ftmp%2Fca.pem"]).unwrap().root_cert.as_deref(),
            Some("/tmp/ca.pem")
        );
        assert!(matches!(params(&["sslmode=verify_full"]), Err(Error::Invalid(_))));
        assert!(matches!(params(&["sslrootcert="]), Err(Error::Invalid(_))));
        assert!(!TlsParams::default().take("user=x", "url").unwrap());
    }

    #[test]
    fn a_missing_root_file_is_refused_at_open() {
        let p = params(&["sslmode=verify-full", "sslrootcert=/nonexistent/ca.pem"]).unwrap();
        let e = p.connector("url").err().unwrap();
        assert!(matches!(&e, Error::Invalid(m) if m.contains("/nonexistent/ca.pem")), "{e}");
    }
}
