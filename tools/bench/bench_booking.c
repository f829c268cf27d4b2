/*
 * bench_booking.c: the `booking` case of `evbus bench`: what a booking costs
 * end to end through the two services of services/, next to the two raw
 * costs it is made of, all measured in one run on one machine.
 *
 * Ours: evbus-reservation and evbus-booking run as child processes (the
 * real binaries, each with its own store under the bench's work directory,
 * ipc endpoints, each following the other's publisher, --sync none like the
 * store cases). 8 client threads, each with its own evb_cmd_client, send
 * `book {show, seats: 1, customer, booking, cmd_id}` one at a time. The
 * clock runs from the moment the threads are let go (all connected and
 * warmed by one `status` call) until the booking log's head reaches 2 N: a
 * BookingRequested and a BookingConfirmed per booking, i.e. every saga
 * finished. The main thread polls `status` every S_POLL_MS for that. Each
 * book call's round trip (retries of a timed-out call included) is a
 * latency sample.
 *
 * Baselines, before ours: (a) raw ZeroMQ: 8 threads, each a DEALER in its
 * own context (as evb_cmd_client), against a ROUTER echo thread over ipc,
 * N round trips of a request the size of an encoded book request; (b) raw
 * LevelDB: 4 N single-event writes (one Put per WriteBatch, 250-byte values
 * of pseudo-random letters, 8-byte big-endian sequential keys, no sync, the
 * store cases' options). A booking is 4 appends across the two logs
 * (BookingRequested, SeatsHeld, BookingConfirmed, SeatsConfirmed), so the
 * append baseline is raw appends/s / 4.
 *
 * Checks after the clock (untimed): the booking head is exactly 2 N, the
 * reservation log gets to its 2 N + shows events, and the shows together
 * hold N reserved seats and none held: every booking was confirmed. Shows
 * get S_PER_SHOW bookings each and exactly that capacity, so none may be
 * refused; the hold timeout is an hour, so none may expire.
 *
 * Memory (issue "Services a year on"): while the clock runs, the RssAnon of
 * both services is sampled once a second against the bookings done (a line
 * on stderr every 10 samples), and the first line's JSON gets the first and
 * last figures and the least-squares slope in MB per 100,000 bookings past
 * the first fifth of the run (warm-up: LevelDB's memtables, the caches
 * filling). A long run is the soak: `evbus bench --case booking --events
 * 50000000` makes 1 M bookings.
 *
 * Children: fork + execve of the service binaries (only async-signal-safe
 * calls in between: the bench has LevelDB and ZeroMQ threads by now), stdout
 * and stderr into a log file each in the case's directory, PR_SET_PDEATHSIG
 * so that they die with the bench. Every path out stops them: SIGTERM (a
 * service finishes its write and exits 0), SIGKILL after S_STOP_MS.
 */
#include "bench_booking.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <leveldb/c.h>
#include <msgpack.h>
#include <zmq.h>

#include <evbus/evbus_bus.h>

extern char **environ;

#define S_CLIENTS 8u
#define S_PER_SHOW 250u /* bookings per show, and its capacity */
#define S_APPENDS_PER_BOOKING 4u
/* soak: and the cancellation's BookingCancelled and SeatsReleased */
#define S_APPENDS_PER_SOAKED 6u
#define S_APPENDS(k) ((k)->soak ? S_APPENDS_PER_SOAKED : S_APPENDS_PER_BOOKING)
#define S_VALUE_LEN 250u /* raw LevelDB value bytes */
#define S_RANDOM_LEN 4096u
#define S_WRITE_BUFFER (32u * 1024u * 1024u) /* the store's default */
#define S_CALL_MS 5000                       /* one call */
#define S_CALL_TRIES 3           /* a timed-out book goes again, same cmd_id */
#define S_START_S 20.0           /* until the services answer and their feeds are live */
#define S_STALL_S 30.0           /* no progress this long: the case fails */
#define S_STOP_MS 5000           /* SIGTERM, then SIGKILL */
#define S_POLL_MS 5              /* head polling while the clock runs */
#define S_HOLD_TIMEOUT "1h" /* no booking may expire during a run */
#define S_MAX_REQ 512u           /* raw request bytes */
#define S_EP_MAX 160u
#define S_RAW_MAX 200000u /* raw round trips at most: a soak's baseline needs no more */
#define S_SOAK_SHOWS 100u     /* soak: the fixed set of shows */
#define S_SOAK_CAPACITY 1000000u /* soak: seats a show (the services' maximum) */
#define S_SOAK_LAG 64u        /* soak: a client cancels its booking of 64 books ago */
#define S_SOAK_WARM_S 60.0    /* soak: the slope leaves out the first minute */

/* ---- small helpers ---- */

static double s_secs(uint64_t from_ns, uint64_t to_ns)
{
    return (double)(to_ns - from_ns) / 1e9;
}

static void s_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    nanosleep(&ts, NULL);
}

