//! `batchdb ui` (contract section 11), over HTTP: every route's status codes, the CSRF, token
//! and read-only rules, `/metrics` parsed strictly and compared with `stats --json`, and blob
//! downloads, exact or cut short when the blob is damaged.
//!
//! The server is the built binary, started on an ephemeral port against a temp database; the
//! requests are written by hand on a TcpStream so that the test sees exactly what went over
//! the wire (status, headers, how the body ended).

mod common;

use batchdb::{Db, Hash, Options};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_batchdb");

/// A running `batchdb ui`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(db: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("--db")
            .arg(db)
            .arg("ui")
            .args(args)
            .env_remove("BATCHDB_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn batchdb ui");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read first line");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("batchdb ui did not say where it serves: {line:?} {err}")
            })
            .to_string();
        // Connect over loopback even when it listens on every address.
        let addr = addr.replace("0.0.0.0", "127.0.0.1");
        Server { child, addr }
    }

    fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], "")
    }

    fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {}\r\n", self.addr));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read response");
        Resp::parse(&raw)
    }

    fn csrf(&self, headers: &[(&str, &str)]) -> String {
        let page = self.req("GET", "/", headers, "");
        assert_eq!(page.status, 200, "{}", page.text());
        meta(&page.text(), "csrf-token")
    }

    fn post(&self, path: &str, csrf: &str, body: &str) -> Resp {
        self.req("POST", path, &[("X-CSRF-Token", csrf), ("Content-Type", "application/json")], body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as received: the body as sent (Content-Length bodies only, which is what the
/// server sends), and whether it was as long as announced.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn parse(raw: &[u8]) -> Resp {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head");
        let head = String::from_utf8(raw[..end].to_vec()).expect("utf-8 head");
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header line");
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Resp { status, headers, body: raw[end + 4..].to_vec() }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", self.text()))
    }

    /// The `error` of a 4xx JSON answer.
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error in {}", self.text())).to_string()
    }
}

fn meta(html: &str, name: &str) -> String {
    let prefix = format!("<meta name=\"{name}\" content=\"");
    let at = html.find(&prefix).expect("meta tag") + prefix.len();
    html[at..].split('"').next().unwrap().to_string()
}

