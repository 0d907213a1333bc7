//! batchdb's benchmark harness (issue 8).
//!
//! Every figure is a ratio against a baseline measured in the same run, on the same machine,
//! interleaved with it (batchdb, baseline, batchdb, baseline, ...: `Plan::reps` rounds; each
//! side's median is reported with its min–max, and the ratio of the medians with the min–max of
//! the rounds' own ratios), because the machine is shared and absolute figures are noisy. The baseline is raw SQLite
//! through the same rusqlite (and so the same bundled SQLite) with the same pragmas, doing the
//! minimal equivalent work.
//!
//! `bash benches/run.sh [--smoke]` builds the peers and runs this binary; see BENCHMARKS.md.

mod baseline;
mod growth;
mod pg;
mod plot;
mod work;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Sizes of one run: `--smoke` makes everything tiny.
#[derive(Clone, Copy)]
pub struct Plan {
    pub smoke: bool,
    /// How long one timed loop runs.
    pub slice: Duration,
    /// Interleaved rounds of each batchdb/baseline pair; the median of each side is reported.
    pub reps: usize,
    /// Instances queued before a timed claim cycle (it stops when they run out).
    pub queue: usize,
    /// P3: jobs added in batches of 1,000.
    pub batch_jobs: usize,
    /// P5: bytes of the big blob.
    pub big: u64,
    /// P7: jobs, for the original and for batchdb.
    pub original_jobs: usize,
    /// P8: jobs enqueued, and jobs cycled.
    pub effectum: (usize, usize),
    /// Payload sizes of the scaling curve.
    pub sizes: &'static [usize],
    /// P10: instances queued on PostgreSQL before each timed cycle.
    pub pg_queue: usize,
}

impl Plan {
    fn new(smoke: bool) -> Plan {
        if smoke {
            Plan {
                smoke,
                slice: Duration::from_millis(150),
                reps: 1,
                queue: 500,
                batch_jobs: 2_000,
                big: 8 << 20,
                original_jobs: 50,
                effectum: (100, 200),
                sizes: &[100, 10 << 10, 1 << 20],
                pg_queue: 100,
            }
        } else {
            Plan {
                smoke,
                slice: Duration::from_millis(1500),
                reps: 5,
                queue: 40_000,
                batch_jobs: 100_000,
                big: 1 << 30,
                original_jobs: 1_000,
                effectum: (1_000, 2_000),
                sizes: &[100, 1 << 10, 10 << 10, 100 << 10, 1 << 20, 8 << 20, 64 << 20],
                pg_queue: 8_000,
            }
        }
    }
}

/// One row of the results table.
pub struct Row {
    pub id: String,
    pub workload: String,
    pub unit: String,
    pub batchdb: Option<f64>,
    pub baseline: Option<f64>,
    pub baseline_name: String,
    /// `Some(t)`: the ratio must be at least `t`.
    pub target: Option<f64>,
    pub notes: Vec<String>,
    pub extra: Value,
    /// Every round of an interleaved pair (`batchdb` and `baseline` are their medians).
    pub rounds: Option<Rounds>,
}

/// The figures of each round of [`pair`], in the order they were measured.
pub struct Rounds {
    pub batchdb: Vec<f64>,
    pub baseline: Vec<f64>,
}

/// The median of `v` (the mean of the middle two when their number is even).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

impl Rounds {
    /// Each round's own batchdb/baseline ratio.
    fn ratios(&self) -> Vec<f64> {
        self.batchdb.iter().zip(&self.baseline).filter(|(_, &b)| b > 0.0).map(|(a, b)| a / b).collect()
    }

    fn to_json(&self) -> Value {
        let side = |v: &[f64]| {
            let (lo, hi) = min_max(v);
            json!({"median": median(v), "min": lo, "max": hi, "all": v})
        };
        let r = self.ratios();
        let (lo, hi) = min_max(&r);
        json!({"n": self.batchdb.len(), "batchdb": side(&self.batchdb), "baseline": side(&self.baseline),
               "ratio": {"min": lo, "max": hi, "all": r}})
    }
}

