//! Connections to the server: where it is and how to reach it ([`Target`], parsed from the
//! URL), the pool of synchronous clients with their prepared statements, and transactions
//! ([`Tx`]) with the rules for retrying them (only a `BEGIN` or a read, never a write that
//! began). Driver errors become batchdb errors here, with the URL's secrets scrubbed. Every
//! connection, the listener's too, uses the TLS the URL asks for ([`super::tls`]) and TCP
//! keepalives with a user timeout, so that a vanished server is noticed within a minute.

use super::schema::*;
use super::tls;
use crate::error::{Error, Result};
use crate::location::{redact, scrub, url_query_start};
use crate::options::Durability;
use crate::sync::lock;
use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{Client, Config, Statement};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// Idle connections kept for reuse.
const POOL: usize = 8;
/// How long opening a connection may take, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive on every connection, unless the URL sets its own: a server that vanished
/// without closing the connection (a dead host, a dropped route) is noticed after 30 s idle +
/// 3 probes 10 s apart, about a minute, instead of the kernel's two hours. It matters most for
/// the listener's connection, which sends nothing for hours while the waiters sleep.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the kernel gives the connection up: a
/// query sent into a stalled path fails after this instead of after ~15 minutes of
/// retransmissions (keepalives only cover an idle connection). Shortened to a third of the
/// lease when that is less ([`Target::fit_to_lease`]), but not below [`MIN_USER_TIMEOUT`].
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest TCP user timeout a short lease brings: below it, a brief hiccup of a healthy
/// network would cost a connection.
const MIN_USER_TIMEOUT: Duration = Duration::from_secs(2);
/// The schema used when the URL does not name one.
const DEFAULT_SCHEMA: &str = "batchdb";

pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// Where the database lives, and how to reach it.
pub(super) struct Target {
    pub config: Config,
    /// TLS as the URL's `sslmode`/`sslrootcert` ask (see [`tls`]); every connection uses it.
    pub tls: postgres_openssl::MakeTlsConnector,
    /// Why the last certificate check failed, for the connect error.
    pub tls_why: tls::VerifyFailure,
    /// The same, for the listener's asynchronous client.
    pub listen_config: tokio_postgres::Config,
    pub schema: String,
    pub channel: String,
    /// The URL as given, only to scrub its secrets from driver messages.
    pub url: String,
    /// The URL without its password, for messages.
    pub shown: String,
    /// Durability full: a write transaction's commit waits for the WAL flush.
    pub durable: bool,
    /// The URL set `tcp_user_timeout` itself: [`Target::fit_to_lease`] leaves it alone.
    pub user_timeout_from_url: bool,
}

fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 48
}

