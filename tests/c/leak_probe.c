/* Not a test of batchdb: it leaks a cursor on purpose, and run.sh expects valgrind and
 * LeakSanitizer to reject it, proving that leaks of library handles would fail the suite.
 * With BATCHDB_TEST_PG set it leaks a cursor of the PostgreSQL backend instead. */
#define _POSIX_C_SOURCE 200809L
#include "batchdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    char dir[] = "/tmp/batchdb-probe-XXXXXX";
    char path[1100];
    const char *pg = getenv("BATCHDB_TEST_PG");
    if (mkdtemp(dir) == NULL) return 2;
    if (pg != NULL && pg[0] != '\0')
        snprintf(path, sizeof path, "%s%cschema=c_leak_probe_%ld", pg, strchr(pg, '?') ? '&' : '?', (long)getpid());
    else
        snprintf(path, sizeof path, "%s/probe.db", dir);
    batchdb *db = NULL;
    batchdb_cursor *c = NULL;
    batchdb_error err;
    if (batchdb_open(path, NULL, &db, &err) != BATCHDB_OK) return 2;
    if (batchdb_list(db, BATCHDB_LIST_JOB, &c, &err) != BATCHDB_OK) return 2;
    c = NULL; /* the handle is lost */
    batchdb_close(db);
    unlink(path);
    rmdir(dir);
    return c == NULL ? 0 : 3;
}