/// `batchdb ARGS` on the database; its stdout.
fn cli(db: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN).arg("--db").arg(db).args(args).env_remove("BATCHDB_PATH").output().unwrap();
    assert!(out.status.success(), "batchdb {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn rows(db: &Path, kind: &str) -> Vec<Value> {
    cli(db, &["list", kind]).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A database with finished, failed, pending and waiting work: (results' job, failed job,
/// failed created, pending job, pending created).
struct Work {
    _tmp: common::TempDb,
    path: PathBuf,
    done: Hash,
    failed: (Hash, i64),
    pending: (Hash, i64),
}

fn work() -> Work {
    let tmp = common::temp_path();
    let path = tmp.path.clone();
    let db = Db::open(&path, Options::default()).unwrap();
    let (done, _) = db.add(&b"echo done"[..]).unwrap();
    let (bad, bad_created) = db.add(&b"exit 3"[..]).unwrap();
    for _ in 0..2 {
        let mut job = db.claim().unwrap().expect("a job");
        if job.key() == bad {
            job.fail("exit status 3: <b>boom</b>").unwrap();
        } else {
            job.write_all(b"DONE").unwrap();
            job.complete().unwrap();
        }
    }
    let (pending, pending_created) = db.add(&b"echo later"[..]).unwrap();
    db.add_with(
        &b"echo much later"[..],
        &batchdb::PushOptions { delay: Duration::from_secs(3600), ..Default::default() },
    )
    .unwrap();
    Work { _tmp: tmp, path, done, failed: (bad, bad_created), pending: (pending, pending_created) }
}

#[test]
fn every_route_answers_with_its_status() {
    let w = work();
    let s = Server::start(&w.path, &["--listen", "127.0.0.1:0"]);

    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(meta(&page.text(), "csrf-token").len(), 64);
    assert!(page.header("content-security-policy").unwrap().contains("script-src 'self'"));
    assert_eq!(s.get("/app.js").status, 200);
    assert_eq!(s.get("/app.css").status, 200);
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));

    let o = s.get("/api/overview");
    assert_eq!(o.status, 200);
    let o = o.json();
    assert_eq!(o["counts"]["queues"][0]["pending"], 1);
    assert_eq!(o["counts"]["queues"][0]["waiting"], 1);
    assert_eq!(o["counts"]["results_total"], 1);
    assert_eq!(o["failures"][0]["message"], "exit status 3: <b>boom</b>");
    assert_eq!(o["completions"].as_array().unwrap().len(), 60);
    let in_chart: u64 =
        o["completions"].as_array().unwrap().iter().map(|m| m["results"].as_u64().unwrap()).sum();
    assert_eq!(in_chart, 1);

    let job = s.get(&format!("/api/job/{}", w.done));
    assert_eq!(job.status, 200);
    let job = job.json();
    assert_eq!(job["preview"], "echo done");
    assert_eq!(job["results"].as_array().unwrap().len(), 1);
    let out_hash = job["results"][0]["hash"].as_str().unwrap().to_string();
    let j = s.get(&format!("/api/job/{}", w.failed.0)).json();
    assert_eq!(j["failures"][0]["created"], w.failed.1);

    let blob = s.get(&format!("/blob/{out_hash}"));
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body, b"DONE");
    assert_eq!(blob.header("content-type"), Some("application/octet-stream"));
    assert!(blob.header("content-disposition").unwrap().starts_with("attachment"));

    let unknown = Hash::of(b"nothing stored").to_string();
    assert_eq!(s.get(&format!("/api/job/{unknown}")).status, 404);
    assert_eq!(s.get(&format!("/api/job/{out_hash}")).status, 404, "a result is not a job");
    assert_eq!(s.get(&format!("/blob/{unknown}")).status, 404);
    let bad = s.get("/blob/xyz");
    assert_eq!(bad.status, 400);
    assert!(!bad.error().is_empty());
    assert_eq!(s.get("/api/job/xyz").status, 400);
    assert_eq!(s.get("/nope").status, 404);
    assert_eq!(s.get("/login").status, 404, "no login page without a token");
    let r = s.req("POST", "/", &[], "");
    assert_eq!(r.status, 405);
    assert_eq!(s.get("/api/retry").status, 405);
    assert_eq!(s.get("/api/cancel").status, 405);
    assert_eq!(s.req("DELETE", "/metrics", &[], "").status, 405);
    assert_eq!(s.req("PUT", &format!("/blob/{out_hash}"), &[], "").status, 405);
    // A page elsewhere that made its name resolve to 127.0.0.1 sends its own Host.
    let rebound = s.req("GET", "/api/overview", &[("Host", "evil.example:8977")], "");
    assert_eq!(rebound.status, 403);
}