impl Row {
    pub fn new(id: &str, workload: &str, unit: &str, baseline_name: &str, target: Option<f64>) -> Row {
        Row {
            id: id.into(),
            workload: workload.into(),
            unit: unit.into(),
            batchdb: None,
            baseline: None,
            baseline_name: baseline_name.into(),
            target,
            notes: Vec::new(),
            extra: json!({}),
            rounds: None,
        }
    }

    /// Records the rounds of [`pair`]: each side's median becomes the row's figure.
    pub fn set(&mut self, rounds: Rounds) {
        self.batchdb = Some(median(&rounds.batchdb));
        self.baseline = Some(median(&rounds.baseline));
        self.rounds = Some(rounds);
    }

    /// The min–max of a side's rounds, when there was more than one: `" (lo–hi)"`.
    fn range(&self, side: fn(&Rounds) -> Vec<f64>, digits: Option<usize>) -> String {
        match &self.rounds {
            Some(r) if r.batchdb.len() > 1 => {
                let (lo, hi) = min_max(&side(r));
                if !lo.is_finite() {
                    return String::new();
                }
                match digits {
                    Some(d) => format!(" ({lo:.d$}–{hi:.d$})"),
                    None => format!(" ({}–{})", fmt_num(Some(lo)), fmt_num(Some(hi))),
                }
            }
            _ => String::new(),
        }
    }

    fn ratio(&self) -> Option<f64> {
        match (self.batchdb, self.baseline) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }

    /// Whether the target is met; `None` without a target or a ratio. Extra conditions (RSS,
    /// BUSY) are folded in through `extra.conditions_met`.
    fn met(&self) -> Option<bool> {
        let ratio_ok = match (self.target, self.ratio()) {
            (Some(t), Some(r)) => Some(r >= t),
            _ => None,
        }?;
        let extra_ok = self.extra.get("conditions_met").and_then(Value::as_bool).unwrap_or(true);
        Some(ratio_ok && extra_ok)
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "workload": self.workload,
            "unit": self.unit,
            "batchdb": self.batchdb,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio(),
            "target_ratio": self.target,
            "target_met": self.met(),
            "notes": self.notes,
            "extra": self.extra,
            "rounds": self.rounds.as_ref().map(Rounds::to_json),
        })
    }
}

/// Paths of the peers, prepared by benches/run.sh.
pub struct Peers {
    pub c_cycle: Option<PathBuf>,
    /// P6: the Go cycle program (a binary), or why there is none.
    pub go_cycle: Option<PathBuf>,
    pub go_status: Option<String>,
    /// P6: the Node cycle script (run with `node`), or why there is none.
    pub node_cycle: Option<PathBuf>,
    pub node_status: Option<String>,
    pub effectum: Option<PathBuf>,
    pub original: Option<PathBuf>,
    pub original_status: Option<String>,
    /// P4ui: the `batchdb` CLI, whose `ui` serves the dashboard.
    pub cli: Option<PathBuf>,
}

/// A fresh scratch directory for one measurement.
pub struct Scratch {
    root: PathBuf,
    n: std::cell::Cell<u32>,
}

