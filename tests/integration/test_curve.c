/*
 * test_curve.c: CURVE security on the bus, in one process over ipc, with real
 * stores: certificates on disk (secret files 0600), a subscriber whose key is
 * allowed gets live events and catch-up, one whose key is not gets nothing
 * and its feed says why, the allow-list re-read without a restart lets it
 * in, a plain subscriber of a CURVE publisher gets nothing, and a command
 * client with a refused key gets EVB_EAUTH rather than a timeout. Every wait
 * is a loop on a condition with a deadline.
 */
#include <evbus/evbus_bus.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* The bus's private CURVE layer, for the one test that needs a server
 * without its ZAP handler: this test builds as part of the bus module
 * (EVB_BUILDING_BUS, tests/integration/CMakeLists.txt). */
#include "curve.h"
#include <zmq.h>

#define DEADLINE_US (30 * 1000000LL)

typedef struct world {
    char dir[256];
    char keys[300], allow[300];
    char server_sec[320], server_pub[320];
    char alice_sec[320], bob_sec[320];
    char pub_ep[300], cu_ep[300], cmd_ep[300];
    evb_store_t *pst, *sst;
    evb_pub_t *pub;
    evb_sub_t *sub;
    uint64_t count;
} world;

static int s_handler(const evb_event_t *ev, evb_txn_t *tx, void *ctx, evb_err *err)
{
    (void)ev;
    (void)tx;
    (void)err;
    world *w = ctx;
    w->count++;
    return EVB_OK;
}

static evb_store_t *s_open(world *w, const char *name)
{
    char d[320];
    snprintf(d, sizeof d, "%s/%s", w->dir, name);
    evb_store_opts o = {0};
    o.dir = d;
    o.service = name;
    o.create = true;
    evb_err err;
    evb_store_t *st = evb_store_open(&o, &err);
    if (st == NULL) fail_msg("open %s: %s", d, err.msg);
    return st;
}

static void s_copy(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    assert_int_equal(fclose(b), 0);
}

/* Allow `name`: copy its public certificate into the allow-list. */
static void s_allow(world *w, const char *name)
{
    char from[400], to[400];
    snprintf(from, sizeof from, "%s/%s", w->keys, name);
    snprintf(to, sizeof to, "%s/%s", w->allow, name);
    s_copy(from, to);
}

static int s_setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    const char *tmp = getenv("EVB_TEST_TMP");
    snprintf(w->dir, sizeof w->dir, "%s/curveXXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(w->dir) == NULL) return -1;
    snprintf(w->keys, sizeof w->keys, "%s/keys", w->dir);
    snprintf(w->allow, sizeof w->allow, "%s/allow", w->dir);
    if (mkdir(w->keys, 0700) != 0 || mkdir(w->allow, 0700) != 0) return -1;
    evb_err err;
    const char *names[] = {"server", "alice", "bob"};
    for (int i = 0; i < 3; i++)
        if (evb_curve_cert_new(w->keys, names[i], NULL, &err) != EVB_OK) {
            fprintf(stderr, "cert %s: %s\n", names[i], err.msg);
            return -1;
        }
    snprintf(w->server_sec, sizeof w->server_sec, "%s/server_secret", w->keys);
    snprintf(w->server_pub, sizeof w->server_pub, "%s/server", w->keys);
    snprintf(w->alice_sec, sizeof w->alice_sec, "%s/alice_secret", w->keys);
    snprintf(w->bob_sec, sizeof w->bob_sec, "%s/bob_secret", w->keys);
    s_allow(w, "alice");
    snprintf(w->pub_ep, sizeof w->pub_ep, "ipc://%s/pub.sock", w->dir);
    snprintf(w->cu_ep, sizeof w->cu_ep, "ipc://%s/cu.sock", w->dir);
    snprintf(w->cmd_ep, sizeof w->cmd_ep, "ipc://%s/cmd.sock", w->dir);
    w->pst = s_open(w, "pub");
    w->sst = s_open(w, "sub");
    *state = w;
    return 0;
}