/* snprintf into out; -1 when it does not fit. */
static int s_fmt(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_fmt(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int s_pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    size_t kl = strlen(k), vl = strlen(v);
    int rc = msgpack_pack_str(pk, kl);
    rc |= msgpack_pack_str_body(pk, k, kl);
    rc |= msgpack_pack_str(pk, vl);
    rc |= msgpack_pack_str_body(pk, v, vl);
    return rc;
}

static int s_pack_kv_uint(msgpack_packer *pk, const char *k, uint64_t v)
{
    size_t kl = strlen(k);
    int rc = msgpack_pack_str(pk, kl);
    rc |= msgpack_pack_str_body(pk, k, kl);
    rc |= msgpack_pack_uint64(pk, v);
    return rc;
}

/* ---- the case's state ---- */

typedef struct svc {
    const char *name;     /* "reservation", "booking" */
    char bin[PATH_MAX];   /* the daemon */
    char store[PATH_MAX]; /* its log */
    char log[PATH_MAX];   /* its stdout and stderr */
    char cmd[S_EP_MAX], pub[S_EP_MAX], cu[S_EP_MAX];
    pid_t pid;                /* -1 when not running (reaped) */
    bool external;            /* --to: a running service, not ours to start or stop */
    int wstatus;              /* wait status, once reaped by us */
    evb_cmd_client_t *client; /* the main thread's: setup, status, checks */
} svc_t;

typedef struct bk {
    const bench_booking_opts *o;
    cli_t *cli;
    char dir[PATH_MAX]; /* WORK/booking */
    svc_t res, bkg;
    uint64_t n, nshows;
    bool soak;
    /* --to: names carry the run's tag (shows, bookings, customers, cmd ids),
     * so that runs against one deployment don't meet; the heads before the
     * run are where its events start. Both "" and 0 for private services. */
    char tag[16];
    uint64_t res_head0, bkg_head0;
} bk_t;

static bool s_stop(const bk_t *k)
{
    return *k->o->interrupted != 0;
}

/* The last lines of a log file, on one line (" | " between lines). */
static void s_tail(const char *path, char *out, size_t cap)
{
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[400];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t got = pread(fd, buf, sizeof buf - 1, from);
    close(fd);
    if (got <= 0) return;
    buf[got] = '\0';
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
        buf[--got] = '\0';
    char *p = buf;
    if (from > 0) { /* start at a line */
        char *nl = strchr(p, '\n');
        if (nl != NULL) p = nl + 1;
    }
    size_t o = 0;
    for (; *p != '\0' && o + 4 < cap; p++) {
        if (*p == '\n') {
            memcpy(out + o, " | ", 3);
            o += 3;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* ---- locating the daemons ---- */

static int s_find_services(bk_t *k)
{
    char dir[PATH_MAX];
    const char *from;
    if (k->o->services != NULL) {
        from = "--services";
        if (s_fmt(dir, sizeof dir, "%s", k->o->services) != 0) goto too_long;
    } else if (getenv("EVBUS_BUILD") != NULL && getenv("EVBUS_BUILD")[0] != '\0') {
        from = "$EVBUS_BUILD/services";
        if (s_fmt(dir, sizeof dir, "%s/services", getenv("EVBUS_BUILD")) != 0)
            goto too_long;
    } else {
        from = "the evbus program's directory + /../services";
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) {
            cli_error(k->cli, "booking: /proc/self/exe: %s; give --services DIR",
                      n < 0 ? strerror(errno) : "empty");
            return -1;
        }
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) *slash = '\0';
        if (s_fmt(dir, sizeof dir, "%s/../services", self) != 0) goto too_long;
    }
    char real[PATH_MAX];
    if (realpath(dir, real) != NULL) memcpy(dir, real, sizeof dir); /* for messages */
    svc_t *s[2] = {&k->res, &k->bkg};
    for (int i = 0; i < 2; i++) {
        if (s_fmt(s[i]->bin, sizeof s[i]->bin, "%s/evbus-%s", dir, s[i]->name) != 0)
            goto too_long;
        if (access(s[i]->bin, X_OK) != 0) {
            cli_error(k->cli,
                      "booking: %s: %s (directory from %s; build the services, or give "
                      "--services DIR or EVBUS_BUILD)",
                      s[i]->bin, strerror(errno), from);
            return -1;
        }
    }
    return 0;
too_long:
    cli_error(k->cli, "booking: the services' directory (%s) is too long a path", from);
    return -1;
}

/* ---- the daemons ---- */

/* Paths and ipc endpoints of both services under k->dir. */
static int s_layout(bk_t *k)
{
    /* sun_path holds the ipc path, NUL included */
    size_t max_path = sizeof(((struct sockaddr_un *)0)->sun_path) - 1;
    if (strlen(k->dir) + 8 > max_path) {
        cli_error(k->cli,
                  "booking: %s is too long for ipc endpoints (at most %zu bytes with "
                  "\"/res.pub\"); give a shorter --dir",
                  k->dir, max_path);
        return -1;
    }
    svc_t *s[2] = {&k->res, &k->bkg};
    static const char *const tag[2] = {"res", "bk"};
    for (int i = 0; i < 2; i++) {
        if (s_fmt(s[i]->store, sizeof s[i]->store, "%s/%s", k->dir, s[i]->name) != 0 ||
            s_fmt(s[i]->log, sizeof s[i]->log, "%s/%s.log", k->dir, s[i]->name) != 0 ||
            s_fmt(s[i]->cmd, sizeof s[i]->cmd, "ipc://%s/%s.cmd", k->dir, tag[i]) != 0 ||
            s_fmt(s[i]->pub, sizeof s[i]->pub, "ipc://%s/%s.pub", k->dir, tag[i]) != 0 ||
            s_fmt(s[i]->cu, sizeof s[i]->cu, "ipc://%s/%s.cu", k->dir, tag[i]) != 0) {
            cli_error(k->cli, "booking: %s: path too long", k->dir);
            return -1;
        }
    }
    return 0;
}

/* Start s as a child following other's publisher. */
static int s_svc_start(bk_t *k, svc_t *s, const svc_t *other, bool booking)
{
    char follow[2 * S_EP_MAX + 2];
    if (s_fmt(follow, sizeof follow, "%s,%s", other->pub, other->cu) != 0) return -1;
    char *argv[] = {s->bin,
                    (char *)"--store",
                    s->store,
                    (char *)"--pub",
                    s->pub,
                    (char *)"--catchup",
                    s->cu,
                    (char *)"--cmd",
                    s->cmd,
                    (char *)"--follow",
                    follow,
                    (char *)"--sync",
                    (char *)"none",
                    (char *)"--log-level",
                    (char *)"warn",
                    booking ? (char *)"--hold-timeout" : NULL,
                    (char *)S_HOLD_TIMEOUT,
                    NULL};
    int logfd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || nullfd < 0) {
        cli_error(k->cli, "booking: %s: %s", logfd < 0 ? s->log : "/dev/null",
                  strerror(errno));
        if (logfd >= 0) close(logfd);
        if (nullfd >= 0) close(nullfd);
        return -1;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { /* only async-signal-safe calls until execve */
        if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0) _exit(127);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127); /* the bench died before prctl */
        execve(s->bin, argv, environ);
        _exit(127);
    }
    int saved = errno;
    close(logfd);
    close(nullfd);
    if (pid < 0) {
        cli_error(k->cli, "booking: fork for %s: %s", s->bin, strerror(saved));
        return -1;
    }
    s->pid = pid;
    return 0;
}

/* False when s is not running (any more); reaps it. */
static bool s_svc_alive(svc_t *s)
{
    if (s->external) return true; /* a silent one shows as a stall */
    if (s->pid <= 0) return false;
    int st = 0;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == 0) return true;
    if (r == s->pid) s->wstatus = st;
    s->pid = -1;
    return false;
}

/* Say that s ended by itself, how, and the end of its log. */
static void s_svc_report_exit(bk_t *k, const svc_t *s)
{
    char how[64], tail[400];
    if (WIFEXITED(s->wstatus))
        snprintf(how, sizeof how, "exited with code %d", WEXITSTATUS(s->wstatus));
    else if (WIFSIGNALED(s->wstatus))
        snprintf(how, sizeof how, "was killed by signal %d", WTERMSIG(s->wstatus));
    else
        snprintf(how, sizeof how, "ended");
    s_tail(s->log, tail, sizeof tail);
    cli_error(k->cli, "booking: evbus-%s %s (%s: %s)", s->name, how, s->log,
              tail[0] != '\0' ? tail : "empty");
}

/* SIGTERM both, wait up to S_STOP_MS, then SIGKILL; reap; drop clients. */
static void s_svc_stop_all(bk_t *k)
{
    svc_t *s[2] = {&k->res, &k->bkg};
    for (int i = 0; i < 2; i++) {
        evb_cmd_client_destroy(&s[i]->client);
        if (s[i]->pid > 0) kill(s[i]->pid, SIGTERM);
    }
    for (int i = 0; i < 2; i++) {
        if (s[i]->pid <= 0) continue;
        int st = 0;
        pid_t r = 0;
        for (int t = 0; t <= S_STOP_MS / 10; t++) {
            r = waitpid(s[i]->pid, &st, WNOHANG);
            if (r != 0) break;
            s_sleep_ms(10);
        }
        if (r == 0) {
            cli_error(k->cli,
                      "booking: evbus-%s did not stop within %d ms of SIGTERM; "
                      "killed",
                      s[i]->name, S_STOP_MS);
            kill(s[i]->pid, SIGKILL);
            while (waitpid(s[i]->pid, &st, 0) < 0 && errno == EINTR) {
            }
        } else if (r > 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !s_stop(k)) {
            s[i]->wstatus = st;
            cli_error(k->cli,
                      "booking: warning: evbus-%s did not exit cleanly (status "
                      "0x%x; log %s)",
                      s[i]->name, (unsigned)st, s[i]->log);
        }
        s[i]->pid = -1;
    }
}

/* What `status` says. */
typedef struct status {
    uint64_t head;
    unsigned feeds, live; /* consumer feeds and read-model feeds, live ones */
} status_t;

