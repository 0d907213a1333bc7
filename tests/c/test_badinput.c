/* Bad input through the C ABI (the reliability suite, R4): malformed and unknown hashes,
 * kinds out of range, files that are not batchdb databases, paths that cannot be opened.
 * Each case is a clear status code with a message, and nothing changes: not the listings, and
 * on a file not one byte. On PostgreSQL (BATCHDB_TEST_PG) the locations that cannot be opened
 * are URLs: a schema of other tables, a bad schema name, a server that is not there. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <stdint.h>
#include <sys/stat.h>

#define EMPTY_KEY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define UNKNOWN_KEY "0000000000000000000000000000000000000000000000000000000000000000"

/* The whole file, malloc'ed; *len gets its size. NULL when it cannot be read. */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 65536;
            unsigned char *grown = realloc(buf, cap);
            if (grown == NULL) break;
            buf = grown;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        if (n == 0) break;
        *len += n;
    }
    fclose(f);
    return buf;
}

static int same_file(const char *path, const unsigned char *bytes, size_t len) {
    size_t now_len = 0;
    unsigned char *now = slurp(path, &now_len);
    int same = now != NULL && now_len == len && memcmp(now, bytes, len) == 0;
    free(now);
    return same;
}

/* Every listing's JSON rows, one per line, malloc'ed: what "changes nothing" compares on any
 * backend. NULL on an error. */
static char *snapshot(batchdb *db) {
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f == NULL) return NULL;
    int ok = 1;
    for (int32_t kind = BATCHDB_LIST_JOB; kind <= BATCHDB_LIST_SCHEDULE; kind++) {
        batchdb_cursor *c = NULL;
        batchdb_row row;
        batchdb_error err;
        int32_t rc;
        if (batchdb_list(db, kind, &c, &err) != BATCHDB_OK) {
            ok = 0;
            break;
        }
        while ((rc = batchdb_cursor_next(c, &row, &err)) == BATCHDB_OK) fprintf(f, "%s\n", row.json);
        batchdb_cursor_free(c);
        ok = ok && rc == BATCHDB_DONE;
    }
    fclose(f);
    if (!ok) {
        free(out);
        return NULL;
    }
    return out;
}

static int32_t ignore_chunk(void *userdata, const uint8_t *data, size_t len) {
    (void)userdata;
    (void)data;
    (void)len;
    return 0;
}