#[test]
fn actions_need_the_csrf_token_and_change_nothing_without_it() {
    let w = work();
    let s = Server::start(&w.path, &["--listen", "127.0.0.1:0"]);
    let (key, created) = w.failed;
    let body = format!("{{\"key\": \"{key}\", \"created\": {created}}}");
    let before = (rows(&w.path, "fail"), rows(&w.path, "pending"));

    let r = s.req("POST", "/api/retry", &[("Content-Type", "application/json")], &body);
    assert_eq!(r.status, 403);
    assert!(r.error().contains("X-CSRF-Token"));
    assert_eq!(s.post("/api/retry", "0000", &body).status, 403);
    assert_eq!(s.post("/api/cancel", "", &body).status, 403);
    assert_eq!(
        (rows(&w.path, "fail"), rows(&w.path, "pending")),
        before,
        "refused POSTs changed the database"
    );

    let csrf = s.csrf(&[]);
    for (bad, status) in [
        ("not json", 400),
        ("{\"key\": \"abc\", \"created\": 1}", 400),
        (&format!("{{\"key\": \"{key}\"}}") as &str, 400),
        (&format!("{{\"key\": \"{key}\", \"created\": {created}, \"extra\": 1}}"), 400),
        (&format!("{{\"key\": \"{key}\", \"created\": 12}}"), 404),
    ] {
        let r = s.post("/api/retry", &csrf, bad);
        assert_eq!(r.status, status, "{bad}: {}", r.text());
        assert!(!r.error().is_empty());
    }
    assert_eq!(
        (rows(&w.path, "fail"), rows(&w.path, "pending")),
        before,
        "refused POSTs changed the database"
    );

    let r = s.post("/api/retry", &csrf, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let new = r.json()["created"].as_i64().unwrap();
    assert!(rows(&w.path, "fail").is_empty());
    assert!(rows(&w.path, "pending").iter().any(|p| p["created"] == new && p["job"] == key.to_string()));
    assert_eq!(s.post("/api/retry", &csrf, &body).status, 404, "retried twice");

    let (pkey, pcreated) = w.pending;
    let cancel = format!("{{\"key\": \"{pkey}\", \"created\": {pcreated}}}");
    let r = s.post("/api/cancel", &csrf, &cancel);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!rows(&w.path, "pending").iter().any(|p| p["created"] == pcreated));
    assert_eq!(s.post("/api/cancel", &csrf, &cancel).status, 404);

    // A running instance cannot be cancelled.
    let db = Db::open(&w.path, Options::default()).unwrap();
    let job = db.claim().unwrap().expect("the retried instance");
    let running = format!("{{\"key\": \"{}\", \"created\": {}}}", job.key(), job.created());
    let r = s.post("/api/cancel", &csrf, &running);
    assert_eq!(r.status, 409, "{}", r.text());
    drop(job);

    // Pause, limit and resume a queue; each shows in `stats --json`.
    let queue = |name: &str| -> Value {
        let stats: Value = serde_json::from_str(&cli(&w.path, &["stats", "--json"])).unwrap();
        stats["queues"][name].clone()
    };
    for path in ["/api/pause", "/api/resume", "/api/limit"] {
        assert_eq!(s.post(path, &csrf, "{\"nope\": 1}").status, 400, "{path}");
        assert_eq!(s.post(path, &csrf, "{\"queue\": \"bad name!\", \"limit\": 1}").status, 400, "{path}");
    }
    assert_eq!(s.post("/api/pause", "", "{\"queue\": \"mail\"}").status, 403);
    assert_eq!(queue("mail"), Value::Null, "a refused pause changed the database");
    let r = s.post("/api/pause", &csrf, "{\"queue\": \"mail\"}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(queue("mail")["paused"], true);
    let r = s.post("/api/limit", &csrf, "{\"queue\": \"mail\", \"limit\": 3}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(queue("mail")["limit"], 3);
    assert_eq!(s.post("/api/limit", &csrf, "{\"queue\": \"mail\", \"limit\": -1}").status, 400);
    let o = s.get("/api/overview").json();
    let listed =
        o["counts"]["queues"].as_array().unwrap().iter().find(|q| q["name"] == "mail").cloned().unwrap();
    assert_eq!((listed["paused"].clone(), listed["limit"].clone()), (Value::Bool(true), Value::from(3)));
    assert_eq!(s.post("/api/resume", &csrf, "{\"queue\": \"mail\"}").status, 200);
    assert_eq!(queue("mail")["paused"], false);
    let big = "x".repeat(100_000);
    assert_eq!(s.post("/api/retry", &csrf, &big).status, 413);
}

#[test]
fn read_only_refuses_every_post() {
    let w = work();
    let s = Server::start(&w.path, &["--read-only", "--listen", "127.0.0.1:0"]);
    let page = s.get("/");
    assert_eq!(meta(&page.text(), "batchdb-read-only"), "true");
    let csrf = meta(&page.text(), "csrf-token");
    let (key, created) = w.failed;
    let body = format!("{{\"key\": \"{key}\", \"created\": {created}}}");
    let before = (rows(&w.path, "fail"), rows(&w.path, "pending"));
    for path in ["/api/retry", "/api/cancel", "/api/pause", "/api/resume"] {
        let r = s.post(path, &csrf, &body);
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert!(r.error().contains("read-only"));
    }
    assert_eq!((rows(&w.path, "fail"), rows(&w.path, "pending")), before);
    assert_eq!(s.get("/api/overview").status, 200);
    assert_eq!(s.get("/metrics").status, 200);
}

#[test]
fn off_loopback_a_token_is_required() {
    let w = work();
    let out = Command::new(BIN)
        .arg("--db")
        .arg(&w.path)
        .args(["ui", "--listen", "0.0.0.0:0"])
        .env_remove("BATCHDB_PATH")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token-file"), "{err}");

    let token = "t0ken-s3cret-value";
    let file = w._tmp.dir.path().join("token");
    std::fs::write(&file, format!("  {token}\n")).unwrap();
    let empty = w._tmp.dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let out = Command::new(BIN)
        .arg("--db")
        .arg(&w.path)
        .args(["ui", "--listen", "0.0.0.0:0", "--token-file"])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(!out.status.success(), "an empty token file is refused");

    let s = Server::start(&w.path, &["--listen", "0.0.0.0:0", "--token-file", file.to_str().unwrap()]);
    for path in ["/metrics", "/api/overview", &format!("/api/job/{}", w.done), &format!("/blob/{}", w.done)] {
        let r = s.get(path);
        assert_eq!(r.status, 401, "{path}");
        assert!(!r.error().is_empty());
        assert_eq!(s.req("GET", path, &[("Authorization", "Bearer wrong")], "").status, 401);
        assert_eq!(
            s.req("GET", path, &[("Authorization", &format!("Bearer {token}"))], "").status,
            200,
            "{path}"
        );
    }
    let login_page = s.get("/");
    assert_eq!(login_page.status, 401);
    assert_eq!(s.get("/app.css").status, 200, "the login page's style needs no token");
    assert_eq!(s.get("/app.js").status, 401);
    assert!(login_page.text().contains("name=\"token\""));

    // Bearer: no CSRF token needed.
    let (key, created) = w.failed;
    let body = format!("{{\"key\": \"{key}\", \"created\": {created}}}");
    let r = s.req("POST", "/api/retry", &[("Authorization", &format!("Bearer {token}"))], &body);
    assert_eq!(r.status, 200, "{}", r.text());

    // The login page: a wrong token, then the right one, then the cookie.
    let csrf = meta(&login_page.text(), "csrf-token");
    let form = |t: &str| format!("csrf={csrf}&token={t}");
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    assert_eq!(s.req("POST", "/login", &[ct], &form("nope")).status, 401);
    assert_eq!(
        s.req("POST", "/login", &[ct], &format!("token={token}")).status,
        403,
        "login without its CSRF field"
    );
    let ok = s.req("POST", "/login", &[ct], &form(token));
    assert_eq!(ok.status, 303);
    let cookie = ok.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    assert!(ok.header("set-cookie").unwrap().contains("HttpOnly"));
    assert!(!cookie.contains(token), "the cookie is a session id, not the token");
    let with = [("Cookie", cookie.as_str())];
    let page = s.req("GET", "/", &with, "");
    assert_eq!(page.status, 200);
    assert!(!page.text().contains(token), "the page shows the token");
    assert_eq!(s.req("GET", "/api/overview", &with, "").status, 200);
    // A cookie is ambient: POSTs with it need the CSRF token.
    let (pkey, pcreated) = w.pending;
    let cancel = format!("{{\"key\": \"{pkey}\", \"created\": {pcreated}}}");
    assert_eq!(s.req("POST", "/api/cancel", &with, &cancel).status, 403);
    let csrf = meta(&page.text(), "csrf-token");
    assert_eq!(s.req("POST", "/api/cancel", &[with[0], ("X-CSRF-Token", &csrf)], &cancel).status, 200);
    assert_eq!(s.req("GET", "/", &[("Cookie", "batchdb_session=forged")], "").status, 401);
}

#[test]
fn no_password_is_shown() {
    // A PostgreSQL URL with a password that no server answers: the dashboard refuses to start
    // and says so without the password.
    let out = Command::new(BIN)
        .args(["--db", "postgres://ann:pa55word@127.0.0.1:1/db", "ui", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("pa55word"), "{all}");
}

/// A strict reading of Prometheus' text format 0.0.4: every sample belongs to a family
/// declared by exactly one `# HELP` and one `# TYPE` line before it, names and labels follow
/// the grammar, values are numbers. Returns `name{sorted labels}` → value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut help = BTreeMap::new();
    let mut kind = BTreeMap::new();
    let mut samples = BTreeMap::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (what, name, arg) =
                (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(name_ok(name), "bad metric name in {line:?}");
            match what {
                "HELP" => {
                    assert!(help.insert(name.to_string(), arg.to_string()).is_none(), "second HELP: {line}")
                }
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg), "{line}");
                    assert!(
                        !samples.keys().any(|k: &String| k.split('{').next() == Some(name)),
                        "TYPE after samples: {line}"
                    );
                    assert!(kind.insert(name.to_string(), arg.to_string()).is_none(), "second TYPE: {line}");
                }
                _ => {}
            }
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "unexpected line {line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let mut labels = Vec::new();
                let mut s = inner;
                while !s.is_empty() {
                    let (k, rest) = s.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                    assert!(name_ok(k) && !k.contains(':'), "bad label name {k:?}");
                    let mut v = String::new();
                    let mut chars = rest.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => v.push('\n'),
                                Some((_, c @ ('\\' | '"'))) => v.push(c),
                                other => panic!("bad escape {other:?} in {line:?}"),
                            },
                            Some((i, '"')) => break i,
                            Some((_, c)) => v.push(c),
                            None => panic!("unterminated label value in {line:?}"),
                        }
                    };
                    labels.push(format!("{k}={v}"));
                    s = &rest[end + 1..];
                    s = s.strip_prefix(',').unwrap_or(s);
                }
                labels.sort();
                (name, labels)
            }
        };
        assert!(kind.contains_key(name) && help.contains_key(name), "sample without HELP/TYPE: {line}");
        let key = format!("{name}{{{}}}", labels.join(","));
        assert!(samples.insert(key, value).is_none(), "duplicate series: {line}");
    }
    samples
}

