/* Timing promises of a waiting batchdb_run (issue 11), measured outside valgrind and the
 * sanitizers, which distort time: tests/c/run.sh builds this with -O2 and runs it plain.
 *   - an instance pushed with a delay starts within moments of its run_at, not on a poll tick;
 *   - a run with nothing due sleeps: under 1% of a core, and batchdb_stop ends it.
 * Each test prints the figure it measured. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>

#define DELAY_MS 600

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wait_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* CPU time (user + system) of the whole process, in microseconds, and how many times its
 * threads went to sleep (voluntary context switches). */
static int64_t cpu_us(int64_t *sleeps) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        perror("getrusage");
        exit(2);
    }
    *sleeps = ru.ru_nvcsw;
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

/* A waiting run on its own thread. The runner notes when it was called and for which
 * instance, and stops the run itself, so the first call is the only one. */
struct waiting_run {
    batchdb *db;
    pthread_t thread;
    atomic_int calls;
    atomic_llong started_ms;
    atomic_llong created;
    int32_t rc;
    batchdb_error err;
};

static int32_t note_and_stop(void *userdata, batchdb_job *job, batchdb_error *fail_out) {
    (void)fail_out;
    struct waiting_run *r = userdata;
    int64_t at = now_ms();
    if (atomic_fetch_add(&r->calls, 1) == 0) {
        atomic_store(&r->started_ms, at);
        atomic_store(&r->created, batchdb_job_created(job));
    }
    batchdb_stop(r->db);
    return 0;
}

static void *run_body(void *arg) {
    struct waiting_run *r = arg;
    batchdb_run_options ro = {.workers = 2};
    r->rc = batchdb_run(r->db, &ro, note_and_stop, r, &r->err);
    return NULL;
}

static void start_run(struct waiting_run *r, batchdb *db) {
    memset(r, 0, sizeof *r);
    r->db = db;
    r->rc = 12345;
    if (pthread_create(&r->thread, NULL, run_body, r) != 0) {
        perror("pthread_create");
        exit(2);
    }
}

/* Waits up to `limit_ms` for the first runner call, then stops the run (a no-op when the
 * runner already did) and joins it. */
static void finish_run(struct waiting_run *r, long limit_ms) {
    for (long waited = 0; waited < limit_ms && atomic_load(&r->calls) == 0; waited += 10) wait_ms(10);
    batchdb_stop(r->db);
    CHECK(pthread_join(r->thread, NULL) == 0);
    CHECK_OK(r->rc, &r->err);
}

/* How late the run started the delayed instance `created`, after its run_at; -1000000 when
 * it never did. */
static int64_t lateness(struct waiting_run *r, int64_t created) {
    CHECK(atomic_load(&r->calls) == 1);
    CHECK(atomic_load(&r->created) == created);
    if (atomic_load(&r->calls) == 0) return -1000000;
    return atomic_load(&r->started_ms) - (created + DELAY_MS);
}

/* Quiet machines measure 0-6 ms (the goal is within about 100 ms); 1000 leaves a loaded
 * machine a second of scheduling delay and still fails a run that polls every few seconds or
 * never wakes for the delay. Starting before run_at (negative) breaks the delay itself. */
static void check_on_time(const char *what, int64_t late) {
    printf("%s: started %lld ms after its run_at\n", what, (long long)late);
    CHECK(late >= 0);
    CHECK(late < 1000);
}

/* The run is already waiting on an empty queue when the delayed instance is added: the add
 * wakes it, and it must then sleep until run_at rather than poll or miss it. */
