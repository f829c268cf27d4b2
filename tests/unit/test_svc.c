/*
 * test_svc.c: unit tests of the service runtime (services/runtime/evbus_svc.h),
 * through the public headers only.
 *
 * A service runs evb_svc_run until SIGTERM, so each test forks the service
 * (the child builds it with evb_svc_new on a fresh store under $EVB_TEST_TMP
 * and ipc endpoints, registers a test service's handlers, runs, and exits with
 * evb_svc_run's code) and drives it from the parent with a command client,
 * like a real client would. The fixture kills what a failed assertion left
 * running and removes the directory.
 *
 * The test service: aggregate "tally-X" (a total of the events' "n"), and
 * "big-X" whose snapshot is larger than a store value may be.
 *   add {s, n}             emit Added{n} on tally-S
 *   add_fail {s, n, code}  emit, then return code ("rejected", "invalid", "io")
 *   add_twice {s, n, fail?} emit twice in one transaction, then maybe refuse
 *   raw {s, n}             append to tally-S outside the cache (allowed: the
 *                          runtime retries conflicts for such handlers)
 *   bigadd {s}             emit on big-S (a snapshot every 2 versions)
 *   get {s} (query)        {total, version} of tally-S (or big-S with big)
 *   fsize {bytes} (query)  set this process's RLIMIT_FSIZE (0: unlimited)
 *   sync (query)           evb_store_sync of the service's log
 * The sink service consumes the source's "tally" category into tally-all and
 * refuses the event with n = 13 once, so that its batch is undone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>

#include <evbus/evbus_svc.h>

/* ---------------------------------------------------------- the aggregates */

typedef struct tally {
    uint64_t total;
} tally;

static int tally_apply(void *st, const evb_event_t *ev, evb_err *err)
{
    uint64_t n;
    int rc = evb_map_uint(ev->payload, ev->payload_len, "n", &n, err);
    if (rc == EVB_OK) ((tally *)st)->total += n;
    return rc;
}

static const evb_agg_def s_tally = {
    .category = "tally", .state_size = sizeof(tally), .apply = tally_apply};

/* A snapshot one byte over the store's value limit. */
static int big_save(const void *st, evb_buf *out, evb_err *err)
{
    (void)st;
    if (evb_buf_reserve(out, EVB_MAX_VALUE_BYTES + 1u, err) != EVB_OK) return EVB_ENOMEM;
    memset(out->data, 0xc0, EVB_MAX_VALUE_BYTES + 1u);
    out->len = EVB_MAX_VALUE_BYTES + 1u;
    return EVB_OK;
}

static int big_load(void *st, const void *buf, size_t len, evb_err *err)
{
    (void)st, (void)buf, (void)len, (void)err;
    return EVB_OK;
}

static const evb_agg_def s_big = {.category = "big",
                                  .state_size = sizeof(tally),
                                  .apply = tally_apply,
                                  .save = big_save,
                                  .load = big_load,
                                  .snapshot_every = 2};

/* "heavy-X": a tally that says it owns 300 KiB (the cache's bound counts it). */
static size_t heavy_size(const void *st)
{
    (void)st;
    return 300u << 10;
}

static const evb_agg_def s_heavy = {.category = "heavy",
                                    .state_size = sizeof(tally),
                                    .apply = tally_apply,
                                    .heap_size = heavy_size};

/* ------------------------------------------------------ the service's side */

static int s_pack_n(evb_buf *p, uint64_t n)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, p, evb_svc_pack_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_uint64(&pk, n);
    return p->data ? EVB_OK : EVB_ENOMEM;
}

static void s_reply(evb_buf *reply, uint64_t total, uint64_t version)
{
    msgpack_packer pk;
    reply->len = 0;
    msgpack_packer_init(&pk, reply, evb_svc_pack_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "total", 5);
    msgpack_pack_uint64(&pk, total);
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_uint64(&pk, version);
}

