/* Bad input through the C ABI (the reliability suite, R4): malformed and unknown hashes,
 * kinds out of range, files that are not batchdb databases, paths that cannot be opened.
 * Each case is a clear status code with a message, and the file's bytes are unchanged. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

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
    batchdb_close(db);
    size_t len = 0;
    unsigned char *before = slurp(test_db, &len);
    CHECK(before != NULL);
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
    CHECK_RC(batchdb_list(db, 4, &cur, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_list(db, -1, &cur, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(cur == NULL);
    CHECK_RC(batchdb_push(db, NULL, &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK_RC(batchdb_add(db, NULL, 5, key, &c, &err), BATCHDB_ERR_INVALID, &err);
    CHECK(count_rows(db, BATCHDB_LIST_JOB) == 1);
    CHECK(count_rows(db, BATCHDB_LIST_PENDING) == 1);
    batchdb_close(db);
    CHECK(same_file(test_db, before, len));
    free(before);
}

static void test_empty_payload_and_empty_file(void) {
    const char *path = fresh_path("empty.db");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    fclose(f);
    batchdb *db = NULL;
    batchdb_error err;
    /* An empty file is a new database, as in SQLite. */
    CHECK_OK(batchdb_open(path, NULL, &db, &err), &err);
    char key[65];
    int64_t created = 0;
    /* The empty payload is valid; a NULL pointer with length 0 is the empty payload too. */
    CHECK_OK(batchdb_add(db, (const uint8_t *)"", 0, key, &created, &err), &err);
    CHECK(strcmp(key, EMPTY_KEY) == 0);
    CHECK_OK(batchdb_get(db, EMPTY_KEY, ignore_chunk, NULL, &err), &err);
    batchdb_close(db);
}

static void test_files_that_cannot_be_opened(void) {
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

int main(void) {
    RUN(test_malformed_and_unknown_hashes);
    RUN(test_empty_payload_and_empty_file);
    RUN(test_files_that_cannot_be_opened);
    return tests_failed == 0 ? 0 : 1;
}
