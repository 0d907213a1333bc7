/* The original batchdb's example flow in C, on ./batchdb.db: add the same shell job twice,
 * list what is pending, run the queue on 2 workers with `bash` as the runner (the payload is
 * the script on stdin, stdout is the result), then list the results and print each output.
 *
 * Build and run (see Makefile):   make -C examples/c run
 * Or, after scripts/install.sh PREFIX:
 *   cc -std=c11 seed.c -o seed $(pkg-config --cflags --libs batchdb) && ./seed
 */
#define _GNU_SOURCE /* pipe2: no other worker's child may inherit these pipes */
#include <batchdb.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_event(void *userdata, const batchdb_event *ev) {
    (void)userdata;
    switch (ev->kind) {
    case BATCHDB_EVENT_CREATE: printf("created %s\n", ev->job); break;
    case BATCHDB_EVENT_PUSH: printf("pushed %s %lld\n", ev->job, (long long)ev->created); break;
    case BATCHDB_EVENT_RESULT: printf("RESULT %s %s\n", ev->job, ev->hash); break;
    case BATCHDB_EVENT_FAIL: printf("FAIL %s %s\n", ev->job, ev->message); break;
    default: break;
    }
    fflush(stdout);
}

/* Runs the payload with bash. The payload is written before the output is read, which is
 * fine for short scripts; a runner for large payloads would feed and drain concurrently. */
static int32_t run_bash(void *userdata, batchdb_job *job, batchdb_error *fail_out) {
    (void)userdata;
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        snprintf(fail_out->message, sizeof fail_out->message, "pipe failed");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(fail_out->message, sizeof fail_out->message, "fork failed");
        return 1;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execlp("bash", "bash", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);

    uint8_t buf[4096];
    size_t n = 0;
    batchdb_error err;
    int32_t rc = 0;
    do {
        if (batchdb_job_read(job, buf, sizeof buf, &n, &err) != BATCHDB_OK) {
            snprintf(fail_out->message, sizeof fail_out->message, "reading the payload: %.400s", err.message);
            rc = 1;
            break;
        }
        if (n > 0 && write(in[1], buf, n) != (ssize_t)n) break;
    } while (n > 0);
    close(in[1]);

    ssize_t got;
    while ((got = read(out[0], buf, sizeof buf)) > 0) {
        if (rc == 0 && batchdb_job_write(job, buf, (size_t)got, &err) != BATCHDB_OK) {
            snprintf(fail_out->message, sizeof fail_out->message, "writing the output: %.400s", err.message);
            rc = 1;
        }
    }
    close(out[0]);

    int status = 0;
    waitpid(pid, &status, 0);
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        snprintf(fail_out->message, sizeof fail_out->message, "bash exited with status %d",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        rc = 1;
    }
    return rc;
}

static int print_output(void *userdata, const uint8_t *data, size_t len) {
    (void)userdata;
    return fwrite(data, 1, len, stdout) == len ? 0 : 1;
}

int main(void) {
    batchdb *db = NULL;
    batchdb_error err;
    if (batchdb_open("batchdb.db", NULL, &db, &err) != BATCHDB_OK) {
        fprintf(stderr, "open: %s\n", err.message);
        return 1;
    }
    printf("batchdb %s\n", batchdb_version());
    if (batchdb_subscribe(db, on_event, NULL, &err) != BATCHDB_OK) goto fail;

    const char *script = "sleep 1; date";
    for (int i = 0; i < 2; i++)
        if (batchdb_add(db, (const uint8_t *)script, strlen(script), NULL, NULL, &err) != BATCHDB_OK) goto fail;

    batchdb_cursor *c = NULL;
    batchdb_row row;
    int32_t rc;
    if (batchdb_list(db, BATCHDB_LIST_PENDING, &c, &err) != BATCHDB_OK) goto fail;
    while ((rc = batchdb_cursor_next(c, &row, &err)) == BATCHDB_OK) printf("%s\n", row.json);
    batchdb_cursor_free(c);
    if (rc != BATCHDB_DONE) goto fail;

    batchdb_run_options opts = {2, 1};
    if (batchdb_run(db, &opts, run_bash, NULL, &err) != BATCHDB_OK) goto fail;

    if (batchdb_list(db, BATCHDB_LIST_RESULT, &c, &err) != BATCHDB_OK) goto fail;
    while ((rc = batchdb_cursor_next(c, &row, &err)) == BATCHDB_OK) {
        printf("%s\n", row.json);
        if (batchdb_get(db, row.hash, print_output, NULL, &err) != BATCHDB_OK) break;
    }
    batchdb_cursor_free(c);
    if (rc != BATCHDB_DONE && rc != BATCHDB_OK) goto fail;
    batchdb_close(db);
    return 0;

fail:
    fprintf(stderr, "batchdb: %s\n", err.message);
    batchdb_close(db);
    return 1;
}