/* Emit Added{n} on stream of def; reply with the state after it. */
static int s_add(evb_svc_ctx *c, const evb_agg_def *def, const char *stream, uint64_t n,
                 evb_buf *reply, evb_err *err)
{
    tally *t;
    uint64_t v;
    int rc = evb_svc_load(c, def, stream, (void **)&t, &v, err);
    if (rc != EVB_OK) return rc;
    evb_buf p = {0};
    if ((rc = s_pack_n(&p, n)) != EVB_OK) return rc;
    evb_event_t ev = {.type = "Added", .payload = p.data, .payload_len = p.len};
    rc = evb_svc_emit(c, def, stream, v, &ev, 1, err);
    evb_buf_free(&p);
    if (rc == EVB_OK && reply) s_reply(reply, t->total, v + 1);
    return rc;
}

static int s_args(const void *a, size_t al, const char *pfx, char *stream, size_t cap,
                  uint64_t *n, evb_err *err)
{
    char s[65];
    if (evb_map_str(a, al, "s", s, sizeof s, NULL) != EVB_OK)
        return evb_err_set(err, EVB_EINVAL, "s: missing");
    snprintf(stream, cap, "%s-%s", pfx, s);
    if (n && evb_map_uint(a, al, "n", n, NULL) != EVB_OK) *n = 1;
    return EVB_OK;
}

static int c_add(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                 evb_err *err)
{
    (void)ctx;
    char stream[80];
    uint64_t n;
    int rc = s_args(a, al, "tally", stream, sizeof stream, &n, err);
    return rc == EVB_OK ? s_add(c, &s_tally, stream, n, reply, err) : rc;
}

static int c_add_fail(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                      evb_err *err)
{
    (void)ctx;
    char stream[80], code[16] = "";
    uint64_t n;
    int rc = s_args(a, al, "tally", stream, sizeof stream, &n, err);
    if (rc == EVB_OK) rc = s_add(c, &s_tally, stream, n, reply, err);
    if (rc != EVB_OK) return rc;
    evb_map_str(a, al, "code", code, sizeof code, NULL);
    if (strcmp(code, "invalid") == 0) return evb_err_set(err, EVB_EINVAL, "emitted, invalid");
    if (strcmp(code, "io") == 0) return evb_err_set(err, EVB_EIO, "emitted, then failed");
    return evb_err_set(err, EVB_EREJECTED, "emitted, then refused");
}

static int c_add_twice(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                       evb_err *err)
{
    (void)ctx;
    char stream[80];
    uint64_t n, fail = 0;
    int rc = s_args(a, al, "tally", stream, sizeof stream, &n, err);
    if (rc == EVB_OK) rc = s_add(c, &s_tally, stream, n, reply, err);
    if (rc == EVB_OK) rc = s_add(c, &s_tally, stream, n, reply, err);
    if (rc != EVB_OK) return rc;
    evb_map_uint(a, al, "fail", &fail, NULL);
    return fail ? evb_err_set(err, EVB_EREJECTED, "emitted twice, then refused") : EVB_OK;
}

static int c_raw(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                 evb_err *err)
{
    (void)ctx, (void)reply;
    char stream[80];
    uint64_t n;
    int rc = s_args(a, al, "tally", stream, sizeof stream, &n, err);
    evb_buf p = {0};
    if (rc == EVB_OK) rc = s_pack_n(&p, n);
    evb_event_t ev = {.type = "Added", .payload = p.data, .payload_len = p.len};
    if (rc == EVB_OK)
        rc = evb_txn_append(evb_svc_txn(c), stream, EVB_EXPECT_ANY, &ev, 1, NULL, err);
    evb_buf_free(&p);
    return rc;
}

static int c_bigadd(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                    evb_err *err)
{
    (void)ctx;
    char stream[80];
    int rc = s_args(a, al, "big", stream, sizeof stream, NULL, err);
    return rc == EVB_OK ? s_add(c, &s_big, stream, 1, reply, err) : rc;
}

static int c_heavyadd(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                      evb_err *err)
{
    (void)ctx;
    char stream[80];
    int rc = s_args(a, al, "heavy", stream, sizeof stream, NULL, err);
    return rc == EVB_OK ? s_add(c, &s_heavy, stream, 1, reply, err) : rc;
}

