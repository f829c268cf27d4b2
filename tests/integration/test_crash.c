/*
 * test_crash.c: kill -9 an appending process at random instants and at named
 * crash points, then check that the log it leaves reopens consistent and holds
 * every append the process reported.
 *
 *   usage: test_crash APPENDER [--random] [--points]   (default: both)
 *
 * APPENDER is crash_appender (see its header comment for the line format).
 * Env: EVB_TEST_SCALE (default 1): random rounds = 100 * scale, crash-point
 * rounds = 3 * scale per point. EVB_TEST_TMP: where logs go (else /tmp).
 * EVB_TEST_SEED: reproduce a run (the seed is printed first).
 *
 * Random rounds: start the appender (--intent) on a log, read a random number
 * (1..200) of report lines from its stdout pipe (poll() with a deadline, no
 * sleeps), SIGKILL it at that instant, drain what it wrote before it died,
 * then open the log here and check:
 *  - evb_store_verify is clean (also after indexing everything, when the log
 *    was opened with EVB_INDEX_MANUAL);
 *  - every reported append is there: evb_store_find_id gives exactly its
 *    seq, and reading that seq gives the same stream, version and id;
 *  - the one batch announced but not reported (in flight at the kill) is
 *    wholly present or wholly absent, and the head is exactly the last
 *    batch present: nothing more, nothing less;
 *  - the next process's first append lands at the head we saw + 1;
 *  - in txn mode: each reported transaction's key is there, and the
 *    checkpoint and the in-flight transaction's key agree with its events.
 * Ten rounds share one log (reopen after crash, continue), then a new log.
 *
 * The id database (format 6) takes epochs of 4,096 events here
 * (EVB_TEST_ID_EPOCH_BITS, read by test builds), so that logs seal many.
 *
 * Crash-point rounds: the store SIGKILLs itself the n-th time it reaches
 * EVB_CRASH_POINT (n = EVB_CRASH_AFTER, random in 1..50). The appender must
 * die by SIGKILL on its own (this shows the point was reached), then the same
 * checks run on a fresh log per round.
 *
 * Output ends with "crash: R rounds, A appends checked, P problems" and
 * "N passed, F failed"; exit status 0 only when nothing failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <evbus/evbus_store.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_BATCH 50
#define S_DEADLINE_MS 120000 /* one round must finish within this */
#define S_SERIES 10          /* random rounds per log */

typedef struct {
    char stream[EVB_MAX_STREAM_LEN + 1];
    uint64_t first, last, version, ckpt;
    size_t n;
    evb_id ids[S_MAX_BATCH];
} s_batch;

/* What a child wrote: its reports, and the batch it announced last without
 * reporting it (the one that may have been in flight). */
typedef struct {
    s_batch *rep;
    size_t nrep, cap;
    s_batch pending;
    bool has_pending;
    char buf[1 << 16];
    size_t buflen;
} s_out;

/* Per-log state carried from one round to the next. */
typedef struct {
    char dir[4096];
    uint64_t head; /* head seen at the last check */
    uint64_t ckpt; /* checkpoint seen at the last check */
    bool fresh;
} s_log;

static uint64_t s_rng;
static unsigned long s_round_problems, s_total_problems, s_appends_checked;
static unsigned long s_inflight_present, s_inflight_absent; /* batches cut by the kill */
static const char *s_round_name = "";

static uint64_t s_rand(void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ull;
}

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_problem(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (s_round_problems < 20) {
        printf("  PROBLEM [%s]: ", s_round_name);
        vprintf(fmt, ap);
        printf("\n");
    }
    va_end(ap);
    s_round_problems++;
}

/* ---- parsing the child's lines ---- */

static bool s_parse_ids(char **save, s_batch *b, size_t n)
{
    if (n == 0 || n > S_MAX_BATCH) return false;
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        char *tok = strtok_r(NULL, " ", save);
        if (tok == NULL || evb_id_from_hex(tok, &b->ids[i], NULL) != EVB_OK) return false;
    }
    return strtok_r(NULL, " ", save) == NULL;
}

