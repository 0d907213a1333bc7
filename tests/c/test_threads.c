/* One database handle shared by 4 threads that add, claim and complete concurrently: no
 * errors, and every instance ends as exactly one result. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

#define THREADS 4
#define PER_THREAD 25

static batchdb *shared;
static atomic_int errors;
static atomic_int completed;

static void complete_one(batchdb_job *j) {
    batchdb_error err;
    uint8_t buf[64];
    size_t n = 0;
    if (batchdb_job_read(j, buf, sizeof buf, &n, &err) != BATCHDB_OK ||
        batchdb_job_write(j, buf, n, &err) != BATCHDB_OK || batchdb_job_write(j, (const uint8_t *)"!", 1, &err) != BATCHDB_OK) {
        fprintf(stderr, "job io: %s\n", err.message);
        atomic_fetch_add(&errors, 1);
    }
    if (batchdb_job_complete(j, NULL, &err) != BATCHDB_OK) {
        fprintf(stderr, "complete: %s\n", err.message);
        atomic_fetch_add(&errors, 1);
    } else {
        atomic_fetch_add(&completed, 1);
    }
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    batchdb_error err;
    char payload[32];
    for (int i = 0; i < PER_THREAD; i++) {
        int len = snprintf(payload, sizeof payload, "thread %d item %d", id, i);
        if (batchdb_add(shared, (const uint8_t *)payload, (size_t)len, NULL, NULL, &err) != BATCHDB_OK) {
            fprintf(stderr, "add: %s\n", err.message);
            atomic_fetch_add(&errors, 1);
            continue;
        }
        batchdb_job *j = NULL;
        int32_t rc = batchdb_claim(shared, &j, &err);
        if (rc == BATCHDB_OK) {
            complete_one(j);
        } else if (rc != BATCHDB_DONE) {
            fprintf(stderr, "claim: %s\n", err.message);
            atomic_fetch_add(&errors, 1);
        }
    }
    return NULL;
}

static void test_four_threads_one_handle(void) {
    batchdb_options opts;
    memset(&opts, 0, sizeof opts);
    opts.durability = BATCHDB_DURABILITY_NORMAL;
    shared = open_fresh(&opts);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);

    /* Whatever a thread found taken by another is still pending: drain it. */
    batchdb_job *j = NULL;
    batchdb_error err;
    int32_t rc;
    while ((rc = batchdb_claim(shared, &j, &err)) == BATCHDB_OK) complete_one(j);
    CHECK_RC(rc, BATCHDB_DONE, &err);

    CHECK(atomic_load(&errors) == 0);
    CHECK(atomic_load(&completed) == THREADS * PER_THREAD);
    CHECK(count_rows(shared, BATCHDB_LIST_RESULT) == THREADS * PER_THREAD);
    CHECK(count_rows(shared, BATCHDB_LIST_JOB) == THREADS * PER_THREAD);
    CHECK(count_rows(shared, BATCHDB_LIST_PENDING) == 0);
    CHECK(count_rows(shared, BATCHDB_LIST_FAIL) == 0);
    batchdb_close(shared);
}

int main(void) {
    RUN(test_four_threads_one_handle);
    return tests_failed == 0 ? 0 : 1;
}