static int q_get(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                 evb_err *err)
{
    (void)ctx;
    char stream[80];
    uint64_t big = 0;
    evb_map_uint(a, al, "big", &big, NULL);
    const evb_agg_def *def = big ? &s_big : &s_tally;
    int rc = s_args(a, al, def->category, stream, sizeof stream, NULL, err);
    tally *t;
    uint64_t v;
    if (rc == EVB_OK) rc = evb_svc_load(c, def, stream, (void **)&t, &v, err);
    if (rc == EVB_OK) s_reply(reply, t->total, v);
    return rc;
}

static int q_fsize(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                   evb_err *err)
{
    (void)c, (void)reply, (void)ctx;
    uint64_t bytes = 0;
    evb_map_uint(a, al, "bytes", &bytes, NULL);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = bytes ? (rlim_t)bytes : rl.rlim_max;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return evb_err_set(err, EVB_EIO, "setrlimit: %s", strerror(errno));
    return EVB_OK;
}

/* index_wait {} (query): return once the store's indexer has caught up,
 * so a test can order "the indexer wrote" before what it does next. */
static int q_index_wait(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply,
                        void *ctx, evb_err *err)
{
    (void)a, (void)al, (void)reply, (void)ctx;
    return evb_store_index_wait(evb_svc_store(evb_svc_of(c)), err);
}

static int q_sync(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                  evb_err *err)
{
    (void)a, (void)al, (void)reply, (void)ctx;
    return evb_store_sync(evb_svc_store(evb_svc_of(c)), err);
}

static void s_register_src(evb_svc_t *svc)
{
    evb_err err = {0};
    if (evb_svc_command(svc, "add", c_add, NULL, &err) != EVB_OK ||
        evb_svc_command(svc, "add_fail", c_add_fail, NULL, &err) != EVB_OK ||
        evb_svc_command(svc, "add_twice", c_add_twice, NULL, &err) != EVB_OK ||
        evb_svc_command(svc, "raw", c_raw, NULL, &err) != EVB_OK ||
        evb_svc_command(svc, "bigadd", c_bigadd, NULL, &err) != EVB_OK ||
        evb_svc_command(svc, "heavyadd", c_heavyadd, NULL, &err) != EVB_OK ||
        evb_svc_query(svc, "get", q_get, NULL, &err) != EVB_OK ||
        evb_svc_query(svc, "fsize", q_fsize, NULL, &err) != EVB_OK ||
        evb_svc_query(svc, "sync", q_sync, NULL, &err) != EVB_OK ||
        evb_svc_query(svc, "index_wait", q_index_wait, NULL, &err) != EVB_OK) {
        fprintf(stderr, "test_svc: %s\n", err.msg);
        _exit(90);
    }
}

/* The sink: every Added of the source goes into tally-all; the event with
 * n = 13 is refused the first time it is seen. */
static int s_refused_once;

static int e_sink(evb_svc_ctx *c, const evb_event_t *ev, void *ctx, evb_err *err)
{
    (void)ctx;
    uint64_t n;
    int rc = evb_map_uint(ev->payload, ev->payload_len, "n", &n, err);
    if (rc != EVB_OK) return rc;
    if (n == 13 && !s_refused_once) {
        s_refused_once = 1;
        return evb_err_set(err, EVB_EIO, "not now");
    }
    return s_add(c, &s_tally, "tally-all", n, NULL, err);
}

static void s_register_sink(evb_svc_t *svc)
{
    static const char *const cats[] = {"tally"};
    evb_err err = {0};
    if (evb_svc_query(svc, "get", q_get, NULL, &err) != EVB_OK ||
        evb_svc_consume(svc, cats, 1, e_sink, NULL, &err) != EVB_OK) {
        fprintf(stderr, "test_svc: %s\n", err.msg);
        _exit(90);
    }
}

/* ------------------------------------------------------ the parent's side */

typedef struct proc {
    pid_t pid;
    char cmd[PATH_MAX + 32], pub[PATH_MAX + 32], cu[PATH_MAX + 32];
    evb_cmd_client_t *client;
} proc;