static uint64_t s_u64(const char *s, bool *ok)
{
    char *end;
    if (s == NULL) {
        *ok = false;
        return 0;
    }
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s) *ok = false;
    return v;
}

static void s_line(s_out *o, char *line)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", line);
    char *save = NULL, *tok = strtok_r(line, " ", &save);
    bool ok = tok != NULL;
    s_batch b;
    memset(&b, 0, sizeof b);
    if (ok && strcmp(tok, "I") == 0) { /* I <stream> <n> <ckpt> <ids> */
        tok = strtok_r(NULL, " ", &save);
        if (tok == NULL || strlen(tok) > EVB_MAX_STREAM_LEN)
            ok = false;
        else
            strcpy(b.stream, tok);
        size_t n = (size_t)s_u64(strtok_r(NULL, " ", &save), &ok);
        b.ckpt = s_u64(strtok_r(NULL, " ", &save), &ok);
        if (ok) ok = s_parse_ids(&save, &b, n);
        if (!ok) {
            s_problem("unparsable intent line: %s", copy);
            return;
        }
        if (o->has_pending) s_problem("two intents without a report: %s", copy);
        o->pending = b;
        o->has_pending = true;
        return;
    }
    /* <first> <last> <stream> <first_version> <ids> */
    b.first = s_u64(tok, &ok);
    b.last = s_u64(strtok_r(NULL, " ", &save), &ok);
    tok = strtok_r(NULL, " ", &save);
    if (tok == NULL || strlen(tok) > EVB_MAX_STREAM_LEN)
        ok = false;
    else
        strcpy(b.stream, tok);
    b.version = s_u64(strtok_r(NULL, " ", &save), &ok);
    if (ok && b.last >= b.first)
        ok = s_parse_ids(&save, &b, (size_t)(b.last - b.first + 1));
    else
        ok = false;
    if (!ok) {
        s_problem("unparsable report line: %s", copy);
        return;
    }
    if (!o->has_pending || strcmp(o->pending.stream, b.stream) != 0 ||
        o->pending.n != b.n || memcmp(o->pending.ids, b.ids, b.n * sizeof(evb_id)) != 0) {
        s_problem("report does not match the announced batch: %s", copy);
    }
    b.ckpt = o->pending.ckpt;
    o->has_pending = false;
    if (o->nrep == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 256;
        o->rep = realloc(o->rep, o->cap * sizeof *o->rep);
        if (o->rep == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    o->rep[o->nrep++] = b;
}

/* Split complete lines out of the buffer; a partial last line waits. */
static void s_take_lines(s_out *o)
{
    size_t start = 0;
    for (size_t i = 0; i < o->buflen; i++) {
        if (o->buf[i] != '\n') continue;
        o->buf[i] = '\0';
        if (i > start) s_line(o, o->buf + start);
        start = i + 1;
    }
    memmove(o->buf, o->buf + start, o->buflen - start);
    o->buflen -= start;
}

/* ---- running the child ---- */

typedef struct {
    const char *appender;
    const char *sync; /* every|group|none */
    bool txn;
    const char *point; /* NULL: no crash point */
    unsigned after;
    size_t kill_after; /* reports to await before SIGKILL; 0: await its own death */
} s_run;

/* Start the appender, collect its lines into o, end it as r says.
 * Returns the wait status, or -1 when it could not be run. */
static int s_run_child(const s_run *r, const char *dir, s_out *o)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("pipe2");
        return -1;
    }
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, (s_rand() >> 1) | 1);
    const char *argv[] = {r->appender,
                          "--dir",
                          dir,
                          "--sync",
                          r->sync,
                          "--mode",
                          r->txn ? "txn" : "append",
                          "--seed",
                          seed,
                          "--intent",
                          NULL};
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        if (r->point) {
            char n[16];
            snprintf(n, sizeof n, "%u", r->after);
            setenv("EVB_CRASH_POINT", r->point, 1);
            setenv("EVB_CRASH_AFTER", n, 1);
        } else {
            unsetenv("EVB_CRASH_POINT");
            unsetenv("EVB_CRASH_AFTER");
        }
        execv(r->appender, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", r->appender, strerror(errno));
        _exit(127);
    }
    close(fds[1]);

    int64_t deadline = s_now_ms() + S_DEADLINE_MS;
    bool killed = false, eof = false, timed_out = false;
    while (!eof) {
        if (!killed && r->kill_after > 0 && o->nrep >= r->kill_after) {
            kill(pid, SIGKILL); /* at this instant; what it wrote before still counts */
            killed = true;
        }
        int64_t left = deadline - s_now_ms();
        if (left <= 0 && timed_out) {
            s_problem("output still open 10 s after SIGKILL");
            break;
        }
        if (left <= 0) {
            timed_out = true;
            s_problem("deadline: %zu reports after %d s, child still running%s", o->nrep,
                      S_DEADLINE_MS / 1000,
                      r->point ? " (crash point never reached?)" : "");
            kill(pid, SIGKILL);
            killed = true;
            deadline = s_now_ms() + 10000; /* drain */
            continue;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0) {
            perror("poll");
            break;
        }
        if (pr == 0) continue;
        if (o->buflen == sizeof o->buf) {
            s_problem("line longer than %zu bytes", sizeof o->buf);
            o->buflen = 0;
        }
        ssize_t n = read(fds[0], o->buf + o->buflen, sizeof o->buf - o->buflen);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            eof = true;
            break;
        }
        o->buflen += (size_t)n;
        s_take_lines(o);
    }
    close(fds[0]);
    if (o->buflen > 0) s_problem("partial last line (%zu bytes)", o->buflen);
    if (!killed && r->kill_after > 0) {
        s_problem("child closed its output after %zu reports, before %zu", o->nrep,
                  r->kill_after);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

/* ---- checking the log ---- */

static void s_verify_problem(const char *problem, void *ctx)
{
    (void)ctx;
    s_problem("verify: %s", problem);
}

static void s_verify(evb_store_t *st, const char *when)
{
    evb_err err = {0};
    uint64_t problems = 0;
    int rc = evb_store_verify(st, s_verify_problem, NULL, NULL, &problems, &err);
    if (rc != EVB_OK)
        s_problem("verify %s: %s, %" PRIu64 " problems: %s", when, evb_strerror(rc),
                  problems, err.msg);
}

/* The event at seq, or false. */
static bool s_read_seq(evb_store_t *st, uint64_t seq, const s_batch *b, size_t i)
{
    evb_err err = {0};
    evb_iter_t *it = evb_store_read_range(st, seq, seq, NULL, &err);
    if (it == NULL) {
        s_problem("read_range %" PRIu64 ": %s", seq, err.msg);
        return false;
    }
    const evb_event_t *ev;
    bool ok = evb_iter_next(it, &ev, &err);
    if (!ok) {
        s_problem("seq %" PRIu64 " unreadable: %s", seq, err.code ? err.msg : "end");
    } else {
        char hex[EVB_ID_HEX_LEN + 1], want[EVB_ID_HEX_LEN + 1];
        evb_id_to_hex(&ev->id, hex);
        evb_id_to_hex(&b->ids[i], want);
        if (ev->seq != seq || strcmp(ev->stream, b->stream) != 0 ||
            ev->version != b->version + i || strcmp(hex, want) != 0) {
            s_problem("seq %" PRIu64 " holds %s v%" PRIu64 " id %s seq %" PRIu64
                      "; reported %s v%" PRIu64 " id %s",
                      seq, ev->stream, ev->version, hex, ev->seq, b->stream,
                      b->version + i, want);
            ok = false;
        }
    }
    evb_iter_destroy(&it);
    return ok;
}

static bool s_key_present(evb_store_t *st, const s_batch *b, bool *value_ok)
{
    char hex[EVB_ID_HEX_LEN + 1], key[2 + EVB_ID_HEX_LEN + 1], want[256];
    evb_id_to_hex(&b->ids[0], hex);
    snprintf(key, sizeof key, "k/%s", hex);
    snprintf(want, sizeof want, "%s %zu %" PRIu64, b->stream, b->n, b->ckpt);
    evb_buf v = {0};
    evb_err err = {0};
    int rc = evb_store_get(st, key, strlen(key), &v, &err);
    *value_ok = rc == EVB_OK && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0;
    if (rc != EVB_OK && rc != EVB_ENOTFOUND) s_problem("get %s: %s", key, err.msg);
    evb_buf_free(&v);
    return rc == EVB_OK;
}

static void s_check(s_log *lg, const s_out *o, bool txn, evb_index_mode imode)
{
    evb_err err = {0};
    evb_store_opts opts = {0};
    opts.dir = lg->dir;
    opts.sync = EVB_SYNC_NONE;
    opts.index_mode = imode;
    evb_store_t *st = evb_store_open(&opts, &err);
    if (st == NULL) {
        s_problem("reopen %s: %s (%s)", lg->dir, err.msg, evb_strerror(err.code));
        return;
    }
    s_verify(st, "after crash");
    uint64_t head = evb_store_head(st);

    /* Where the appends of this round must start and end. */
    uint64_t expect_head = lg->head, expect_ckpt = lg->ckpt;
    if (o->nrep > 0) {
        if (o->rep[0].first != lg->head + 1)
            s_problem("first append of the round at seq %" PRIu64 ", head was %" PRIu64,
                      o->rep[0].first, lg->head);
        expect_head = o->rep[o->nrep - 1].last;
        if (txn) expect_ckpt = o->rep[o->nrep - 1].ckpt;
    }

    for (size_t r = 0; r < o->nrep; r++) {
        const s_batch *b = &o->rep[r];
        if (r > 0 && b->first != o->rep[r - 1].last + 1)
            s_problem("reported appends not contiguous: %" PRIu64 " after %" PRIu64,
                      b->first, o->rep[r - 1].last);
        for (size_t i = 0; i < b->n; i++) {
            uint64_t seq = 0;
            char hex[EVB_ID_HEX_LEN + 1];
            evb_id_to_hex(&b->ids[i], hex);
            int rc = evb_store_find_id(st, &b->ids[i], &seq, &err);
            if (rc != EVB_OK) {
                s_problem("reported id %s (seq %" PRIu64 ") not found: %s", hex,
                          b->first + i, err.msg);
                continue;
            }
            if (seq < b->first || seq > b->last || seq != b->first + i) {
                s_problem("id %s at seq %" PRIu64 ", reported %" PRIu64, hex, seq,
                          b->first + i);
                continue;
            }
            s_read_seq(st, seq, b, i);
        }
        if (txn) {
            bool vok;
            if (!s_key_present(st, b, &vok) || !vok)
                s_problem("txn key of reported append %" PRIu64 "..%" PRIu64
                          " missing or wrong",
                          b->first, b->last);
        }
        s_appends_checked++;
    }

    /* The batch in flight at the kill: all or nothing. */
    if (o->has_pending) {
        const s_batch *p = &o->pending;
        size_t found = 0;
        uint64_t seqs[S_MAX_BATCH];
        for (size_t i = 0; i < p->n; i++) {
            int rc = evb_store_find_id(st, &p->ids[i], &seqs[i], &err);
            if (rc == EVB_OK)
                found++;
            else if (rc != EVB_ENOTFOUND)
                s_problem("find_id: %s", err.msg);
        }
        bool kp = false, vok = false;
        if (txn) kp = s_key_present(st, p, &vok);
        if (found != 0 && found != p->n) {
            s_problem("in-flight batch of %zu events on %s half written: %zu present",
                      p->n, p->stream, found);
        } else if (found == p->n) {
            uint64_t v0 = 0;
            evb_store_stream_version(st, p->stream, &v0, &err);
            for (size_t i = 0; i < p->n; i++) {
                if (seqs[i] != expect_head + 1 + i)
                    s_problem("in-flight event %zu at seq %" PRIu64 ", expected %" PRIu64,
                              i, seqs[i], expect_head + 1 + i);
            }
            s_batch pb = *p;
            pb.first = expect_head + 1;
            pb.last = expect_head + p->n;
            pb.version = v0 >= p->n ? v0 - p->n + 1 : 0;
            for (size_t i = 0; i < p->n; i++)
                s_read_seq(st, pb.first + i, &pb, i);
            expect_head += p->n;
            if (txn) {
                expect_ckpt = p->ckpt;
                if (!kp || !vok) s_problem("in-flight txn: events present, key not");
            }
            s_appends_checked++;
            s_inflight_present++;
        } else {
            s_inflight_absent++;
            if (txn && kp) s_problem("in-flight txn: key present, events not");
        }
    }

    if (head < expect_head)
        s_problem("head %" PRIu64 " < last reported seq %" PRIu64, head, expect_head);
    else if (head != expect_head)
        s_problem("head %" PRIu64 " but the last append present ends at %" PRIu64, head,
                  expect_head);

    uint64_t ck = 0;
    const evb_id src_log = {{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}};
    if (evb_store_checkpoint_get(st, "crash", &src_log, "all", &ck, &err) != EVB_OK)
        s_problem("checkpoint_get: %s", err.msg);
    else if (ck != expect_ckpt)
        s_problem("checkpoint %" PRIu64 ", expected %" PRIu64, ck, expect_ckpt);

    /* Opened without an indexer: index the tail now and verify again. */
    if (imode == EVB_INDEX_MANUAL) {
        if (evb_store_index_wait(st, &err) != EVB_OK)
            s_problem("index_wait: %s", err.msg);
        else
            s_verify(st, "after indexing");
    }
    lg->head = head;
    lg->ckpt = ck;
    evb_store_destroy(&st);
}

/* ---- rounds ---- */

static int s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Remove the current log (if any) and make a new empty directory. */
static void s_new_log(s_log *lg, const char *tmp)
{
    if (lg->dir[0]) nftw(lg->dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    snprintf(lg->dir, sizeof lg->dir, "%s/crash-XXXXXX", tmp);
    if (mkdtemp(lg->dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    lg->head = 0;
    lg->ckpt = 0;
}

static unsigned s_passed, s_failed;

/* One round: run, check, count. Returns true when it passed. */
static bool s_round(const s_run *r, s_log *lg, const char *name, evb_index_mode imode)
{
    s_round_name = name;
    s_round_problems = 0;
    s_out *o = calloc(1, sizeof *o);
    if (o == NULL) exit(1);
    int status = s_run_child(r, lg->dir, o);
    if (status == -1) {
        s_problem("could not run %s", r->appender);
    } else if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        if (WIFEXITED(status))
            s_problem("appender exited with status %d instead of dying by SIGKILL",
                      WEXITSTATUS(status));
        else
            s_problem("appender died by signal %d, not SIGKILL",
                      WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    } else {
        s_check(lg, o, r->txn, imode);
    }
    bool ok = s_round_problems == 0;
    printf("%s %s: %zu appends reported%s, head %" PRIu64 "%s\n", ok ? "ok  " : "FAIL",
           name, o->nrep, o->has_pending ? " + 1 in flight" : "", lg->head,
           ok ? "" : " (log kept)");
    if (ok)
        s_passed++;
    else
        s_failed++;
    s_total_problems += s_round_problems;
    free(o->rep);
    free(o);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s APPENDER [--random] [--points]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN); /* keep the output to the point */
    bool random_rounds = false, point_rounds = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--random") == 0)
            random_rounds = true;
        else if (strcmp(argv[i], "--points") == 0)
            point_rounds = true;
        else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!random_rounds && !point_rounds) random_rounds = point_rounds = true;

    /* The id database's epochs (test builds): 4,096 events, so that the
     * appenders seal many. Not smaller: a lookup of an id the tail set does
     * not hold asks every epoch, and the checks look up every id. */
    setenv("EVB_TEST_ID_EPOCH_BITS", "12", 1);
    const char *sc = getenv("EVB_TEST_SCALE");
    unsigned scale = sc && atoi(sc) > 0 ? (unsigned)atoi(sc) : 1;
    const char *tmp = getenv("EVB_TEST_TMP");
    if (tmp == NULL || *tmp == '\0') tmp = "/tmp";
    const char *seedenv = getenv("EVB_TEST_SEED");
    uint64_t seed = seedenv ? strtoull(seedenv, NULL, 10)
                            : ((uint64_t)time(NULL) << 16) ^ (uint64_t)getpid();
    s_rng = seed ? seed : 1;
    printf("crash test: seed %" PRIu64
           " (EVB_TEST_SEED to repeat), scale %u, logs in %s\n",
           seed, scale, tmp);
    int64_t t0 = s_now_ms();
    unsigned rounds = 0;
    s_log lg = {0};
    char name[128];

    if (random_rounds) {
        static const char *syncs[] = {"every", "group", "none"};
        unsigned n = 100 * scale;
        for (unsigned i = 0; i < n; i++) {
            if (i % S_SERIES == 0 || lg.dir[0] == '\0') s_new_log(&lg, tmp);
            s_run r = {0};
            r.appender = argv[1];
            r.sync = syncs[s_rand() % 3];
            r.txn = s_rand() % 4 == 0;
            r.kill_after = 1 + s_rand() % 200;
            evb_index_mode im = (i % 2) ? EVB_INDEX_THREAD : EVB_INDEX_MANUAL;
            snprintf(name, sizeof name, "random %u/%u sync=%s %s kill after %zu reports",
                     i + 1, n, r.sync, r.txn ? "txn" : "append", r.kill_after);
            rounds++;
            if (!s_round(&r, &lg, name, im)) {
                printf("  log kept in %s\n", lg.dir);
                lg.dir[0] = '\0'; /* keep it; the next round starts a new log */
            }
        }
        if (lg.dir[0]) nftw(lg.dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
        lg.dir[0] = '\0';
        printf("random rounds: %.1f s\n", (double)(s_now_ms() - t0) / 1000.0);
    }

    if (point_rounds) {
        int64_t t1 = s_now_ms();
        static const char *points[] = {"append.before_write", "append.after_write",
                                       "index.before_write",  "index.after_write",
                                       "txn.before_write",    "txn.after_write",
                                       "sync.before",         "sync.after",
                                       "ids.before_seal",     "ids.after_seal"};
        for (size_t p = 0; p < sizeof points / sizeof points[0]; p++) {
            for (unsigned k = 0; k < 3 * scale; k++) {
                s_new_log(&lg, tmp);
                s_run r = {0};
                r.appender = argv[1];
                r.point = points[p];
                /* an indexer step seals every epoch it finishes at once: the
                 * ids.* points come once a step, 16 Ki events apart */
                r.after = 1 + (unsigned)(s_rand() % (strncmp(points[p], "ids.", 4) ? 50 : 3));
                r.sync = strncmp(points[p], "sync.", 5) == 0 ? "group" : "every";
                r.txn = strncmp(points[p], "txn.", 4) == 0;
                evb_index_mode im = (k % 2) ? EVB_INDEX_THREAD : EVB_INDEX_MANUAL;
                snprintf(name, sizeof name, "point %s after %u (sync=%s %s)", points[p],
                         r.after, r.sync, r.txn ? "txn" : "append");
                rounds++;
                if (!s_round(&r, &lg, name, im)) {
                    printf("  log kept in %s\n", lg.dir);
                    lg.dir[0] = '\0';
                }
            }
        }
        if (lg.dir[0]) nftw(lg.dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
        printf("crash-point rounds: %.1f s\n", (double)(s_now_ms() - t1) / 1000.0);
    }

    printf("crash: %u rounds, %lu appends checked, %lu problems, %.1f s"
           " (in flight at the kill: %lu whole, %lu absent)\n",
           rounds, s_appends_checked, s_total_problems,
           (double)(s_now_ms() - t0) / 1000.0, s_inflight_present, s_inflight_absent);
    printf("%u passed, %u failed\n", s_passed, s_failed);
    return s_failed == 0 && s_passed > 0 ? 0 : 1;
}
