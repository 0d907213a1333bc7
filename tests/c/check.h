/* A tiny test harness for the batchdb C tests: CHECK macros, one temp database per test,
 * and PASS/FAIL lines that tests/c/run.sh counts. */
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

/* A fresh directory per test, removed afterwards. */
static char test_dir[64];
static char test_db[128];

static const char *fresh_path(const char *name) {
    strcpy(test_dir, "/tmp/batchdb-ctest-XXXXXX");
    if (mkdtemp(test_dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(test_db, sizeof test_db, "%s/%s", test_dir, name);
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
        test();                                                                           \
        remove_dir();                                                                     \
        if (check_failures == before_) {                                                  \
            printf("PASS %s\n", #test);                                                   \
        } else {                                                                          \
            printf("FAIL %s\n", #test);                                                   \
            tests_failed++;                                                               \
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