typedef struct fx {
    char tmp[PATH_MAX];
    proc p[2];
} fx_t;

static int s_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    const char *base = getenv("EVB_TEST_TMP");
    if (base == NULL || *base == '\0') base = "/tmp";
    mkdir(base, 0755);
    snprintf(fx->tmp, sizeof fx->tmp, "%s/svc-XXXXXX", base);
    assert_non_null(mkdtemp(fx->tmp));
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    for (int i = 0; i < 2; i++) {
        evb_cmd_client_destroy(&fx->p[i].client);
        if (fx->p[i].pid > 0) {
            kill(fx->p[i].pid, SIGKILL);
            waitpid(fx->p[i].pid, NULL, 0);
        }
    }
    nftw(fx->tmp, s_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

enum { RAISE_BEFORE_RUN = 1, SMALL_CACHE = 2 };

/* Fork service `name` (store tmp/NAME, endpoints tmp/NAME.*), following
 * `follow` (a proc or NULL). Returns once it answers status, unless the
 * child is expected to stop by itself (flags). */
static void s_start(fx_t *fx, proc *p, const char *name, void (*reg)(evb_svc_t *),
                    const proc *follow, int flags)
{
    static evb_svc_def def;
    def.name = name;
    def.summary = "test service";
    char store[PATH_MAX + 16], fol[2 * PATH_MAX + 80];
    snprintf(store, sizeof store, "%s/%s", fx->tmp, name);
    snprintf(p->cmd, sizeof p->cmd, "ipc://%s/%s.cmd", fx->tmp, name);
    snprintf(p->pub, sizeof p->pub, "ipc://%s/%s.pub", fx->tmp, name);
    snprintf(p->cu, sizeof p->cu, "ipc://%s/%s.cu", fx->tmp, name);
    assert_true(strlen(p->cmd) < 100); /* an ipc path fits a sockaddr_un */
    char *argv[16] = {"test_svc", "--store", store, "--cmd", p->cmd, "--pub", p->pub,
                      "--catchup", p->cu, "--log-level", "error"};
    int argc = 11;
    if (flags & SMALL_CACHE) {
        argv[argc++] = "--aggregate-cache-mb";
        argv[argc++] = "1";
    }
    if (follow) {
        snprintf(fol, sizeof fol, "%s,%s", follow->pub, follow->cu);
        argv[argc++] = "--follow";
        argv[argc++] = fol;
    }
    fflush(NULL);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        int code;
        evb_svc_t *svc = evb_svc_new(&def, argc, argv, &code);
        if (svc == NULL) _exit(100 + code);
        reg(svc);
        signal(SIGXFSZ, SIG_IGN); /* over RLIMIT_FSIZE: an error, not death */
        if (flags & RAISE_BEFORE_RUN) raise(SIGTERM);
        code = evb_svc_run(svc);
        evb_svc_destroy(&svc);
        _exit(code);
    }
    if (flags & RAISE_BEFORE_RUN) return;
    evb_err err = {0};
    p->client = evb_cmd_client_new(&(evb_cmd_opts){.endpoint = p->cmd}, &err);
    assert_non_null(p->client);
    evb_buf out = {0};
    for (int i = 0;; i++) {
        if (evb_cmd_client_call(p->client, "status", NULL, 0, 300, &out, &err) == EVB_OK)
            break;
        assert_int_equal(waitpid(p->pid, NULL, WNOHANG), 0); /* still alive */
        assert_true(i < 100);
    }
    evb_buf_free(&out);
}

/* Wait for the child to exit; its exit status (-signal when killed). */
static int s_wait(proc *p)
{
    int st = 0;
    for (int i = 0; i < 600; i++) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        }
        usleep(50000);
    }
    fail_msg("service did not stop in 30 s");
    return -1;
}

static void s_stop(proc *p)
{
    evb_cmd_client_destroy(&p->client);
    kill(p->pid, SIGTERM);
    assert_int_equal(s_wait(p), 0);
}