static int s_teardown(void **state)
{
    world *w = *state;
    evb_sub_destroy(&w->sub);
    evb_pub_destroy(&w->pub);
    evb_store_destroy(&w->pst);
    evb_store_destroy(&w->sst);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
    if (system(cmd) != 0) return -1;
    free(w);
    return 0;
}

static void s_new_pub(world *w)
{
    evb_curve cv = {.cert_file = w->server_sec, .allow_dir = w->allow};
    evb_pub_opts po = {0};
    po.store = w->pst;
    po.pub_endpoint = w->pub_ep;
    po.catchup_endpoint = w->cu_ep;
    po.heartbeat_ms = 50;
    po.curve = &cv;
    evb_err err;
    w->pub = evb_pub_new(&po, &err);
    if (w->pub == NULL) fail_msg("pub: %s", err.msg);
}

/* A subscriber with certificate cert (NULL: plain) following the publisher
 * with the server's public certificate file (plain without cert). */
static void s_new_sub(world *w, const char *cert)
{
    evb_curve cv = {.cert_file = cert};
    evb_sub_opts so = {0};
    so.store = w->sst;
    so.consumer = "test";
    so.handler = s_handler;
    so.ctx = w;
    so.fetch_timeout_ms = 500;
    so.curve = cert ? &cv : NULL;
    evb_err err;
    w->sub = evb_sub_new(&so, &err);
    if (w->sub == NULL) fail_msg("sub: %s", err.msg);
    evb_follow_opts fo = {.server_key = cert ? w->server_pub : NULL};
    assert_int_equal(evb_sub_follow(w->sub, w->pub_ep, w->cu_ep, &fo, &err), EVB_OK);
}

static void s_append(world *w, int n)
{
    static const uint8_t payload[] = {0x81, 0xa1, 'n', 0x01};
    evb_err err;
    for (int i = 0; i < n; i++) {
        evb_event_t ev = {0};
        ev.type = "Thing";
        ev.payload = payload;
        ev.payload_len = sizeof payload;
        if (evb_store_append(w->pst, "show-1", EVB_EXPECT_ANY, &ev, 1, NULL, &err) !=
            EVB_OK)
            fail_msg("append: %s", err.msg);
    }
}

static int s_on_feed(const evb_feed_status *fs, void *ctx)
{
    evb_feed_status *out = ctx;
    *out = *fs;
    return 0;
}

/* Turn both for ms milliseconds, or until count reaches `until` (0: never). */
static evb_feed_status s_turn(world *w, int ms, uint64_t until)
{
    int64_t end = evb_now_us() + (int64_t)ms * 1000;
    evb_err err;
    evb_feed_status fs = {0};
    while (evb_now_us() < end) {
        assert_int_equal(evb_pub_poll(w->pub, 0, &err), EVB_OK);
        assert_int_equal(evb_sub_poll(w->sub, 5, &err), EVB_OK);
        if (until != 0 && w->count >= until) break;
    }
    evb_sub_status(w->sub, s_on_feed, &fs, &err);
    return fs;
}

static void test_cert_files(void **state)
{
    world *w = *state;
    struct stat st;
    assert_int_equal(stat(w->alice_sec, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char a[EVB_CURVE_KEY_LEN + 1], b[EVB_CURVE_KEY_LEN + 1], pk[EVB_CURVE_KEY_LEN + 1];
    evb_err err;
    char path[400];
    snprintf(path, sizeof path, "%s/alice", w->keys);
    assert_int_equal(evb_curve_public_key(path, a, &err), EVB_OK);
    assert_int_equal(evb_curve_public_key(w->alice_sec, b, &err), EVB_OK);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), EVB_CURVE_KEY_LEN);
    /* The public file holds no secret. */
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_null(strstr(text, "secret-key"));
    /* Never overwritten; bad names refused. */
    assert_int_equal(evb_curve_cert_new(w->keys, "alice", NULL, &err), EVB_EINVAL);
    assert_non_null(strstr(err.msg, "exists"));
    assert_int_equal(evb_curve_public_key(path, b, &err), EVB_OK);
    assert_string_equal(a, b);
    assert_int_equal(evb_curve_cert_new(w->keys, "../x", NULL, &err), EVB_EINVAL);
    assert_int_equal(evb_curve_cert_new(w->keys, "carol", pk, &err), EVB_OK);
    snprintf(path, sizeof path, "%s/carol_secret", w->keys);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(evb_curve_public_key(path, b, &err), EVB_OK);
    assert_string_equal(pk, b);
}

