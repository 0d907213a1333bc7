//! The routes of `batchdb ui`: who may ask (token, session, CSRF, Host), what each path
//! answers, and the JSON API's errors. Runs on the blocking pool: it calls the database.

// An error here is the response itself, built once per request and sent at once: boxing it to
// make the Result smaller would only add an allocation.
#![allow(clippy::result_large_err)]

use super::auth::{self, Auth, Refused, Who};
use super::{data, metrics, Reply, RespBody};
use batchdb::{Db, Error, Hash};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// How long counts and an overview are reused: however many pages are open and scrapers
/// scrape, the database pays for one of each a second (`stats` counts the live instances'
/// index entries on SQLite: 0.05 s for 940,000 pending).
const OVERVIEW_TTL: Duration = Duration::from_millis(1000);

/// Only this page's own files, no inline script: an injected string cannot run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The state shared by every request.
pub struct App {
    db: Db,
    auth: Auth,
    read_only: bool,
    /// The database's location as given (`--db`), never shown: see [`App::shown`].
    pub location: String,
    overview: Mutex<Option<(Instant, Arc<Vec<u8>>)>>,
    counts: Mutex<Option<(Instant, data::Counts)>>,
}

impl App {
    /// The state of one `batchdb ui` process.
    pub fn new(db: Db, auth: Auth, read_only: bool, location: String) -> App {
        App { db, auth, read_only, location, overview: Mutex::new(None), counts: Mutex::new(None) }
    }

    /// The location as pages show it: a PostgreSQL URL's password is masked.
    fn shown(&self) -> String {
        batchdb::redact(&self.location)
    }

    /// A message as it may be shown: the location, if it appears, with its password masked.
    fn scrub(&self, m: &str) -> String {
        let shown = self.shown();
        if shown == self.location || self.location.is_empty() {
            m.to_string()
        } else {
            m.replace(&self.location, &shown)
        }
    }

    /// Runs a read, once more when the file changed under a read-only handle (its reads say
    /// Busy then, and the next one sees the change).
    fn read<T>(&self, f: impl Fn(&Db) -> batchdb::Result<T>) -> batchdb::Result<T> {
        let mut tries = 0;
        loop {
            match f(&self.db) {
                Err(Error::Busy(_)) if tries < 3 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20 * tries));
                }
                r => return r,
            }
        }
    }

    /// After an action: the next page or scrape shows its effect.
    fn forget_overview(&self) {
        *self.overview.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn counts(&self) -> batchdb::Result<data::Counts> {
        // Held while counting, so that concurrent scrapes share one count.
        let mut cached = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, c)) = cached.as_ref() {
            if at.elapsed() < OVERVIEW_TTL {
                return Ok(c.clone());
            }
        }
        let c = self.read(data::counts)?;
        *cached = Some((Instant::now(), c.clone()));
        Ok(c)
    }

    fn overview_json(&self) -> batchdb::Result<Arc<Vec<u8>>> {
        // Held while gathering: a second request waits for this one's answer rather than
        // starting its own pass.
        let mut cached = self.overview.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, body)) = cached.as_ref() {
            if at.elapsed() < OVERVIEW_TTL {
                return Ok(body.clone());
            }
        }
        let counts = self.counts()?;
        let o = self.read(|db| data::overview(db, counts.clone(), crate::now_ms()))?;
        let body = Arc::new(serde_json::to_vec(&o).map_err(|e| Error::Io(e.to_string()))?);
        *cached = Some((Instant::now(), body.clone()));
        Ok(body)
    }
}

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<RespBody> {
    let mut r = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert("content-type", content_type.parse().expect("valid header"));
    h.insert("cache-control", "no-store".parse().expect("valid header"));
    h.insert("x-content-type-options", "nosniff".parse().expect("valid header"));
    h.insert("referrer-policy", "no-referrer".parse().expect("valid header"));
    h.insert("x-frame-options", "DENY".parse().expect("valid header"));
    h.insert("content-security-policy", CSP.parse().expect("valid header"));
    r
}

fn json_ok(v: &serde_json::Value) -> Response<RespBody> {
    full(200, "application/json", v.to_string())
}

/// A `{"error": MESSAGE}` answer.
pub fn json_error(status: u16, message: &str) -> Response<RespBody> {
    full(status, "application/json", json!({ "error": message }).to_string())
}

/// The status a library error answers with.
fn status_of(e: &Error) -> u16 {
    match e {
        Error::Invalid(_) => 400,
        Error::NotFound(_) => 404,
        Error::Busy(_) | Error::Stale(_) => 409,
        Error::Misuse(_) => 403,
        Error::Io(_) => 503,
        _ => 500,
    }
}