static void s_count_feeds(const msgpack_object *arr, status_t *st)
{
    if (arr->type != MSGPACK_OBJECT_ARRAY) return;
    for (uint32_t i = 0; i < arr->via.array.size; i++) {
        const msgpack_object *f = &arr->via.array.ptr[i];
        if (f->type != MSGPACK_OBJECT_MAP) continue;
        st->feeds++;
        for (uint32_t j = 0; j < f->via.map.size; j++) {
            const msgpack_object_kv *kv = &f->via.map.ptr[j];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 5 &&
                memcmp(kv->key.via.str.ptr, "state", 5) == 0 &&
                kv->val.type == MSGPACK_OBJECT_STR && kv->val.via.str.size == 4 &&
                memcmp(kv->val.via.str.ptr, "live", 4) == 0)
                st->live++;
        }
    }
}

/* Ask s for its status; EVB_OK and *st, or the call's error in err. */
static int s_status(svc_t *s, int timeout_ms, status_t *st, evb_err *err)
{
    memset(st, 0, sizeof *st);
    evb_buf out = {0};
    int rc = evb_cmd_client_call(s->client, "status", NULL, 0, timeout_ms, &out, err);
    if (rc != EVB_OK) {
        evb_buf_free(&out);
        return rc;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    bool head = false;
    if (msgpack_unpack_next(&u, out.data, out.len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) continue;
            const char *key = kv->key.via.str.ptr;
            uint32_t kl = kv->key.via.str.size;
            if (kl == 4 && memcmp(key, "head", 4) == 0 &&
                kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                st->head = kv->val.via.u64;
                head = true;
            } else if ((kl == 5 && memcmp(key, "feeds", 5) == 0) ||
                       (kl == 5 && memcmp(key, "views", 5) == 0)) {
                s_count_feeds(&kv->val, st);
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    evb_buf_free(&out);
    if (!head) return evb_err_set(err, EVB_EDECODE, "%s: status without a head", s->cmd);
    return EVB_OK;
}

/* Wait until s answers `status` and, with live, until every feed of it is
 * live; S_START_S at most. */
static int s_svc_ready(bk_t *k, svc_t *s, bool live)
{
    evb_err err = {0};
    if (s->client == NULL && (s->client = evb_cmd_client_new(
                                  &(evb_cmd_opts){.endpoint = s->cmd}, &err)) == NULL) {
        cli_error(k->cli, "booking: %s: %s", s->cmd, err.msg);
        return -1;
    }
    uint64_t until = bench_now_ns() + (uint64_t)(S_START_S * 1e9);
    status_t st = {0};
    int rc = EVB_ETIMEDOUT;
    for (;;) {
        if (s_stop(k)) return -1;
        if (!s_svc_alive(s)) {
            s_svc_report_exit(k, s);
            return -1;
        }
        evb_err_clear(&err);
        rc = s_status(s, 200, &st, &err);
        if (rc == EVB_OK && (!live || (st.feeds > 0 && st.live == st.feeds))) return 0;
        if (bench_now_ns() > until) break;
        s_sleep_ms(20);
    }
    char tail[400];
    s_tail(s->log, tail, sizeof tail);
    if (s->external && rc != EVB_OK)
        cli_error(k->cli, "booking: --to: evbus-%s does not answer on %s after %.0f s: %s",
                  s->name, s->cmd, S_START_S, err.msg);
    else if (s->external)
        cli_error(k->cli, "booking: --to: evbus-%s on %s: %u of %u feeds live after %.0f s",
                  s->name, s->cmd, st.live, st.feeds, S_START_S);
    else if (rc != EVB_OK)
        cli_error(k->cli,
                  "booking: evbus-%s does not answer on %s after %.0f s: %s (log %s: %s)",
                  s->name, s->cmd, S_START_S, err.msg, s->log, tail);
    else
        cli_error(k->cli,
                  "booking: evbus-%s: %u of %u feeds live after %.0f s (log %s: %s)",
                  s->name, st.live, st.feeds, S_START_S, s->log, tail);
    return -1;
}

/* ---- client threads ---- */

typedef struct run run_t;

typedef struct worker {
    run_t *run;
    pthread_t th;
    bool started;
    uint64_t first, count; /* requests [first, first + count) */
    uint64_t retries;      /* book calls sent again after a timeout */
    uint64_t end_ns;       /* its last reply */
    bool failed;
    char err[400];
} worker_t;

/* One measured run of S_CLIENTS threads: raw round trips or books. */
struct run {
    bk_t *k;
    bool raw;
    const char *ep;
    const uint8_t *req; /* raw: the request body */
    size_t req_len;
    uint64_t *lat; /* ns, one per request */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready; /* workers waiting at the gate */
    bool go;
    uint64_t go_ns; /* when they were let go */
    atomic_uint finished; /* workers done (soak: the clock's end) */
    atomic_uint_fast64_t booked; /* book calls answered */
    double rate;    /* books: bookings/s in all, paced; 0 = as fast as they go */
    atomic_bool abort;
    worker_t w[S_CLIENTS];
    /* raw: the echo thread */
    pthread_t echo;
    bool echo_started, echo_ready, echo_failed;
    atomic_bool echo_stop;
    char echo_err[200];
};

static void s_fail(worker_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void s_fail(worker_t *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    w->failed = true;
    run_t *r = w->run;
    pthread_mutex_lock(&r->mu);
    atomic_store(&r->abort, true);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static bool s_aborted(run_t *r)
{
    return atomic_load(&r->abort) || s_stop(r->k);
}

/* Connected and warmed up: wait for the start. False when the run is off. */
static bool s_gate(run_t *r)
{
    pthread_mutex_lock(&r->mu);
    r->ready++;
    pthread_cond_broadcast(&r->cv);
    while (!r->go && !atomic_load(&r->abort))
        pthread_cond_wait(&r->cv, &r->mu);
    bool go = r->go && !atomic_load(&r->abort);
    pthread_mutex_unlock(&r->mu);
    return go;
}

/* The args of book number j (reused sbuffer). */
static int s_book_args(const bk_t *k, uint64_t j, msgpack_sbuffer *sb)
{
    char show[48], cust[48], id[48];
    snprintf(show, sizeof show, "%ss%" PRIu64, k->tag, j % k->nshows);
    snprintf(cust, sizeof cust, "%sc%" PRIu64, k->tag, j % 1000u);
    snprintf(id, sizeof id, "%sbk%08" PRIu64, k->tag, j);
    sb->size = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 5);
    rc |= s_pack_kv_str(&pk, "show", show);
    rc |= s_pack_kv_uint(&pk, "seats", 1);
    rc |= s_pack_kv_str(&pk, "customer", cust);
    rc |= s_pack_kv_str(&pk, "booking", id);
    rc |= s_pack_kv_str(&pk, "cmd_id", id);
    return rc;
}

/* The args of cancelling book number j (soak). */
static int s_cancel_args(const bk_t *k, uint64_t j, msgpack_sbuffer *sb)
{
    char id[48], cmd[56];
    snprintf(id, sizeof id, "%sbk%08" PRIu64, k->tag, j);
    snprintf(cmd, sizeof cmd, "%s-x", id);
    sb->size = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 2);
    rc |= s_pack_kv_str(&pk, "booking", id);
    rc |= s_pack_kv_str(&pk, "cmd_id", cmd);
    return rc;
}

/* Call command with sb's args; a timed-out call goes again (same cmd_id).
 * EVB_OK, or the error (said in w unless the run is off). */
static int s_worker_call(worker_t *w, evb_cmd_client_t *c, const char *command,
                         const msgpack_sbuffer *sb, evb_buf *out, evb_err *err)
{
    run_t *r = w->run;
    int rc;
    for (int tries = 1;; tries++) {
        evb_err_clear(err);
        rc = evb_cmd_client_call(c, command, sb->data, sb->size, S_CALL_MS, out, err);
        if (rc != EVB_ETIMEDOUT || tries == S_CALL_TRIES || s_aborted(r)) break;
        w->retries++;
    }
    return rc;
}

/* Soak: cancel book number j; false (said why) when that failed. */
static bool s_soak_cancel(worker_t *w, evb_cmd_client_t *c, uint64_t j,
                          msgpack_sbuffer *sb, evb_buf *out, evb_err *err)
{
    run_t *r = w->run;
    if (s_cancel_args(r->k, j, sb) != 0) {
        s_fail(w, "out of memory");
        return false;
    }
    int rc = s_worker_call(w, c, "cancel", sb, out, err);
    if (rc != EVB_OK && !s_aborted(r))
        s_fail(w, "cancel %sbk%08" PRIu64 ": %s (%s)", r->k->tag, j, err->msg,
               evb_strerror(rc));
    return rc == EVB_OK;
}

static void *s_book_worker(void *arg)
{
    worker_t *w = arg;
    run_t *r = w->run;
    evb_err err = {0};
    evb_buf out = {0};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    evb_cmd_client_t *c = evb_cmd_client_new(&(evb_cmd_opts){.endpoint = r->ep}, &err);
    if (c == NULL) {
        s_fail(w, "client of %s: %s", r->ep, err.msg);
        s_gate(r);
        goto out;
    }
    /* connect and warm up outside the clock, as the raw side does */
    if (evb_cmd_client_call(c, "status", NULL, 0, (int)(S_START_S * 1000), &out, &err) !=
        EVB_OK) {
        s_fail(w, "status: %s", err.msg);
        s_gate(r);
        goto out;
    }
    if (!s_gate(r)) goto out;
    for (uint64_t i = 0; i < w->count && !s_aborted(r); i++) {
        uint64_t j = w->first + i;
        if (s_book_args(r->k, j, &sb) != 0) {
            s_fail(w, "out of memory");
            break;
        }
        uint64_t t0 = bench_now_ns();
        if (r->rate > 0) {
            /* paced: booking i of worker w is due at go + (i * clients + w) /
             * rate; its latency counts from then, so a service that falls
             * behind shows in the figures instead of slowing the load. */
            uint64_t due = r->go_ns + (uint64_t)((double)(i * S_CLIENTS +
                                                          (uint64_t)(w - r->w)) *
                                                 1e9 / r->rate);
            for (uint64_t now = bench_now_ns(); now < due && !s_aborted(r);
                 now = bench_now_ns()) { /* in slices: an abort ends the wait */
                uint64_t until = due - now > 100000000u ? now + 100000000u : due;
                struct timespec ts = {(time_t)(until / 1000000000u),
                                      (long)(until % 1000000000u)};
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
            }
            if (s_aborted(r)) break;
            t0 = due;
        }
        int rc = s_worker_call(w, c, "book", &sb, &out, &err);
        if (rc != EVB_OK) {
            if (!s_aborted(r))
                s_fail(w, "book %sbk%08" PRIu64 ": %s (%s)", r->k->tag, j, err.msg,
                       evb_strerror(rc));
            break;
        }
        r->lat[j] = bench_now_ns() - t0;
        atomic_fetch_add(&r->booked, 1);
        if (r->k->soak && i >= S_SOAK_LAG &&
            !s_soak_cancel(w, c, j - S_SOAK_LAG, &sb, &out, &err))
            break;
    }
    /* soak: the last bookings are cancelled too, so every seat ends free */
    for (uint64_t i = w->count > S_SOAK_LAG ? w->count - S_SOAK_LAG : 0;
         r->k->soak && i < w->count && !s_aborted(r); i++)
        if (!s_soak_cancel(w, c, w->first + i, &sb, &out, &err)) break;
out:
    atomic_fetch_add(&r->finished, 1);
    w->end_ns = bench_now_ns();
    evb_cmd_client_destroy(&c);
    evb_buf_free(&out);
    msgpack_sbuffer_destroy(&sb);
    return NULL;
}

/* Raw: a DEALER in a context of its own (as evb_cmd_client), blocking
 * send and receive of r->req. */
static void *s_raw_worker(void *arg)
{
    worker_t *w = arg;
    run_t *r = w->run;
    uint8_t buf[S_MAX_REQ];
    void *zctx = zmq_ctx_new();
    void *d = zctx != NULL ? zmq_socket(zctx, ZMQ_DEALER) : NULL;
    if (d == NULL) {
        s_fail(w, "zmq_socket: %s", zmq_strerror(errno));
        s_gate(r);
        goto out;
    }
    int zero = 0, one = 1, tmo = S_CALL_MS;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(d, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(d, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    zmq_setsockopt(d, ZMQ_SNDTIMEO, &tmo, sizeof tmo);
    if (zmq_connect(d, r->ep) != 0) {
        s_fail(w, "zmq_connect %s: %s", r->ep, zmq_strerror(errno));
        s_gate(r);
        goto out;
    }
    bool warm = true;
    for (uint64_t i = 0; i <= w->count && !s_aborted(r); i++) {
        if (i == 1 && warm) { /* the first round trip connected us */
            warm = false;
            if (!s_gate(r)) break;
        }
        uint64_t t0 = bench_now_ns();
        int n = -1;
        while (zmq_send(d, r->req, r->req_len, 0) < 0) {
            if (errno != EINTR || s_aborted(r)) goto fail;
        }
        while ((n = zmq_recv(d, buf, sizeof buf, 0)) < 0) {
            if (errno != EINTR || s_aborted(r)) goto fail;
        }
        if ((size_t)n != r->req_len) {
            s_fail(w, "raw echo of %d bytes, sent %zu", n, r->req_len);
            break;
        }
        if (i > 0) r->lat[w->first + i - 1] = bench_now_ns() - t0;
        continue;
    fail:
        if (!s_aborted(r)) s_fail(w, "raw round trip: %s", zmq_strerror(errno));
        if (warm) s_gate(r);
        break;
    }
out:
    w->end_ns = bench_now_ns();
    if (d != NULL) zmq_close(d);
    if (zctx != NULL) zmq_ctx_term(zctx);
    return NULL;
}

/* Raw: a ROUTER echoing every [identity, body] back, until echo_stop. */
static void *s_echo_main(void *arg)
{
    run_t *r = arg;
    void *zctx = zmq_ctx_new();
    void *s = zctx != NULL ? zmq_socket(zctx, ZMQ_ROUTER) : NULL;
    int zero = 0;
    bool ok = s != NULL;
    if (ok) {
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
        ok = zmq_bind(s, r->ep) == 0;
    }
    pthread_mutex_lock(&r->mu);
    if (!ok) {
        snprintf(r->echo_err, sizeof r->echo_err, "raw echo on %s: %s", r->ep,
                 zmq_strerror(errno));
        r->echo_failed = true;
    }
    r->echo_ready = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    while (ok && !atomic_load(&r->echo_stop)) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) < 0 && errno != EINTR) break;
        for (;;) {
            zmq_msg_t id, body;
            zmq_msg_init(&id);
            if (zmq_msg_recv(&id, s, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&id);
                break;
            }
            zmq_msg_init(&body);
            bool sent = zmq_msg_more(&id) && zmq_msg_recv(&body, s, 0) >= 0 &&
                        zmq_msg_send(&id, s, ZMQ_SNDMORE) >= 0 &&
                        zmq_msg_send(&body, s, 0) >= 0;
            if (!sent) { /* a send that failed leaves the message with us */
                zmq_msg_close(&id);
                zmq_msg_close(&body);
            }
        }
    }
    if (s != NULL) zmq_close(s);
    if (zctx != NULL) zmq_ctx_term(zctx);
    return NULL;
}

/* Call the run off: workers stop at the gate or before their next request. */
static void s_run_abort(run_t *r)
{
    pthread_mutex_lock(&r->mu);
    atomic_store(&r->abort, true);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Start the workers over [0, n), wait until all are at the gate, let them go
 * (*t0_ns). Returns 0, or -1 (said why, unless a worker failed: joining
 * reports that); the caller joins the workers either way. */
static int s_run_start(bk_t *k, run_t *r, uint64_t n, uint64_t *t0_ns)
{
    for (unsigned i = 0; i < S_CLIENTS; i++) {
        worker_t *w = &r->w[i];
        w->run = r;
        w->first = n * i / S_CLIENTS;
        w->count = n * (i + 1) / S_CLIENTS - w->first;
        if (pthread_create(&w->th, NULL, r->raw ? s_raw_worker : s_book_worker, w) != 0) {
            cli_error(k->cli, "booking: pthread_create failed");
            s_run_abort(r);
            return -1;
        }
        w->started = true;
    }
    uint64_t until = bench_now_ns() + (uint64_t)(S_START_S * 1e9);
    pthread_mutex_lock(&r->mu);
    while (r->ready < S_CLIENTS && !atomic_load(&r->abort) && !s_stop(k) &&
           bench_now_ns() < until) {
        pthread_mutex_unlock(&r->mu);
        s_sleep_ms(2);
        pthread_mutex_lock(&r->mu);
    }
    bool go = r->ready == S_CLIENTS && !atomic_load(&r->abort) && !s_stop(k);
    *t0_ns = bench_now_ns();
    r->go_ns = *t0_ns;
    if (go)
        r->go = true;
    else
        atomic_store(&r->abort, true);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (!go && !s_stop(k) && r->ready < S_CLIENTS && !atomic_load(&r->abort))
        cli_error(k->cli, "booking: clients not connected after %.0f s", S_START_S);
    return go ? 0 : -1;
}

/* Join the workers; the first failure is reported. -1 if any failed. */
static int s_run_join(bk_t *k, run_t *r, uint64_t *end_ns, uint64_t *retries)
{
    int ret = 0;
    *end_ns = 0;
    *retries = 0;
    for (unsigned i = 0; i < S_CLIENTS; i++) {
        worker_t *w = &r->w[i];
        if (!w->started) continue;
        pthread_join(w->th, NULL);
        w->started = false;
        if (w->failed && ret == 0) {
            if (!s_stop(k)) cli_error(k->cli, "booking: client %u: %s", i, w->err);
            ret = -1;
        }
        if (w->end_ns > *end_ns) *end_ns = w->end_ns;
        *retries += w->retries;
    }
    return ret;
}

static int s_run_init(run_t *r, bk_t *k, bool raw, const char *ep, uint64_t n)
{
    memset(r, 0, sizeof *r);
    r->k = k;
    r->raw = raw;
    r->ep = ep;
    atomic_init(&r->abort, false);
    atomic_init(&r->finished, 0);
    atomic_init(&r->booked, 0);
    atomic_init(&r->echo_stop, false);
    r->lat = calloc(n > 0 ? n : 1, sizeof *r->lat);
    if (r->lat == NULL) return -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    return 0;
}

static void s_run_fini(run_t *r)
{
    if (r->echo_started) {
        atomic_store(&r->echo_stop, true);
        pthread_join(r->echo, NULL);
        r->echo_started = false;
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->lat);
    r->lat = NULL;
}

/* ---- baselines ---- */

/* The bytes of one encoded book request as evb_cmd_client sends it:
 * [1, req_id, "book", args], for the last booking and a typical req_id. */
static int s_book_request(const bk_t *k, uint8_t *out, size_t *len)
{
    msgpack_sbuffer args, req;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&req);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    int rc = s_book_args(k, k->n - 1, &args);
    rc |= msgpack_pack_array(&pk, 4);
    rc |= msgpack_pack_uint32(&pk, 1);
    rc |= msgpack_pack_uint64(&pk, k->n / S_CLIENTS + 1);
    rc |= msgpack_pack_str(&pk, 4);
    rc |= msgpack_pack_str_body(&pk, "book", 4);
    if (rc == 0) rc = msgpack_sbuffer_write(&req, args.data, (unsigned)args.size);
    if (rc == 0 && req.size <= S_MAX_REQ) {
        memcpy(out, req.data, req.size);
        *len = req.size;
    } else {
        rc = -1;
    }
    msgpack_sbuffer_destroy(&args);
    msgpack_sbuffer_destroy(&req);
    return rc;
}

typedef struct raw_rt {
    double rate, p50_us, p99_us, max_us;
    size_t req_len;
    uint64_t n; /* round trips made */
} raw_rt_t;

/* (a) raw ZeroMQ DEALER/ROUTER round trips, n of them over S_CLIENTS. */
static int s_raw_roundtrips(bk_t *k, raw_rt_t *out)
{
    uint8_t req[S_MAX_REQ];
    char ep[S_EP_MAX];
    run_t r;
    if (s_book_request(k, req, &out->req_len) != 0 ||
        s_fmt(ep, sizeof ep, "ipc://%s/echo", k->dir) != 0) {
        cli_error(k->cli, "booking: building the raw request failed");
        return -1;
    }
    uint64_t n = k->n < S_RAW_MAX ? k->n : S_RAW_MAX;
    out->n = n;
    if (s_run_init(&r, k, true, ep, n) != 0) {
        cli_error(k->cli, "booking: out of memory");
        return -1;
    }
    r.req = req;
    r.req_len = out->req_len;
    int ret = -1;
    uint64_t t0 = 0, t1 = 0, retries = 0;
    if (pthread_create(&r.echo, NULL, s_echo_main, &r) != 0) {
        cli_error(k->cli, "booking: pthread_create failed");
        goto out;
    }
    r.echo_started = true;
    pthread_mutex_lock(&r.mu);
    while (!r.echo_ready)
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    if (r.echo_failed) {
        cli_error(k->cli, "booking: %s", r.echo_err);
        goto out;
    }
    cli_progress(k->cli, "evbus bench: booking: raw ZeroMQ round trips");
    int started = s_run_start(k, &r, n, &t0);
    int joined = s_run_join(k, &r, &t1, &retries);
    if (started != 0 || joined != 0) goto out;
    qsort(r.lat, n, sizeof *r.lat, bench_cmp_u64);
    out->rate = (double)n / s_secs(t0, t1);
    out->p50_us = bench_pct_us(r.lat, n, 0.50);
    out->p99_us = bench_pct_us(r.lat, n, 0.99);
    out->max_us = bench_pct_us(r.lat, n, 1.0);
    ret = 0;
out:
    s_run_abort(&r);
    s_run_join(k, &r, &t1, &retries);
    s_run_fini(&r);
    return ret;
}

/* (b) raw LevelDB: n single-event writes; *rate = writes/s. */
static int s_raw_appends(bk_t *k, uint64_t n, double *rate)
{
    char dir[PATH_MAX];
    if (s_fmt(dir, sizeof dir, "%s/raw-leveldb", k->dir) != 0) {
        cli_error(k->cli, "booking: %s: path too long", k->dir);
        return -1;
    }
    /* pseudo-random letters: snappy must not shrink the values to nothing */
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char *rnd = malloc(S_RANDOM_LEN + S_VALUE_LEN);
    if (rnd == NULL) {
        cli_error(k->cli, "booking: out of memory");
        return -1;
    }
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < S_RANDOM_LEN + S_VALUE_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        rnd[i] = alnum[x % 36u];
    }
    char *errp = NULL;
    leveldb_options_t *opts = leveldb_options_create();
    leveldb_options_set_create_if_missing(opts, 1);
    leveldb_options_set_write_buffer_size(opts, S_WRITE_BUFFER);
    leveldb_t *db = leveldb_open(opts, dir, &errp);
    if (db == NULL) {
        cli_error(k->cli, "booking: raw LevelDB %s: %s", dir,
                  errp != NULL ? errp : "open failed");
        leveldb_free(errp);
        leveldb_options_destroy(opts);
        free(rnd);
        return -1;
    }
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(wo, 0);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    cli_progress(k->cli, "evbus bench: booking: raw LevelDB appends");
    int ret = 0;
    uint64_t t0 = bench_now_ns();
    for (uint64_t seq = 1; seq <= n; seq++) {
        if ((seq & 1023u) == 0 && s_stop(k)) {
            ret = -1;
            break;
        }
        uint8_t key[8];
        uint64_t v = seq;
        for (int i = 7; i >= 0; i--) {
            key[i] = (uint8_t)v;
            v >>= 8;
        }
        leveldb_writebatch_clear(wb);
        leveldb_writebatch_put(wb, (const char *)key, sizeof key,
                               rnd + (seq * 61u) % S_RANDOM_LEN, S_VALUE_LEN);
        leveldb_write(db, wo, wb, &errp);
        if (errp != NULL) {
            cli_error(k->cli, "booking: raw LevelDB write at key %" PRIu64 " in %s: %s",
                      seq, dir, errp);
            leveldb_free(errp);
            ret = -1;
            break;
        }
    }
    uint64_t t1 = bench_now_ns();
    *rate = (double)n / s_secs(t0, t1);
    leveldb_writebatch_destroy(wb);
    leveldb_writeoptions_destroy(wo);
    leveldb_close(db);
    leveldb_options_destroy(opts);
    free(rnd);
    return ret;
}

/* ---- ours ---- */

/* Create the shows: show i gets the bookings j with j % nshows == i, and
 * exactly that many seats. */
static int s_create_shows(bk_t *k)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    evb_buf out = {0};
    evb_err err = {0};
    int ret = 0;
    for (uint64_t i = 0; i < k->nshows && ret == 0; i++) {
        uint64_t cap = k->soak ? S_SOAK_CAPACITY
                               : k->n / k->nshows + (i < k->n % k->nshows ? 1 : 0);
        char show[48], id[48];
        snprintf(show, sizeof show, "%ss%" PRIu64, k->tag, i);
        snprintf(id, sizeof id, "%scs%" PRIu64, k->tag, i);
        sb.size = 0;
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        int rc = msgpack_pack_map(&pk, 3);
        rc |= s_pack_kv_str(&pk, "show", show);
        rc |= s_pack_kv_uint(&pk, "capacity", cap);
        rc |= s_pack_kv_str(&pk, "cmd_id", id);
        if (rc != 0) {
            cli_error(k->cli, "booking: out of memory");
            ret = -1;
        } else if (evb_cmd_client_call(k->res.client, "create_show", sb.data, sb.size,
                                       S_CALL_MS, &out, &err) != EVB_OK) {
            cli_error(k->cli, "booking: create_show %s: %s (%s)", show, err.msg,
                      evb_strerror(err.code));
            ret = -1;
        }
    }
    msgpack_sbuffer_destroy(&sb);
    evb_buf_free(&out);
    return ret;
}

