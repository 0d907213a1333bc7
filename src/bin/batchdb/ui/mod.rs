//! `batchdb ui`: the dashboard and Prometheus metrics over HTTP (contract section 11).
//!
//! hyper serves HTTP/1.1 on a single-threaded tokio runtime; every handler that touches the
//! database runs on tokio's blocking pool, through the library's read paths (short read
//! transactions), so a slow listing never stalls other requests and never holds a lock a
//! worker needs. `routes` decides what to answer; `data` gathers it; `metrics` formats it.

mod auth;
mod data;
mod metrics;
mod routes;

use crate::cli::{Cli, UiArgs};
use crate::{Access, CliError, CliResult};
use batchdb::Options;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The body of every response: a whole buffer, or a blob streamed from the database.
pub type RespBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// Request bodies (JSON actions, the login form) are small; anything larger is refused.
const MAX_BODY: usize = 64 * 1024;

/// Bytes read from a blob per frame sent.
const BLOB_FRAME: usize = 64 * 1024;

/// Runs `batchdb ui` until the process is stopped.
pub fn run(cli: &Cli, args: &UiArgs) -> CliResult<i32> {
    let addrs: Vec<SocketAddr> = args
        .listen
        .to_socket_addrs()
        .map_err(|e| {
            CliError::Msg(format!("--listen {}: {e} (expected ADDR:PORT, like 127.0.0.1:8977)", args.listen))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(CliError::Msg(format!("--listen {}: names no address", args.listen)));
    }
    let token = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Msg(format!("--token-file {}: {e}", path.display())))?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(CliError::Msg(format!("--token-file {}: the file is empty", path.display())));
            }
            Some(token)
        }
        None => None,
    };
    // Off loopback, anyone on the network could read payloads and fail messages, or retry and
    // cancel work: refuse to start rather than serve that.
    if token.is_none() && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(CliError::Msg(format!(
            "--listen {}: listening on a non-loopback address requires --token-file",
            args.listen
        )));
    }
    let access = if args.read_only { Access::ReadOnly } else { Access::Existing };
    let db = crate::open(cli, Options::default(), access)?;
    let auth = auth::Auth::new(token).map_err(|e| CliError::Msg(format!("reading random bytes: {e}")))?;
    let location = cli.db.to_string_lossy().into_owned();
    let app = Arc::new(routes::App::new(db, auth, args.read_only, location));

    let listener = std::net::TcpListener::bind(&addrs[..])
        .map_err(|e| CliError::Msg(format!("--listen {}: {e}", args.listen)))?;
    let local = listener.local_addr().map_err(|e| CliError::Msg(e.to_string()))?;
    listener.set_nonblocking(true).map_err(|e| CliError::Msg(e.to_string()))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
        .map_err(|e| CliError::Msg(format!("starting the HTTP runtime: {e}")))?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|e| CliError::Msg(e.to_string()))?;
        // The first line on standard output says where to look (scripts and tests read the
        // port of `--listen 127.0.0.1:0` from it).
        let mut out = io::stdout().lock();
        writeln!(out, "batchdb ui: serving {} on http://{local}/", batchdb::redact(&app.location))
            .and_then(|()| out.flush())
            .map_err(crate::stdout_error)?;
        drop(out);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                // Out of file descriptors and the like: wait instead of spinning.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let app = app.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(app.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// What a route answers: a whole response, or a blob to stream.
// One per request, moved once: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// Sent as is.
    Full(Response<RespBody>),
    /// `/blob/HASH`: the head is ready, the body is read from the reader.
    Blob(Response<()>, batchdb::Reader),
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<RespBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(routes::json_error(
                413,
                &format!("the request body is unreadable or larger than {MAX_BODY} bytes"),
            ))
        }
    };
    let reply = tokio::task::spawn_blocking(move || routes::route(&app, &parts, &body)).await;
    Ok(match reply {
        Ok(Reply::Full(r)) => r,
        Ok(Reply::Blob(head, reader)) => stream_blob(head, reader),
        Err(_) => routes::json_error(500, "internal error while answering the request"),
    })
}

pub use routes::App;

/// Streams a verified blob. The response declares the blob's length, and a chunk that fails
/// its check (or any read error) ends the body with an error: hyper then closes the
/// connection, so the client sees fewer bytes than announced and never a complete-looking
/// body. The reader only hands out the last chunk once the whole content matched its hash.
fn stream_blob(head: Response<()>, mut reader: batchdb::Reader) -> Response<RespBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; BLOB_FRAME];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let (parts, ()) = head.into_parts();
    Response::from_parts(parts, ChannelBody { rx }.boxed())
}

/// A body fed by the blocking thread that reads the blob.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|r| r.map(Frame::data)))
    }
}