impl Target {
    pub fn parse(url: &str, durability: Durability) -> Result<Target> {
        let shown = redact(url);
        // Split where the driver would: a `?` inside a password is not the query.
        let (base, query) = match url_query_start(url) {
            Some(q) => (&url[..q - 1], &url[q..]),
            None => (url, ""),
        };
        let mut schema = DEFAULT_SCHEMA.to_string();
        let mut kept = Vec::new();
        // sslmode and sslrootcert are read here, as libpq reads them: the driver knows only
        // some of the modes, and no root certificates.
        let mut tls = tls::TlsParams::default();
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("schema", v)) => schema = v.to_string(),
                _ if tls.take(kv, &shown)? => {}
                _ => kept.push(kv),
            }
        }
        if !valid_schema(&schema) {
            return Err(Error::invalid(format!(
                "{shown}: schema name {schema:?} is not allowed (lowercase letters, digits and _, \
                 at most 48 characters, not starting with a digit)"
            )));
        }
        let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| {
            Error::invalid(format!("{shown}: not a valid PostgreSQL URL: {}", scrub(&e.to_string(), url)))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("batchdb");
        }
        config.ssl_mode(tls.driver_mode());
        if config.get_keepalives_idle() > KEEPALIVE_IDLE {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVE_RETRIES);
        }
        let user_timeout_from_url = config.get_tcp_user_timeout().is_some();
        if !user_timeout_from_url {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        let (tls, tls_why) = tls.connector(&shown)?;
        Ok(Target {
            tls,
            tls_why,
            config: Config::from(config.clone()),
            listen_config: config,
            channel: format!("batchdb_{schema}"),
            schema,
            url: url.to_string(),
            shown,
            durable: durability == Durability::Full,
            user_timeout_from_url,
        })
    }

    /// The `BEGIN` of a write transaction: durable or not as the database was opened.
    pub fn begin(&self) -> &'static str {
        if self.durable {
            BEGIN_DURABLE
        } else {
            BEGIN
        }
    }

    /// A worker whose connection stalls (packets dropped, not refused) must notice before its
    /// lease runs out, or its instance is taken over while it still waits: the TCP user timeout
    /// becomes a third of the lease when that is shorter than the default (at least
    /// [`MIN_USER_TIMEOUT`]), unless the URL set one. A third, not a half: the kernel acts on
    /// it only when a retransmission is due (0.2, 0.6, 1.4, 3, 6.2 s … after sending), and a
    /// connection given up is followed by an attempt to connect again before the error shows.
    pub fn fit_to_lease(&mut self, lease: Duration) {
        if self.user_timeout_from_url {
            return;
        }
        let t = (lease / 3).clamp(MIN_USER_TIMEOUT, TCP_USER_TIMEOUT);
        self.config.tcp_user_timeout(t);
        self.listen_config.tcp_user_timeout(t);
    }

    /// A driver error's text with its causes, without the URL's secrets.
    fn describe(&self, e: &::postgres::Error) -> String {
        describe(e, &self.url)
    }

    /// Maps a driver error to a batchdb error; `lost` is set when the connection is unusable.
    fn err(&self, e: ::postgres::Error, lost: &mut bool) -> Error {
        let text = self.describe(&e);
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW]
                .contains(code)
            {
                *lost = true;
                return Error::connection_lost(&self.shown, text);
            }
            if [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
            ]
            .contains(code)
            {
                return Error::busy(format!("PostgreSQL ({}): {text}", self.shown));
            }
            if *code == SqlState::DISK_FULL {
                return Error::io(format!("disk full on the PostgreSQL server ({}): {text}", self.shown));
            }
            return Error::io(format!("PostgreSQL ({}): {text}", self.shown));
        }
        *lost = true;
        Error::connection_lost(&self.shown, text)
    }

    /// Opens a connection. `again`: the database was open already, so a server that cannot be
    /// reached (refused, timed out, shutting down or starting up) is a lost connection, which a
    /// run loop rides out; when opening, or when the server refuses the login, it is an error.
    pub fn connect(&self, again: bool) -> Result<Conn> {
        let client = self.config.connect(self.tls.clone()).map_err(|e| {
            let unreachable = e.as_db_error().is_none_or(|db| {
                [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW]
                    .contains(db.code())
            });
            let text = self.tls_why.explain(self.describe(&e));
            if again && unreachable {
                Error::connection_lost(&self.shown, format!("cannot connect again: {text}"))
            } else {
                Error::io(format!("cannot connect to PostgreSQL at {}: {text}", self.shown))
            }
        })?;
        let mut conn = Conn { client, stmts: HashMap::new(), broken: false };
        let mut setup = set_search_path(&self.schema);
        setup.push_str("; ");
        setup.push_str(SYNC_OFF);
        Tx { c: &mut conn, t: self }.batch(&setup)?;
        Ok(conn)
    }
}

/// A driver error's text with its causes, without the secrets of `url`.
pub(super) fn describe(e: &::postgres::Error, url: &str) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    scrub(&text, url)
}

pub(super) struct Conn {
    client: Client,
    stmts: HashMap<&'static str, Statement>,
    broken: bool,
}

/// One connection inside one transaction (or a read outside any).
pub(super) struct Tx<'a> {
    pub c: &'a mut Conn,
    pub t: &'a Target,
}