/* The seats reserved and held in all of this run's shows, summed; false
 * (said why) when a show could not be asked. */
static bool s_seats(bk_t *k, uint64_t *reserved, uint64_t *held)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    evb_buf out = {0};
    evb_err err = {0};
    bool ok = true;
    *reserved = *held = 0;
    for (uint64_t i = 0; i < k->nshows && ok; i++) {
        char show[48];
        snprintf(show, sizeof show, "%ss%" PRIu64, k->tag, i);
        sb.size = 0;
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        uint64_t r = 0, h = 0;
        ok = msgpack_pack_map(&pk, 1) == 0 && s_pack_kv_str(&pk, "show", show) == 0 &&
             evb_cmd_client_call(k->res.client, "show", sb.data, sb.size, S_CALL_MS, &out,
                                 &err) == EVB_OK &&
             evb_map_uint(out.data, out.len, "reserved", &r, &err) == EVB_OK &&
             evb_map_uint(out.data, out.len, "held", &h, &err) == EVB_OK;
        if (!ok) cli_error(k->cli, "booking: show %s: %s", show, err.msg);
        *reserved += r;
        *held += h;
    }
    msgpack_sbuffer_destroy(&sb);
    evb_buf_free(&out);
    return ok;
}

/* After the clock: the reservation log gets to nshows + 2 n events, and the
 * shows hold n reserved seats, none held. False (said why) if not. */
