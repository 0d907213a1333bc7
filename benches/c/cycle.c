/* P6: the P4 cycle (claim, read the payload, complete with an empty output) through the C
 * ABI, on a database the harness filled. Usage: cycle DB full|normal SECONDS
 * Claims until the queue is empty or SECONDS pass; prints {"jobs": N, "seconds": S}. */
#include <batchdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const batchdb_error *e) {
    fprintf(stderr, "cycle: %s: %d %s\n", what, e->code, e->message);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: cycle DB full|normal SECONDS\n");
        return 2;
    }
    batchdb_options opts;
    memset(&opts, 0, sizeof opts);
    opts.durability = strcmp(argv[2], "full") == 0 ? BATCHDB_DURABILITY_FULL : BATCHDB_DURABILITY_NORMAL;
    double limit = atof(argv[3]);
    batchdb_error err;
    batchdb *db = NULL;
    if (batchdb_open(argv[1], &opts, &db, &err) != BATCHDB_OK) die("open", &err);
    char buf[4096];
    char hash[65];
    long jobs = 0;
    double t0 = now(), t = t0;
    while (t - t0 < limit) {
        batchdb_job *job = NULL;
        int rc = batchdb_claim(db, &job, &err);
        if (rc == BATCHDB_DONE) break;
        if (rc != BATCHDB_OK) die("claim", &err);
        size_t n = 0;
        do {
            if (batchdb_job_read(job, (uint8_t *)buf, sizeof buf, &n, &err) != BATCHDB_OK) die("read", &err);
        } while (n > 0);
        if (batchdb_job_complete(job, hash, &err) != BATCHDB_OK) die("complete", &err);
        jobs++;
        t = now();
    }
    printf("{\"jobs\": %ld, \"seconds\": %.6f}\n", jobs, t - t0);
    batchdb_close(db);
    return 0;
}