static void test_bad_settings_are_refused(void **state)
{
    world *w = *state;
    evb_err err;
    /* A public certificate is not ours to use: no secret key. */
    char pubonly[400];
    snprintf(pubonly, sizeof pubonly, "%s/pubonly", w->dir);
    char from[400];
    snprintf(from, sizeof from, "%s/alice", w->keys);
    s_copy(from, pubonly);
    evb_curve cv = {.cert_file = pubonly, .server_key = w->server_pub};
    assert_null(
        evb_cmd_client_new(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &cv}, &err));
    assert_int_equal(err.code, EVB_EINVAL);
    assert_non_null(strstr(err.msg, "no secret key"));
    cv.cert_file = "/nonexistent/cert";
    assert_null(
        evb_cmd_client_new(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &cv}, &err));
    assert_int_equal(err.code, EVB_EINVAL);
    /* Not a certificate at all (we parse the file ourselves): named as such. */
    char junk[400];
    snprintf(junk, sizeof junk, "%s/junk_secret", w->dir);
    FILE *jf = fopen(junk, "w");
    assert_non_null(jf);
    fputs("curve\n    public-key = \"short\"\n", jf);
    fclose(jf);
    cv.cert_file = junk;
    assert_null(
        evb_cmd_client_new(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &cv}, &err));
    assert_int_equal(err.code, EVB_EINVAL);
    assert_non_null(strstr(err.msg, "not a certificate"));
    cv.cert_file = w->alice_sec;
    cv.server_key = "not-a-key";
    assert_null(
        evb_cmd_client_new(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &cv}, &err));
    assert_int_equal(err.code, EVB_EINVAL);
    /* A server needs an allow-list that is a directory. */
    evb_curve sv = {.cert_file = w->server_sec, .allow_dir = NULL};
    assert_null(evb_cmd_new(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &sv}, &err));
    assert_int_equal(err.code, EVB_EINVAL);
    sv.allow_dir = pubonly;
    assert_null(evb_cmd_new(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &sv}, &err));
    assert_int_equal(err.code, EVB_EINVAL);
    /* A server key without our own certificate. */
    evb_sub_opts so = {0};
    so.store = w->sst;
    so.consumer = "test";
    so.handler = s_handler;
    so.ctx = w;
    w->sub = evb_sub_new(&so, &err);
    assert_non_null(w->sub);
    evb_follow_opts fo = {.server_key = w->server_pub};
    assert_int_equal(evb_sub_follow(w->sub, w->pub_ep, w->cu_ep, &fo, &err), EVB_EINVAL);
}

static void test_allowed_subscriber_gets_catchup_and_live(void **state)
{
    world *w = *state;
    s_new_pub(w);
    s_append(w, 20); /* before the subscriber: catch-up */
    s_new_sub(w, w->alice_sec);
    evb_feed_status fs = s_turn(w, 20000, 20);
    assert_int_equal(w->count, 20);
    s_append(w, 5); /* live */
    fs = s_turn(w, 20000, 25);
    assert_int_equal(w->count, 25);
    assert_int_equal(fs.handshake_refusals, 0);
    assert_string_equal(fs.reason, "");
    assert_int_equal(evb_pub_auth_refused(w->pub), 0);
}

