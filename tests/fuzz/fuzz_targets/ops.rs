//! Random sequences of queue operations through the C ABI. Every call must return a
//! documented status; an instance, once completed or failed, is never claimed again; every
//! instance stays accounted for (pending, result or fail); nothing panics or crashes.
#![no_main]

// `::` because the glob brings in a struct named `batchdb` (the C handle type) too.
use ::batchdb::ffi::*;
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::ffi::{c_char, CString};
use std::ptr::null_mut;

fn rows(db: *mut batchdb, kind: i32) -> i64 {
    let mut cur = null_mut();
    assert_eq!(batchdb_list(db, kind, &mut cur, null_mut()), BATCHDB_OK);
    // SAFETY: batchdb_row is a C struct of integers, arrays and pointers: all-zero bytes are valid.
    let mut row: batchdb_row = unsafe { std::mem::zeroed() };
    let mut n = 0;
    loop {
        match batchdb_cursor_next(cur, &mut row, null_mut()) {
            BATCHDB_OK => n += 1,
            BATCHDB_DONE => break,
            rc => panic!("cursor_next: {rc}"),
        }
    }
    batchdb_cursor_free(cur);
    n
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(dir.path().join("fuzz.db").to_str().unwrap()).unwrap();
    let mut db = null_mut();
    // Normal durability: no fsync per commit, so that libFuzzer runs many more inputs a second;
    // the target checks the queue's logic, not power-loss safety (R1 does that).
    let opts = batchdb_options {
        chunk_size: 0,
        durability: BATCHDB_DURABILITY_NORMAL,
        lease_ms: 0,
        max_attempts: 0,
        retry_errors: 0,
        order: 0,
    };
    assert_eq!(batchdb_open(path.as_ptr(), &opts, &mut db, null_mut()), BATCHDB_OK);
    let mut keys: Vec<[c_char; 65]> = Vec::new();
    let mut held: Vec<*mut batchdb_job> = Vec::new();
    let mut finished: HashSet<i64> = HashSet::new();
    let mut failed: Vec<([c_char; 65], i64)> = Vec::new();
    let mut instances = 0i64;
    for op in data.chunks(2).take(64) {
        let arg = op.get(1).copied().unwrap_or(0) as usize;
        match op[0] % 9 {
            0 => {
                let payload = [arg as u8; 3];
                let mut key = [0 as c_char; 65];
                let mut created = 0;
                let rc =
                    batchdb_add(db, payload.as_ptr(), arg % 4, key.as_mut_ptr(), &mut created, null_mut());
                assert_eq!(rc, BATCHDB_OK);
                keys.push(key);
                instances += 1;
            }
            1 if !keys.is_empty() => {
                let mut created = 0;
                let key = keys[arg % keys.len()];
                assert_eq!(batchdb_push(db, key.as_ptr(), &mut created, null_mut()), BATCHDB_OK);
                instances += 1;
            }
            2 => {
                let bad = CString::new(format!("{arg:x}")).unwrap();
                let mut created = 0;
                assert_eq!(batchdb_push(db, bad.as_ptr(), &mut created, null_mut()), BATCHDB_ERR_INVALID);
            }
            3 => {
                let mut job = null_mut();
                match batchdb_claim(db, &mut job, null_mut()) {
                    BATCHDB_OK => {
                        assert!(
                            !finished.contains(&batchdb_job_created(job)),
                            "a finished instance ran again"
                        );
                        held.push(job);
                    }
                    BATCHDB_DONE => assert!(job.is_null()),
                    rc => panic!("claim: {rc}"),
                }
            }
            4 | 5 if !held.is_empty() => {
                let job = held.remove(arg % held.len());
                let created = batchdb_job_created(job);
                let mut key = [0 as c_char; 65];
                // SAFETY: batchdb_job_key of a live job is a NUL-terminated string that lives as long as the job.
                let k = unsafe { std::ffi::CStr::from_ptr(batchdb_job_key(job)) };
                for (d, s) in key.iter_mut().zip(k.to_bytes_with_nul()) {
                    *d = *s as c_char;
                }
                if op[0] % 9 == 4 {
                    let out = [arg as u8; 7];
                    assert_eq!(batchdb_job_write(job, out.as_ptr(), arg % 8, null_mut()), BATCHDB_OK);
                    let mut hash = [0 as c_char; 65];
                    assert_eq!(batchdb_job_complete(job, hash.as_mut_ptr(), null_mut()), BATCHDB_OK);
                } else {
                    let msg = CString::new("fuzz").unwrap();
                    assert_eq!(batchdb_job_fail(job, msg.as_ptr(), null_mut()), BATCHDB_OK);
                    failed.push((key, created));
                }
                finished.insert(created);
            }
            6 if !failed.is_empty() => {
                let (key, created) = failed.remove(arg % failed.len());
                let mut new = 0;
                assert_eq!(batchdb_retry(db, key.as_ptr(), created, &mut new, null_mut()), BATCHDB_OK);
                assert_eq!(
                    batchdb_retry(db, key.as_ptr(), created, &mut new, null_mut()),
                    BATCHDB_ERR_NOT_FOUND
                );
            }
            7 => {
                let mut removed = 0;
                assert_eq!(batchdb_gc(db, &mut removed, null_mut()), BATCHDB_OK);
            }
            _ => {
                let mut cur = null_mut();
                // Kinds 0 to 4 exist (4: schedules); every other one is refused.
                assert_eq!(batchdb_list(db, 5 + arg as i32, &mut cur, null_mut()), BATCHDB_ERR_INVALID);
            }
        }
        let total =
            rows(db, BATCHDB_LIST_PENDING) + rows(db, BATCHDB_LIST_RESULT) + rows(db, BATCHDB_LIST_FAIL);
        assert_eq!(total, instances, "an instance was lost or duplicated");
    }
    for job in held {
        let msg = CString::new("end").unwrap();
        assert_eq!(batchdb_job_fail(job, msg.as_ptr(), null_mut()), BATCHDB_OK);
    }
    batchdb_close(db);
});