impl Scratch {
    pub fn dir(&self) -> PathBuf {
        let n = self.n.get();
        self.n.set(n + 1);
        let d = self.root.join(format!("m{n}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    pub fn db(&self) -> PathBuf {
        self.dir().join("bench.db")
    }

    pub fn done(&self, path: &Path) {
        if let Some(d) = path.parent() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Runs `a` and `b` alternately `reps` times (interleaved rounds); returns every figure.
pub fn pair(reps: usize, mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> Rounds {
    let mut r = Rounds { batchdb: Vec::new(), baseline: Vec::new() };
    for _ in 0..reps.max(1) {
        r.batchdb.push(a());
        r.baseline.push(b());
    }
    r
}

/// Calls `op(i)` until `slice` passes; returns operations per second.
pub fn timed(slice: Duration, mut op: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    let mut i = 0u64;
    while t.elapsed() < slice || i < 2 {
        op(i);
        i += 1;
    }
    i as f64 / t.elapsed().as_secs_f64()
}

/// A small payload, distinct for every `(tag, i)`.
pub fn payload(tag: u64, i: u64) -> Vec<u8> {
    format!("job payload {tag:04} number {i:010}").into_bytes()
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let disk = Command::new("df")
        .args(["-hT", "--output=source,fstype,size", "/tmp"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let sqlite = rusqlite::version().to_string();
    json!({"cpu_model": model, "cores": cores, "memory": mem, "scratch_disk": disk,
           "kernel": kernel, "sqlite": sqlite})
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn fmt_num(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "Figures from interleaved rounds are medians, with the rounds' min–max in brackets (for \
         the ratio: the min–max of each round's own ratio); the ratio is that of the medians.\n\n\
         | id | workload | unit | batchdb | baseline | baseline is | ratio | target | met |\n\
         |---|---|---|---:|---:|---|---:|---:|---|\n",
    );
    for r in rows {
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "**NO**",
            None => "–",
        };
        let target = r.target.map(|t| format!("≥ {t}")).unwrap_or_else(|| "–".into());
        s += &format!(
            "| {} | {} | {} | {}{} | {}{} | {} | {}{} | {} | {} |\n",
            r.id,
            r.workload,
            r.unit,
            fmt_num(r.batchdb),
            r.range(|x| x.batchdb.clone(), None),
            fmt_num(r.baseline),
            r.range(|x| x.baseline.clone(), None),
            r.baseline_name,
            r.ratio().map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into()),
            r.range(Rounds::ratios, Some(2)),
            target,
            met
        );
    }
    let notes: Vec<String> =
        rows.iter().flat_map(|r| r.notes.iter().map(move |n| format!("- {}: {}", r.id, n))).collect();
    if !notes.is_empty() {
        s += "\n";
        s += &notes.join("\n");
        s += "\n";
    }
    s
}

fn usage() -> ! {
    eprintln!(
        "usage: batchdb-bench [--smoke] [--out FILE.json] [--plots DIR] [--scratch DIR] \
         [--only ID,ID] [--c-cycle BIN] [--go-cycle BIN] [--go-cycle-status TEXT] \
         [--node-cycle FILE.js] [--node-cycle-status TEXT] [--pg URL] [--pg-status TEXT] [--effectum BIN] [--original DIR] [--original-status TEXT]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        std::process::exit(work::child(&args[2..]));
    }
    if args.get(1).map(String::as_str) == Some("--growth-plot") {
        std::process::exit(growth::replot(&args[2..]));
    }
    if args.get(1).map(String::as_str) == Some("--growth") {
        std::process::exit(growth::run(&args[2..]));
    }
    let mut smoke = false;
    let mut out = PathBuf::from("benches/results/results.json");
    let mut plots: Option<PathBuf> = None;
    let mut scratch = std::env::temp_dir().join("batchdb-bench");
    let mut only: Option<Vec<String>> = None;
    let mut pg_url: Option<String> = None;
    let mut pg_status: Option<String> = None;
    let mut peers = Peers {
        c_cycle: None,
        go_cycle: None,
        go_status: None,
        node_cycle: None,
        node_status: None,
        effectum: None,
        original: None,
        original_status: None,
        cli: None,
    };
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage());
        match a.as_str() {
            "--smoke" => smoke = true,
            "--out" => out = val().into(),
            "--plots" => plots = Some(val().into()),
            "--scratch" => scratch = val().into(),
            "--only" => only = Some(val().split(',').map(str::to_string).collect()),
            "--c-cycle" => peers.c_cycle = Some(val().into()),
            "--cli" => peers.cli = Some(val().into()),
            "--go-cycle" => peers.go_cycle = Some(val().into()),
            "--go-cycle-status" => peers.go_status = Some(val()),
            "--node-cycle" => peers.node_cycle = Some(val().into()),
            "--node-cycle-status" => peers.node_status = Some(val()),
            "--pg" => pg_url = Some(val()),
            "--pg-status" => pg_status = Some(val()),
            "--effectum" => peers.effectum = Some(val().into()),
            "--original" => peers.original = Some(val().into()),
            "--original-status" => peers.original_status = Some(val()),
            _ => usage(),
        }
    }
    let plan = Plan::new(smoke);
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let s = Scratch { root: scratch.clone(), n: Default::default() };
    // `--only P4` selects P4 (all its rows), not P40; `--only P1` does not select P10.
    let want = |id: &str| {
        only.as_ref().is_none_or(|o| {
            o.iter().any(|x| {
                id.strip_prefix(x.as_str())
                    .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
            })
        })
    };
    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let mut curves = json!({});
    let log = |r: Row, rows: &mut Vec<Row>| {
        eprintln!(
            "{:<6} {:<58} batchdb {:>12} baseline {:>12} ratio {:>6}{}  [{:.0} s]",
            r.id,
            r.workload,
            fmt_num(r.batchdb),
            fmt_num(r.baseline),
            r.ratio().map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into()),
            r.range(Rounds::ratios, Some(2)),
            started.elapsed().as_secs_f64()
        );
        rows.push(r);
    };

    let mut p1_rate = None;
    if want("P1") {
        let r = work::p1_p2(&plan, &s, batchdb::Durability::Full);
        p1_rate = r.batchdb;
        log(r, &mut rows);
    }
    if want("P2") {
        log(work::p1_p2(&plan, &s, batchdb::Durability::Normal), &mut rows);
    }
    if want("P2c") {
        log(work::p2c(&plan, &s), &mut rows);
    }
    if want("P3") {
        log(work::p3(&plan, &s), &mut rows);
    }
    if want("P3c") {
        log(work::p3c(&plan, &s), &mut rows);
    }
    let mut p4_plain = None;
    if want("P4") {
        for (d, w) in [
            (batchdb::Durability::Normal, 1),
            (batchdb::Durability::Normal, 2),
            (batchdb::Durability::Full, 1),
            (batchdb::Durability::Full, 2),
        ] {
            let r = work::p4(&plan, &s, d, w);
            if d == batchdb::Durability::Normal && w == 1 {
                p4_plain = r.batchdb;
            }
            log(r, &mut rows);
        }
        log(work::p4m(&plan, &s, p4_plain), &mut rows);
        log(work::p4r(&plan, &s), &mut rows);
        log(work::p4q(&plan, &s), &mut rows);
        log(work::p4ui(&plan, &s, &peers), &mut rows);
    }
    if want("P5") {
        for r in work::p5(&plan, &s) {
            log(r, &mut rows);
        }
    }
    if want("P6") {
        for r in work::p6(&plan, &s, &peers) {
            log(r, &mut rows);
        }
    }
    if want("P7") {
        for r in work::p7(&plan, &s, &peers) {
            log(r, &mut rows);
        }
    }
    if want("P8") {
        for r in work::p8(&plan, &s, &peers) {
            log(r, &mut rows);
        }
    }
    if want("P9") {
        log(work::p9(&plan, &s, p1_rate), &mut rows);
    }
    if want("P11") {
        log(work::p11(&plan, &s), &mut rows);
    }
    if want("P12") {
        log(work::p12(&plan, &s), &mut rows);
    }
    if want("P10") {
        for r in pg::p10(&plan, pg_url.as_deref(), pg_status.as_deref()) {
            log(r, &mut rows);
        }
    }
    if want("C") {
        curves = work::curves(&plan, &s);
        eprintln!("curves done [{:.0} s]", started.elapsed().as_secs_f64());
        if let Some(dir) = &plots {
            std::fs::create_dir_all(dir).expect("plots dir");
            plot::workers(&curves, &dir.join("scaling-workers.svg")).expect("plot");
            plot::payload(&curves, &dir.join("scaling-payload.svg")).expect("plot");
        }
    }

    let doc = json!({
        "mode": if smoke { "smoke" } else { "full" },
        "date": date(),
        "seconds": started.elapsed().as_secs_f64(),
        "command": args.join(" "),
        "machine": machine(),
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "curves": curves,
    });
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).expect("out dir");
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json") + "\n").expect("write results");
    let md = out.with_extension("md");
    std::fs::write(&md, markdown(&rows)).expect("write table");
    let _ = std::fs::remove_dir_all(&scratch);
    println!("{}", markdown(&rows));
    eprintln!("wrote {} and {} in {:.0} s", out.display(), md.display(), started.elapsed().as_secs_f64());
}
