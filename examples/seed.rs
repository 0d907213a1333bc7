//! The original batchdb's example flow, on `./batchdb.db`: add the same shell job twice,
//! run the queue with `bash` as the runner, list the results and print each output.
//!
//! ```sh
//! cargo run --example seed
//! ```

use batchdb::{Db, Event, Options, RunOptions};
use std::io::{self, Read, Write};
use std::process::{Command, Stdio};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = Db::open("batchdb.db", Options::default())?;
    db.subscribe(|ev| match ev {
        Event::Create { key } => println!("created {key}"),
        Event::Push { key, created } => println!("pushed {key} {created}"),
        Event::Result { key, hash, .. } => println!("RESULT {key} {hash}"),
        Event::Fail { key, message, .. } => println!("FAIL {key} {message}"),
        _ => {}
    });

    db.add(&b"sleep 1; date"[..])?;
    db.add(&b"sleep 1; date"[..])?;

    for row in db.pending() {
        println!("{}", serde_json::to_string(&row?)?);
    }

    // Like the original's `spawn('bash')` runner: the payload is the script on stdin, and
    // stdout is the result.
    db.run(RunOptions { workers: 2, until_empty: true, ..Default::default() }, |job| -> io::Result<()> {
        let mut child = Command::new("bash").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        io::copy(job, &mut stdin)?;
        drop(stdin);
        io::copy(&mut child.stdout.take().expect("piped stdout"), job)?;
        let status = child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("bash exited with {status}")))
        }
    })?;

    for row in db.results() {
        let row = row?;
        println!("{}", serde_json::to_string(&row)?);
        let mut out = String::new();
        db.get(&row.hash)?.read_to_string(&mut out)?;
        io::stdout().write_all(out.as_bytes())?;
    }
    Ok(())
}