fn db_error(app: &App, e: &Error) -> Response<RespBody> {
    json_error(status_of(e), &app.scrub(e.message()))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(app: &App, template: &str, status: u16, note: &str) -> Response<RespBody> {
    let html = template
        .replace("{{CSRF}}", &app.auth.csrf)
        .replace("{{DB}}", &html_escape(&app.shown()))
        .replace("{{READONLY}}", if app.read_only { "true" } else { "false" })
        .replace("{{NOTE}}", &html_escape(note));
    full(status, "text/html; charset=utf-8", html)
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Answers one request.
pub fn route(app: &App, parts: &Parts, body: &Bytes) -> Reply {
    Reply::Full(match answer(app, parts, body) {
        Ok(reply) => return reply,
        Err(r) => r,
    })
}

fn answer(app: &App, parts: &Parts, body: &Bytes) -> Result<Reply, Response<RespBody>> {
    let path = parts.uri.path();
    let method = &parts.method;
    if !app.auth.token_required() {
        // Without a token the only guard is that the client runs on this machine: a web page
        // elsewhere whose name was made to resolve to 127.0.0.1 still sends its own name.
        if let Some(host) = header(parts, "host") {
            if !auth::loopback_host(host) {
                return Err(json_error(403, "this dashboard answers only requests addressed to localhost"));
            }
        }
    }
    let who = match app.auth.check(header(parts, "authorization"), header(parts, "cookie")) {
        Ok(w) => w,
        Err(Refused::Unauthorized(why)) => {
            if path == "/login" {
                return login(app, method, body).map(Reply::Full);
            }
            // The login page's own style: static, the same for everyone, no data in it.
            if path == "/app.css" && method == Method::GET {
                return Ok(Reply::Full(full(200, "text/css; charset=utf-8", APP_CSS)));
            }
            if path == "/" {
                return Err(page(app, LOGIN_HTML, 401, ""));
            }
            let mut r = json_error(401, why);
            r.headers_mut()
                .insert("www-authenticate", "Bearer realm=\"batchdb\"".parse().expect("valid header"));
            return Err(r);
        }
    };
    let get = method == Method::GET;
    let post = method == Method::POST;
    let r = match path {
        "/" if get => page(app, INDEX_HTML, 200, ""),
        "/app.js" if get => full(200, "text/javascript; charset=utf-8", APP_JS),
        "/app.css" if get => full(200, "text/css; charset=utf-8", APP_CSS),
        "/login" if app.auth.token_required() => login(app, method, body)?,
        "/metrics" if get => {
            let counts = app.counts().map_err(|e| db_error(app, &e))?;
            full(200, metrics::CONTENT_TYPE, metrics::render(&counts, crate::now_ms()))
        }
        "/api/overview" if get => {
            let body = app.overview_json().map_err(|e| db_error(app, &e))?;
            full(200, "application/json", body.as_ref().clone())
        }
        "/api/retry" | "/api/cancel" | "/api/pause" | "/api/resume" | "/api/limit" if post => {
            action(app, who, parts, path, body)?
        }
        p if get && p.starts_with("/api/job/") => {
            let key = parse_hash(&p["/api/job/".len()..])?;
            let job = app.read(|db| data::job(db, &key)).map_err(|e| db_error(app, &e))?;
            json_ok(&serde_json::to_value(&job).map_err(|e| json_error(500, &e.to_string()))?)
        }
        p if get && p.starts_with("/blob/") => {
            let hash = parse_hash(&p["/blob/".len()..])?;
            let reader = app.read(|db| db.get(&hash)).map_err(|e| db_error(app, &e))?;
            return Ok(Reply::Blob(blob_head(&hash, reader.size()), reader));
        }
        "/" | "/app.js" | "/app.css" | "/metrics" | "/api/overview" => method_not_allowed("GET"),
        "/api/retry" | "/api/cancel" | "/api/pause" | "/api/resume" | "/api/limit" => {
            method_not_allowed("POST")
        }
        p if p.starts_with("/api/job/") || p.starts_with("/blob/") => method_not_allowed("GET"),
        _ => json_error(404, &format!("no such page: {}", path)),
    };
    Ok(Reply::Full(r))
}

fn method_not_allowed(allow: &str) -> Response<RespBody> {
    let mut r = json_error(405, &format!("method not allowed here (use {allow})"));
    r.headers_mut().insert("allow", allow.parse().expect("valid header"));
    r
}

fn parse_hash(s: &str) -> Result<Hash, Response<RespBody>> {
    s.parse::<Hash>().map_err(|e| json_error(400, e.message()))
}

/// The head of a blob download. Served as an attachment of an opaque type and sandboxed: a
/// result may hold HTML, which must never run as this dashboard's page.
fn blob_head(hash: &Hash, size: u64) -> Response<()> {
    let mut r = Response::new(());
    let h = r.headers_mut();
    h.insert("content-type", "application/octet-stream".parse().expect("valid header"));
    h.insert("content-length", size.into());
    h.insert(
        "content-disposition",
        format!("attachment; filename=\"{hash}\"").parse().expect("valid header"),
    );
    h.insert("x-content-type-options", "nosniff".parse().expect("valid header"));
    h.insert("content-security-policy", "sandbox".parse().expect("valid header"));
    h.insert("cache-control", "private, max-age=31536000, immutable".parse().expect("valid header"));
    r
}

/// `GET /login` shows the form; `POST /login` checks the token and sets the session cookie.
fn login(app: &App, method: &Method, body: &Bytes) -> Result<Response<RespBody>, Response<RespBody>> {
    if !app.auth.token_required() {
        return Err(json_error(404, "no login: this dashboard has no token"));
    }
    if method == Method::GET {
        return Ok(page(app, LOGIN_HTML, 200, ""));
    }
    if method != Method::POST {
        return Err(method_not_allowed("GET, POST"));
    }
    let form: Vec<(String, String)> = form_pairs(body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("");
    if !auth::same(field("csrf"), &app.auth.csrf) {
        return Err(page(app, LOGIN_HTML, 403, "The form expired (the server restarted?): try again."));
    }
    match app.auth.login(field("token")) {
        Ok(Some(session)) => {
            let mut r = full(303, "text/plain; charset=utf-8", "logged in");
            let h = r.headers_mut();
            h.insert("location", "/".parse().expect("valid header"));
            let cookie = format!("{}={session}; HttpOnly; SameSite=Strict; Path=/", auth::SESSION_COOKIE);
            h.insert("set-cookie", cookie.parse().map_err(|_| json_error(500, "bad session id"))?);
            Ok(r)
        }
        Ok(None) => Err(page(app, LOGIN_HTML, 401, "Wrong token.")),
        Err(e) => Err(json_error(500, &format!("reading random bytes: {e}"))),
    }
}

/// `application/x-www-form-urlencoded` pairs.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceBody {
    key: String,
    created: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueBody {
    queue: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitBody {
    queue: String,
    /// 0 removes the limit, as `batchdb limit Q 0`.
    limit: u32,
}

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Response<RespBody>> {
    serde_json::from_slice(body).map_err(|e| json_error(400, &format!("bad JSON body: {e}")))
}

/// The POST actions: refused in `--read-only`, and without the CSRF token unless the
/// request carries the Bearer token (which a browser never adds on its own).
fn action(
    app: &App,
    who: Who,
    parts: &Parts,
    path: &str,
    body: &Bytes,
) -> Result<Response<RespBody>, Response<RespBody>> {
    if app.read_only {
        return Err(json_error(403, "this dashboard is read-only (--read-only)"));
    }
    if who != Who::Bearer {
        let given = header(parts, "x-csrf-token").unwrap_or("");
        if !auth::same(given, &app.auth.csrf) {
            return Err(json_error(
                403,
                "missing or wrong X-CSRF-Token header (the page's <meta name=\"csrf-token\">)",
            ));
        }
    }
    let r = match path {
        "/api/retry" => {
            let b: InstanceBody = parse_body(body)?;
            let key = parse_hash(&b.key)?;
            let created = app.db.retry(&key, b.created).map_err(|e| db_error(app, &e))?;
            json_ok(&json!({ "key": key, "created": created, "retried": b.created }))
        }
        "/api/cancel" => {
            let b: InstanceBody = parse_body(body)?;
            let key = parse_hash(&b.key)?;
            app.db.cancel(&key, b.created).map_err(|e| db_error(app, &e))?;
            json_ok(&json!({ "key": key, "created": b.created, "cancelled": true }))
        }
        "/api/limit" => {
            let b: LimitBody = parse_body(body)?;
            app.db.limit(&b.queue, b.limit).map_err(|e| db_error(app, &e))?;
            json_ok(&json!({ "queue": b.queue, "limit": (b.limit > 0).then_some(b.limit) }))
        }
        _ => {
            let b: QueueBody = parse_body(body)?;
            let pause = path == "/api/pause";
            let done = if pause { app.db.pause(&b.queue) } else { app.db.resume(&b.queue) };
            done.map_err(|e| db_error(app, &e))?;
            json_ok(&json!({ "queue": b.queue, "paused": pause }))
        }
    };
    app.forget_overview();
    Ok(r)
}