static bool s_check_seats(bk_t *k, uint64_t *reserved_out)
{
    uint64_t want = k->res_head0 + k->nshows + 2 * k->n, last = 0;
    uint64_t last_change = bench_now_ns();
    evb_err err = {0};
    status_t st = {0};
    for (;;) {
        if (s_stop(k)) return false;
        evb_err_clear(&err);
        if (s_status(&k->res, 1000, &st, &err) == EVB_OK) {
            if (st.head >= want) break;
            if (st.head != last) {
                last = st.head;
                last_change = bench_now_ns();
            }
        }
        if (!s_svc_alive(&k->res)) {
            s_svc_report_exit(k, &k->res);
            return false;
        }
        if (s_secs(last_change, bench_now_ns()) > S_STALL_S) {
            cli_error(k->cli,
                      "booking: the reservation log stays at %" PRIu64
                      " events, expected %" PRIu64,
                      last, want);
            return false;
        }
        s_sleep_ms(10);
    }
    if (st.head != want)
        cli_error(k->cli,
                  "booking: the reservation log has %" PRIu64
                  " events, expected %" PRIu64,
                  st.head, want);
    uint64_t reserved = 0, held = 0;
    bool ok = st.head == want && s_seats(k, &reserved, &held);
    *reserved_out = reserved;
    if (ok && (reserved != k->n || held != 0)) {
        cli_error(k->cli,
                  "booking: %" PRIu64 " seats reserved and %" PRIu64
                  " held after %" PRIu64 " bookings of 1 seat: not every booking was "
                  "confirmed",
                  reserved, held, k->n);
        ok = false;
    }
    return ok;
}