static void test_malformed_and_unknown_hashes(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    int64_t created = 0;
    CHECK_OK(batchdb_add(db, (const uint8_t *)"job", 3, key, &created, &err), &err);
    char *rows_before = snapshot(db);
    CHECK(rows_before != NULL && strstr(rows_before, key) != NULL);
    batchdb_close(db);
    size_t len = 0;
    unsigned char *before = on_pg() ? NULL : slurp(test_db, &len);
    CHECK(on_pg() || before != NULL);
    CHECK_OK(batchdb_open(test_db, NULL, &db, &err), &err);

    const char *malformed[] = {"", "abc", EMPTY_KEY "0", "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
                               "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85 "};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        int64_t c = 0;
        batchdb_reader *r = NULL;
        CHECK_RC(batchdb_push(db, malformed[i], &c, &err), BATCHDB_ERR_INVALID, &err);
        CHECK(strstr(err.message, "malformed hash") != NULL);
        CHECK_RC(batchdb_get(db, malformed[i], ignore_chunk, NULL, &err), BATCHDB_ERR_INVALID, &err);
        CHECK_RC(batchdb_reader_open(db, malformed[i], &r, &err), BATCHDB_ERR_INVALID, &err);
        CHECK(r == NULL);
        CHECK_RC(batchdb_retry(db, malformed[i], created, &c, &err), BATCHDB_ERR_INVALID, &err);
        CHECK_RC(batchdb_cancel(db, malformed[i], created, &err), BATCHDB_ERR_INVALID, &err);
    }
    int64_t c = 0;
    batchdb_reader *r = NULL;
    CHECK_RC(batchdb_push(db, UNKNOWN_KEY, &c, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK(strstr(err.message, "not found") != NULL);
    CHECK_RC(batchdb_get(db, UNKNOWN_KEY, ignore_chunk, NULL, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK_RC(batchdb_reader_open(db, UNKNOWN_KEY, &r, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK_RC(batchdb_retry(db, key, created, &c, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK_RC(batchdb_cancel(db, UNKNOWN_KEY, created, &err), BATCHDB_ERR_NOT_FOUND, &err);
    batchdb_cursor *cur = NULL;
    CHECK_RC(batchdb_list(db, BATCHDB_LIST_SCHEDULE + 1, &cur, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_list(db, -1, &cur, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(cur == NULL);
    CHECK_RC(batchdb_push(db, NULL, &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_add(db, NULL, 5, key, &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_JOB) == 1);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    char *rows_after = snapshot(db);
    CHECK(rows_before != NULL && rows_after != NULL && strcmp(rows_before, rows_after) == 0);
    free(rows_before);
    free(rows_after);
    batchdb_close(db);
    if (!on_pg()) CHECK(same_file(test_db, before, len));
    free(before);
}

static void test_empty_file_is_a_new_database(void) {
    if (on_pg()) {
        skip_test("an empty file is file-specific (every PostgreSQL test starts on a new, empty schema)");
        return;
    }
    const char *path = fresh_path("empty.db");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f != NULL) fclose(f);
    batchdb *db = NULL;
    batchdb_error err;
    /* As in SQLite. */
    CHECK_OK(batchdb_open(path, NULL, &db, &err), &err);
    CHECK(db != NULL && count_rows(db, BATCHDB_LIST_JOB) == 0);
    batchdb_close(db);
}

static void test_empty_payload(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    int64_t created = 0;
    /* The empty payload is valid; a NULL pointer with length 0 is the empty payload too. */
    CHECK_OK(batchdb_add(db, (const uint8_t *)"", 0, key, &created, &err), &err);
    CHECK(strcmp(key, EMPTY_KEY) == 0);
    CHECK_OK(batchdb_add(db, NULL, 0, key, &created, &err), &err);
    CHECK(strcmp(key, EMPTY_KEY) == 0);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 2);
    CHECK_OK(batchdb_get(db, EMPTY_KEY, ignore_chunk, NULL, &err), &err);
    batchdb_close(db);
}

static void urls_that_cannot_be_opened(void) {
    const char *base = pg_url();
    char sep = strchr(base, '?') ? '&' : '?';
    char url[1100];
    batchdb *db = NULL;
    batchdb_error err;

    /* A schema that holds other tables and no batchdb meta table: refused, as a garbage file. */
    snprintf(url, sizeof url, "%s%cschema=information_schema", base, sep);
    CHECK_RC(batchdb_open(url, NULL, &db, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "not a batchdb database") != NULL);
    CHECK(db == NULL);

    /* A schema name batchdb would have to quote is refused before connecting. */
    snprintf(url, sizeof url, "%s%cschema=Bad-Name", base, sep);
    CHECK_RC(batchdb_open(url, NULL, &db, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "schema name") != NULL);
    CHECK(db == NULL);

    /* No server on port 1: an I/O error that names the (password-free) location. */
    CHECK_RC(batchdb_open("postgres://nobody:sekrit@127.0.0.1:1/nothing?connect_timeout=5", NULL, &db, &err),
             BATCHDB_ERR_IO, &err);
    CHECK(strstr(err.message, "cannot connect") != NULL);
    CHECK(strstr(err.message, "127.0.0.1:1") != NULL);
    CHECK(strstr(err.message, "sekrit") == NULL);
    CHECK(db == NULL);
}

static void test_locations_that_cannot_be_opened(void) {
    if (on_pg()) {
        urls_that_cannot_be_opened();
        return;
    }
    const char *path = fresh_path("garbage.db");
    unsigned char garbage[8192];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (unsigned char)(i * 13 + 5);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL && fwrite(garbage, 1, sizeof garbage, f) == sizeof garbage);
    fclose(f);
    batchdb *db = NULL;
    batchdb_error err;
    CHECK_RC(batchdb_open(path, NULL, &db, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "not a batchdb database") != NULL);
    CHECK(db == NULL);
    CHECK(same_file(path, garbage, sizeof garbage));

    /* A path whose parent is a regular file fails even for root. */
    char below[256];
    snprintf(below, sizeof below, "%s/sub.db", path);
    CHECK_RC(batchdb_open(below, NULL, &db, &err), BATCHDB_ERR_IO, &err);
    CHECK(strstr(err.message, "garbage.db") != NULL);
    CHECK(db == NULL);
    CHECK(same_file(path, garbage, sizeof garbage));

    /* A directory. */
    CHECK_RC(batchdb_open(test_dir, NULL, &db, &err), BATCHDB_ERR_IO, &err);
    CHECK(strstr(err.message, "directory") != NULL);
    CHECK(db == NULL);

    /* A path under a directory that does not exist: nothing is created. */
    char missing[256];
    snprintf(missing, sizeof missing, "%s/no-such-dir/x.db", test_dir);
    CHECK_RC(batchdb_open(missing, NULL, &db, &err), BATCHDB_ERR_IO, &err);
    struct stat st;
    snprintf(missing, sizeof missing, "%s/no-such-dir", test_dir);
    CHECK(stat(missing, &st) != 0);
}


static int32_t never_run(void *userdata, batchdb_job *job, batchdb_error *fail_out) {
    (void)job;
    (void)fail_out;
    (*(int *)userdata)++;
    return 0;
}

/* API.md section 9: bad queue names, limits below 0, bad specs, unknown schedules, NULL
 * pointers. Each is a clear error, and the database (its rows, and on a file its bytes: the
 * queue table's limits and pauses too) is unchanged. */
static void test_queue_schedule_progress_bad_input(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65];
    int64_t created = 0, next = 0;
    batchdb_push_options q = {.queue = "q"};
    CHECK_OK(batchdb_add_with(db, (const uint8_t *)"job", 3, &q, key, &created, &err), &err);
    CHECK_OK(batchdb_limit(db, "q", 3, &err), &err);
    CHECK_OK(batchdb_pause(db, "paused", &err), &err);
    CHECK_OK(batchdb_schedule(db, "nightly", "0 3 * * *", (const uint8_t *)"job", 3, &q, NULL, &next, &err), &err);
    char *rows_before = snapshot(db);
    CHECK(rows_before != NULL && strstr(rows_before, "nightly") != NULL);
    batchdb_close(db);
    size_t len = 0;
    unsigned char *before = on_pg() ? NULL : slurp(test_db, &len);
    CHECK(on_pg() || before != NULL);
    CHECK_OK(batchdb_open(test_db, NULL, &db, &err), &err);

    char too_long[66];
    memset(too_long, 'a', 65);
    too_long[65] = '\0';
    const char *bad_names[] = {"has space", "a/b", "\xc3\xa9t\xc3\xa9", too_long, "tab\there", "semi;colon", "\xff"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        const char *name = bad_names[i];
        batchdb_push_options bad = {.queue = name};
        int64_t c = 0;
        CHECK_RC(batchdb_push_with(db, key, &bad, &c, &err), BATCHDB_ERR_INVALID, &err);
        CHECK(strlen(err.message) > 0);
        CHECK_RC(batchdb_add_with(db, (const uint8_t *)"new", 3, &bad, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
        CHECK_RC(batchdb_limit(db, name, 1, &err), BATCHDB_ERR_INVALID, &err);
        CHECK_RC(batchdb_pause(db, name, &err), BATCHDB_ERR_INVALID, &err);
        CHECK_RC(batchdb_resume(db, name, &err), BATCHDB_ERR_INVALID, &err);
        batchdb_job *j = (batchdb_job *)1;
        const char *queues[] = {"q", name};
        CHECK_RC(batchdb_claim_from(db, queues, 2, &j, &err), BATCHDB_ERR_INVALID, &err);
        CHECK(j == NULL);
        /* A schedule's name follows the queue-name alphabet; so does its queue. */
        CHECK_RC(batchdb_schedule(db, name, "every 1s", (const uint8_t *)"new", 3, NULL, NULL, NULL, &err),
                 BATCHDB_ERR_INVALID, &err);
        CHECK_RC(batchdb_schedule(db, "fine", "every 1s", (const uint8_t *)"new", 3, &bad, NULL, NULL, &err),
                 BATCHDB_ERR_INVALID, &err);
        CHECK_RC(batchdb_unschedule(db, name, &err), BATCHDB_ERR_INVALID, &err);
        int calls = 0;
        batchdb_run_options ro = {1, 1, queues, 2};
        CHECK_RC(batchdb_run(db, &ro, never_run, &calls, &err), BATCHDB_ERR_INVALID, &err);
        CHECK(calls == 0);
    }

    /* Limits below 0 or beyond 32 bits. */
    CHECK_RC(batchdb_limit(db, "q", -1, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "-1") != NULL);
    CHECK_RC(batchdb_limit(db, "q", (int64_t)1 << 32, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_limit(db, "q", INT64_MIN, &err), BATCHDB_ERR_INVALID, &err);

    /* Specs that are neither `every DURATION` nor 5-field cron. */
    const char *bad_specs[] = {"", "every", "every 0s", "every -1s", "every soon", "* * * *", "* * * * * *",
                               "61 * * * *", "0 25 * * *", "@daily", "0 0 30 2 *", "hourly"};
    for (size_t i = 0; i < sizeof bad_specs / sizeof bad_specs[0]; i++) {
        CHECK_RC(batchdb_schedule(db, "nightly", bad_specs[i], (const uint8_t *)"new", 3, NULL, NULL, NULL, &err),
                 BATCHDB_ERR_INVALID, &err);
        CHECK(strlen(err.message) > 0);
    }

    /* Unknown schedules; NULL pointers and handles; unique out of range. */
    CHECK_RC(batchdb_unschedule(db, "unknown", &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK_RC(batchdb_unschedule(db, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_unschedule(NULL, "nightly", &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_limit(db, NULL, 1, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_limit(NULL, "q", 1, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_pause(db, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_pause(NULL, "q", &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_resume(db, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_resume(NULL, "paused", &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_limit(db, "", 1, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_pause(db, "", &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_schedule(NULL, "s", "every 1s", (const uint8_t *)"x", 1, NULL, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_schedule(db, NULL, "every 1s", (const uint8_t *)"x", 1, NULL, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_schedule(db, "s", NULL, (const uint8_t *)"x", 1, NULL, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_schedule(db, "s", "every 1s", NULL, 1, NULL, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_schedule(db, "", "every 1s", (const uint8_t *)"x", 1, NULL, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_push_options neg = {.delay_ms = -5, .queue = "q"}, not_flag = {.queue = "q", .unique = 2};
    CHECK_RC(batchdb_schedule(db, "s", "every 1s", (const uint8_t *)"x", 1, &neg, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_push_with(db, key, &not_flag, &created, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_push_with(db, key, &(batchdb_push_options){.queue = "q", .unique = -1}, &created, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_job *j = (batchdb_job *)1;
    CHECK_RC(batchdb_claim_from(db, NULL, 1, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(j == NULL);
    const char *null_name[] = {NULL};
    CHECK_RC(batchdb_claim_from(db, null_name, 1, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_claim_from(NULL, NULL, 0, &j, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_claim_from(db, NULL, 0, NULL, &err), BATCHDB_ERR_INVALID, &err);
    int calls = 0;
    batchdb_run_options null_queues = {1, 1, NULL, 3};
    CHECK_RC(batchdb_run(db, &null_queues, never_run, &calls, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(calls == 0);
    CHECK_RC(batchdb_job_progress(NULL, 0.5, "x", &err), BATCHDB_ERR_INVALID, &err);

    char *rows_after = snapshot(db);
    CHECK(rows_before != NULL && rows_after != NULL && strcmp(rows_before, rows_after) == 0);
    free(rows_before);
    free(rows_after);
    batchdb_close(db);
    if (!on_pg()) CHECK(same_file(test_db, before, len));
    free(before);
}


/* Push options of API.md section 10: unknown upstreams, malformed keys in `after`, NULL
 * `after` with a length, memo out of range. Clear codes, and the listings unchanged. */
static void test_after_and_memo_bad_input(void) {
    batchdb *db = open_fresh(NULL);
    batchdb_error err;
    char key[65], cached[65];
    int64_t created = 0, out = 0;
    CHECK_OK(batchdb_add(db, (const uint8_t *)"upstream", 8, key, &created, &err), &err);
    char *rows_before = snapshot(db);
    CHECK(rows_before != NULL);

    batchdb_instance up;
    memset(&up, 0, sizeof up);
    batchdb_push_options o;
    memset(&o, 0, sizeof o);
    o.after = &up;
    o.after_len = 1;
    o.cached_out = cached;

    /* Unknown upstreams: a created that is not there, a job that is not there. */
    snprintf(up.key, sizeof up.key, "%s", key);
    up.created = created + 1;
    CHECK_RC(batchdb_push_with(db, key, &o, &out, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK(strstr(err.message, "upstream") != NULL);
    CHECK_RC(batchdb_add_with(db, (const uint8_t *)"new", 3, &o, NULL, &out, &err), BATCHDB_ERR_NOT_FOUND, &err);
    snprintf(up.key, sizeof up.key, "%s", UNKNOWN_KEY);
    up.created = created;
    CHECK_RC(batchdb_push_with(db, key, &o, &out, &err), BATCHDB_ERR_NOT_FOUND, &err);
    batchdb_writer *w = NULL;
    CHECK_OK(batchdb_writer_open(db, &w, &err), &err);
    CHECK_OK(batchdb_writer_write(w, (const uint8_t *)"streamed", 8, &err), &err);
    CHECK_RC(batchdb_writer_add_with(w, &o, NULL, &out, &err), BATCHDB_ERR_NOT_FOUND, &err); /* frees w */

    /* Malformed keys: too short, not hex, not NUL-terminated within the field. */
    snprintf(up.key, sizeof up.key, "abc");
    cached[0] = 'x';
    CHECK_RC(batchdb_push_with(db, key, &o, &out, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "after[0].key") != NULL);
    CHECK(cached[0] == '\0');
    memset(up.key, 'z', 64);
    up.key[64] = '\0';
    CHECK_RC(batchdb_add_with(db, (const uint8_t *)"new", 3, &o, NULL, &out, &err), BATCHDB_ERR_INVALID, &err);
    memset(up.key, 'a', sizeof up.key);
    CHECK_RC(batchdb_push_with(db, key, &o, &out, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "NUL") != NULL);
    /* The second of two upstreams is malformed: nothing is queued for the first either. */
    batchdb_instance two[2];
    memset(two, 0, sizeof two);
    snprintf(two[0].key, sizeof two[0].key, "%s", key);
    two[0].created = created;
    snprintf(two[1].key, sizeof two[1].key, "%s", "not hex");
    o.after = two;
    o.after_len = 2;
    CHECK_RC(batchdb_push_with(db, key, &o, &out, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "after[1].key") != NULL);

    /* The same upstream twice. */
    snprintf(two[1].key, sizeof two[1].key, "%s", key);
    two[1].created = created;
    CHECK_RC(batchdb_push_with(db, key, &o, &out, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(strstr(err.message, "twice") != NULL);

    /* NULL after with a length. */
    o.after = NULL;
    o.after_len = 3;
    CHECK_RC(batchdb_push_with(db, key, &o, &out, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_add_with(db, (const uint8_t *)"new", 3, &o, NULL, &out, &err), BATCHDB_ERR_INVALID, &err);
    /* memo out of range; memo and after in a schedule. */
    o.after_len = 0;
    o.memo = -1;
    CHECK_RC(batchdb_push_with(db, key, &o, &out, &err), BATCHDB_ERR_INVALID, &err);
    o.memo = 1;
    CHECK_RC(batchdb_schedule(db, "s", "every 1h", (const uint8_t *)"x", 1, &o, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
    o.memo = 0;
    snprintf(up.key, sizeof up.key, "%s", key);
    up.created = created;
    o.after = &up;
    o.after_len = 1;
    CHECK_RC(batchdb_schedule(db, "s", "every 1h", (const uint8_t *)"x", 1, &o, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);

    /* batchdb_job_after on nothing, batchdb_why with bad arguments. */
    CHECK(batchdb_job_after_count(NULL) == 0);
    CHECK_RC(batchdb_job_after(NULL, 0, NULL, NULL, NULL, &err), BATCHDB_ERR_INVALID, &err);
    batchdb_cursor *c = NULL;
    CHECK_RC(batchdb_why(db, "xyz", &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_why(db, UNKNOWN_KEY, &c, &err), BATCHDB_ERR_NOT_FOUND, &err);
    CHECK(c == NULL);

    char *rows_after = snapshot(db);
    CHECK(rows_before != NULL && rows_after != NULL && strcmp(rows_before, rows_after) == 0);
    free(rows_before);
    free(rows_after);
    batchdb_close(db);
}

int main(void) {
    RUN(test_malformed_and_unknown_hashes);
    RUN(test_empty_payload);
    RUN(test_empty_file_is_a_new_database);
    RUN(test_locations_that_cannot_be_opened);
    RUN(test_queue_schedule_progress_bad_input);
    RUN(test_after_and_memo_bad_input);
    return tests_failed == 0 ? 0 : 1;
}
