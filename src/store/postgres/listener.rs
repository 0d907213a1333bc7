//! One `LISTEN` connection per open database, watched by one thread that sleeps on its socket.
//!
//! Waiting workers used to look at the socket themselves ten times a second each, which kept
//! an idle run at about 1% of a core. Here a single thread blocks until the server sends
//! something, counts the notifications and wakes the waiters through the database's
//! condition variable; an idle run costs no CPU at all.
//!
//! The thread runs its own small tokio runtime instead of the synchronous client because it
//! must wait for the socket and for [`Drop`] at the same time: closing the database then
//! ends it at once, without waiting for a timeout.

use super::conn::{describe, Target};
use super::schema::listen;
use crate::error::{Error, Result};
use crate::sync::lock;
use postgres_openssl::{MakeTlsConnector, TlsStream};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, Config, Connection, Socket};

/// Called whenever other processes may have changed the queue.
pub(crate) type Wake = crate::store::WakeFn;

/// The first pause before trying again after an attempt to listen failed, doubled on each
/// failure up to [`RETRY_MAX`]. A connection that was lost after it listened is replaced at
/// once.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long the first waiter waits for the first attempt to listen. Connecting is bounded by
/// the connect timeout (10 s unless the URL sets one); this covers a server that accepts the
/// connection and then never answers. After it, waiters poll.
const FIRST_LISTEN_WAIT: Duration = Duration::from_secs(30);
/// How long closing the database waits for the listener's pending work (see `run`).
const LOOKUP_WAIT: Duration = Duration::from_millis(100);

#[derive(Default)]
struct State {
    /// The first attempt to listen has ended, either way.
    settled: bool,
    /// Why the latest attempt to listen failed; cleared by one that succeeds.
    failure: Option<String>,
    /// The listener's thread has ended: its failure is for good, not a lost connection that
    /// the next attempt may mend.
    ended: bool,
}

struct Shared {
    /// Moves on every notification and whenever listening stops or starts again: each means
    /// that a waiter must look at the queue again.
    count: AtomicI64,
    /// True while every commit elsewhere is sure to move `count` and call `wake`.
    listening: AtomicBool,
    /// The listener has listened at least once: a later failure to listen again is an outage
    /// that it rides out on its own, and waiters poll meanwhile.
    listened: AtomicBool,
    stop: AtomicBool,
    /// The listener task's waker, so that [`Drop`] interrupts its wait.
    task: Mutex<Option<Waker>>,
    state: Mutex<State>,
    settled: Condvar,
    wake: Wake,
}

impl Shared {
    fn changed(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        (self.wake)();
    }

    fn settle(&self, failure: Option<String>) {
        let mut state = lock(&self.state);
        state.settled = true;
        state.failure = failure;
        self.settled.notify_all();
    }

    /// Registers the task's waker before reading the flag, so that a stop that lands in
    /// between still wakes it.
    fn stopping(&self, cx: &Context<'_>) -> bool {
        {
            let mut task = lock(&self.task);
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs `f` until it finishes (`Some`) or the listener is stopped (`None`).
    async fn until_stopped<F: Future>(&self, f: F) -> Option<F::Output> {
        let mut f = pin!(f);
        poll_fn(|cx| if self.stopping(cx) { Poll::Ready(None) } else { f.as_mut().poll(cx).map(Some) }).await
    }
}

/// What the listener's thread needs to connect and to word its errors.
#[derive(Clone)]
struct Dial {
    config: Config,
    tls: MakeTlsConnector,
    tls_why: super::tls::VerifyFailure,
    listen_sql: String,
    /// The URL as given, only to scrub its secrets from driver messages.
    url: String,
    shown: String,
}

pub(crate) struct Listener {
    shared: Arc<Shared>,
    dial: Dial,
    /// Started by the first waiter: a handle that only adds or reads never opens the
    /// connection.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    pub fn new(target: &Target, wake: Wake) -> Listener {
        // TLS and TCP keepalives as on every connection (`Target::parse`): keepalives matter
        // most here, as this connection sends nothing for hours while the waiters sleep.
        let config = target.listen_config.clone();
        Listener {
            shared: Arc::new(Shared {
                count: AtomicI64::new(0),
                listening: AtomicBool::new(false),
                listened: AtomicBool::new(false),
                stop: AtomicBool::new(false),
                task: Mutex::new(None),
                state: Mutex::new(State::default()),
                settled: Condvar::new(),
                wake,
            }),
            dial: Dial {
                config,
                tls: target.tls.clone(),
                tls_why: target.tls_why.clone(),
                listen_sql: listen(&target.channel),
                url: target.url.clone(),
                shown: target.shown.clone(),
            },
            thread: Mutex::new(None),
        }
    }

    /// The change counter. The first call starts the listener and waits until it listens, or
    /// fails: its error is returned, as it is while the latest attempt to listen again has
    /// failed if it never listened. While the listener is between a lost connection and a new one, every call moves
    /// the count, so that a waiter polling it looks at the queue each time.
    pub fn count(&self) -> Result<i64> {
        {
            let mut thread = lock(&self.thread);
            if thread.is_none() {
                let (shared, dial) = (self.shared.clone(), self.dial.clone());
                let spawned = std::thread::Builder::new()
                    .name("batchdb-pg-listener".into())
                    .spawn(move || run(&shared, &dial));
                *thread = Some(spawned.map_err(|e| {
                    Error::io(format!("cannot start the PostgreSQL notification listener thread: {e}"))
                })?);
            }
        }
        let (failure, ended) = {
            let state = lock(&self.shared.state);
            let (state, _) = self
                .shared
                .settled
                .wait_timeout_while(state, FIRST_LISTEN_WAIT, |s| !s.settled)
                .unwrap_or_else(|e| e.into_inner());
            (state.failure.clone(), state.ended)
        };
        if self.listening() {
            return Ok(self.shared.count.load(Ordering::SeqCst));
        }
        if let Some(failure) = failure {
            // Once it has listened, the listener rides out an outage by itself: waiters poll
            // meanwhile (below), and the queue's own statements tell them whether the server
            // is there. Reporting its failure too would report a run's one outage twice (the
            // pool reconnects before the listener does).
            if ended || !self.shared.listened.load(Ordering::SeqCst) {
                // While the thread lives it tries again: the server is away, as far as a run
                // loop is concerned (it waits and looks again).
                return Err(if ended {
                    Error::io(failure)
                } else {
                    Error::connection_lost(&self.dial.shown, failure)
                });
            }
        }
        Ok(self.shared.count.fetch_add(1, Ordering::SeqCst) + 1)
    }

    pub fn listening(&self) -> bool {
        self.shared.listening.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(task) = lock(&self.shared.task).take() {
            task.wake();
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

/// However the listener's thread ends, a panic included, waiters stop counting on it: they
/// are woken to look at the queue, and the next look at the counter is an error instead of a
/// wait for notifications that will not come.
struct Down<'a>(&'a Shared);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        self.0.listening.store(false, Ordering::SeqCst);
        let failure = {
            let mut state = lock(&self.0.state);
            state.ended = true;
            state.failure.take()
        };
        self.0.settle(Some(
            failure.unwrap_or_else(|| "the PostgreSQL notification listener has stopped".into()),
        ));
        self.0.changed();
    }
}

enum Ended {
    Stopped,
    /// An attempt to listen failed, for this reason.
    Failed(String),
    /// A connection that listened was lost.
    Lost,
}

fn run(shared: &Shared, dial: &Dial) {
    let _down = Down(shared);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            shared.settle(Some(format!("cannot start the PostgreSQL notification listener: {e}")));
            return;
        }
    };
    listen_until_stopped(&rt, shared, dial);
    // A host name lookup still running in the runtime's blocking pool (a DNS server that does
    // not answer) must not hold up closing the database; it ends on its own.
    rt.shutdown_timeout(LOOKUP_WAIT);
}