impl Tx<'_> {
    fn fail(&mut self, e: ::postgres::Error) -> Error {
        let mut lost = false;
        let err = self.t.err(e, &mut lost);
        if lost || self.c.client.is_closed() {
            self.c.broken = true;
        }
        err
    }

    fn prep(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.c.stmts.get(sql) {
            return Ok(s.clone());
        }
        match self.c.client.prepare(sql) {
            Ok(s) => {
                self.c.stmts.insert(sql, s.clone());
                Ok(s)
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    pub fn query(&mut self, sql: &'static str, params: &Params<'_>) -> Result<Vec<::postgres::Row>> {
        let st = self.prep(sql)?;
        self.c.client.query(&st, params).map_err(|e| self.fail(e))
    }

    pub fn opt(&mut self, sql: &'static str, params: &Params<'_>) -> Result<Option<::postgres::Row>> {
        let st = self.prep(sql)?;
        self.c.client.query_opt(&st, params).map_err(|e| self.fail(e))
    }

    pub fn one(&mut self, sql: &'static str, params: &Params<'_>) -> Result<::postgres::Row> {
        let st = self.prep(sql)?;
        self.c.client.query_one(&st, params).map_err(|e| self.fail(e))
    }

    pub fn exec(&mut self, sql: &'static str, params: &Params<'_>) -> Result<u64> {
        let st = self.prep(sql)?;
        self.c.client.execute(&st, params).map_err(|e| self.fail(e))
    }

    pub fn batch(&mut self, sql: &str) -> Result<()> {
        self.c.client.batch_execute(sql).map_err(|e| self.fail(e))
    }

    /// Wakes the waiting workers of every client when this transaction commits.
    ///
    /// Only for changes that a waiter acts on: work that became claimable (a push, a
    /// re-queue) or a queue that became empty. PostgreSQL serializes the commits of
    /// notifying transactions (measured with pgbench, 8 clients: 2,496 plain commits/s,
    /// 527 with a NOTIFY each), so the claim/complete cycle must not notify every time. A
    /// waiter never needs to hear of another worker's new lease: it went to sleep with
    /// nothing ready, so that instance was pushed later, and the push woke it.
    pub fn notify(&mut self) -> Result<()> {
        let channel = self.t.channel.clone();
        self.exec(NOTIFY, &[&channel]).map(|_| ())
    }

    /// Notifies if this transaction leaves no instance at all (see [`Tx::notify`]).
    pub fn notify_if_drained(&mut self) -> Result<()> {
        let channel = self.t.channel.clone();
        self.query(NOTIFY_IF_DRAINED, &[&channel]).map(|_| ())
    }
}

/// The pool of connections to one target.
pub(super) struct Conns {
    pub target: Target,
    pub pool: Mutex<Vec<Conn>>,
}

impl Conns {
    fn take(&self) -> Result<(Conn, bool)> {
        // A pooled connection the server has closed (a restart, an idle timeout) is known
        // closed before anything is sent on it: skip it rather than fail a statement.
        let pooled = {
            let mut pool = lock(&self.pool);
            loop {
                match pool.pop() {
                    Some(c) if c.client.is_closed() => continue,
                    other => break other,
                }
            }
        };
        match pooled {
            Some(c) => Ok((c, true)),
            None => Ok((self.target.connect(true)?, false)),
        }
    }

    /// Keeps a healthy connection for reuse. A broken one is dropped, and with it every idle
    /// one: a connection breaks when the server went away or restarted, which ended the idle
    /// ones too, and each would otherwise cost a failed attempt before a new connection.
    fn give_back(&self, conn: Conn) {
        let mut pool = lock(&self.pool);
        if conn.broken || conn.client.is_closed() {
            pool.clear();
        } else if pool.len() < POOL {
            pool.push(conn);
        }
    }

    /// Runs `f` in one transaction opened with `begin`, and commits. A `BEGIN` that fails on
    /// a pooled connection that died while idle is tried once more on a fresh connection:
    /// nothing was sent yet. Anything after that is never retried.
    pub fn tx<T>(&self, begin: &str, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let (mut conn, pooled) = self.take()?;
        if let Err(e) = (Tx { c: &mut conn, t: &self.target }).batch(begin) {
            if !(pooled && conn.broken) {
                return Err(e);
            }
            // The other idle connections died with this one.
            lock(&self.pool).clear();
            conn = self.target.connect(true)?;
            Tx { c: &mut conn, t: &self.target }.batch(begin)?;
        }
        let out = {
            let mut tx = Tx { c: &mut conn, t: &self.target };
            match f(&mut tx) {
                Ok(v) => match tx.batch(COMMIT) {
                    Ok(()) => Ok(v),
                    Err(e) if tx.c.broken => Err(e.context(
                        "the commit's outcome is unknown (the change may or may not have been applied)",
                    )),
                    Err(e) => Err(e),
                },
                Err(e) => {
                    if !tx.c.broken && tx.batch(ROLLBACK).is_err() {
                        tx.c.broken = true;
                    }
                    Err(e)
                }
            }
        };
        self.give_back(conn);
        out
    }

    pub fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.tx(self.target.begin(), f)
    }

    /// A write, as [`Conns::write`], whose `BEGIN` also takes the lock of a hash
    /// ([`begin_locked`]): one round trip fewer for each publish and complete.
    pub fn write_locked<T>(
        &self,
        shared: bool,
        key: i64,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T>,
    ) -> Result<T> {
        self.tx(&begin_locked(self.target.begin(), shared, key), f)
    }

    /// A write whose commit does not wait for the server's WAL flush: claims, lease renewals
    /// and staged chunks, as on SQLite. PostgreSQL flushes its WAL in order, so the next
    /// durable commit of any client makes them durable too; a crash before it loses at most
    /// a claim (the instance is pending again) or part of an unpublished blob.
    pub fn write_lazy<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.tx(BEGIN, f)
    }

    /// One lazy write statement outside any transaction (it commits by itself, without
    /// waiting for the WAL flush: see [`Conns::write_lazy`]). Never retried: a statement sent
    /// on a connection that then broke may have been applied.
    pub fn lazy_statement<T>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let (mut conn, _) = self.take()?;
        let out = f(&mut Tx { c: &mut conn, t: &self.target });
        self.give_back(conn);
        out
    }

    /// A read outside any transaction (one statement sees one snapshot). Reads change
    /// nothing, so one that failed on a pooled connection that had died is run again.
    pub fn read<T>(&self, f: impl Fn(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let (mut conn, pooled) = self.take()?;
        let mut out = f(&mut Tx { c: &mut conn, t: &self.target });
        if out.is_err() && pooled && conn.broken {
            lock(&self.pool).clear();
            conn = self.target.connect(true)?;
            out = f(&mut Tx { c: &mut conn, t: &self.target });
        }
        self.give_back(conn);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw `?` or `/` in the password (the driver accepts both) is not where the
    /// parameters start: the schema parameter and the password both survive the split.
    #[test]
    fn a_question_mark_in_the_password_is_not_the_query() {
        let t = Target::parse(
            "postgres://u:pa?ss/w@localhost:5/db?schema=abc&sslmode=disable",
            Durability::Normal,
        )
        .unwrap();
        assert_eq!(t.schema, "abc");
        assert_eq!(t.config.get_password(), Some(&b"pa?ss/w"[..]));
        assert_eq!(t.config.get_dbname(), Some("db"));
        let t = Target::parse("postgres://u:pa?ss@localhost/db", Durability::Normal).unwrap();
        assert_eq!(t.schema, DEFAULT_SCHEMA);
        assert_eq!(t.config.get_password(), Some(&b"pa?ss"[..]));
    }

    /// sslmode and sslrootcert are read here (the driver would refuse verify-full and does
    /// not know sslrootcert); every connection gets keepalives and a TCP user timeout unless
    /// the URL sets its own.
    #[test]
    fn tls_and_keepalives_from_the_url() {
        use tokio_postgres::config::SslMode;
        let t = Target::parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=system", Durability::Normal)
            .unwrap();
        assert_eq!(t.listen_config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.listen_config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(t.listen_config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        let t = Target::parse("postgres://u@h/db?keepalives_idle=5&tcp_user_timeout=7", Durability::Normal)
            .unwrap();
        assert_eq!(t.listen_config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(t.listen_config.get_keepalives_idle(), Duration::from_secs(5));
        assert_eq!(t.listen_config.get_tcp_user_timeout(), Some(&Duration::from_secs(7)));
        // A short lease shortens the default user timeout, never one the URL set.
        let mut t = t;
        t.fit_to_lease(Duration::from_secs(3));
        assert_eq!(t.config.get_tcp_user_timeout(), Some(&Duration::from_secs(7)));
        let mut t = Target::parse("postgres://u@h/db", Durability::Normal).unwrap();
        t.fit_to_lease(Duration::from_secs(12));
        assert_eq!(t.config.get_tcp_user_timeout(), Some(&Duration::from_secs(4)));
        assert_eq!(t.listen_config.get_tcp_user_timeout(), Some(&Duration::from_secs(4)));
        t.fit_to_lease(Duration::from_millis(500));
        assert_eq!(t.config.get_tcp_user_timeout(), Some(&MIN_USER_TIMEOUT));
        t.fit_to_lease(Duration::from_secs(300));
        assert_eq!(t.config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        let e =
            Target::parse("postgres://u:pw-secret@h/db?sslmode=verify", Durability::Normal).err().unwrap();
        assert!(matches!(&e, Error::Invalid(m) if m.contains("sslmode") && !m.contains("pw-secret")), "{e}");
    }
}