typedef struct kv {
    const char *k, *s;
    uint64_t u;
} kv;
#define S(k, v) ((kv){k, v, 0})
#define U(k, v) ((kv){k, NULL, v})

/* Call command with the fields kvs (a cmd_id is one of them for commands). */
static int s_call_kv(proc *p, const char *command, evb_buf *out, evb_err *err, size_t n,
                     const kv *kvs)
{
    evb_buf a = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &a, evb_svc_pack_write);
    msgpack_pack_map(&pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_str_with_body(&pk, kvs[i].k, strlen(kvs[i].k));
        if (kvs[i].s) msgpack_pack_str_with_body(&pk, kvs[i].s, strlen(kvs[i].s));
        else msgpack_pack_uint64(&pk, kvs[i].u);
    }
    evb_err_clear(err);
    out->len = 0;
    int rc = evb_cmd_client_call(p->client, command, a.data, a.len, 10000, out, err);
    evb_buf_free(&a);
    return rc;
}
#define CALL(p, cmd, out, err, ...)                                                        \
    s_call_kv(p, cmd, out, err, sizeof((kv[]){__VA_ARGS__}) / sizeof(kv),                \
              (kv[]){__VA_ARGS__})

static uint64_t s_field(const evb_buf *b, const char *k)
{
    uint64_t v = UINT64_MAX;
    assert_int_equal(evb_map_uint(b->data, b->len, k, &v, NULL), EVB_OK);
    return v;
}

/* get {s}: the committed total and version of tally-S. */
static void s_expect(proc *p, const char *s, uint64_t total, uint64_t version)
{
    evb_buf out = {0};
    evb_err err;
    assert_int_equal(CALL(p, "get", &out, &err, S("s", s)), EVB_OK);
    assert_int_equal(s_field(&out, "total"), total);
    assert_int_equal(s_field(&out, "version"), version);
    evb_buf_free(&out);
}

/* ------------------------------------------------------------------ tests */

/* A handler that emits and then fails (refusal, bad request, fault) leaves
 * nothing in the cache: the next command and the queries see the log. */
static void test_emit_then_fail_leaves_cache_clean(void **state)
{
    fx_t *fx = *state;
    proc *p = &fx->p[0];
    s_start(fx, p, "src", s_register_src, NULL, 0);
    evb_buf out = {0};
    evb_err err;
    assert_int_equal(CALL(p, "add", &out, &err, S("cmd_id", "a1"), S("s", "x"), U("n", 5)),
                     EVB_OK);
    const char *codes[] = {"rejected", "invalid", "io"};
    const int want[] = {EVB_EREJECTED, EVB_EINVAL, EVB_EIO};
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "f%d", i);
        assert_int_equal(CALL(p, "add_fail", &out, &err, S("cmd_id", id), S("s", "x"),
                              U("n", 100), S("code", codes[i])),
                         want[i]);
        s_expect(p, "x", 5, 1);
    }
    /* A stream emitted twice in one transaction that is then refused. */
    assert_int_equal(CALL(p, "add_twice", &out, &err, S("cmd_id", "t1"), S("s", "x"),
                          U("n", 7), U("fail", 1)),
                     EVB_EREJECTED);
    s_expect(p, "x", 5, 1);
    /* ... and one that commits: both events are in the cache once. */
    assert_int_equal(CALL(p, "add_twice", &out, &err, S("cmd_id", "t2"), S("s", "x"),
                          U("n", 7)),
                     EVB_OK);
    s_expect(p, "x", 19, 3);
    assert_int_equal(CALL(p, "add", &out, &err, S("cmd_id", "a2"), S("s", "x"), U("n", 1)),
                     EVB_OK);
    assert_int_equal(s_field(&out, "total"), 20);
    assert_int_equal(s_field(&out, "version"), 4);
    evb_buf_free(&out);
    s_stop(p);
    /* After a restart the log says the same. */
    s_start(fx, p, "src", s_register_src, NULL, 0);
    s_expect(p, "x", 20, 4);
    s_stop(p);
}

/* A retried cmd_id gets the first outcome (accepted or refused) and applies
 * nothing again; the id used for another command is EVB_EINVAL. */
