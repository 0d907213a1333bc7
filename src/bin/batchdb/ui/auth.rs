//! Who may use the dashboard: the token (`--token-file`), login sessions, the CSRF token and
//! the Host check that keeps a DNS-rebinding page away from a loopback dashboard.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Mutex;

/// The cookie a successful login sets.
pub const SESSION_COOKIE: &str = "batchdb_session";

/// At most this many login sessions are remembered; the oldest are forgotten first (logins
/// only come from people who know the token, so this bounds memory, not abuse).
const MAX_SESSIONS: usize = 1024;

/// The security state of one `batchdb ui` process.
pub struct Auth {
    /// The token every request must present, when `--token-file` was given.
    token: Option<String>,
    /// The CSRF token given in the page's `<meta name="csrf-token">`.
    pub csrf: String,
    sessions: Mutex<(HashSet<String>, Vec<String>)>,
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// No token is configured (loopback only): everyone who reaches the port.
    Anyone,
    /// An `Authorization: Bearer` header with the token: not a browser's ambient credential,
    /// so no CSRF token is needed.
    Bearer,
    /// A session cookie from the login page: a browser, so POSTs need the CSRF token.
    Session,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No or a wrong credential (401).
    Unauthorized(&'static str),
}

/// 32 random bytes from the kernel, as hex.
pub fn random_hex() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex::encode(b))
}

/// Compares without stopping at the first difference, so that the time taken does not tell
/// how much of a guess was right.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// `token`: the trimmed content of `--token-file`, if given.
    pub fn new(token: Option<String>) -> std::io::Result<Auth> {
        Ok(Auth { token, csrf: random_hex()?, sessions: Mutex::new((HashSet::new(), Vec::new())) })
    }

    /// Whether a token is required.
    pub fn token_required(&self) -> bool {
        self.token.is_some()
    }

    /// Checks a request's credentials: its `Authorization` header and `Cookie` header.
    pub fn check(&self, authorization: Option<&str>, cookie: Option<&str>) -> Result<Who, Refused> {
        let Some(token) = &self.token else { return Ok(Who::Anyone) };
        if let Some(a) = authorization {
            let given = a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer ")).map(str::trim);
            return match given {
                Some(g) if same(g, token) => Ok(Who::Bearer),
                _ => Err(Refused::Unauthorized("wrong token in the Authorization header")),
            };
        }
        if let Some(s) = cookie.and_then(session_of) {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if sessions.0.contains(s) {
                return Ok(Who::Session);
            }
            return Err(Refused::Unauthorized(
                "the login session is unknown (the server restarted?): log in again",
            ));
        }
        Err(Refused::Unauthorized(
            "a token is required: an Authorization: Bearer header, or log in at /login",
        ))
    }

    /// Checks a token typed into the login page; on success returns a new session id.
    pub fn login(&self, given: &str) -> std::io::Result<Option<String>> {
        let Some(token) = &self.token else { return Ok(None) };
        if !same(given.trim(), token) {
            return Ok(None);
        }
        let id = random_hex()?;
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.0.insert(id.clone());
        s.1.push(id.clone());
        if s.1.len() > MAX_SESSIONS {
            let old = s.1.remove(0);
            s.0.remove(&old);
        }
        Ok(Some(id))
    }
}

/// The session id in a `Cookie` header.
fn session_of(cookie: &str) -> Option<&str> {
    cookie
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
}

/// Whether a `Host` header names this machine's loopback (any port): a page whose own name
/// resolves to 127.0.0.1 (DNS rebinding) sends its own name, and is refused.
pub fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(loopback_host("127.0.0.1:8977"));
        assert!(loopback_host("localhost:1"));
        assert!(loopback_host("[::1]:8977"));
        assert!(loopback_host("127.0.0.1"));
        assert!(!loopback_host("evil.example:8977"));
        assert!(!loopback_host("10.0.0.1:8977"));
    }

    #[test]
    fn sessions_and_bearer() {
        let a = Auth::new(Some("s3cret".into())).unwrap();
        assert_eq!(a.check(Some("Bearer s3cret"), None), Ok(Who::Bearer));
        assert!(a.check(Some("Bearer nope"), None).is_err());
        assert!(a.check(None, None).is_err());
        assert!(a.login("wrong").unwrap().is_none());
        let id = a.login(" s3cret\n").unwrap().unwrap();
        let cookie = format!("x=1; {SESSION_COOKIE}={id}");
        assert_eq!(a.check(None, Some(&cookie)), Ok(Who::Session));
        assert!(a.check(None, Some("batchdb_session=forged")).is_err());
    }
}