static void test_waiting_run_starts_an_added_delayed_instance_on_time(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    struct waiting_run r;
    start_run(&r, db);
    wait_ms(200);
    CHECK(atomic_load(&r.calls) == 0);

    batchdb_push_options delayed = {.delay_ms = DELAY_MS};
    int64_t created = 0;
    CHECK_OK(batchdb_add_with(db, (const uint8_t *)"soon", 4, &delayed, NULL, &created, &err), &err);
    wait_ms(DELAY_MS / 2);
    /* Not started before run_at: asserted only while the clock is still short of it (a slow
     * add on a loaded machine may have used up the delay already). */
    int calls = atomic_load(&r.calls);
    if (now_ms() < created + DELAY_MS) CHECK(calls == 0);
    finish_run(&r, DELAY_MS + 5000);

    check_on_time("added while the run waited", lateness(&r, created));
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 1);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);
    batchdb_close(db);
}

/* The same with batchdb_push_with of a job that exists, pushed while the run sleeps until
 * another instance that is due only in an hour: the nearer run_at must cut that sleep short. */
static void test_waiting_run_starts_a_pushed_delayed_instance_on_time(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    batchdb_push_options hour = {.delay_ms = 3600 * 1000}, delayed = {.delay_ms = DELAY_MS};
    CHECK_OK(batchdb_create(db, (const uint8_t *)"pushed", 6, key, &err), &err);
    CHECK_OK(batchdb_add_with(db, (const uint8_t *)"much later", 10, &hour, NULL, NULL, &err), &err);

    struct waiting_run r;
    start_run(&r, db);
    wait_ms(200);
    int64_t created = 0;
    CHECK_OK(batchdb_push_with(db, key, &delayed, &created, &err), &err);
    finish_run(&r, DELAY_MS + 5000);

    check_on_time("pushed while the run slept for another", lateness(&r, created));
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 1);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1); /* the hour-away one */
    batchdb_close(db);
}

/* An idle run sleeps: a file costs one data_version look per worker ten times a second
 * (a few ms of CPU in 3 s). Checked as tests/queue.rs checks it, by counts that a loaded
 * machine does not move past the bound: CPU under 10% of a core (a spinning run uses all of
 * it) and fewer than 600 sleeps in 3 s (about 60 expected; a fast poller makes thousands).
 * A 30 ms CPU bound failed the Rust twin of this test once at 32 ms, on a loaded machine
 * whose kernel counts CPU time in 4 ms ticks. */
static void test_idle_run_sleeps_and_stop_ends_it(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    batchdb_push_options hour = {.delay_ms = 3600 * 1000};
    CHECK_OK(batchdb_add_with(db, (const uint8_t *)"later", 5, &hour, NULL, NULL, &err), &err);

    struct waiting_run r;
    start_run(&r, db);
    wait_ms(300);
    int64_t sleeps_before, sleeps_after;
    int64_t before = cpu_us(&sleeps_before);
    wait_ms(3000);
    int64_t used_us = cpu_us(&sleeps_after) - before;
    int64_t sleeps = sleeps_after - sleeps_before;
    int64_t stop_at = now_ms();
    batchdb_stop(db);
    CHECK(pthread_join(r.thread, NULL) == 0);
    int64_t stop_took = now_ms() - stop_at;
    CHECK_OK(r.rc, &r.err);

    int64_t limit_us = 300000;
    printf("idle run with 2 workers: %.1f ms of CPU and %lld sleeps over 3 s (limits %lld ms, 600); "
           "batchdb_stop returned it in %lld ms\n",
           (double)used_us / 1000.0, (long long)sleeps, (long long)(limit_us / 1000), (long long)stop_took);
    CHECK(used_us < limit_us);
    CHECK(sleeps < 600);
    /* A few ms measured; a run that waited out its sleep would take an hour. */
    CHECK(stop_took < 5000);
    CHECK(atomic_load(&r.calls) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    batchdb_close(db);
}

int main(void) {
    RUN(test_waiting_run_starts_an_added_delayed_instance_on_time);
    RUN(test_waiting_run_starts_a_pushed_delayed_instance_on_time);
    RUN(test_idle_run_sleeps_and_stop_ends_it);
    return tests_failed == 0 ? 0 : 1;
}