static void test_cmd_id_retry_and_reuse(void **state)
{
    fx_t *fx = *state;
    proc *p = &fx->p[0];
    s_start(fx, p, "src", s_register_src, NULL, 0);
    evb_buf out = {0}, first = {0};
    evb_err err;
    assert_int_equal(CALL(p, "add", &out, &err, S("cmd_id", "r1"), S("s", "y"), U("n", 3)),
                     EVB_OK);
    evb_buf_append(&first, out.data, out.len, NULL);
    assert_int_equal(CALL(p, "add", &out, &err, S("cmd_id", "r1"), S("s", "y"), U("n", 3)),
                     EVB_OK);
    assert_int_equal(out.len, first.len);
    assert_memory_equal(out.data, first.data, out.len);
    s_expect(p, "y", 3, 1);
    assert_int_equal(CALL(p, "add_fail", &out, &err, S("cmd_id", "r1"), S("s", "y")),
                     EVB_EINVAL);
    assert_non_null(strstr(err.msg, "already used"));
    assert_int_equal(CALL(p, "add_fail", &out, &err, S("cmd_id", "r2"), S("s", "y")),
                     EVB_EREJECTED);
    assert_int_equal(CALL(p, "add_fail", &out, &err, S("cmd_id", "r2"), S("s", "y")),
                     EVB_EREJECTED);
    assert_string_equal(err.msg, "emitted, then refused");
    s_expect(p, "y", 3, 1);
    /* Remembered across a restart. */
    s_stop(p);
    s_start(fx, p, "src", s_register_src, NULL, 0);
    assert_int_equal(CALL(p, "add", &out, &err, S("cmd_id", "r1"), S("s", "y"), U("n", 3)),
                     EVB_OK);
    assert_memory_equal(out.data, first.data, first.len);
    s_expect(p, "y", 3, 1);
    evb_buf_free(&out);
    evb_buf_free(&first);
    s_stop(p);
}

/* A snapshot that cannot be stored (larger than a store value) must not
 * refuse the events: before the fix the emit that reached version 2 failed
 * with EVB_ETOOBIG, every time, and the stream could never pass it. */
static void test_snapshot_too_big_does_not_wedge_stream(void **state)
{
    fx_t *fx = *state;
    proc *p = &fx->p[0];
    s_start(fx, p, "src", s_register_src, NULL, 0);
    evb_buf out = {0};
    evb_err err;
    for (int i = 1; i <= 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "b%d", i);
        int rc = CALL(p, "bigadd", &out, &err, S("cmd_id", id), S("s", "z"));
        if (rc != EVB_OK) fail_msg("bigadd %d: %s", i, err.msg);
        assert_int_equal(s_field(&out, "version"), (uint64_t)i);
    }
    assert_int_equal(CALL(p, "get", &out, &err, S("s", "z"), U("big", 1)), EVB_OK);
    assert_int_equal(s_field(&out, "total"), 3);
    evb_buf_free(&out);
    s_stop(p);
    s_start(fx, p, "src", s_register_src, NULL, 0);
    assert_int_equal(CALL(p, "get", &out, &err, S("s", "z"), U("big", 1)), EVB_OK);
    assert_int_equal(s_field(&out, "version"), 3);
    evb_buf_free(&out);
    s_stop(p);
}

/* A handler that appended outside the cache leaves it behind the log. The
 * conflict that follows must make the retry load the stream again; before
 * the fix every attempt used the same stale state and the command failed
 * with EVB_ECONFLICT for ever. */
static void test_conflict_reloads_stale_cache(void **state)
{
    fx_t *fx = *state;
    proc *p = &fx->p[0];
    s_start(fx, p, "src", s_register_src, NULL, 0);
    evb_buf out = {0};
    evb_err err;
    assert_int_equal(CALL(p, "add", &out, &err, S("cmd_id", "s1"), S("s", "w"), U("n", 1)),
                     EVB_OK);
    assert_int_equal(CALL(p, "raw", &out, &err, S("cmd_id", "s2"), S("s", "w"), U("n", 10)),
                     EVB_OK);
    int rc = CALL(p, "add", &out, &err, S("cmd_id", "s3"), S("s", "w"), U("n", 100));
    if (rc != EVB_OK) fail_msg("add after an append outside the cache: %d %s", rc, err.msg);
    assert_int_equal(s_field(&out, "total"), 111);
    assert_int_equal(s_field(&out, "version"), 3);
    s_expect(p, "w", 111, 3);
    evb_buf_free(&out);
    s_stop(p);
}