static void test_unknown_key_gets_nothing_until_allowed(void **state)
{
    world *w = *state;
    s_new_pub(w);
    s_append(w, 10);
    s_new_sub(w, w->bob_sec);
    evb_feed_status fs = {0};
    int64_t end = evb_now_us() + DEADLINE_US;
    /* Turn until the refusal shows (and some more), appending live events. */
    while (evb_now_us() < end) {
        s_append(w, 1);
        fs = s_turn(w, 100, 0);
        if (fs.handshake_refusals >= 2 && fs.reason && strstr(fs.reason, "allow-list"))
            break;
    }
    fs = s_turn(w, 1000, 0);
    assert_int_equal(w->count, 0); /* no live event, no catch-up */
    assert_true(fs.handshake_refusals >= 2);
    assert_non_null(fs.reason);
    assert_non_null(strstr(fs.reason, "allow-list"));
    assert_non_null(strstr(fs.reason, "handshake refused by"));
    assert_true(fs.applied == 0);
    assert_true(evb_pub_auth_refused(w->pub) >= 2);
    /* Add bob's key: no restart of either side, and he gets everything. */
    uint64_t total = evb_store_head(w->pst);
    s_allow(w, "bob");
    fs = s_turn(w, 20000, total);
    assert_int_equal(w->count, total);
    s_append(w, 3);
    fs = s_turn(w, 20000, total + 3);
    assert_int_equal(w->count, total + 3);
    assert_string_equal(fs.reason, "");
}

static void test_plain_subscriber_of_curve_publisher_gets_nothing(void **state)
{
    world *w = *state;
    s_new_pub(w);
    s_append(w, 10);
    s_new_sub(w, NULL);
    evb_feed_status fs = {0};
    int64_t end = evb_now_us() + DEADLINE_US;
    while (evb_now_us() < end) {
        s_append(w, 1);
        fs = s_turn(w, 100, 0);
        if (fs.reason && strstr(fs.reason, "requires CURVE")) break;
    }
    fs = s_turn(w, 1000, 0);
    assert_int_equal(w->count, 0);
    assert_non_null(fs.reason);
    assert_non_null(strstr(fs.reason, "requires CURVE"));
    assert_true(fs.handshake_refusals >= 1);
}

/* A server whose ZAP handler is gone (its thread ended) must refuse every
 * client, not let them all in: libzmq 4.3 skips authentication when no
 * handler is bound unless the server enforces its ZAP domain. */