/* Soak, after the clock: every show's seats free again (each cancellation
 * reached reservation), none held or reserved. False (said why) if they
 * stay taken for S_STALL_S. */
static bool s_check_free(bk_t *k)
{
    uint64_t last = UINT64_MAX, last_change = bench_now_ns(), taken = 0;
    bool ok = false;
    while (!s_stop(k)) {
        uint64_t rs, h;
        if (!s_seats(k, &rs, &h)) break;
        taken = rs + h;
        if (taken == 0) {
            ok = true;
            break;
        }
        if (taken != last) {
            last = taken;
            last_change = bench_now_ns();
        }
        if (s_secs(last_change, bench_now_ns()) > S_STALL_S) {
            cli_error(k->cli,
                      "soak: %" PRIu64 " seats still held or reserved %.0f s after the "
                      "last cancellation was answered: not every booking was cancelled",
                      taken, S_STALL_S);
            break;
        }
        s_sleep_ms(20);
    }
    return ok;
}

/* The services' heap while the clock runs: RssAnon (kB) of both, sampled
 * once a second against the bookings done, and its slope once warm. */
#define S_RSS_MAX 4096
#define S_RSS_WARM 0.2 /* the slope leaves out the first fifth of the bookings */
typedef struct rss_series {
    size_t n;
    double t_s[S_RSS_MAX], done[S_RSS_MAX], kb[2][S_RSS_MAX]; /* [0] reservation */
} rss_series;