/* After a failed write (here: over RLIMIT_FSIZE, like a full disk) the store
 * refuses writes until reopened. Once the cause is gone the service must
 * take commands again; before the fix nothing reopened it and every command
 * failed with EVB_EUNWRITABLE until a restart. Two orders: the command's
 * own write fails first, or an fsync fails first (as the group-sync thread
 * may) so that the next command's reopen runs while still short of space;
 * that reopen used to stop the service for good (seen in CI). */
static void s_unwritable_recovers(fx_t *fx, bool sync_fails_first)
{
    proc *p = &fx->p[0];
    s_start(fx, p, "src", s_register_src, NULL, 0);
    evb_buf out = {0};
    evb_err err;
    assert_int_equal(CALL(p, "add", &out, &err, S("cmd_id", "u1"), S("s", "v"), U("n", 1)),
                     EVB_OK);
    /* the indexer writes behind that append: wait until it has */
    assert_int_equal(CALL(p, "index_wait", &out, &err, U("n", 0)), EVB_OK);
    assert_int_equal(CALL(p, "fsize", &out, &err, U("bytes", 1)), EVB_OK);
    if (sync_fails_first)
        assert_int_not_equal(CALL(p, "sync", &out, &err, U("n", 0)), EVB_OK);
    assert_int_not_equal(
        CALL(p, "add", &out, &err, S("cmd_id", "u2"), S("s", "v"), U("n", 10)), EVB_OK);
    assert_int_equal(CALL(p, "fsize", &out, &err, U("bytes", 0)), EVB_OK);
    int rc = CALL(p, "add", &out, &err, S("cmd_id", "u3"), S("s", "v"), U("n", 100));
    if (rc != EVB_OK) fail_msg("add once writes work again: %d %s", rc, err.msg);
    s_expect(p, "v", 101, 2);
    evb_buf_free(&out);
    s_stop(p);
}

static void test_unwritable_store_recovers(void **state)
{
    s_unwritable_recovers(*state, false);
}

static void test_unwritable_store_recovers_after_failed_sync(void **state)
{
    s_unwritable_recovers(*state, true);
}

/* A consumer's batch with a refused event is undone and applied again one
 * event at a time: the cache must not keep the undone batch's effects. */
static void test_consumer_batch_undo(void **state)
{
    fx_t *fx = *state;
    proc *src = &fx->p[0], *sink = &fx->p[1];
    s_start(fx, src, "src", s_register_src, NULL, 0);
    evb_buf out = {0};
    evb_err err;
    for (int i = 1; i <= 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i);
        assert_int_equal(CALL(src, "add", &out, &err, S("cmd_id", id), S("s", "k"),
                              U("n", (uint64_t)i)),
                         EVB_OK);
    }
    /* Started after the events exist: it catches up with one page (a batch). */
    s_start(fx, sink, "sink", s_register_sink, src, 0);
    uint64_t v = 0;
    for (int i = 0; i < 300 && v < 20; i++) {
        assert_int_equal(CALL(sink, "get", &out, &err, S("s", "all")), EVB_OK);
        v = s_field(&out, "version");
        if (v < 20) usleep(50000);
    }
    s_expect(sink, "all", 210, 20);
    /* More live events go in exactly once too. */
    assert_int_equal(CALL(src, "add", &out, &err, S("cmd_id", "c21"), S("s", "k"), U("n", 21)),
                     EVB_OK);
    for (int i = 0; i < 300 && v < 21; i++) {
        assert_int_equal(CALL(sink, "get", &out, &err, S("s", "all")), EVB_OK);
        v = s_field(&out, "version");
        if (v < 21) usleep(50000);
    }
    s_expect(sink, "all", 231, 21);
    evb_buf_free(&out);
    s_stop(sink);
    s_stop(src);
}