#[test]
fn prometheus_parser_is_strict() {
    let ok = "# HELP a_b x y\n# TYPE a_b gauge\na_b{q=\"d\\\"e\"} 1.5\n";
    assert_eq!(parse_prometheus(ok)["a_b{q=d\"e}"], 1.5);
    for bad in [
        "a 1\n",
        "# HELP a x\n# TYPE a gauge\na{q=\"d} 1\n",
        "# HELP a x\n# TYPE a gauge\na one\n",
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
        "# HELP a x\n# TYPE a nonsense\na 1\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse_prometheus(bad)).is_err(), "accepted {bad:?}");
    }
}

#[test]
fn metrics_equal_stats() {
    let w = work();
    // One more instance held by a worker while the metrics are read.
    let db = Db::open(&w.path, Options::default()).unwrap();
    db.add(&b"echo running"[..]).unwrap();
    let held = db.claim().unwrap().expect("a job to hold");
    // A second queue, paused, with two ready instances, and a pruned result that the counter
    // still counts.
    let mail = batchdb::PushOptions { queue: Some("mail".into()), ..Default::default() };
    db.add_with(&b"send 1"[..], &mail).unwrap();
    db.add_with(&b"send 2"[..], &mail).unwrap();
    db.pause("mail").unwrap();
    db.prune(common::now_ms() + 1).unwrap();
    let s = Server::start(&w.path, &["--listen", "127.0.0.1:0"]);
    let m = parse_prometheus(&s.get("/metrics").text());
    let stats: Value = serde_json::from_str(&cli(&w.path, &["stats", "--json"])).unwrap();
    let n = |k: &str| stats[k].as_f64().unwrap();
    let inst = |state: &str| m[&format!("batchdb_instances{{queue=default,state={state}}}")];
    assert_eq!(inst("running"), n("running"));
    assert_eq!(inst("running"), 1.0);
    // Per queue, as stats --json has them.
    let queues = stats["queues"].as_object().unwrap();
    assert_eq!(queues.len(), 2);
    for (name, q) in queues {
        for state in ["pending", "waiting", "running"] {
            let metric = m[&format!("batchdb_instances{{queue={name},state={state}}}")];
            assert_eq!(metric, q[state].as_f64().unwrap(), "{name} {state}");
        }
        let paused = m[&format!("batchdb_queue_paused{{queue={name}}}")];
        assert_eq!(paused, if q["paused"] == true { 1.0 } else { 0.0 });
    }
    assert_eq!(inst("pending"), 1.0);
    assert_eq!(inst("waiting"), 1.0);
    assert_eq!(m["batchdb_instances{queue=mail,state=pending}"], 2.0);
    // stats' pending counts waiting instances too; the metric tells them apart.
    let all = |state: &str| -> f64 {
        m.iter()
            .filter(|(k, _)| k.starts_with("batchdb_instances{") && k.ends_with(&format!("state={state}}}")))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(all("pending") + all("waiting"), n("pending"));
    // Counters: prune removed the rows, not the counts.
    assert_eq!(n("results"), 0.0);
    assert_eq!(m["batchdb_results_total{}"], n("results_total"));
    assert_eq!(m["batchdb_results_total{}"], 1.0);
    assert_eq!(m["batchdb_fails_total{}"], n("fails_total"));
    assert_eq!(m["batchdb_fails_total{}"], 1.0);
    assert_eq!(m["batchdb_jobs{}"], n("jobs"));
    assert_eq!(m["batchdb_blobs{}"], n("blobs"));
    assert_eq!(m["batchdb_database_bytes{}"], n("file_bytes") + n("wal_bytes"));
    let oldest = m["batchdb_oldest_pending_seconds{queue=default}"];
    let age = (common::now_ms() - w.pending.1) as f64 / 1000.0;
    assert!(oldest > 0.0 && oldest <= age + 0.01, "oldest {oldest} vs {age}");
    drop(held);
}

#[test]
fn blobs_stream_exactly_and_a_damaged_one_is_cut_short() {
    let w = work();
    // Several chunks, so that damage can sit after the first bytes were sent.
    let db = Db::open(&w.path, Options { chunk_size: 64 * 1024, ..Options::default() }).unwrap();
    let data: Vec<u8> = (0..600_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let good = db.create(&data[..]).unwrap();
    let bad = db.create(&data[1..]).unwrap();
    drop(db);
    let s = Server::start(&w.path, &["--listen", "127.0.0.1:0"]);

    let r = s.get(&format!("/blob/{good}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("600000"));
    assert!(r.body == data, "the downloaded bytes differ");

    // Damage the last chunk: the first ones go out, then the transfer must end short.
    let last = (data.len() - 1).div_ceil(64 * 1024) as i64 - 1;
    common::corrupt_chunk(&w.path, &bad, last, 100);
    let r = s.get(&format!("/blob/{bad}"));
    assert_eq!(r.status, 200, "the head went out before the damage was found");
    assert_eq!(r.header("content-length"), Some("599999"));
    assert!(!r.body.is_empty(), "the first chunks were sent");
    assert!(r.body.len() < data.len() - 1, "a damaged blob was sent whole: {} bytes", r.body.len());
    assert_eq!(&r.body[..], &data[1..1 + r.body.len()]);
    // The server stays up.
    assert_eq!(s.get("/metrics").status, 200);
}

#[test]
fn the_overview_shows_progress_schedules_and_queues() {
    let w = work();
    let db = Db::open(&w.path, Options::default()).unwrap();
    let mail = batchdb::PushOptions { queue: Some("mail".into()), ..Default::default() };
    db.add_with(&b"send <script>alert(1)</script>"[..], &mail).unwrap();
    db.limit("mail", 2).unwrap();
    let job = db.claim().unwrap().expect("a job");
    job.progress(0.25, "a quarter").unwrap();
    db.schedule("nightly", "0 3 * * *", &b"backup"[..], &batchdb::PushOptions::default()).unwrap();
    let s = Server::start(&w.path, &["--listen", "127.0.0.1:0"]);
    let o = s.get("/api/overview").json();
    let running = &o["running"][0];
    assert_eq!(running["created"], job.created());
    assert_eq!(running["progress"]["done"], 0.25);
    assert_eq!(running["progress"]["message"], "a quarter");
    // Its lease: started, and held until a moment after now (the heartbeat renews it).
    let start = running["start"].as_i64().expect("start");
    let lease = running["lease_until"].as_i64().expect("lease_until");
    assert!(start >= job.created() && lease > start, "start {start}, lease {lease}");
    assert_eq!(o["schedules"][0]["name"], "nightly");
    assert_eq!(o["schedules"][0]["spec"], "0 3 * * *");
    let queues = o["counts"]["queues"].as_array().unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "mail"]);
    assert_eq!(queues[1]["limit"], 2);
    assert_eq!(o["partial"], false);
    drop(job);
}

#[test]
fn a_job_page_shows_its_lineage() {
    let tmp = common::temp_path();
    let db = Db::open(&tmp.path, Options::default()).unwrap();
    // A's output is B's payload; C waits for A; D waits for C and stays waiting.
    let (a, a_created) = db.add(&b"make input"[..]).unwrap();
    let mut job = db.claim().unwrap().unwrap();
    job.write_all(b"the input").unwrap();
    job.complete().unwrap();
    let b = db.create(&b"the input"[..]).unwrap();
    let after_a = batchdb::PushOptions { after: vec![(a, a_created)], ..Default::default() };
    let (c, pushed) = db.add_with(&b"use input"[..], &after_a).unwrap();
    let mut job = db.claim().unwrap().unwrap();
    assert_eq!(job.key(), c);
    job.write_all(b"used").unwrap();
    job.complete().unwrap();
    let after_c = batchdb::PushOptions { after: vec![(c, pushed.created)], ..Default::default() };
    let (d, d_pushed) = db.add_with(&b"later still"[..], &after_c).unwrap();
    let blocked = batchdb::PushOptions { after: vec![(d, d_pushed.created)], ..Default::default() };
    let (e, _) = db.add_with(&b"blocked"[..], &blocked).unwrap();
    let s = Server::start(&tmp.path, &["--listen", "127.0.0.1:0"]);

    let page = s.get(&format!("/api/job/{b}")).json();
    assert_eq!(page["made_by"][0]["key"], a.to_string(), "B's payload is A's output");
    assert_eq!(page["made_by"][0]["created"], a_created);
    let page = s.get(&format!("/api/job/{c}")).json();
    assert_eq!(page["results"][0]["after"][0], serde_json::json!([a.to_string(), a_created]));
    let page = s.get(&format!("/api/job/{e}")).json();
    assert_eq!(page["instances"][0]["after"][0], serde_json::json!([d.to_string(), d_pushed.created]));
    assert_eq!(s.get(&format!("/api/job/{}", Hash::of(b"used"))).status, 404, "an output is not a job");
}