static void test_server_without_zap_handler_refuses(void **state)
{
    world *w = *state;
    evb_err err;
    evb_curve_keys sk, bk;
    assert_int_equal(evb_curve_keys_load(w->server_sec, &sk, &err), EVB_OK);
    assert_int_equal(evb_curve_keys_load(w->bob_sec, &bk, &err), EVB_OK);
    void *sctx = zmq_ctx_new(), *cctx = zmq_ctx_new();
    curve_zap *zap = curve_zap_start(sctx, w->allow, sk.pub, "test", &err);
    if (zap == NULL) fail_msg("zap: %s", err.msg);
    void *srv = zmq_socket(sctx, ZMQ_PUB);
    int zero = 0;
    zmq_setsockopt(srv, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(curve_make_server(srv, &sk, &err), EVB_OK);
    assert_int_equal(zmq_bind(srv, w->pub_ep), 0);
    curve_zap_stop(&zap); /* as if its thread had ended */
    void *cli = zmq_socket(cctx, ZMQ_SUB);
    zmq_setsockopt(cli, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(evb_curve_make_client(cli, &bk, sk.pub, &err), EVB_OK);
    zmq_setsockopt(cli, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(cli, w->pub_ep), 0);
    int got = 0;
    for (int64_t end = evb_now_us() + 1500000; evb_now_us() < end;) {
        zmq_send(srv, "secret", 6, ZMQ_DONTWAIT);
        char buf[16];
        if (zmq_recv(cli, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) got++;
        usleep(10000); /* pacing the sends over the window, not a synchronisation */
    }
    assert_int_equal(got, 0);
    zmq_close(cli);
    zmq_close(srv);
    zmq_ctx_term(cctx);
    zmq_ctx_term(sctx);
    evb_curve_keys_wipe(&sk);
    evb_curve_keys_wipe(&bk);
}

/* ---- command socket ---- */

typedef struct cmd_world {
    evb_cmd_t *cmd;
    atomic_bool stop;
} cmd_world;

static int s_cmd_ping(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err)
{
    (void)args;
    (void)len;
    (void)ctx;
    static const uint8_t pong[] = {0x81, 0xa4, 'p', 'o', 'n', 'g', 0xc3};
    return evb_buf_append(out, pong, sizeof pong, err);
}

static void *s_cmd_thread(void *arg)
{
    cmd_world *cw = arg;
    evb_err err;
    while (!atomic_load(&cw->stop))
        evb_cmd_poll(cw->cmd, 10, &err);
    return NULL;
}

static void test_cmd_client_refused_is_told(void **state)
{
    world *w = *state;
    evb_err err;
    evb_curve sv = {.cert_file = w->server_sec, .allow_dir = w->allow};
    cmd_world cw = {
        evb_cmd_new(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &sv}, &err), false};
    if (cw.cmd == NULL) fail_msg("cmd: %s", err.msg);
    assert_int_equal(evb_cmd_on(cw.cmd, "ping", s_cmd_ping, NULL, &err), EVB_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, s_cmd_thread, &cw), 0);
    evb_buf out = {0};
    char server_key[EVB_CURVE_KEY_LEN + 1];
    assert_int_equal(evb_curve_public_key(w->server_pub, server_key, &err), EVB_OK);

    /* Allowed, with the key given as text. */
    evb_curve alice = {.cert_file = w->alice_sec, .server_key = server_key};
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &alice},
                                  "ping", NULL, 0, 5000, &out, &err),
                     EVB_OK);

    /* Refused: told at once, not after the timeout. */
    evb_curve bob = {.cert_file = w->bob_sec, .server_key = w->server_pub};
    evb_cmd_client_t *bc =
        evb_cmd_client_new(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &bob}, &err);
    assert_non_null(bc);
    int64_t t0 = evb_now_us();
    assert_int_equal(evb_cmd_client_call(bc, "ping", NULL, 0, 10000, &out, &err),
                     EVB_EAUTH);
    assert_true(evb_now_us() - t0 < 5000000);
    assert_non_null(strstr(err.msg, "allow-list"));
    assert_non_null(strstr(err.msg, "cmd.sock"));
    assert_true(evb_cmd_auth_refused(cw.cmd) >= 1);

    /* A plain client of a CURVE server. */
    t0 = evb_now_us();
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = w->cmd_ep}, "ping", NULL, 0,
                                  10000, &out, &err),
                     EVB_EAUTH);
    assert_true(evb_now_us() - t0 < 5000000);
    assert_non_null(strstr(err.msg, "requires CURVE"));

    /* A wrong server key: the handshake never completes; said so. */
    evb_curve wrong = {.cert_file = w->alice_sec, .server_key = w->alice_sec};
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = w->cmd_ep, .curve = &wrong},
                                  "ping", NULL, 0, 1500, &out, &err),
                     EVB_EAUTH);
    assert_non_null(strstr(err.msg, "server key"));

    /* The allow-list is re-read: the same client gets in, no restart. */
    s_allow(w, "bob");
    int rc = EVB_EAUTH;
    int64_t end = evb_now_us() + DEADLINE_US;
    while (rc == EVB_EAUTH && evb_now_us() < end)
        rc = evb_cmd_client_call(bc, "ping", NULL, 0, 2000, &out, &err);
    if (rc != EVB_OK) fail_msg("bob, allowed now: %s", err.msg);
    evb_cmd_client_destroy(&bc);

    atomic_store(&cw.stop, true);
    pthread_join(t, NULL);
    evb_cmd_destroy(&cw.cmd);
    evb_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cert_files, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_settings_are_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_allowed_subscriber_gets_catchup_and_live,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_gets_nothing_until_allowed, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_plain_subscriber_of_curve_publisher_gets_nothing,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cmd_client_refused_is_told, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_server_without_zap_handler_refuses, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