/* RssAnon of pid in kB, or -1. */
static double s_rss_anon_kb(pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    double kb = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "RssAnon: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* Least-squares slope of kb[i] over done, in MB per 100,000 bookings, over
 * the samples past the warm-up (the first warm_s seconds, or without them
 * the first fifth of the bookings); 0 with fewer than 3 of them. */
static double s_rss_slope(const rss_series *r, int i, uint64_t n, double warm_s)
{
    double sx = 0, sy = 0, sxx = 0, sxy = 0, m = 0;
    for (size_t j = 0; j < r->n; j++) {
        bool warm = warm_s > 0 ? r->t_s[j] < warm_s : r->done[j] < S_RSS_WARM * (double)n;
        if (warm || r->kb[i][j] < 0) continue;
        double x = r->done[j] / 100000.0, y = r->kb[i][j] / 1024.0;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
        m++;
    }
    double d = m * sxx - sx * sx;
    return m < 3 || d <= 0 ? 0 : (m * sxy - sx * sy) / d;
}

typedef struct ours {
    double rate, books_s, e2e_s, p50_us, p99_us, max_us;
    uint64_t retries, status_polls;
    bool checked; /* head exactly 2 n and every seat reserved */
    rss_series *rss;
} ours_t;

/* The clock: from the go until the booking head reaches 2 n. */
static int s_ours(bk_t *k, ours_t *out)
{
    run_t r;
    if (s_run_init(&r, k, false, k->bkg.cmd, k->n) != 0) {
        cli_error(k->cli, "booking: out of memory");
        return -1;
    }
    r.rate = k->o->rate;
    cli_progress(k->cli, "evbus bench: booking: ours, %" PRIu64 " bookings", k->n);
    int ret = -1;
    uint64_t t0 = 0, t1 = 0, tj = 0, retries = 0, want = k->bkg_head0 + 2 * k->n, head = 0;
    if (s_run_start(k, &r, k->n, &t0) != 0) goto out;
    uint64_t last_change = t0, next_rss = t0;
    evb_err err = {0};
    for (;;) {
        status_t st;
        evb_err_clear(&err);
        int rc = s_status(&k->bkg, 1000, &st, &err);
        uint64_t now = bench_now_ns();
        out->status_polls++;
        rss_series *rs = out->rss;
        if (rs != NULL && now >= next_rss && rs->n < S_RSS_MAX && rc == EVB_OK) {
            next_rss = now + 1000000000ull;
            rs->t_s[rs->n] = s_secs(t0, now);
            rs->done[rs->n] = k->soak ? (double)atomic_load(&r.booked)
                                      : (double)(st.head - k->bkg_head0) / 2;
            rs->kb[0][rs->n] = s_rss_anon_kb(k->res.pid);
            rs->kb[1][rs->n] = s_rss_anon_kb(k->bkg.pid);
            if (rs->n % 10 == 0)
                fprintf(stderr,
                        "evbus bench: booking: %.0f s, %.0f bookings, RssAnon reservation "
                        "%.1f MB, booking %.1f MB\n",
                        rs->t_s[rs->n], rs->done[rs->n], rs->kb[0][rs->n] / 1024,
                        rs->kb[1][rs->n] / 1024);
            rs->n++;
        }
        if (k->soak ? atomic_load(&r.finished) == S_CLIENTS : rc == EVB_OK && st.head >= want) {
            t1 = now;
            head = st.head;
            break;
        }
        if (rc == EVB_OK && st.head != head) {
            head = st.head;
            last_change = now;
        }
        if (s_stop(k) || atomic_load(&r.abort)) goto out; /* join reports */
        if (!s_svc_alive(&k->bkg) || !s_svc_alive(&k->res)) {
            s_svc_report_exit(k, k->bkg.pid <= 0 ? &k->bkg : &k->res);
            goto out;
        }
        if (s_secs(last_change, now) > S_STALL_S) {
            cli_error(k->cli,
                      "booking: the booking log stays at %" PRIu64
                      " events, expected %" PRIu64 " (last status: %s)",
                      head, want, rc == EVB_OK ? "ok" : err.msg);
            goto out;
        }
        s_sleep_ms(S_POLL_MS);
    }
    if (s_run_join(k, &r, &tj, &retries) != 0) goto out;
    cli_progress(k->cli, "evbus bench: booking: checking the sagas' outcome");
    uint64_t reserved = 0;
    if (k->soak) {
        /* the clock stops when every seat is free again: each booking and
         * its cancellation went through both services */
        out->checked = s_check_free(k);
        t1 = bench_now_ns();
    }
    out->rate = (double)k->n / s_secs(t0, t1);
    out->e2e_s = s_secs(t0, t1);
    out->books_s = s_secs(t0, tj);
    out->retries = retries;
    qsort(r.lat, k->n, sizeof *r.lat, bench_cmp_u64);
    out->p50_us = bench_pct_us(r.lat, k->n, 0.50);
    out->p99_us = bench_pct_us(r.lat, k->n, 0.99);
    out->max_us = bench_pct_us(r.lat, k->n, 1.0);
    if (!k->soak) {
        out->checked = head == want;
        if (!out->checked)
            cli_error(k->cli,
                      "booking: the booking log has %" PRIu64 " events, expected %" PRIu64,
                      head, want);
        if (!s_check_seats(k, &reserved)) out->checked = false;
    }
    ret = s_stop(k) ? -1 : 0;
out:
    s_run_abort(&r);
    s_run_join(k, &r, &tj, &retries);
    s_run_fini(&r);
    return ret;
}

/* Start both services, wait for them, create the shows. */
static int s_services_up(bk_t *k)
{
    if (k->res.external) {
        cli_progress(k->cli, "evbus bench: booking: services at %s (reservation), %s "
                     "(booking), run tag %s", k->res.cmd, k->bkg.cmd, k->tag);
    } else {
        cli_progress(k->cli, "evbus bench: booking: starting the services");
        if (s_svc_start(k, &k->res, &k->bkg, false) != 0 ||
            s_svc_start(k, &k->bkg, &k->res, true) != 0)
            return -1;
    }
    if (s_svc_ready(k, &k->res, false) != 0 || s_svc_ready(k, &k->bkg, false) != 0)
        return -1;
    status_t st;
    evb_err err = {0};
    if (k->res.external) { /* where this run's events start */
        if (s_status(&k->res, S_CALL_MS, &st, &err) != EVB_OK) goto status_failed;
        k->res_head0 = st.head;
    }
    cli_progress(k->cli, "evbus bench: booking: creating %" PRIu64 " shows", k->nshows);
    if (s_create_shows(k) != 0) return -1;
    /* both sides' feeds (and read models) live: the clock measures bookings,
     * not the services finding each other */
    if (s_svc_ready(k, &k->res, true) != 0 || s_svc_ready(k, &k->bkg, true) != 0) return -1;
    if (k->res.external) {
        if (s_status(&k->bkg, S_CALL_MS, &st, &err) != EVB_OK) goto status_failed;
        k->bkg_head0 = st.head;
    }
    return 0;
status_failed:
    cli_error(k->cli, "booking: --to: status: %s", err.msg);
    return -1;
}

/* --to RES_CMD,BK_CMD: the two running services' command endpoints, and a
 * tag for this run's names. */
static int s_external(bk_t *k, const char *to)
{
    const char *comma = strchr(to, ',');
    size_t rl = comma != NULL ? (size_t)(comma - to) : 0;
    if (comma == NULL || rl >= S_EP_MAX || strlen(comma + 1) >= S_EP_MAX) {
        cli_error(k->cli, "--to %s: an endpoint of %u bytes or more", to, S_EP_MAX);
        return -1;
    }
    memcpy(k->res.cmd, to, rl);
    k->res.cmd[rl] = '\0';
    snprintf(k->bkg.cmd, sizeof k->bkg.cmd, "%s", comma + 1);
    k->res.external = k->bkg.external = true;
    snprintf(k->tag, sizeof k->tag, "r%08x-",
             (unsigned)((bench_now_ns() ^ ((uint64_t)getpid() << 20)) & 0xffffffffu));
    return 0;
}

/* ---- the case ---- */

static uint64_t s_count(const bench_booking_opts *o)
{
    if (!o->events_set)
        return o->quick ? BENCH_BOOKING_QUICK
                        : o->soak ? BENCH_SOAK_DEFAULT : BENCH_BOOKING_DEFAULT;
    uint64_t n = o->events / BENCH_BOOKING_PER_EVENTS, max = o->soak ? BENCH_SOAK_MAX
                                                                       : BENCH_BOOKING_MAX;
    if (n < BENCH_BOOKING_MIN) n = BENCH_BOOKING_MIN;
    if (n > max) n = max;
    return n;
}

int bench_booking_run(const bench_booking_opts *o, bench_booking_result *res)
{
    memset(res, 0, sizeof *res);
    bk_t *k = calloc(1, sizeof *k);
    if (k == NULL) {
        cli_error(o->cli, "booking: out of memory");
        return -1;
    }
    k->o = o;
    k->cli = o->cli;
    k->n = s_count(o);
    k->soak = o->soak;
    k->nshows = k->soak ? (k->n < S_SOAK_SHOWS ? k->n : S_SOAK_SHOWS)
                        : (k->n + S_PER_SHOW - 1) / S_PER_SHOW;
    k->res = (svc_t){.name = "reservation", .pid = -1};
    k->bkg = (svc_t){.name = "booking", .pid = -1};
    int ret = -1;
    raw_rt_t rt = {0};
    double appends = 0;
    /* the RssAnon series needs the services' pids: ours only */
    ours_t ours = {.rss = o->to != NULL ? NULL : calloc(1, sizeof(rss_series))};
    if (o->to == NULL && s_find_services(k) != 0) goto out;
    if (s_fmt(k->dir, sizeof k->dir, "%s/booking", o->work) != 0) {
        cli_error(k->cli, "booking: %s: path too long", o->work);
        goto out;
    }
    if (mkdir(k->dir, 0700) != 0) {
        cli_error(k->cli, "booking: %s: %s", k->dir, strerror(errno));
        goto out;
    }
    if (s_layout(k) != 0) goto out;
    if (o->to != NULL && s_external(k, o->to) != 0) goto out;
    uint64_t raw_appends = S_APPENDS(k) * (k->n < S_RAW_MAX ? k->n : S_RAW_MAX);
    if (s_raw_appends(k, raw_appends, &appends) != 0 ||
        s_raw_roundtrips(k, &rt) != 0 || s_services_up(k) != 0 || s_ours(k, &ours) != 0)
        goto out;
    ret = 0;
out:
    s_svc_stop_all(k);
    if (ret != 0) {
        free(ours.rss);
        free(k);
        return -1;
    }
    res->bookings = k->n;
    res->problems = !ours.checked;
    if (o->to != NULL)
        snprintf(res->placement, sizeof res->placement,
                 "bench (%u client threads) against running services (--to); %ld cpus "
                 "here",
                 S_CLIENTS, sysconf(_SC_NPROCESSORS_ONLN));
    else
        snprintf(res->placement, sizeof res->placement,
                 "3 processes: bench (%u client threads), evbus-booking, "
                 "evbus-reservation; ipc, unpinned, %ld cpus",
                 S_CLIENTS, sysconf(_SC_NPROCESSORS_ONLN));
    bench_booking_line *l = res->lines;
    l[0] = (bench_booking_line){.name = k->soak ? "soak_e2e_vs_roundtrip"
                                                : "booking_e2e_vs_roundtrip",
                                .unit = "bookings/s",
                                .ours = ours.rate,
                                .baseline = rt.rate};
    snprintf(l[0].extra, sizeof l[0].extra,
             ",\"clients\":%u,\"shows\":%" PRIu64 ",\"request_bytes\":%zu"
             ",\"raw_roundtrips\":%" PRIu64 ",\"services_sync\":\"%s\",\"e2e_s\":%.3f"
             ",\"books_answered_s\":%.3f,\"retries\":%" PRIu64
             ",\"status_polls\":%" PRIu64 ",\"rate\":%.0f,\"run_tag\":\"%s\"",
             S_CLIENTS, k->nshows, rt.req_len, rt.n, o->to != NULL ? "as run" : "none",
             ours.e2e_s, ours.books_s, ours.retries, ours.status_polls, o->rate, k->tag);
    const rss_series *rs = ours.rss;
    /* soak: past the first minute when the run is long enough for it */
    double warm_s = k->soak && rs != NULL && rs->n > 0 &&
                            rs->t_s[rs->n - 1] >= 2 * S_SOAK_WARM_S
                        ? S_SOAK_WARM_S
                        : 0;
    if (rs != NULL && rs->n > 0) {
        size_t e = strlen(l[0].extra), z = rs->n - 1;
        snprintf(l[0].extra + e, sizeof l[0].extra - e,
                 ",\"rss_anon_mb\":{\"reservation\":[%.1f,%.1f],\"booking\":[%.1f,%.1f]}"
                 ",\"rss_slope_mb_per_100k\":{\"reservation\":%.2f,\"booking\":%.2f}"
                 ",\"rss_samples\":%zu,\"rss_warm_up\":\"%s\"",
                 rs->kb[0][0] / 1024, rs->kb[0][z] / 1024, rs->kb[1][0] / 1024,
                 rs->kb[1][z] / 1024, s_rss_slope(rs, 0, k->n, warm_s),
                 s_rss_slope(rs, 1, k->n, warm_s), rs->n,
                 warm_s > 0 ? "first minute" : "first fifth of the bookings");
    }
    free(ours.rss);
    snprintf(l[0].note, sizeof l[0].note, "%u clients; raw DEALER/ROUTER echo, ipc",
             S_CLIENTS);
    l[1] = (bench_booking_line){.name = k->soak ? "soak_e2e_vs_append" : "booking_e2e_vs_append",
                                .unit = "bookings/s",
                                .ours = ours.rate,
                                .baseline = appends / S_APPENDS(k)};
    snprintf(
        l[1].extra, sizeof l[1].extra,
        ",\"appends_per_booking\":%u,\"raw_appends_per_s\":%.0f,\"raw_appends\":%" PRIu64
        ",\"value_bytes\":%u,\"raw_batch\":1",
        S_APPENDS(k), appends, raw_appends, S_VALUE_LEN);
    snprintf(l[1].note, sizeof l[1].note,
             "raw single appends/s / %u (appends per booking)", S_APPENDS(k));
    static const char *const names[2][2] = {{"booking_p99", "booking_p50"},
                                            {"soak_p99", "soak_p50"}};
    double q_ours[2] = {ours.p99_us, ours.p50_us}, q_raw[2] = {rt.p99_us, rt.p50_us};
    for (int i = 0; i < 2; i++) {
        bench_booking_line *p = &l[2 + i];
        *p = (bench_booking_line){.name = names[k->soak][i],
                                  .unit = "us",
                                  .ours = q_ours[i],
                                  .baseline = q_raw[i],
                                  .lower_better = true};
        snprintf(p->extra, sizeof p->extra,
                 ",\"clients\":%u,\"samples\":%" PRIu64
                 ",\"max_us\":%.1f,\"raw_max_us\":%.1f"
                 ",\"request_bytes\":%zu",
                 S_CLIENTS, k->n, ours.max_us, rt.max_us, rt.req_len);
        snprintf(p->note, sizeof p->note, "book round trip vs raw, %u clients",
                 S_CLIENTS);
    }
    res->nlines = 4;
    free(k);
    return 0;
}