/* SIGTERM before evb_svc_run (a slow start-up) stops the service cleanly:
 * exit 0. Before the fix the handler was installed only by evb_svc_run, and
 * the signal killed the process. */
/* The aggregate cache's figures in status. */
static void s_cache_figures(proc *p, uint64_t *entries, uint64_t *bytes, uint64_t *evicted)
{
    evb_buf out = {0};
    evb_err err;
    assert_int_equal(CALL(p, "status", &out, &err, S("x", "")), EVB_OK);
    const void *m;
    size_t ml;
    assert_int_equal(evb_map_find(out.data, out.len, "aggregate_cache", &m, &ml, &err), EVB_OK);
    assert_int_equal(evb_map_uint(m, ml, "entries", entries, &err), EVB_OK);
    assert_int_equal(evb_map_uint(m, ml, "bytes", bytes, &err), EVB_OK);
    assert_int_equal(evb_map_uint(m, ml, "evicted", evicted, &err), EVB_OK);
    uint64_t trims; /* the heap trims' figures are there (every 10 s) */
    assert_int_equal(evb_map_find(out.data, out.len, "heap_trims", &m, &ml, &err), EVB_OK);
    assert_int_equal(evb_map_uint(m, ml, "count", &trims, &err), EVB_OK);
    evb_buf_free(&out);
}

/* --aggregate-cache-mb bounds the memory of the cached aggregates, what
 * they own counted (heap_size): over it, the least recently used go until
 * under 3/4 of it, and come back from the log, right. */
static void test_aggregate_cache_bound(void **state)
{
    fx_t *fx = *state;
    proc *p = &fx->p[0];
    s_start(fx, p, "src", s_register_src, NULL, SMALL_CACHE);
    evb_buf out = {0};
    evb_err err;
    char id[8], s[8];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "h%d", i);
        snprintf(s, sizeof s, "%d", i);
        assert_int_equal(CALL(p, "heavyadd", &out, &err, S("cmd_id", id), S("s", s)), EVB_OK);
    }
    uint64_t entries, bytes, evicted;
    s_cache_figures(p, &entries, &bytes, &evicted);
    assert_int_equal(entries, 3);
    assert_true(bytes >= 3 * (300u << 10) && bytes <= 1u << 20);
    assert_int_equal(evicted, 0);
    /* h1 used again: h0 is now the least recently used, then h2. */
    assert_int_equal(CALL(p, "heavyadd", &out, &err, S("cmd_id", "h1b"), S("s", "1")),
                     EVB_OK);
    assert_int_equal(CALL(p, "heavyadd", &out, &err, S("cmd_id", "h3"), S("s", "3")), EVB_OK);
    s_cache_figures(p, &entries, &bytes, &evicted);
    assert_int_equal(entries, 2); /* 1.2 MiB: h0 and h2 go, under 768 KiB */
    assert_true(bytes <= 768u << 10);
    assert_int_equal(evicted, 2);
    /* Loaded again from the log: the second add sees the first. */
    assert_int_equal(CALL(p, "heavyadd", &out, &err, S("cmd_id", "h0b"), S("s", "0")),
                     EVB_OK);
    assert_int_equal(s_field(&out, "total"), 2);
    assert_int_equal(s_field(&out, "version"), 2);
    evb_buf_free(&out);
    s_stop(p);
}

static void test_sigterm_during_startup(void **state)
{
    fx_t *fx = *state;
    proc *p = &fx->p[0];
    s_start(fx, p, "src", s_register_src, NULL, RAISE_BEFORE_RUN);
    assert_int_equal(s_wait(p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_emit_then_fail_leaves_cache_clean, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cmd_id_retry_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_too_big_does_not_wedge_stream,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_reloads_stale_cache, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_store_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_store_recovers_after_failed_sync,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_batch_undo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_during_startup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aggregate_cache_bound, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
