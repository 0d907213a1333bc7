/* Single-threaded coverage of every function of include/batchdb.h (API.md sections 4 and 8),
 * plus runs with worker threads, events and handle lifetimes. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#define SLEEP_KEY "ce6cc4e7fcb4a902f7c836cb93a32ae02cb47679c86e3d99c811233bf6f258c0"
#define EMPTY_KEY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const uint8_t *bytes(const char *s) { return (const uint8_t *)s; }

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Collects a blob through batchdb_get. */
struct sink {
    char data[8192];
    size_t len;
    int calls;
    int stop_after; /* 0: never stop */
};

static int32_t collect(void *userdata, const uint8_t *data, size_t len) {
    struct sink *s = userdata;
    s->calls++;
    if (s->len + len < sizeof s->data) {
        memcpy(s->data + s->len, data, len);
        s->len += len;
        s->data[s->len] = '\0';
    }
    return s->stop_after != 0 && s->calls >= s->stop_after ? 42 : 0;
}

static void test_version(void) {
    const char *v = batchdb_version();
    CHECK(v != NULL);
    CHECK(v != NULL && strcmp(v, "0.1.0") == 0);
}

static void test_open_and_options(void) {
    batchdb *db = (batchdb *)1;
    batchdb_error err;
    const char *path = fresh_path("open.db");

    CHECK_RC(batchdb_open(NULL, NULL, &db, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(db == NULL);
    CHECK(err.code == BATCHDB_ERR_INVALID && strstr(err.message, "path") != NULL);
    CHECK_RC(batchdb_open(path, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);

    batchdb_options bad[5];
    memset(bad, 0, sizeof bad);
    bad[0].durability = 2;
    bad[1].order = -1;
    bad[2].retry_errors = 7;
    bad[3].chunk_size = 10;
    bad[4].lease_ms = 1;
    for (int i = 0; i < 5; i++) {
        db = NULL;
        CHECK_RC(batchdb_open(path, &bad[i], &db, &err), BATCHDB_ERR_INVALID, &err);
        CHECK(db == NULL);
    }

    batchdb_options opts = {4096, BATCHDB_DURABILITY_NORMAL, 1000, 5, 1, BATCHDB_ORDER_OLDEST};
    CHECK_OK(batchdb_open(path, &opts, &db, &err), &err);
    CHECK(db != NULL);
    batchdb_close(db);

    batchdb_options zeros;
    memset(&zeros, 0, sizeof zeros);
    CHECK_OK(batchdb_open(path, &zeros, &db, &err), &err);
    batchdb_close(db);
    CHECK_OK(batchdb_open(path, NULL, &db, NULL), NULL);
    batchdb_close(db);
    batchdb_close(NULL);
}

/* PostgreSQL's counterpart of a garbage file: a schema full of other tables. pg_catalog is
 * one on every server, and refusing it must not need to write anything. */
static void not_a_batchdb_schema(void) {
    char url[1100];
    const char *base = pg_url();
    snprintf(url, sizeof url, "%s%cschema=pg_catalog", base, strchr(base, '?') ? '&' : '?');
    batchdb *db = NULL;
    batchdb_error err;
    CHECK_RC(batchdb_open(url, NULL, &db, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(db == NULL);
    CHECK(strstr(err.message, "not a batchdb database") != NULL);
}

static void test_not_a_batchdb_file(void) {
    if (on_pg()) {
        not_a_batchdb_schema();
        return;
    }
    const char *path = fresh_path("garbage.db");
    unsigned char garbage[4096], back[4096 + 1];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (unsigned char)(i * 37 + 11);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL && fwrite(garbage, 1, sizeof garbage, f) == sizeof garbage);
    fclose(f);

    batchdb *db = NULL;
    batchdb_error err;
    CHECK_RC(batchdb_open(path, NULL, &db, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(db == NULL);
    CHECK(strlen(err.message) > 0);

    f = fopen(path, "rb");
    size_t n = f ? fread(back, 1, sizeof back, f) : 0;
    if (f) fclose(f);
    CHECK(n == sizeof garbage && memcmp(garbage, back, n) == 0);
}

static void test_create_add_push(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65], key2[65];
    int64_t c1 = 0, c2 = 0, c3 = 0;

    CHECK_OK(batchdb_create(db, bytes("sleep 5; date"), 13, key, &err), &err);
    CHECK(strcmp(key, SLEEP_KEY) == 0);
    CHECK_OK(batchdb_create(db, bytes("sleep 5; date"), 13, key2, &err), &err);
    CHECK(strcmp(key2, SLEEP_KEY) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_JOB) == 1);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);

    CHECK_OK(batchdb_create(db, NULL, 0, key, &err), &err);
    CHECK(strcmp(key, EMPTY_KEY) == 0);
    CHECK_OK(batchdb_create(db, bytes("x"), 1, NULL, &err), &err);

    CHECK_OK(batchdb_add(db, bytes("sleep 5; date"), 13, key, &c1, &err), &err);
    CHECK(strcmp(key, SLEEP_KEY) == 0);
    CHECK(c1 > 1600000000000LL);
    CHECK_OK(batchdb_push(db, SLEEP_KEY, &c2, &err), &err);
    CHECK(c2 > c1);
    CHECK_OK(batchdb_add(db, bytes("sleep 5; date"), 13, NULL, NULL, &err), &err);
    CHECK_OK(batchdb_push(db, SLEEP_KEY, &c3, NULL), NULL);
    CHECK(c3 > c2);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 4);

    /* Uppercase hex is accepted too. */
    char upper[65];
    for (int i = 0; i < 65; i++) upper[i] = (char)toupper((unsigned char)SLEEP_KEY[i]);
    CHECK_OK(batchdb_push(db, upper, NULL, &err), &err);

    CHECK_RC(batchdb_push(db, EMPTY_KEY, &c1, &err), BATCHDB_OK, &err);
    CHECK_RC(batchdb_push(db, "0000000000000000000000000000000000000000000000000000000000000000", NULL,
                          &err),
             BATCHDB_ERR_NOT_FOUND, &err);
    CHECK(err.code == BATCHDB_ERR_NOT_FOUND);
    CHECK_RC(batchdb_push(db, "xyz", NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "malformed") != NULL);
    CHECK_RC(batchdb_push(db, SLEEP_KEY "00", NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_push(db, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", NULL, &err),
             BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_push(db, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_push(db, "xyz", NULL, NULL), BATCHDB_ERR_INVALID, NULL);
    CHECK_RC(batchdb_create(db, NULL, 5, key, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_add(db, NULL, 5, key, &c1, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 6);
    batchdb_close(db);
}

static void test_writer(void) {
    batchdb_options opts;
    memset(&opts, 0, sizeof opts);
    opts.chunk_size = 1024;
    batchdb *db = open_fresh(&opts);
    batchdb_error err;
    batchdb_writer *w = NULL;
    char key[65];
    int64_t created = 0;

    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    CHECK_OK(batchdb_writer_write(w, bytes("sleep 5; "), 9, &err), &err);
    CHECK_OK(batchdb_writer_write(w, NULL, 0, &err), &err);
    CHECK_OK(batchdb_writer_write(w, bytes("date"), 4, &err), &err);
    CHECK_OK(batchdb_writer_create(w, key, &err), &err);
    CHECK(strcmp(key, SLEEP_KEY) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);

    /* A payload of many chunks, then batchdb_writer_add. */
    char big[5000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    for (size_t off = 0; off < sizeof big; off += 1000)
        CHECK_OK(batchdb_writer_write(w, bytes(big + off), 1000, &err), &err);
    CHECK_OK(batchdb_writer_add(w, key, &created, &err), &err);
    CHECK(created > 0);
    char direct[65];
    CHECK_OK(batchdb_create(db, bytes(big), sizeof big, direct, &err), &err);
    CHECK(strcmp(key, direct) == 0);
    struct sink s;
    memset(&s, 0, sizeof s);
    CHECK_OK(batchdb_get(db, key, collect, &s, &err), &err);
    CHECK(s.len == sizeof big && memcmp(s.data, big, sizeof big) == 0);
    CHECK(s.calls == 5);

    /* Abort discards; nothing is registered. */
    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    CHECK_OK(batchdb_writer_write(w, bytes(big), sizeof big, &err), &err);
    batchdb_writer_abort(w);
    batchdb_writer_abort(NULL);
    CHECK(count_rows(db, BATCHDB_LIST_JOB) == 2);

    CHECK_RC(batchdb_writer_open(NULL, &w, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(w == NULL);
    CHECK_RC(batchdb_writer_open(db, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_writer_write(NULL, bytes("a"), 1, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_writer_create(NULL, key, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_writer_add(NULL, key, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    CHECK_RC(batchdb_writer_write(w, NULL, 3, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_writer_abort(w);
    batchdb_close(db);
}

static void test_get_and_reader(void) {
    batchdb_options opts;
    memset(&opts, 0, sizeof opts);
    opts.chunk_size = 1024;
    batchdb *db = open_fresh(&opts);
    batchdb_error err;
    char key[65];
    char payload[3000];
    for (size_t i = 0; i < sizeof payload; i++) payload[i] = (char)('0' + i % 10);
    CHECK_OK(batchdb_create(db, bytes(payload), sizeof payload, key, &err), &err);

    struct sink s;
    memset(&s, 0, sizeof s);
    CHECK_OK(batchdb_get(db, key, collect, &s, &err), &err);
    CHECK(s.len == sizeof payload && memcmp(s.data, payload, s.len) == 0);

    /* A callback that says stop after the first chunk. */
    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    CHECK_RC(batchdb_get(db, key, collect, &s, &err), BATCHDB_ERR_ABORTED, &err);
    CHECK(s.calls == 1);
    CHECK(err.code == BATCHDB_ERR_ABORTED && strstr(err.message, "42") != NULL);

    CHECK_RC(batchdb_get(db, "nothex", collect, &s, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_get(db, EMPTY_KEY, collect, &s, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK_RC(batchdb_get(db, key, NULL, &s, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_get(NULL, key, collect, &s, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_get(db, NULL, collect, &s, &err), BATCHDB_ERR_INVALID, &err);

    batchdb_reader *r = NULL;
    CHECK_OK(batchdb_reader_open(db, key, &r, &err), &err);
    char got[4000];
    size_t total = 0, n = 1;
    while (n != 0) {
        CHECK_OK(batchdb_reader_read(r, (uint8_t *)got + total, 7, &n, &err), &err);
        total += n;
        if (total > sizeof payload) break;
    }
    CHECK(total == sizeof payload && memcmp(got, payload, total) == 0);
    CHECK_OK(batchdb_reader_read(r, (uint8_t *)got, sizeof got, &n, &err), &err);
    CHECK(n == 0);
    CHECK_RC(batchdb_reader_read(r, NULL, 10, &n, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_reader_read(r, (uint8_t *)got, 0, &n, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_reader_read(r, (uint8_t *)got, 1, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_reader_read(NULL, (uint8_t *)got, 1, &n, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_reader_close(r);
    batchdb_reader_close(NULL);

    r = (batchdb_reader *)1;
    CHECK_RC(batchdb_reader_open(db, EMPTY_KEY, &r, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK(r == NULL);
    CHECK_RC(batchdb_reader_open(db, "12", &r, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_reader_open(db, key, NULL, &err), BATCHDB_ERR_INVALID, &err);

    /* The empty blob: the first read is the end. */
    CHECK_OK(batchdb_create(db, NULL, 0, key, &err), &err);
    CHECK_OK(batchdb_reader_open(db, EMPTY_KEY, &r, &err), &err);
    CHECK_OK(batchdb_reader_read(r, (uint8_t *)got, sizeof got, &n, &err), &err);
    CHECK(n == 0);
    batchdb_reader_close(r);
    batchdb_close(db);
}

static void test_list(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    int64_t c1, c2;
    batchdb_cursor *c = NULL;
    batchdb_row row;

    CHECK_OK(batchdb_add(db, bytes("b"), 1, key, &c1, &err), &err);
    CHECK_OK(batchdb_push(db, key, &c2, &err), &err);
    CHECK_OK(batchdb_create(db, bytes("a"), 1, NULL, &err), &err);

    CHECK_OK(batchdb_list(db, BATCHDB_LIST_PENDING, &c, &err), &err);
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    CHECK(row.kind == BATCHDB_LIST_PENDING && strcmp(row.job, key) == 0 && row.created == c1);
    CHECK(row.running == 0 && row.message == NULL && row.json != NULL);
    char want[200];
    snprintf(want, sizeof want, "{\"job\":\"%s\",\"created\":%lld,\"running\":false}", key, (long long)c1);
    CHECK(strcmp(row.json, want) == 0);
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    CHECK(row.created == c2);
    CHECK_RC(batchdb_cursor_next(c, &row, &err), BATCHDB_DONE, &err);
    CHECK_RC(batchdb_cursor_next(c, &row, &err), BATCHDB_DONE, &err); /* sticky */
    CHECK_RC(batchdb_cursor_next(c, NULL, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_cursor_free(c);
    batchdb_cursor_free(NULL);

    /* Job rows count running instances. */
    batchdb_job *j = NULL;
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_JOB, &c, &err), &err);
    int seen = 0;
    while (batchdb_cursor_next(c, &row, &err) == BATCHDB_OK) {
        CHECK(row.kind == BATCHDB_LIST_JOB);
        if (strcmp(row.job, key) == 0) {
            seen++;
            CHECK(row.running == 1);
            CHECK(strstr(row.json, "\"running\":[") != NULL);
        } else {
            CHECK(row.running == 0);
            CHECK(strstr(row.json, "\"running\":[]") != NULL);
        }
    }
    CHECK(seen == 1);
    batchdb_cursor_free(c);
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_PENDING, &c, &err), &err);
    int running = 0;
    while (batchdb_cursor_next(c, &row, &err) == BATCHDB_OK) running += row.running;
    CHECK(running == 1);
    batchdb_cursor_free(c);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);

    CHECK_RC(batchdb_list(db, BATCHDB_LIST_SCHEDULE + 1, &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(c == NULL);
    CHECK_RC(batchdb_list(db, -1, &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_list(NULL, BATCHDB_LIST_JOB, &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_list(db, BATCHDB_LIST_JOB, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_cursor_next(NULL, &row, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 1);
    CHECK(count_rows(db, BATCHDB_LIST_FAIL) == 0);
    batchdb_close(db);
}

static void test_wait(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    int64_t created;

    CHECK_RC(batchdb_wait(db, 50, &err), BATCHDB_DONE, &err); /* empty queue: times out */
    CHECK_OK(batchdb_add(db, bytes("wake"), 4, key, &created, &err), &err);
    CHECK_RC(batchdb_wait(db, 5000, &err), BATCHDB_OK, &err); /* ready now */
    CHECK_RC(batchdb_wait(NULL, 10, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_close(db);
}

static void test_claim_complete_fail(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    batchdb_job *j = (batchdb_job *)1;
    char key[65], hash[65], expect[65];
    int64_t created;

    CHECK_RC(batchdb_claim(db, &j, &err), BATCHDB_DONE, &err);
    CHECK(j == NULL);

    CHECK_OK(batchdb_add(db, bytes("hello"), 5, key, &created, &err), &err);
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK(j != NULL && strcmp(batchdb_job_key(j), key) == 0);
    CHECK(batchdb_job_created(j) == created);
    batchdb_job *none = (batchdb_job *)1;
    CHECK_RC(batchdb_claim(db, &none, &err), BATCHDB_DONE, &err); /* the one instance is held */
    CHECK(none == NULL);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);

    char buf[16];
    size_t n = 0, total = 0;
    do {
        CHECK_OK(batchdb_job_read(j, (uint8_t *)buf + total, 2, &n, &err), &err);
        total += n;
    } while (n != 0 && total < 10);
    CHECK(total == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK_RC(batchdb_job_read(j, NULL, 2, &n, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_read(j, (uint8_t *)buf, 2, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_OK(batchdb_job_write(j, bytes("HEL"), 3, &err), &err);
    CHECK_OK(batchdb_job_write(j, bytes("LO"), 2, &err), &err);
    CHECK_RC(batchdb_job_write(j, NULL, 2, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_OK(batchdb_job_complete(j, hash, &err), &err);
    CHECK_OK(batchdb_create(db, bytes("HELLO"), 5, expect, &err), &err);
    CHECK(strcmp(hash, expect) == 0);

    batchdb_cursor *c = NULL;
    batchdb_row row;
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_RESULT, &c, &err), &err);
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    CHECK(row.kind == BATCHDB_LIST_RESULT && strcmp(row.job, key) == 0 && row.created == created);
    CHECK(strcmp(row.hash, hash) == 0 && row.start > 0 && row.end >= row.start);
    char want[300];
    snprintf(want, sizeof want,
             "{\"key\":[\"%s\",%lld],\"value\":{\"hash\":\"%s\",\"start\":%lld,\"end\":%lld,\"created\":%lld}}",
             key, (long long)created, hash, (long long)row.start, (long long)row.end, (long long)created);
    CHECK(strcmp(row.json, want) == 0);
    batchdb_cursor_free(c);
    struct sink s;
    memset(&s, 0, sizeof s);
    CHECK_OK(batchdb_get(db, hash, collect, &s, &err), &err);
    CHECK(strcmp(s.data, "HELLO") == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);

    /* Fail with a message. */
    CHECK_OK(batchdb_push(db, key, &created, &err), &err);
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK_OK(batchdb_job_fail(j, "it broke: \xc3\xa9", &err), &err);
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_FAIL, &c, &err), &err);
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    CHECK(row.kind == BATCHDB_LIST_FAIL && row.created == created && row.attempts == 1);
    CHECK(row.message != NULL && strcmp(row.message, "it broke: \xc3\xa9") == 0);
    CHECK(strstr(row.json, "\"message\":\"it broke: \xc3\xa9\"") != NULL);
    CHECK_RC(batchdb_cursor_next(c, &row, &err), BATCHDB_DONE, &err);
    batchdb_cursor_free(c);

    /* A NULL message still consumes the job, which goes back to pending. */
    CHECK_OK(batchdb_push(db, key, &created, &err), &err);
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK_RC(batchdb_job_fail(j, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK(j != NULL && batchdb_job_created(j) == created);
    CHECK_OK(batchdb_job_complete(j, NULL, NULL), NULL);

    CHECK(batchdb_job_key(NULL) == NULL);
    CHECK(batchdb_job_created(NULL) == 0);
    CHECK_RC(batchdb_job_complete(NULL, hash, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_fail(NULL, "x", &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_read(NULL, (uint8_t *)buf, 1, &n, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_write(NULL, bytes("x"), 1, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_claim(NULL, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_claim(db, NULL, &err), BATCHDB_ERR_INVALID, &err);

    /* A claimed job freed by close... is not possible; completing after close is fine. */
    CHECK_OK(batchdb_push(db, key, &created, &err), &err);
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    batchdb_close(db);
    CHECK_OK(batchdb_job_write(j, bytes("late"), 4, &err), &err);
    CHECK_OK(batchdb_job_complete(j, hash, &err), &err);
}

/* The run callback: "ok ..." completes with the payload uppercased, "fail ..." fails with a
 * message, "silent" fails with no message; every call also tries to consume its borrowed
 * job, which must be refused. */
struct run_state {
    atomic_int calls;
    atomic_int misuse_refused;
};

static int32_t runner(void *userdata, batchdb_job *job, batchdb_error *fail_out) {
    struct run_state *st = userdata;
    atomic_fetch_add(&st->calls, 1);
    char buf[64];
    size_t n = 0, total = 0;
    batchdb_error err;
    do {
        if (batchdb_job_read(job, (uint8_t *)buf + total, sizeof buf - 1 - total, &n, &err) != BATCHDB_OK)
            return 99;
        total += n;
    } while (n != 0 && total < sizeof buf - 1);
    buf[total] = '\0';
    if (batchdb_job_complete(job, NULL, &err) == BATCHDB_ERR_MISUSE &&
        batchdb_job_fail(job, "no", &err) == BATCHDB_ERR_MISUSE && batchdb_job_key(job) != NULL)
        atomic_fetch_add(&st->misuse_refused, 1);
    if (strncmp(buf, "fail", 4) == 0) {
        snprintf(fail_out->message, sizeof fail_out->message, "failed: %s", buf);
        return 1;
    }
    if (strcmp(buf, "silent") == 0) return 7;
    for (size_t i = 0; i < total; i++) buf[i] = (char)toupper((unsigned char)buf[i]);
    return batchdb_job_write(job, (uint8_t *)buf, total, &err) == BATCHDB_OK ? 0 : 98;
}

struct counts {
    atomic_int kind[6];
    atomic_int bad;
    /* The last progress event's fraction (in thousandths) and message. */
    atomic_int done_milli;
    char progress_message[64];
};

static void on_event(void *userdata, const batchdb_event *ev) {
    struct counts *c = userdata;
    if (ev->kind < 0 || ev->kind > BATCHDB_EVENT_PROGRESS || ev->job == NULL || strlen(ev->job) != 64) {
        atomic_fetch_add(&c->bad, 1);
        return;
    }
    int hash_ok = (ev->kind == BATCHDB_EVENT_RESULT) == (ev->hash != NULL);
    int msg_ok = (ev->kind == BATCHDB_EVENT_FAIL || ev->kind == BATCHDB_EVENT_PROGRESS) == (ev->message != NULL);
    if (ev->kind == BATCHDB_EVENT_PROGRESS) {
        if (!(ev->done >= 0.0 && ev->done <= 1.0)) atomic_fetch_add(&c->bad, 1);
        atomic_store(&c->done_milli, (int)(ev->done * 1000.0 + 0.5));
        if (ev->message != NULL) snprintf(c->progress_message, sizeof c->progress_message, "%s", ev->message);
    } else if (ev->done != 0.0) {
        atomic_fetch_add(&c->bad, 1);
    }
    int created_ok = ev->kind == BATCHDB_EVENT_CREATE ? ev->created == 0 : ev->created > 0;
    if (!hash_ok || !msg_ok || !created_ok || (ev->hash != NULL && strlen(ev->hash) != 64))
        atomic_fetch_add(&c->bad, 1);
    atomic_fetch_add(&c->kind[ev->kind], 1);
}

/* batchdb_claim_read and batchdb_job_complete_with: a claim that brings the payload's start,
 * and a complete that takes the output's end, each in one call. */
static void test_claim_read_complete_with(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    batchdb_job *j = (batchdb_job *)1;
    uint8_t buf[64];
    size_t n = 99;
    char key[65], hash[65], expect[65];
    int64_t created;

    CHECK_RC(batchdb_claim_read(db, buf, sizeof buf, &n, &j, &err), BATCHDB_DONE, &err);
    CHECK(j == NULL && n == 0);

    CHECK_OK(batchdb_add(db, bytes("hello world"), 11, key, &created, &err), &err);
    /* Bad arguments claim nothing. */
    CHECK_RC(batchdb_claim_read(NULL, buf, sizeof buf, &n, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_claim_read(db, NULL, sizeof buf, &n, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_claim_read(db, buf, 0, &n, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_claim_read(db, buf, sizeof buf, NULL, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_claim_read(db, buf, sizeof buf, &n, NULL, &err), BATCHDB_ERR_INVALID, &err);

    /* The whole payload fits: n < cap, and the next read is the (verified) end. */
    CHECK_OK(batchdb_claim_read(db, buf, sizeof buf, &n, &j, &err), &err);
    CHECK(j != NULL && strcmp(batchdb_job_key(j), key) == 0 && batchdb_job_created(j) == created);
    CHECK(n == 11 && memcmp(buf, "hello world", 11) == 0);
    size_t more = 99;
    CHECK_OK(batchdb_job_read(j, buf, sizeof buf, &more, &err), &err);
    CHECK(more == 0);
    CHECK_OK(batchdb_job_write(j, bytes("HELLO "), 6, &err), &err);
    CHECK_OK(batchdb_job_complete_with(j, bytes("WORLD"), 5, hash, &err), &err);
    CHECK_OK(batchdb_create(db, bytes("HELLO WORLD"), 11, expect, &err), &err);
    CHECK(strcmp(hash, expect) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 1 && count_rows(db, BATCHDB_LIST_PENDING) == 0);

    /* A payload longer than cap: the rest through batchdb_job_read; no output at all. */
    CHECK_OK(batchdb_add(db, bytes("abcdefghij"), 10, key, &created, &err), &err);
    CHECK_OK(batchdb_claim_read(db, buf, 4, &n, &j, &err), &err);
    CHECK(n == 4 && memcmp(buf, "abcd", 4) == 0);
    size_t total = n;
    do {
        CHECK_OK(batchdb_job_read(j, buf + total, sizeof buf - total, &more, &err), &err);
        total += more;
    } while (more != 0);
    CHECK(total == 10 && memcmp(buf, "abcdefghij", 10) == 0);
    CHECK_OK(batchdb_job_complete_with(j, NULL, 0, hash, &err), &err);
    CHECK(strcmp(hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);

    /* NULL data with a length: invalid, the job is consumed and its instance is pending again. */
    CHECK_OK(batchdb_push(db, key, &created, &err), &err);
    CHECK_OK(batchdb_claim_read(db, buf, sizeof buf, &n, &j, &err), &err);
    CHECK_RC(batchdb_job_complete_with(j, NULL, 3, hash, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 2 && count_rows(db, BATCHDB_LIST_PENDING) == 1);
    CHECK_OK(batchdb_claim_read(db, buf, sizeof buf, &n, &j, &err), &err);
    CHECK(n == 10 && batchdb_job_created(j) == created);
    CHECK_OK(batchdb_job_complete_with(j, bytes("x"), 1, NULL, &err), &err);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 3 && count_rows(db, BATCHDB_LIST_PENDING) == 0);
    CHECK_RC(batchdb_job_complete_with(NULL, NULL, 0, hash, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_close(db);
}

/* batchdb_jobs_complete_claim: complete several jobs and claim several in one call. */
static void test_jobs_complete_claim(void) {
    batchdb_options opts;
    memset(&opts, 0, sizeof opts);
    opts.order = BATCHDB_ORDER_OLDEST;
    batchdb *db = open_fresh(&opts);
    batchdb_error err;
    char k1[65], k2[65], k3[65], hashes[2 * 65], expect[65];
    int64_t c1, c2, c3;
    uint8_t buf[3 * 8];
    size_t n[3], lens[2], claimed = 99;
    int32_t st[2];
    batchdb_job *jobs[3], *done[2];

    CHECK_OK(batchdb_add(db, bytes("a1"), 2, k1, &c1, &err), &err);
    CHECK_OK(batchdb_add(db, bytes("b22"), 3, k2, &c2, &err), &err);
    CHECK_OK(batchdb_add(db, bytes("c333"), 4, k3, &c3, &err), &err);

    /* Bad arguments claim nothing. */
    CHECK_RC(batchdb_jobs_complete_claim(NULL, NULL, 0, NULL, NULL, NULL, NULL, 2, buf, 8, n, jobs, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_jobs_complete_claim(db, NULL, 0, NULL, NULL, NULL, NULL, 2, buf, 8, n, jobs, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_jobs_complete_claim(db, NULL, 0, NULL, NULL, NULL, NULL, 2, NULL, 8, n, jobs, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_jobs_complete_claim(db, NULL, 0, NULL, NULL, NULL, NULL, 2, buf, 0, n, jobs, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_jobs_complete_claim(db, NULL, 0, NULL, NULL, NULL, NULL, 2, buf, 8, NULL, jobs, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_jobs_complete_claim(db, NULL, 0, NULL, NULL, NULL, NULL, 2, buf, 8, n, NULL, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_jobs_complete_claim(db, NULL, 0, NULL, NULL, NULL, NULL, SIZE_MAX, buf, 2, n, jobs, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(claimed == 0 && count_rows(db, BATCHDB_LIST_PENDING) == 3);

    /* Claims two, in order, each with its payload in its own slice of buf. */
    CHECK_OK(batchdb_jobs_complete_claim(db, NULL, 0, NULL, NULL, NULL, NULL, 2, buf, 8, n, jobs, &claimed, &err), &err);
    CHECK(claimed == 2);
    CHECK(batchdb_job_created(jobs[0]) == c1 && strcmp(batchdb_job_key(jobs[0]), k1) == 0);
    CHECK(batchdb_job_created(jobs[1]) == c2 && strcmp(batchdb_job_key(jobs[1]), k2) == 0);
    CHECK(n[0] == 2 && memcmp(buf, "a1", 2) == 0 && n[1] == 3 && memcmp(buf + 8, "b22", 3) == 0);

    /* Bad completes consume nothing and change nothing: NULL done, lens, status_out or data. */
    done[0] = jobs[0];
    done[1] = jobs[1];
    lens[0] = 1;
    lens[1] = 2;
    CHECK_RC(batchdb_jobs_complete_claim(db, NULL, 2, bytes("ABB"), lens, hashes, st, 0, NULL, 0, NULL, NULL, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_jobs_complete_claim(db, done, 2, bytes("ABB"), NULL, hashes, st, 0, NULL, 0, NULL, NULL, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_jobs_complete_claim(db, done, 2, bytes("ABB"), lens, hashes, NULL, 0, NULL, 0, NULL, NULL, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_jobs_complete_claim(db, done, 2, NULL, lens, hashes, st, 0, NULL, 0, NULL, NULL, &claimed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 0);

    /* Completes both with their outputs ("A" and "BB", one after the other in data), then
       claims the last one: fewer than wanted, the other entries NULL. */
    jobs[0] = jobs[1] = jobs[2] = (batchdb_job *)1;
    CHECK_OK(batchdb_jobs_complete_claim(db, done, 2, bytes("ABB"), lens, hashes, st, 3, buf, 8, n, jobs, &claimed, &err), &err);
    CHECK(st[0] == BATCHDB_OK && st[1] == BATCHDB_OK);
    CHECK_OK(batchdb_create(db, bytes("A"), 1, expect, &err), &err);
    CHECK(strcmp(hashes, expect) == 0);
    CHECK_OK(batchdb_create(db, bytes("BB"), 2, expect, &err), &err);
    CHECK(strcmp(hashes + 65, expect) == 0);
    CHECK(claimed == 1 && jobs[1] == NULL && jobs[2] == NULL);
    CHECK(batchdb_job_created(jobs[0]) == c3 && n[0] == 4 && memcmp(buf, "c333", 4) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 2 && count_rows(db, BATCHDB_LIST_PENDING) == 1);

    /* The last one, with an empty output and no data, hashes not wanted; nothing to claim. */
    done[0] = jobs[0];
    lens[0] = 0;
    CHECK_OK(batchdb_jobs_complete_claim(db, done, 1, NULL, lens, NULL, st, 1, buf, 8, n, jobs, &claimed, &err), &err);
    CHECK(st[0] == BATCHDB_OK && claimed == 0 && jobs[0] == NULL && n[0] == 0);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 3 && count_rows(db, BATCHDB_LIST_PENDING) == 0);
    batchdb_close(db);
}

/* batchdb_job_complete_claim: complete one job and claim the next in one call. */
static void test_complete_claim(void) {
    batchdb_options opts;
    memset(&opts, 0, sizeof opts);
    opts.order = BATCHDB_ORDER_OLDEST;
    batchdb *db = open_fresh(&opts);
    batchdb_error err;
    batchdb_job *j = NULL, *next = (batchdb_job *)1;
    uint8_t buf[64];
    size_t n = 99;
    char k1[65], k2[65], hash[65], expect[65];
    int64_t c1, c2;

    CHECK_OK(batchdb_add(db, bytes("first"), 5, k1, &c1, &err), &err);
    CHECK_OK(batchdb_add(db, bytes("second"), 6, k2, &c2, &err), &err);
    CHECK_OK(batchdb_claim_read(db, buf, sizeof buf, &n, &j, &err), &err);
    CHECK(n == 5 && batchdb_job_created(j) == c1);

    /* Bad arguments change nothing: the job is still held and usable. */
    CHECK_RC(batchdb_job_complete_claim(NULL, j, NULL, 0, hash, buf, sizeof buf, &n, &next, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_complete_claim(db, j, NULL, 0, hash, NULL, sizeof buf, &n, &next, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_complete_claim(db, j, NULL, 0, hash, buf, 0, &n, &next, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_complete_claim(db, j, NULL, 0, hash, buf, sizeof buf, NULL, &next, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_complete_claim(db, j, NULL, 0, hash, buf, sizeof buf, &n, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 0);

    /* Completes the first with its output, and hands back the second with its payload. */
    CHECK_OK(batchdb_job_complete_claim(db, j, bytes("FIRST"), 5, hash, buf, sizeof buf, &n, &next, &err), &err);
    CHECK_OK(batchdb_create(db, bytes("FIRST"), 5, expect, &err), &err);
    CHECK(strcmp(hash, expect) == 0);
    CHECK(next != NULL && batchdb_job_created(next) == c2 && strcmp(batchdb_job_key(next), k2) == 0);
    CHECK(n == 6 && memcmp(buf, "second", 6) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 1 && count_rows(db, BATCHDB_LIST_PENDING) == 1);

    /* The last one: completed, and nothing left to claim. */
    j = next;
    next = (batchdb_job *)1;
    n = 99;
    CHECK_OK(batchdb_job_complete_claim(db, j, NULL, 0, hash, buf, sizeof buf, &n, &next, &err), &err);
    CHECK(next == NULL && n == 0);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 2 && count_rows(db, BATCHDB_LIST_PENDING) == 0);

    /* A failed complete (NULL data with a length) claims nothing; the instance is pending again. */
    CHECK_OK(batchdb_push(db, k1, &c1, &err), &err);
    CHECK_OK(batchdb_push(db, k2, &c2, &err), &err);
    CHECK_OK(batchdb_claim_read(db, buf, sizeof buf, &n, &j, &err), &err);
    next = (batchdb_job *)1;
    CHECK_RC(batchdb_job_complete_claim(db, j, NULL, 3, hash, buf, sizeof buf, &n, &next, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(next == NULL);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 2 && count_rows(db, BATCHDB_LIST_PENDING) == 2);

    /* A job claimed through another handle on the file: completed, and the next one claimed
       through `db` (which then holds it). */
    batchdb *other = NULL;
    CHECK_OK(batchdb_open(test_db, &opts, &other, &err), &err);
    CHECK_OK(batchdb_claim_read(other, buf, sizeof buf, &n, &j, &err), &err);
    next = (batchdb_job *)1;
    CHECK_OK(batchdb_job_complete_claim(db, j, bytes("X"), 1, hash, buf, sizeof buf, &n, &next, &err), &err);
    CHECK(next != NULL && count_rows(db, BATCHDB_LIST_RESULT) == 3);
    batchdb_close(other);
    CHECK_OK(batchdb_job_complete(next, hash, &err), &err);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 4 && count_rows(db, BATCHDB_LIST_PENDING) == 0);
    batchdb_close(db);
}

static void test_run_and_events(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    struct counts ev;
    memset(&ev, 0, sizeof ev);
    CHECK_OK(batchdb_subscribe(db, on_event, &ev, &err), &err);

    const char *payloads[] = {"ok one", "ok two", "fail three", "ok four", "silent", "fail six"};
    for (int i = 0; i < 6; i++)
        CHECK_OK(batchdb_add(db, bytes(payloads[i]), strlen(payloads[i]), NULL, NULL, &err), &err);
    CHECK_OK(batchdb_create(db, bytes("never pushed"), 12, NULL, &err), &err);

    struct run_state st;
    memset(&st, 0, sizeof st);
    batchdb_run_options ro = {.workers = 2, .until_empty = 1};
    CHECK_OK(batchdb_run(db, &ro, runner, &st, &err), &err);
    CHECK(atomic_load(&st.calls) == 6);
    CHECK(atomic_load(&st.misuse_refused) == 6);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 3);
    CHECK(count_rows(db, BATCHDB_LIST_FAIL) == 3);

    batchdb_cursor *c = NULL;
    batchdb_row row;
    int fail_three = 0, fail_six = 0, silent = 0;
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_FAIL, &c, &err), &err);
    while (batchdb_cursor_next(c, &row, &err) == BATCHDB_OK) {
        fail_three += strcmp(row.message, "failed: fail three") == 0;
        fail_six += strcmp(row.message, "failed: fail six") == 0;
        silent += strcmp(row.message, "runner returned 7") == 0;
    }
    batchdb_cursor_free(c);
    CHECK(fail_three == 1 && fail_six == 1 && silent == 1);

    struct sink s;
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_RESULT, &c, &err), &err);
    int upper = 0;
    while (batchdb_cursor_next(c, &row, &err) == BATCHDB_OK) {
        memset(&s, 0, sizeof s);
        CHECK_OK(batchdb_get(db, row.hash, collect, &s, &err), &err);
        upper += strcmp(s.data, "OK ONE") == 0 || strcmp(s.data, "OK TWO") == 0 ||
                 strcmp(s.data, "OK FOUR") == 0;
    }
    batchdb_cursor_free(c);
    CHECK(upper == 3);

    CHECK(atomic_load(&ev.kind[BATCHDB_EVENT_CREATE]) == 7);
    CHECK(atomic_load(&ev.kind[BATCHDB_EVENT_PUSH]) == 6);
    CHECK(atomic_load(&ev.kind[BATCHDB_EVENT_START]) == 6);
    CHECK(atomic_load(&ev.kind[BATCHDB_EVENT_RESULT]) == 3);
    CHECK(atomic_load(&ev.kind[BATCHDB_EVENT_FAIL]) == 3);
    CHECK(atomic_load(&ev.bad) == 0);

    /* Unsubscribing ends the callbacks. */
    CHECK_OK(batchdb_unsubscribe(db, on_event, &ev, &err), &err);
    CHECK_RC(batchdb_unsubscribe(db, on_event, &ev, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK_OK(batchdb_add(db, bytes("ok again"), 8, NULL, NULL, &err), &err);
    CHECK(atomic_load(&ev.kind[BATCHDB_EVENT_CREATE]) == 7);

    /* Invalid arguments. */
    CHECK_RC(batchdb_run(NULL, &ro, runner, &st, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_run(db, &ro, NULL, &st, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_run_options bad1 = {.workers = 1, .until_empty = 2}, bad2 = {.workers = 5000, .until_empty = 1};
    CHECK_RC(batchdb_run(db, &bad1, runner, &st, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_run(db, &bad2, runner, &st, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_subscribe(db, NULL, &ev, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_subscribe(NULL, on_event, &ev, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_unsubscribe(NULL, on_event, &ev, &err), BATCHDB_ERR_INVALID, &err);

    /* Zero workers means one; the last add is processed. */
    batchdb_run_options zero = {.until_empty = 1};
    CHECK_OK(batchdb_run(db, &zero, runner, &st, &err), &err);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 4);

    /* A subscription still active at close ends with it (checked by valgrind/ASan). */
    CHECK_OK(batchdb_subscribe(db, on_event, &ev, &err), &err);
    batchdb_close(db);
}

/* batchdb_run with NULL options waits for work until batchdb_stop. */
struct stopper {
    batchdb *db;
    struct run_state st;
    int32_t rc;
};

static void *run_thread(void *arg) {
    struct stopper *s = arg;
    batchdb_error err;
    s->rc = batchdb_run(s->db, NULL, runner, &s->st, &err);
    return NULL;
}

static void wait_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_run_until_stopped(void) {
    struct stopper s;
    memset(&s, 0, sizeof s);
    s.db = open_fresh(NULL);
    s.rc = 12345;
    batchdb_error err;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run_thread, &s) == 0);
    wait_ms(200);
    CHECK_OK(batchdb_add(s.db, bytes("ok late"), 7, NULL, NULL, &err), &err);
    for (int i = 0; i < 300 && count_rows(s.db, BATCHDB_LIST_RESULT) < 1; i++) wait_ms(20);
    CHECK(count_rows(s.db, BATCHDB_LIST_RESULT) == 1);
    batchdb_stop(s.db);
    batchdb_stop(NULL);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(s.rc == BATCHDB_OK);
    CHECK(atomic_load(&s.st.calls) == 1);
    batchdb_close(s.db);
}

static void test_retry(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    int64_t created, again = 0;
    batchdb_job *j;
    CHECK_OK(batchdb_add(db, bytes("flaky"), 5, key, &created, &err), &err);
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK_OK(batchdb_job_fail(j, "first try", &err), &err);
    CHECK(count_rows(db, BATCHDB_LIST_FAIL) == 1);

    CHECK_OK(batchdb_retry(db, key, created, &again, &err), &err);
    CHECK(again > created);
    CHECK(count_rows(db, BATCHDB_LIST_FAIL) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    CHECK_RC(batchdb_retry(db, key, created, &again, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK_RC(batchdb_retry(db, "bad", created, &again, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_retry(NULL, key, created, &again, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK(batchdb_job_created(j) == again);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);
    batchdb_close(db);
}

static void test_cancel_prune_gc(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    int64_t c1, c2;
    uint64_t removed = 99;
    batchdb_job *j;

    CHECK_OK(batchdb_gc(db, &removed, &err), &err);
    CHECK(removed == 0);

    CHECK_OK(batchdb_add(db, bytes("cancel me"), 9, key, &c1, &err), &err);
    CHECK_OK(batchdb_push(db, key, &c2, &err), &err);
    CHECK_OK(batchdb_cancel(db, key, c1, &err), &err);
    CHECK_RC(batchdb_cancel(db, key, c1, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK_RC(batchdb_cancel(db, key, c2, &err), BATCHDB_ERR_BUSY, &err);
    CHECK_RC(batchdb_cancel(db, "nope", c2, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_cancel(NULL, key, c2, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_OK(batchdb_job_write(j, bytes("an output"), 9, &err), &err);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);
    CHECK_OK(batchdb_push(db, key, &c1, &err), &err);
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK_OK(batchdb_job_fail(j, "bad", &err), &err);

    /* Nothing ended before the epoch; everything ends before a minute from now. */
    CHECK_OK(batchdb_prune(db, 0, &removed, &err), &err);
    CHECK(removed == 0);
    CHECK_OK(batchdb_gc(db, &removed, &err), &err);
    CHECK(removed == 0);
    CHECK_OK(batchdb_prune(db, now_ms() + 60000, &removed, &err), &err);
    CHECK(removed == 2);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 0 && count_rows(db, BATCHDB_LIST_FAIL) == 0);
    CHECK_OK(batchdb_gc(db, &removed, &err), &err);
    CHECK(removed == 1); /* the output blob; the job's payload stays */
    CHECK(count_rows(db, BATCHDB_LIST_JOB) == 1);
    CHECK_OK(batchdb_gc(db, NULL, &err), &err);
    CHECK_OK(batchdb_prune(db, 0, NULL, &err), &err);
    CHECK_RC(batchdb_gc(NULL, &removed, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_prune(NULL, 0, &removed, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_close(db);
}

static void claim_payload(batchdb *db, const char *want) {
    batchdb_job *j = NULL;
    batchdb_error err;
    char buf[32];
    size_t n = 0;
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    if (j == NULL) return;
    CHECK_OK(batchdb_job_read(j, (uint8_t *)buf, sizeof buf - 1, &n, &err), &err);
    buf[n] = '\0';
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "claimed %s, expected %s\n", buf, want);
        check_failures++;
    }
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);
}

static void test_priority_delay_order(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    int64_t created;
    batchdb_push_options p0 = {.priority = 0}, p5 = {.priority = 5}, p1 = {.priority = 1},
                         later = {.priority = 9, .delay_ms = 60000}, neg = {.delay_ms = -1};

    CHECK_OK(batchdb_add_with(db, bytes("p0"), 2, &p0, key, &created, &err), &err);
    CHECK_OK(batchdb_add_with(db, bytes("p5"), 2, &p5, NULL, NULL, &err), &err);
    CHECK_OK(batchdb_add_with(db, bytes("p1"), 2, &p1, NULL, NULL, &err), &err);
    CHECK_OK(batchdb_add_with(db, bytes("delayed"), 7, &later, NULL, NULL, &err), &err);
    CHECK_OK(batchdb_add_with(db, bytes("plain"), 5, NULL, NULL, NULL, &err), &err);

    batchdb_cursor *c;
    batchdb_row row;
    int with_priority = 0, with_run_at = 0;
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_PENDING, &c, &err), &err);
    while (batchdb_cursor_next(c, &row, &err) == BATCHDB_OK) {
        with_priority += strstr(row.json, "\"priority\":") != NULL;
        with_run_at += strstr(row.json, "\"run_at\":") != NULL;
    }
    batchdb_cursor_free(c);
    CHECK(with_priority == 3 && with_run_at == 1);

    claim_payload(db, "p5");
    claim_payload(db, "p1");
    claim_payload(db, "plain"); /* newest first among priority 0 */
    claim_payload(db, "p0");
    batchdb_job *j = (batchdb_job *)1;
    CHECK_RC(batchdb_claim(db, &j, &err), BATCHDB_DONE, &err); /* "delayed" is not ready */
    CHECK(j == NULL);

    CHECK_OK(batchdb_push_with(db, key, &p5, &created, &err), &err);
    CHECK_OK(batchdb_push_with(db, key, NULL, NULL, &err), &err);
    CHECK_RC(batchdb_push_with(db, key, &neg, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "negative") != NULL);
    CHECK_RC(batchdb_add_with(db, bytes("x"), 1, &neg, key, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_push_with(db, "bad", &p0, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_push_with(NULL, key, &p0, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_add_with(NULL, bytes("x"), 1, &p0, key, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 3);

    /* The streamed form: batchdb_writer_add_with consumes the writer, also on bad options. */
    batchdb_writer *w;
    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    CHECK_OK(batchdb_writer_write(w, bytes("streamed"), 8, &err), &err);
    CHECK_OK(batchdb_writer_add_with(w, &p5, key, &created, &err), &err);
    CHECK(created > 0);
    claim_payload(db, "streamed");
    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    CHECK_OK(batchdb_writer_write(w, bytes("x"), 1, &err), &err);
    CHECK_RC(batchdb_writer_add_with(w, &neg, key, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_writer_add_with(NULL, &p0, key, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    CHECK_OK(batchdb_writer_add_with(w, NULL, NULL, NULL, &err), &err); /* empty payload */
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 4);
    batchdb_close(db);

    batchdb_options oldest;
    memset(&oldest, 0, sizeof oldest);
    oldest.order = BATCHDB_ORDER_OLDEST;
    db = open_fresh(&oldest);
    CHECK_OK(batchdb_add(db, bytes("first"), 5, NULL, NULL, &err), &err);
    CHECK_OK(batchdb_add(db, bytes("second"), 6, NULL, NULL, &err), &err);
    claim_payload(db, "first");
    claim_payload(db, "second");
    batchdb_close(db);
}

static void test_null_handles(void) {
    batchdb_error err;
    char key[65];
    int64_t created;
    uint64_t n64;
    /* Every function with a NULL handle: INVALID and a message, or a no-op. */
    memset(&err, 0, sizeof err);
    CHECK_RC(batchdb_create(NULL, bytes("x"), 1, key, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(err.code == BATCHDB_ERR_INVALID && strcmp(err.message, "db is NULL") == 0);
    CHECK_RC(batchdb_add(NULL, bytes("x"), 1, key, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_push(NULL, SLEEP_KEY, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_gc(NULL, &n64, NULL), BATCHDB_ERR_INVALID, NULL);
    batchdb_close(NULL);
    batchdb_stop(NULL);
    batchdb_writer_abort(NULL);
    batchdb_reader_close(NULL);
    batchdb_cursor_free(NULL);
}

static void test_handles_outlive_close(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    CHECK_OK(batchdb_add(db, bytes("kept"), 4, key, NULL, &err), &err);
    batchdb_reader *r;
    batchdb_cursor *c;
    batchdb_writer *w;
    CHECK_OK(batchdb_reader_open(db, key, &r, &err), &err);
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_PENDING, &c, &err), &err);
    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    batchdb_close(db);

    char buf[8];
    size_t n = 0;
    CHECK_OK(batchdb_reader_read(r, (uint8_t *)buf, sizeof buf, &n, &err), &err);
    CHECK(n == 4 && memcmp(buf, "kept", 4) == 0);
    batchdb_reader_close(r);
    batchdb_row row;
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    CHECK(strcmp(row.job, key) == 0);
    batchdb_cursor_free(c);
    CHECK_OK(batchdb_writer_write(w, bytes("more"), 4, &err), &err);
    CHECK_OK(batchdb_writer_create(w, key, &err), &err);
}

static void test_error_message_is_bounded(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    /* A malformed hash of 300 multi-byte characters: the message quotes part of it. */
    char bad[901];
    for (int i = 0; i < 300; i++) memcpy(bad + 3 * i, "\xe2\x82\xac", 3);
    bad[900] = '\0';
    memset(&err, 'x', sizeof err);
    CHECK_RC(batchdb_push(db, bad, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(memchr(err.message, '\0', sizeof err.message) != NULL);
    batchdb_close(db);
}

/* ---- API.md section 9: queues, limits, pause, unique pushes, schedules, progress ---- */

/* Claims from `queues` (n names) and reads the payload into `buf` (cap bytes); returns the job
 * (owned) or NULL when nothing was claimable. */
static batchdb_job *claim_from_payload(batchdb *db, const char *const *queues, size_t n, char *buf, size_t cap) {
    batchdb_job *j = NULL;
    batchdb_error err;
    size_t got = 0, total = 0;
    buf[0] = '\0';
    int32_t rc = batchdb_claim_from(db, queues, n, &j, &err);
    if (rc == BATCHDB_DONE) return NULL;
    CHECK_OK(rc, &err);
    if (j == NULL) return NULL;
    do {
        CHECK_OK(batchdb_job_read(j, (uint8_t *)buf + total, cap - 1 - total, &got, &err), &err);
        total += got;
    } while (got != 0 && total < cap - 1);
    buf[total] = '\0';
    return j;
}

/* The pending row of instance `created`: its queue name (copied to `queue`, "" when NULL), its
 * progress and whether its JSON holds `needle` (NULL: not asked). 0 when not listed. */
static int pending_row(batchdb *db, int64_t created, char queue[80], double *progress, const char *needle,
                       int *has_needle) {
    batchdb_cursor *c = NULL;
    batchdb_row row;
    batchdb_error err;
    int found = 0;
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_PENDING, &c, &err), &err);
    while (c != NULL && batchdb_cursor_next(c, &row, &err) == BATCHDB_OK) {
        if (row.created != created) continue;
        found = 1;
        snprintf(queue, 80, "%s", row.queue != NULL ? row.queue : "");
        if (progress != NULL) *progress = row.progress;
        if (needle != NULL && has_needle != NULL) *has_needle = strstr(row.json, needle) != NULL;
    }
    batchdb_cursor_free(c);
    return found;
}

static void test_queues_claim_from(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65], queue[80], buf[64];
    int64_t ca, cb, cd;
    batchdb_push_options alpha = {.queue = "alpha"}, beta = {.queue = "beta"}, empty = {.queue = ""};
    CHECK_OK(batchdb_add_with(db, bytes("in alpha"), 8, &alpha, key, &ca, &err), &err);
    CHECK_OK(batchdb_add_with(db, bytes("in beta"), 7, &beta, NULL, &cb, &err), &err);
    CHECK_OK(batchdb_add_with(db, bytes("in default"), 10, &empty, NULL, &cd, &err), &err);

    /* Pending rows name their queue; the JSON carries it only when it is not "default". */
    int has = -1;
    CHECK(pending_row(db, ca, queue, NULL, "\"queue\":\"alpha\"", &has) && strcmp(queue, "alpha") == 0 && has == 1);
    CHECK(pending_row(db, cd, queue, NULL, "\"queue\"", &has) && strcmp(queue, "default") == 0 && has == 0);

    /* A claim serves the named queues only. */
    const char *only_beta[] = {"beta"}, *nothing_there[] = {"gamma"}, *both[] = {"alpha", "default"};
    batchdb_job *j = claim_from_payload(db, only_beta, 1, buf, sizeof buf);
    CHECK(j != NULL && strcmp(buf, "in beta") == 0 && batchdb_job_created(j) == cb);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);
    CHECK(claim_from_payload(db, only_beta, 1, buf, sizeof buf) == NULL);
    CHECK(claim_from_payload(db, nothing_there, 1, buf, sizeof buf) == NULL);
    /* NULL with 0 names serves every queue, like batchdb_claim: newest first. */
    j = claim_from_payload(db, NULL, 0, buf, sizeof buf);
    CHECK(j != NULL && strcmp(buf, "in default") == 0);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);
    j = claim_from_payload(db, both, 2, buf, sizeof buf);
    CHECK(j != NULL && strcmp(buf, "in alpha") == 0);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);

    /* Pushing a known job into a queue, and a run that serves one queue only. */
    CHECK_OK(batchdb_push_with(db, key, &beta, &cb, &err), &err);
    CHECK_OK(batchdb_add_with(db, bytes("ok gamma"), 8, &(batchdb_push_options){.queue = "gamma"}, NULL, NULL, &err), &err);
    struct run_state st;
    memset(&st, 0, sizeof st);
    const char *gamma[] = {"gamma"};
    batchdb_run_options ro = {1, 1, gamma, 1};
    CHECK_OK(batchdb_run(db, &ro, runner, &st, &err), &err);
    CHECK(atomic_load(&st.calls) == 1);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    CHECK(pending_row(db, cb, queue, NULL, NULL, NULL) && strcmp(queue, "beta") == 0);
    batchdb_close(db);
}

static void test_limit_and_pause(void) {
    batchdb *db = open_fresh(NULL), *other = NULL;
    batchdb_error err;
    char buf[64];
    CHECK_OK(batchdb_open(test_db, NULL, &other, &err), &err);
    batchdb_push_options lim = {.queue = "lim"};
    for (int i = 0; i < 4; i++) {
        char payload[16];
        int len = snprintf(payload, sizeof payload, "job %d", i);
        CHECK_OK(batchdb_add_with(db, bytes(payload), (size_t)len, &lim, NULL, NULL, &err), &err);
    }
    const char *q[] = {"lim"};

    /* At most 2 running, counting both handles. */
    CHECK_OK(batchdb_limit(db, "lim", 2, &err), &err);
    batchdb_job *j1 = claim_from_payload(db, q, 1, buf, sizeof buf);
    batchdb_job *j2 = claim_from_payload(other, q, 1, buf, sizeof buf);
    CHECK(j1 != NULL && j2 != NULL);
    CHECK(claim_from_payload(db, q, 1, buf, sizeof buf) == NULL);
    CHECK(claim_from_payload(other, NULL, 0, buf, sizeof buf) == NULL);
    batchdb_job *none = (batchdb_job *)1;
    CHECK_RC(batchdb_claim(other, &none, &err), BATCHDB_DONE, &err);
    CHECK(none == NULL);
    /* A finished instance frees its slot. */
    CHECK_OK(batchdb_job_complete(j1, NULL, &err), &err);
    j1 = claim_from_payload(other, q, 1, buf, sizeof buf);
    CHECK(j1 != NULL);
    CHECK(claim_from_payload(db, q, 1, buf, sizeof buf) == NULL);
    /* 0 removes the limit. */
    CHECK_OK(batchdb_limit(other, "lim", 0, &err), &err);
    batchdb_job *j3 = claim_from_payload(db, q, 1, buf, sizeof buf);
    CHECK(j3 != NULL);
    CHECK_OK(batchdb_job_complete(j1, NULL, &err), &err);
    CHECK_OK(batchdb_job_complete(j2, NULL, &err), &err);
    CHECK_OK(batchdb_job_complete(j3, NULL, &err), &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);

    /* Pause in one handle stops claims in the other; the running instance finishes; resume. */
    CHECK_OK(batchdb_add_with(db, bytes("job 4"), 5, &lim, NULL, NULL, &err), &err);
    j1 = claim_from_payload(db, q, 1, buf, sizeof buf);
    CHECK(j1 != NULL && strcmp(buf, "job 4") == 0);
    CHECK_OK(batchdb_pause(other, "lim", &err), &err);
    CHECK_OK(batchdb_pause(other, "lim", &err), &err); /* twice is fine */
    CHECK(claim_from_payload(db, q, 1, buf, sizeof buf) == NULL);
    CHECK(claim_from_payload(db, NULL, 0, buf, sizeof buf) == NULL);
    /* Pushes still queue, and other queues still run. */
    CHECK_OK(batchdb_add_with(db, bytes("job 5"), 5, &lim, NULL, NULL, &err), &err);
    CHECK_OK(batchdb_add(db, bytes("elsewhere"), 9, NULL, NULL, &err), &err);
    j2 = claim_from_payload(other, NULL, 0, buf, sizeof buf);
    CHECK(j2 != NULL && strcmp(buf, "elsewhere") == 0);
    CHECK_OK(batchdb_job_complete(j2, NULL, &err), &err);
    CHECK_OK(batchdb_job_complete(j1, NULL, &err), &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    /* A run until empty is not held by a paused queue. */
    struct run_state st;
    memset(&st, 0, sizeof st);
    batchdb_run_options ro = {1, 1, NULL, 0};
    CHECK_OK(batchdb_run(db, &ro, runner, &st, &err), &err);
    CHECK(atomic_load(&st.calls) == 0);
    CHECK_OK(batchdb_resume(db, "lim", &err), &err);
    CHECK_OK(batchdb_resume(db, "never-paused", &err), &err);
    j1 = claim_from_payload(other, q, 1, buf, sizeof buf);
    CHECK(j1 != NULL && strcmp(buf, "job 5") == 0);
    CHECK_OK(batchdb_job_complete(j1, NULL, &err), &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);
    batchdb_close(other);
    batchdb_close(db);
}

static void test_unique_push(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65], key2[65];
    int64_t c1, c2, c3, c4;
    batchdb_push_options uq = {.queue = "uq", .unique = 1}, other = {.queue = "other", .unique = 1}, plain = {.queue = "uq"};
    CHECK_OK(batchdb_add_with(db, bytes("only once"), 9, &uq, key, &c1, &err), &err);
    /* A pending instance in the queue: nothing queued, its created back. */
    CHECK_OK(batchdb_push_with(db, key, &uq, &c2, &err), &err);
    CHECK(c2 == c1);
    CHECK_OK(batchdb_add_with(db, bytes("only once"), 9, &uq, key2, &c2, &err), &err);
    CHECK(c2 == c1 && strcmp(key, key2) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    /* Another queue is looked at on its own. */
    CHECK_OK(batchdb_push_with(db, key, &other, &c3, &err), &err);
    CHECK(c3 != c1);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 2);
    /* A running instance counts too. */
    const char *q[] = {"uq"};
    char buf[32];
    batchdb_job *j = claim_from_payload(db, q, 1, buf, sizeof buf);
    CHECK(j != NULL && batchdb_job_created(j) == c1);
    CHECK_OK(batchdb_push_with(db, key, &uq, &c4, &err), &err);
    CHECK(c4 == c1);
    /* Without unique, a second instance is queued. */
    CHECK_OK(batchdb_push_with(db, key, &plain, &c4, &err), &err);
    CHECK(c4 > c1);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 3);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);
    /* Done: the next unique push finds the plain instance. */
    CHECK_OK(batchdb_push_with(db, key, &uq, &c2, &err), &err);
    CHECK(c2 == c4);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 2);
    /* unique must be 0 or 1. */
    batchdb_push_options bad = {.queue = "uq", .unique = 2};
    CHECK_RC(batchdb_push_with(db, key, &bad, &c2, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 2);
    batchdb_close(db);
}

static int count_schedules(batchdb *db) { return count_rows(db, BATCHDB_LIST_SCHEDULE); }

static void test_schedules(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65], expect[65], buf[32];
    int64_t next = 0, before = now_ms();
    batchdb_push_options sq = {.queue = "sched"};
    CHECK(count_schedules(db) == 0);
    CHECK_OK(batchdb_create(db, bytes("tick"), 4, expect, &err), &err);
    CHECK_OK(batchdb_schedule(db, "ticker", "every 1s", bytes("tick"), 4, &sq, key, &next, &err), &err);
    CHECK(strcmp(key, expect) == 0);
    CHECK(next % 1000 == 0 && next >= before - 1000 && next <= now_ms() + 1000);
    CHECK_OK(batchdb_schedule(db, "daily", "0 3 * * *", bytes("nightly"), 7, NULL, NULL, NULL, &err), &err);

    /* Listed by name, with the row fields and the JSON of API.md section 9. */
    batchdb_cursor *c = NULL;
    batchdb_row row;
    int n = 0;
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_SCHEDULE, &c, &err), &err);
    while (batchdb_cursor_next(c, &row, &err) == BATCHDB_OK) {
        CHECK(row.kind == BATCHDB_LIST_SCHEDULE && row.message != NULL && row.queue != NULL);
        if (n == 0) {
            CHECK(strcmp(row.message, "daily") == 0 && strcmp(row.queue, "default") == 0);
            CHECK(strstr(row.json, "\"spec\":\"0 3 * * *\"") != NULL);
            CHECK(row.created % (24 * 3600 * 1000) == 3 * 3600 * 1000 && row.created > before);
        } else {
            CHECK(strcmp(row.message, "ticker") == 0 && strcmp(row.queue, "sched") == 0);
            CHECK(strcmp(row.job, key) == 0 && row.created == next);
            CHECK(strstr(row.json, "\"name\":\"ticker\"") != NULL && strstr(row.json, "\"spec\":\"every 1s\"") != NULL &&
                  strstr(row.json, "\"queue\":\"sched\"") != NULL && strstr(row.json, key) != NULL &&
                  strstr(row.json, "\"next_run\":") != NULL);
        }
        n++;
    }
    batchdb_cursor_free(c);
    CHECK(n == 2);

    /* The slot falls due and a claim in the queue gets one instance of the job. */
    const char *q[] = {"sched"};
    batchdb_job *j = NULL;
    for (int64_t deadline = now_ms() + 15000; j == NULL && now_ms() < deadline;) {
        j = claim_from_payload(db, q, 1, buf, sizeof buf);
        if (j == NULL) batchdb_wait(db, 200, NULL);
    }
    CHECK(j != NULL && strcmp(buf, "tick") == 0 && strcmp(batchdb_job_key(j), key) == 0);
    if (j != NULL) CHECK(batchdb_job_created(j) > 0);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);

    /* Replacing keeps one schedule of that name. */
    CHECK_OK(batchdb_schedule(db, "ticker", "*/5 * * * *", bytes("tock"), 4, NULL, key, &next, &err), &err);
    CHECK(count_schedules(db) == 2);
    CHECK(next % (5 * 60 * 1000) == 0);

    /* Removing: the instances it pushed stay; an unknown name is NOT_FOUND. */
    CHECK_OK(batchdb_unschedule(db, "ticker", &err), &err);
    CHECK_RC(batchdb_unschedule(db, "ticker", &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK(err.code == BATCHDB_ERR_NOT_FOUND && strlen(err.message) > 0);
    CHECK_OK(batchdb_unschedule(db, "daily", &err), &err);
    CHECK(count_schedules(db) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_RESULT) == 1);
    batchdb_close(db);
}

static int32_t progress_runner(void *userdata, batchdb_job *job, batchdb_error *fail_out) {
    (void)fail_out;
    atomic_int *ok = userdata;
    batchdb_error err;
    if (batchdb_job_progress(job, 0.25, "a quarter", &err) == BATCHDB_OK &&
        batchdb_job_progress(job, 2.0, "too much", &err) == BATCHDB_ERR_INVALID)
        atomic_fetch_add(ok, 1);
    return 0;
}

static void test_progress(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    struct counts ev;
    memset(&ev, 0, sizeof ev);
    CHECK_OK(batchdb_subscribe(db, on_event, &ev, &err), &err);
    char key[65], queue[80];
    int64_t created;
    double progress = 99;
    int has = 0;
    CHECK_OK(batchdb_add(db, bytes("long job"), 8, key, &created, &err), &err);
    CHECK(pending_row(db, created, queue, &progress, "\"progress\"", &has) && progress == -1.0 && has == 0);

    batchdb_job *j = NULL;
    CHECK_OK(batchdb_claim(db, &j, &err), &err);
    CHECK(pending_row(db, created, queue, &progress, "\"progress\"", &has) && progress == -1.0 && has == 0);
    CHECK_OK(batchdb_job_progress(j, 0.5, "half way", &err), &err);
    CHECK(atomic_load(&ev.kind[BATCHDB_EVENT_PROGRESS]) == 1);
    CHECK(atomic_load(&ev.done_milli) == 500 && strcmp(ev.progress_message, "half way") == 0);

    batchdb_cursor *c = NULL;
    batchdb_row row;
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_PENDING, &c, &err), &err);
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    CHECK(row.running == 1 && row.progress == 0.5 && row.message != NULL && strcmp(row.message, "half way") == 0);
    CHECK(strstr(row.json, "\"progress\":{\"done\":0.5,\"message\":\"half way\"}") != NULL);
    batchdb_cursor_free(c);

    /* Out of range, NaN, too long: INVALID, and the row keeps the last report. */
    char long_message[1100];
    memset(long_message, 'x', sizeof long_message - 1);
    long_message[sizeof long_message - 1] = '\0';
    CHECK_RC(batchdb_job_progress(j, -0.1, "x", &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_progress(j, 1.5, "x", &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_progress(j, NAN, "x", &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_progress(j, 0.6, long_message, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_progress(j, 0.6, "\xff\xfe", &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_job_progress(NULL, 0.6, "x", &err), BATCHDB_ERR_INVALID, &err);
    CHECK(pending_row(db, created, queue, &progress, NULL, NULL) && progress == 0.5);
    CHECK(atomic_load(&ev.kind[BATCHDB_EVENT_PROGRESS]) == 1);
    /* A NULL message is "". */
    CHECK_OK(batchdb_job_progress(j, 1.0, NULL, &err), &err);
    CHECK(pending_row(db, created, queue, &progress, "\"message\":\"\"", &has) && progress == 1.0 && has == 1);
    CHECK(atomic_load(&ev.done_milli) == 1000 && ev.progress_message[0] == '\0');
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);

    /* A lent job reports progress from a run callback. */
    atomic_int ok;
    atomic_init(&ok, 0);
    CHECK_OK(batchdb_push(db, key, &created, &err), &err);
    batchdb_run_options ro = {1, 1, NULL, 0};
    CHECK_OK(batchdb_run(db, &ro, progress_runner, &ok, &err), &err);
    CHECK(atomic_load(&ok) == 1);
    CHECK(atomic_load(&ev.kind[BATCHDB_EVENT_PROGRESS]) == 3);
    CHECK(atomic_load(&ev.done_milli) == 250 && strcmp(ev.progress_message, "a quarter") == 0);
    CHECK(atomic_load(&ev.bad) == 0);
    CHECK_OK(batchdb_unsubscribe(db, on_event, &ev, &err), &err);
    batchdb_close(db);
}


/* ---- API.md section 10: memoized pushes, dependencies, lineage ---- */

/* Claims whatever is ready; reads the payload into buf. NULL when nothing is. */
static batchdb_job *claim_any(batchdb *db, char *buf, size_t cap) { return claim_from_payload(db, NULL, 0, buf, cap); }

/* Completes `j` with `output` as its result; its hash goes to hash_out. */
static void complete_with(batchdb_job *j, const char *output, char hash_out[65]) {
    batchdb_error err;
    CHECK_OK(batchdb_job_write(j, bytes(output), strlen(output), &err), &err);
    CHECK_OK(batchdb_job_complete(j, hash_out, &err), &err);
}

static batchdb_instance instance_of(const char *key, int64_t created) {
    batchdb_instance in;
    memset(&in, 0, sizeof in);
    snprintf(in.key, sizeof in.key, "%s", key);
    in.created = created;
    return in;
}

static void test_memo_push(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65], key2[65], cached[65], hash[65], buf[64];
    int64_t c1, c2, c3;
    batchdb_push_options memo;
    memset(&memo, 0, sizeof memo);
    memo.memo = 1;
    memo.cached_out = cached;

    /* Nothing yet: a new instance, cached "". */
    memset(cached, 'x', sizeof cached);
    CHECK_OK(batchdb_add_with(db, bytes("memo me"), 7, &memo, key, &c1, &err), &err);
    CHECK(cached[0] == '\0' && c1 > 0);
    /* Pending: joined, nothing queued. */
    memset(cached, 'x', sizeof cached);
    CHECK_OK(batchdb_push_with(db, key, &memo, &c2, &err), &err);
    CHECK(c2 == c1 && cached[0] == '\0');
    CHECK_OK(batchdb_add_with(db, bytes("memo me"), 7, &memo, key2, &c2, &err), &err);
    CHECK(c2 == c1 && strcmp(key, key2) == 0 && cached[0] == '\0');
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    /* Running: joined too. */
    batchdb_job *j = claim_any(db, buf, sizeof buf);
    CHECK(j != NULL && batchdb_job_created(j) == c1);
    CHECK_OK(batchdb_push_with(db, key, &memo, &c2, &err), &err);
    CHECK(c2 == c1 && count_rows(db, BATCHDB_LIST_PENDING) == 1);
    complete_with(j, "memo result", hash);

    /* A result: reused, nothing queued; created is the result's, cached its output. */
    CHECK_OK(batchdb_push_with(db, key, &memo, &c2, &err), &err);
    CHECK(c2 == c1 && strcmp(cached, hash) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);
    memset(cached, 'x', sizeof cached);
    CHECK_OK(batchdb_add_with(db, bytes("memo me"), 7, &memo, key2, &c2, &err), &err);
    CHECK(c2 == c1 && strcmp(cached, hash) == 0 && strcmp(key2, key) == 0);
    /* The streamed add reports it the same way. */
    batchdb_writer *w = NULL;
    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    CHECK_OK(batchdb_writer_write(w, bytes("memo me"), 7, &err), &err);
    memset(cached, 'x', sizeof cached);
    CHECK_OK(batchdb_writer_add_with(w, &memo, key2, &c2, &err), &err);
    CHECK(c2 == c1 && strcmp(cached, hash) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);

    /* Without memo a new instance is queued, and cached_out says "". */
    batchdb_push_options plain;
    memset(&plain, 0, sizeof plain);
    plain.cached_out = cached;
    CHECK_OK(batchdb_push_with(db, key, &plain, &c3, &err), &err);
    CHECK(c3 > c1 && cached[0] == '\0');
    /* With a newer result, a memo hit gives the newest. */
    j = claim_any(db, buf, sizeof buf);
    CHECK(j != NULL && batchdb_job_created(j) == c3);
    char hash2[65];
    complete_with(j, "second result", hash2);
    CHECK_OK(batchdb_push_with(db, key, &memo, &c2, &err), &err);
    CHECK(c2 == c3 && strcmp(cached, hash2) == 0);
    /* cached_out NULL is fine; memo must be 0 or 1. */
    memo.cached_out = NULL;
    CHECK_OK(batchdb_push_with(db, key, &memo, &c2, &err), &err);
    CHECK(c2 == c3);
    memo.memo = 2;
    CHECK_RC(batchdb_push_with(db, key, &memo, &c2, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);
    batchdb_close(db);
}

/* A runner that records the job's upstreams as "KEY:CREATED:HASH " and writes them as its
 * output. */
static int32_t after_runner(void *userdata, batchdb_job *job, batchdb_error *fail_out) {
    (void)fail_out;
    char *seen = userdata;
    size_t n = batchdb_job_after_count(job);
    batchdb_error err;
    for (size_t i = 0; i < n; i++) {
        char k[65], h[65];
        int64_t c;
        if (batchdb_job_after(job, i, k, &c, h, &err) != BATCHDB_OK) return 1;
        size_t used = strlen(seen);
        snprintf(seen + used, 1024 - used, "%.8s:%lld:%.8s ", k, (long long)c, h);
    }
    char k[65];
    if (batchdb_job_after(job, n, k, NULL, NULL, &err) != BATCHDB_ERR_INVALID) return 2;
    return batchdb_job_write(job, bytes("down"), 4, &err) == BATCHDB_OK ? 0 : 3;
}

static void test_after_waits_and_lists_inputs(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char ka[65], kb[65], kd[65], ha[65], hb[65], buf[64], queue[80];
    int64_t ca, cb, cd;
    CHECK_OK(batchdb_add(db, bytes("up a"), 4, ka, &ca, &err), &err);
    CHECK_OK(batchdb_add(db, bytes("up b"), 4, kb, &cb, &err), &err);
    batchdb_instance ups[2] = {instance_of(ka, ca), instance_of(kb, cb)};
    batchdb_push_options after;
    memset(&after, 0, sizeof after);
    after.after = ups;
    after.after_len = 2;
    CHECK_OK(batchdb_add_with(db, bytes("down"), 4, &after, kd, &cd, &err), &err);

    /* It waits: its row shows the upstreams, and claims take the upstreams only. */
    int has = 0;
    CHECK(pending_row(db, cd, queue, NULL, "\"after\":[[", &has) && has == 1);
    CHECK_RC(batchdb_wait(db, 10, &err), BATCHDB_OK, &err);
    batchdb_job *j1 = claim_any(db, buf, sizeof buf);
    batchdb_job *j2 = claim_any(db, buf, sizeof buf);
    CHECK(j1 != NULL && j2 != NULL);
    CHECK(batchdb_job_after_count(j1) == 0 && batchdb_job_after_count(j2) == 0);
    CHECK(claim_any(db, buf, sizeof buf) == NULL);
    /* One upstream done: still waiting. */
    int first_is_a = batchdb_job_created(j1) == ca;
    complete_with(first_is_a ? j1 : j2, "out a", ha);
    CHECK(claim_any(db, buf, sizeof buf) == NULL);
    CHECK(pending_row(db, cd, queue, NULL, "\"after\"", &has) && has == 1);
    /* Both: claimable, and the job lists its inputs in the push's order. */
    complete_with(first_is_a ? j2 : j1, "out b", hb);
    CHECK(pending_row(db, cd, queue, NULL, "\"after\"", &has) && has == 0);
    batchdb_job *j = claim_any(db, buf, sizeof buf);
    CHECK(j != NULL && batchdb_job_created(j) == cd && strcmp(buf, "down") == 0);
    CHECK(batchdb_job_after_count(j) == 2);
    char k[65], h[65];
    int64_t c = 0;
    CHECK_OK(batchdb_job_after(j, 0, k, &c, h, &err), &err);
    CHECK(strcmp(k, ka) == 0 && c == ca && strcmp(h, ha) == 0);
    CHECK_OK(batchdb_job_after(j, 1, k, &c, h, &err), &err);
    CHECK(strcmp(k, kb) == 0 && c == cb && strcmp(h, hb) == 0);
    CHECK_OK(batchdb_job_after(j, 1, NULL, NULL, NULL, &err), &err);
    CHECK_RC(batchdb_job_after(j, 2, k, &c, h, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "out of range") != NULL);
    CHECK_RC(batchdb_job_after(NULL, 0, k, &c, h, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(batchdb_job_after_count(NULL) == 0);
    /* The input is readable. */
    struct sink s;
    memset(&s, 0, sizeof s);
    CHECK_OK(batchdb_get(db, h, collect, &s, &err), &err);
    CHECK(strcmp(s.data, "out b") == 0);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);

    /* Through batchdb_run, the borrowed job lists them too. */
    int64_t ce;
    batchdb_instance one[1] = {instance_of(ka, ca)};
    after.after = one;
    after.after_len = 1;
    CHECK_OK(batchdb_push_with(db, kd, &after, &ce, &err), &err); /* upstream done already: ready */
    char seen[1024] = "";
    batchdb_run_options ro = {1, 1, NULL, 0};
    CHECK_OK(batchdb_run(db, &ro, after_runner, seen, &err), &err);
    char want[128];
    snprintf(want, sizeof want, "%.8s:%lld:%.8s ", ka, (long long)ca, ha);
    CHECK(strcmp(seen, want) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0 && count_rows(db, BATCHDB_LIST_FAIL) == 0);
    batchdb_close(db);
}

/* The message of the fail row of instance `created` ("" when there is none). */
static void fail_message(batchdb *db, int64_t created, char out[256]) {
    batchdb_cursor *c = NULL;
    batchdb_row row;
    batchdb_error err;
    out[0] = '\0';
    CHECK_OK(batchdb_list(db, BATCHDB_LIST_FAIL, &c, &err), &err);
    while (c != NULL && batchdb_cursor_next(c, &row, &err) == BATCHDB_OK)
        if (row.created == created) snprintf(out, 256, "%s", row.message);
    batchdb_cursor_free(c);
}

static void test_failed_upstream_cascades(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char ku[65], kd[65], ke[65], buf[64], msg[256], want[256];
    int64_t cu, cd, ce, cf, cg;
    CHECK_OK(batchdb_add(db, bytes("will fail"), 9, ku, &cu, &err), &err);
    batchdb_instance up[1] = {instance_of(ku, cu)};
    batchdb_push_options o;
    memset(&o, 0, sizeof o);
    o.after = up;
    o.after_len = 1;
    CHECK_OK(batchdb_add_with(db, bytes("dependent"), 9, &o, kd, &cd, &err), &err);
    batchdb_instance mid[1] = {instance_of(kd, cd)};
    o.after = mid;
    CHECK_OK(batchdb_add_with(db, bytes("grandchild"), 10, &o, ke, &ce, &err), &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 3);

    batchdb_job *j = claim_any(db, buf, sizeof buf);
    CHECK(j != NULL && batchdb_job_created(j) == cu);
    CHECK_OK(batchdb_job_fail(j, "boom", &err), &err);
    /* Its dependents became fail rows, transitively. */
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_FAIL) == 3);
    fail_message(db, cd, msg);
    snprintf(want, sizeof want, "upstream %s %lld failed", ku, (long long)cu);
    CHECK(strcmp(msg, want) == 0);
    fail_message(db, ce, msg);
    snprintf(want, sizeof want, "upstream %s %lld failed", kd, (long long)cd);
    CHECK(strcmp(msg, want) == 0);

    /* A push after a failed upstream succeeds, and is a fail row at once. */
    o.after = up;
    char cached[65] = "x";
    o.cached_out = cached;
    CHECK_OK(batchdb_push_with(db, kd, &o, &cf, &err), &err);
    CHECK(cf > ce && cached[0] == '\0');
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);
    fail_message(db, cf, msg);
    snprintf(want, sizeof want, "upstream %s %lld failed", ku, (long long)cu);
    CHECK(strcmp(msg, want) == 0);

    /* Cancelling an upstream fails its dependents: "cancelled". */
    CHECK_OK(batchdb_push(db, ku, &cg, &err), &err);
    batchdb_instance up2[1] = {instance_of(ku, cg)};
    o.after = up2;
    int64_t ch;
    CHECK_OK(batchdb_push_with(db, kd, &o, &ch, &err), &err);
    CHECK_OK(batchdb_cancel(db, ku, cg, &err), &err);
    fail_message(db, ch, msg);
    snprintf(want, sizeof want, "upstream %s %lld cancelled", ku, (long long)cg);
    CHECK(strcmp(msg, want) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 0);
    batchdb_close(db);
}

static void test_why(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char ka[65], kd[65], ha[65], hd[65], buf[64];
    int64_t ca, cd;
    CHECK_OK(batchdb_add(db, bytes("same"), 4, ka, &ca, &err), &err);
    batchdb_job *j = claim_any(db, buf, sizeof buf);
    complete_with(j, "same", ha); /* the output equals the payload: one blob, both lines */
    CHECK(strcmp(ha, ka) == 0);
    batchdb_instance up[1] = {instance_of(ka, ca)};
    batchdb_push_options o;
    memset(&o, 0, sizeof o);
    o.after = up;
    o.after_len = 1;
    CHECK_OK(batchdb_add_with(db, bytes("derived"), 7, &o, kd, &cd, &err), &err);
    j = claim_any(db, buf, sizeof buf);
    CHECK(j != NULL && batchdb_job_created(j) == cd);
    complete_with(j, "derived output", hd);

    /* The payload that is also an output: a job row, then the result row with no upstream. */
    batchdb_cursor *c = NULL;
    batchdb_row row;
    char want[512];
    CHECK_OK(batchdb_why(db, ka, &c, &err), &err);
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    snprintf(want, sizeof want, "{\"job\":\"%s\"}", ka);
    CHECK(row.kind == BATCHDB_LIST_JOB && strcmp(row.job, ka) == 0 && strcmp(row.json, want) == 0);
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    /* The contract's key order: "result", then "after" (always present). */
    snprintf(want, sizeof want, "{\"result\":[\"%s\",%lld],\"after\":[]}", ka, (long long)ca);
    CHECK(row.kind == BATCHDB_LIST_RESULT && strcmp(row.job, ka) == 0 && row.created == ca);
    CHECK(strcmp(row.hash, ka) == 0);
    CHECK(strcmp(row.json, want) == 0);
    CHECK_RC(batchdb_cursor_next(c, &row, &err), BATCHDB_DONE, &err);
    CHECK_RC(batchdb_cursor_next(c, &row, &err), BATCHDB_DONE, &err);
    batchdb_cursor_free(c);

    /* An output only: its result row, with the upstream it waited for. */
    CHECK_OK(batchdb_why(db, hd, &c, &err), &err);
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    snprintf(want, sizeof want, "\"after\":[[\"%s\",%lld]]", ka, (long long)ca);
    CHECK(row.kind == BATCHDB_LIST_RESULT && strcmp(row.job, kd) == 0 && row.created == cd);
    CHECK(strstr(row.json, want) != NULL);
    snprintf(want, sizeof want, "\"result\":[\"%s\",%lld]", kd, (long long)cd);
    CHECK(strstr(row.json, want) != NULL);
    CHECK_RC(batchdb_cursor_next(c, &row, &err), BATCHDB_DONE, &err);
    batchdb_cursor_free(c);

    /* A payload only: one job row. */
    CHECK_OK(batchdb_why(db, kd, &c, &err), &err);
    CHECK_OK(batchdb_cursor_next(c, &row, &err), &err);
    CHECK(row.kind == BATCHDB_LIST_JOB && strcmp(row.job, kd) == 0);
    CHECK_RC(batchdb_cursor_next(c, &row, &err), BATCHDB_DONE, &err);
    batchdb_cursor_free(c);

    /* Unknown: NOT_FOUND; malformed: INVALID; *out NULL either way. */
    c = (batchdb_cursor *)1;
    CHECK_RC(batchdb_why(db, "0000000000000000000000000000000000000000000000000000000000000000", &c, &err),
             BATCHDB_ERR_NOT_FOUND, &err);
    CHECK(c == NULL);
    c = (batchdb_cursor *)1;
    CHECK_RC(batchdb_why(db, "abc", &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(c == NULL);
    CHECK_RC(batchdb_why(db, NULL, &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_why(NULL, ka, &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_why(db, ka, NULL, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_close(db);
}

/* batchdb_wait_from: work in another queue does not wake it; work in its own does. */
static void test_wait_from(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    const char *mine[] = {"mine"};
    batchdb_push_options other = {.queue = "other"};
    batchdb_push_options own = {.queue = "mine"};
    CHECK_RC(batchdb_wait_from(db, mine, 1, 30, &err), BATCHDB_DONE, &err);
    CHECK_OK(batchdb_add_with(db, bytes("elsewhere"), 9, &other, NULL, NULL, &err), &err);
    int64_t t0 = now_ms();
    CHECK_RC(batchdb_wait_from(db, mine, 1, 300, &err), BATCHDB_DONE, &err);
    CHECK(now_ms() - t0 >= 250);
    CHECK_RC(batchdb_wait_from(db, NULL, 0, 300, &err), BATCHDB_OK, &err); /* every queue */
    CHECK_RC(batchdb_wait(db, 300, &err), BATCHDB_OK, &err);
    CHECK_OK(batchdb_add_with(db, bytes("mine"), 4, &own, NULL, NULL, &err), &err);
    CHECK_RC(batchdb_wait_from(db, mine, 1, 5000, &err), BATCHDB_OK, &err);
    const char *bad[] = {"no spaces"}, *null_name[] = {NULL};
    CHECK_RC(batchdb_wait_from(db, bad, 1, 10, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_wait_from(db, null_name, 1, 10, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_wait_from(db, NULL, 1, 10, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_wait_from(NULL, mine, 1, 10, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_close(db);
}


/* batchdb_claim_read_from: the claim of batchdb_claim_from with the payload's start. */
static void test_claim_read_from(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char buf[64];
    size_t n = 99;
    int64_t cb;
    batchdb_push_options alpha = {.queue = "alpha"}, beta = {.queue = "beta"};
    CHECK_OK(batchdb_add_with(db, bytes("in alpha"), 8, &alpha, NULL, NULL, &err), &err);
    CHECK_OK(batchdb_add_with(db, bytes("in beta"), 7, &beta, NULL, &cb, &err), &err);
    const char *only_beta[] = {"beta"}, *gamma[] = {"gamma"}, *bad[] = {"not a queue"};
    batchdb_job *j = NULL;
    CHECK_OK(batchdb_claim_read_from(db, only_beta, 1, (uint8_t *)buf, sizeof buf, &n, &j, &err), &err);
    CHECK(j != NULL && n == 7 && memcmp(buf, "in beta", 7) == 0 && batchdb_job_created(j) == cb);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);
    n = 99;
    j = (batchdb_job *)1;
    CHECK_RC(batchdb_claim_read_from(db, gamma, 1, (uint8_t *)buf, sizeof buf, &n, &j, &err), BATCHDB_DONE, &err);
    CHECK(j == NULL && n == 0);
    CHECK_RC(batchdb_claim_read_from(db, bad, 1, (uint8_t *)buf, sizeof buf, &n, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_claim_read_from(db, NULL, 2, (uint8_t *)buf, sizeof buf, &n, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    /* NULL with 0 serves every queue. */
    CHECK_OK(batchdb_claim_read_from(db, NULL, 0, (uint8_t *)buf, sizeof buf, &n, &j, &err), &err);
    CHECK(j != NULL && n == 8 && memcmp(buf, "in alpha", 8) == 0);
    CHECK_OK(batchdb_job_complete(j, NULL, &err), &err);
    batchdb_close(db);
}

static void test_backup_and_copy(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65], buf[64], out[65];
    int64_t created;
    CHECK_OK(batchdb_add(db, bytes("copy me"), 7, key, &created, &err), &err);
    complete_with(claim_any(db, buf, sizeof buf), "copied output", out);
    CHECK_OK(batchdb_push(db, key, &created, &err), &err);

    /* A backup is a file, also of a database on a server. */
    char dir[] = "/tmp/batchdb-cbackup-XXXXXX", dest[512];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(dest, sizeof dest, "%s/backup.db", dir);
    CHECK_OK(batchdb_backup(db, dest, &err), &err);
    CHECK_RC(batchdb_backup(db, dest, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "exists") != NULL);
    CHECK_RC(batchdb_backup(db, NULL, &err), BATCHDB_ERR_INVALID, &err);

    batchdb *target = NULL;
    CHECK_OK(batchdb_open(fresh_path("copy.db"), NULL, &target, &err), &err);
    batchdb_copy_report r;
    CHECK_OK(batchdb_copy(db, target, &r, &err), &err);
    CHECK(r.blobs_sent == 2 && r.rows > 0);
    CHECK_OK(batchdb_copy(db, target, &r, &err), &err);
    CHECK(r.blobs_sent == 0);
    CHECK_OK(batchdb_copy(db, target, NULL, &err), &err);
    char got[64];
    size_t n = 0;
    batchdb_reader *rd = NULL;
    CHECK_OK(batchdb_reader_open(target, out, &rd, &err), &err);
    CHECK_OK(batchdb_reader_read(rd, (uint8_t *)got, sizeof got, &n, &err), &err);
    CHECK(n == 13 && memcmp(got, "copied output", 13) == 0);
    batchdb_reader_close(rd);
    CHECK_RC(batchdb_copy(db, NULL, &r, &err), BATCHDB_ERR_INVALID, &err);

    batchdb *stranger = open_fresh(NULL);
    CHECK_OK(batchdb_create(stranger, bytes("mine"), 4, NULL, &err), &err);
    CHECK_RC(batchdb_copy(db, stranger, &r, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_close(stranger);
    batchdb_close(target);
    batchdb_close(db);
    unlink(dest);
    rmdir(dir);
}

static void test_is_idle(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    int32_t idle = -1;
    CHECK_OK(batchdb_is_idle(db, NULL, 0, &idle, &err), &err);
    CHECK(idle == 1);
    batchdb_push_options o = {.queue = "p"};
    CHECK_OK(batchdb_add_with(db, bytes("p"), 1, &o, NULL, NULL, &err), &err);
    CHECK_OK(batchdb_is_idle(db, NULL, 0, &idle, &err), &err);
    CHECK(idle == 0);
    const char *other[] = {"other"};
    CHECK_OK(batchdb_is_idle(db, other, 1, &idle, &err), &err);
    CHECK(idle == 1);
    CHECK_OK(batchdb_pause(db, "p", &err), &err);
    CHECK_OK(batchdb_is_idle(db, NULL, 0, &idle, &err), &err);
    CHECK(idle == 1);
    const char *bad[] = {"bad name"};
    CHECK_RC(batchdb_is_idle(db, bad, 1, &idle, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_is_idle(db, NULL, 0, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_is_idle(NULL, NULL, 0, &idle, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_close(db);
}

int main(void) {
    RUN(test_version);
    RUN(test_open_and_options);
    RUN(test_not_a_batchdb_file);
    RUN(test_create_add_push);
    RUN(test_writer);
    RUN(test_get_and_reader);
    RUN(test_list);
    RUN(test_wait);
    RUN(test_claim_complete_fail);
    RUN(test_claim_read_complete_with);
    RUN(test_complete_claim);
    RUN(test_jobs_complete_claim);
    RUN(test_run_and_events);
    RUN(test_run_until_stopped);
    RUN(test_retry);
    RUN(test_cancel_prune_gc);
    RUN(test_priority_delay_order);
    RUN(test_null_handles);
    RUN(test_handles_outlive_close);
    RUN(test_error_message_is_bounded);
    RUN(test_queues_claim_from);
    RUN(test_limit_and_pause);
    RUN(test_unique_push);
    RUN(test_schedules);
    RUN(test_progress);
    RUN(test_memo_push);
    RUN(test_after_waits_and_lists_inputs);
    RUN(test_failed_upstream_cascades);
    RUN(test_why);
    RUN(test_wait_from);
    RUN(test_claim_read_from);
    RUN(test_backup_and_copy);
    RUN(test_is_idle);
    return tests_failed == 0 ? 0 : 1;
}
