/* A tiny test harness for the batchdb C tests: CHECK macros, one fresh database per test,
 * and PASS/FAIL/SKIP lines that tests/c/run.sh counts.
 *
 * The database is a file in a temporary folder, or, when BATCHDB_TEST_PG holds a PostgreSQL
 * URL (and the library was built with --features postgres), a fresh schema on that server:
 * the same test body runs on both backends. Schemas are not dropped (no SQL client here);
 * tests/pg/run.sh throws its whole cluster away. */
#ifndef BATCHDB_TEST_CHECK_H
#define BATCHDB_TEST_CHECK_H

#include "batchdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_failures;

static const char *message_of(const batchdb_error *err) { return err != NULL ? err->message : ""; }

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
            check_failures++;                                                             \
        }                                                                                 \
    } while (0)

/* Checks a status code; on a mismatch prints the error object's message. */
#define CHECK_RC(expr, want, errp)                                                        \
    do {                                                                                  \
        int32_t rc_ = (expr);                                                             \
        if (rc_ != (want)) {                                                              \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s)\n", __FILE__,       \
                    __LINE__, #expr, (int)rc_, (int)(want),                               \
                    rc_ < 0 ? message_of(errp) : "");                                    \
            check_failures++;                                                             \
        }                                                                                 \
    } while (0)

#define CHECK_OK(expr, errp) CHECK_RC(expr, BATCHDB_OK, errp)

/* The PostgreSQL server the tests run against, or NULL for files. */
static inline const char *pg_url(void) {
    const char *url = getenv("BATCHDB_TEST_PG");
    return url != NULL && url[0] != '\0' ? url : NULL;
}

static inline int on_pg(void) { return pg_url() != NULL; }

static const char *current_test = "main";
static const char *skip_reason;

/* Ends the current test as skipped; only for what cannot apply to this backend. */
static inline void skip_test(const char *why) { skip_reason = why; }

/* A fresh directory per test, removed afterwards; on PostgreSQL, test_db is a URL instead. */
static char test_dir[64];
static char test_db[1024];

/* A schema name batchdb accepts (lowercase, digits, _, at most 48 characters), unique per
 * call: c_<test>_<pid>_<n>. */
static inline void fresh_schema(char out[49]) {
    static int made;
    char suffix[32];
    snprintf(suffix, sizeof suffix, "_%ld_%d", (long)getpid(), made++);
    const char *name = current_test;
    if (strncmp(name, "test_", 5) == 0) name += 5;
    size_t room = 48 - 2 - strlen(suffix), n = 0;
    out[0] = 'c';
    out[1] = '_';
    for (; name[n] != '\0' && n < room; n++) {
        char ch = name[n];
        out[2 + n] = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ? ch : '_';
    }
    snprintf(out + 2 + n, 49 - 2 - n, "%s", suffix);
}

static const char *fresh_path(const char *name) {
    strcpy(test_dir, "/tmp/batchdb-ctest-XXXXXX");
    if (mkdtemp(test_dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    const char *url = pg_url();
    if (url == NULL) {
        snprintf(test_db, sizeof test_db, "%s/%s", test_dir, name);
    } else {
        char schema[49];
        fresh_schema(schema);
        int n = snprintf(test_db, sizeof test_db, "%s%cschema=%s", url, strchr(url, '?') ? '&' : '?', schema);
        if (n < 0 || (size_t)n >= sizeof test_db) {
            fprintf(stderr, "BATCHDB_TEST_PG is too long\n");
            exit(2);
        }
    }
    return test_db;
}

static void remove_dir(void) {
    char cmd[128];
    if (test_dir[0] == '\0') return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", test_dir);
    test_dir[0] = '\0';
}

static int tests_failed;

#define RUN(test)                                                                         \
    do {                                                                                  \
        int before_ = check_failures;                                                     \
        current_test = #test;                                                             \
        skip_reason = NULL;                                                               \
        test();                                                                           \
        remove_dir();                                                                     \
        if (check_failures != before_) {                                                  \
            printf("FAIL %s\n", #test);                                                   \
            tests_failed++;                                                               \
        } else if (skip_reason != NULL) {                                                 \
            printf("SKIP %s: %s\n", #test, skip_reason);                                  \
        } else {                                                                          \
            printf("PASS %s\n", #test);                                                   \
        }                                                                                 \
        fflush(stdout);                                                                   \
    } while (0)

/* Opens a fresh database with `opts` (NULL: defaults); aborts the program if it cannot. */
static batchdb *open_fresh(const batchdb_options *opts) {
    batchdb *db = NULL;
    batchdb_error err;
    if (batchdb_open(fresh_path("test.db"), opts, &db, &err) != BATCHDB_OK) {
        fprintf(stderr, "open: %s\n", err.message);
        exit(2);
    }
    return db;
}

/* How many rows a listing of `kind` yields now, or -1 on an error. */
static int count_rows(batchdb *db, int32_t kind) {
    batchdb_cursor *c = NULL;
    batchdb_row row;
    batchdb_error err;
    int n = 0;
    int32_t rc;
    if (batchdb_list(db, kind, &c, &err) != BATCHDB_OK) return -1;
    while ((rc = batchdb_cursor_next(c, &row, &err)) == BATCHDB_OK) n++;
    batchdb_cursor_free(c);
    return rc == BATCHDB_DONE ? n : -1;
}

#endif