fn listen_until_stopped(rt: &tokio::runtime::Runtime, shared: &Shared, dial: &Dial) {
    let mut listened_before = false;
    let mut pause = Duration::ZERO;
    loop {
        match rt.block_on(listen_once(shared, dial, listened_before)) {
            Ended::Stopped => return,
            Ended::Failed(why) => {
                shared.settle(Some(why));
                pause = (pause * 2).clamp(RETRY_FIRST, RETRY_MAX);
            }
            Ended::Lost => {
                listened_before = true;
                shared.listening.store(false, Ordering::SeqCst);
                // Waiters look at the queue now, and poll until the listener is back.
                shared.changed();
                pause = Duration::ZERO;
            }
        }
        // The timer is made inside the runtime: it needs the runtime's clock.
        if rt.block_on(async { shared.until_stopped(tokio::time::sleep(pause)).await }).is_none() {
            return;
        }
    }
}

/// Connects, listens, and counts notifications until the connection ends or the listener is
/// stopped.
async fn listen_once(shared: &Shared, dial: &Dial, listened_before: bool) -> Ended {
    let (client, mut conn) = match shared.until_stopped(dial.config.connect(dial.tls.clone())).await {
        None => return Ended::Stopped,
        Some(Err(e)) => {
            return Ended::Failed(format!(
                "cannot connect to PostgreSQL at {} to listen for changes: {}",
                dial.shown,
                dial.tls_why.explain(describe(&e, &dial.url))
            ))
        }
        Some(Ok(c)) => c,
    };
    let listened = {
        let mut listen = pin!(client.batch_execute(&dial.listen_sql));
        shared
            .until_stopped(poll_fn(|cx| {
                // Notifications that arrive before LISTEN took effect are not ours to count:
                // whoever waits looks at the queue after listening started.
                if let Poll::Ready(lost) = read(&mut conn, cx, &mut || {}) {
                    return Poll::Ready(Err(lost));
                }
                listen.as_mut().poll(cx).map_err(Some)
            }))
            .await
    };
    match listened {
        None => return Ended::Stopped,
        Some(Err(e)) => {
            let why =
                e.map_or_else(|| "the server closed the connection".into(), |e| describe(&e, &dial.url));
            return Ended::Failed(format!(
                "cannot listen for changes on PostgreSQL at {}: {why}",
                dial.shown
            ));
        }
        Some(Ok(())) => {}
    }
    shared.listening.store(true, Ordering::SeqCst);
    shared.listened.store(true, Ordering::SeqCst);
    shared.settle(None);
    if listened_before {
        // Commits made while nobody listened were not announced.
        shared.changed();
    }
    let ended = shared
        .until_stopped(poll_fn(|cx| {
            // A burst of notifications read in one go wakes the waiters once.
            let mut seen = false;
            let ended = read(&mut conn, cx, &mut || seen = true);
            if seen {
                shared.changed();
            }
            ended
        }))
        .await;
    drop(client);
    match ended {
        None => Ended::Stopped,
        Some(_) => Ended::Lost,
    }
}

/// Reads everything the server sent, calling `note` for each notification; ready when the
/// connection has ended, with the error that ended it, if any.
fn read(
    conn: &mut Connection<Socket, TlsStream<Socket>>,
    cx: &mut Context<'_>,
    note: &mut impl FnMut(),
) -> Poll<Option<tokio_postgres::Error>> {
    loop {
        match conn.poll_message(cx) {
            Poll::Ready(Some(Ok(AsyncMessage::Notification(_)))) => note(),
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(e)),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        }
    }
}
