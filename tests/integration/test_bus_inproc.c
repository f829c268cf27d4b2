/*
 * test_bus_inproc.c: the bus with a publisher and subscribers in one process,
 * over real ipc sockets and real stores: category framing, late joining,
 * exactly-once with gaps, stalls with retry and skip (attempts survive a
 * restart of the subscriber), hostile catch-up requests, a publisher whose
 * log was recreated. Every wait is a loop on a condition with a deadline.
 */
#include <evbus/evbus_bus.h>
#include <evbus/evbus_wire.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <fcntl.h>
#include <czmq.h>
#include <zmq.h>

#include <cmocka.h>

#define DEADLINE_US (30 * 1000000LL)

typedef struct world {
    char dir[256];
    char pub_ep[300], cu_ep[300];
    evb_store_t *pst, *sst;
    evb_pub_t *pub;
    evb_sub_t *sub;
    /* what the handler saw */
    uint64_t count, sum, last_seq_show, order_errors, refuse_seq, refusals;
    uint64_t last_seq_any, log_order_errors; /* every category: seq after seq */
    char key_prefix[16];
} world;

static int s_handler(const evb_event_t *ev, evb_txn_t *tx, void *ctx, evb_err *err)
{
    world *w = ctx;
    if (ev->seq == w->refuse_seq) {
        w->refusals++;
        return evb_err_set(err, EVB_EINVAL, "refusing %llu on purpose",
                           (unsigned long long)ev->seq);
    }
    /* The durable effect: a new event (fresh random id) in the subscriber's
     * own log, so every committed application shows, twice if it happened
     * twice. The in-memory counters below see calls, not commits: a handler
     * may be called again for an event whose transaction was not committed. */
    uint8_t payload[16] = {0x81, 0xa3, 's', 'e', 'q', 0xcf};
    for (int i = 0; i < 8; i++)
        payload[6 + i] = (uint8_t)(ev->seq >> (56 - 8 * i));
    evb_event_t e = {0};
    e.type = "Applied";
    e.payload = payload;
    e.payload_len = 14;
    int rc = evb_txn_append(tx, "applied", EVB_EXPECT_ANY, &e, 1, NULL, err);
    if (rc != EVB_OK)
        return rc;
    w->count++;
    w->sum += ev->seq;
    if (ev->seq != w->last_seq_any + 1) w->log_order_errors++;
    w->last_seq_any = ev->seq;
    if (strcmp(ev->category, "show") == 0) {
        if (ev->seq <= w->last_seq_show)
            w->order_errors++;
        w->last_seq_show = ev->seq;
    }
    return EVB_OK;
}

static evb_store_t *s_open(world *w, const char *name, const char *service)
{
    char d[300];
    snprintf(d, sizeof d, "%s/%s", w->dir, name);
    evb_store_opts o = {0};
    o.dir = d;
    o.service = service;
    o.create = true;
    evb_err err;
    evb_store_t *st = evb_store_open(&o, &err);
    if (st == NULL)
        fail_msg("open %s: %s", d, err.msg);
    return st;
}

static void s_new_pub(world *w)
{
    evb_pub_opts po = {0};
    po.store = w->pst;
    po.pub_endpoint = w->pub_ep;
    po.catchup_endpoint = w->cu_ep;
    po.heartbeat_ms = 50;
    evb_err err;
    w->pub = evb_pub_new(&po, &err);
    if (w->pub == NULL)
        fail_msg("pub: %s", err.msg);
}

/* A subscriber following the publisher as fo says. */
static void s_new_sub_with(world *w, const evb_follow_opts *fo)
{
    evb_sub_opts so = {0};
    so.store = w->sst;
    so.consumer = "test";
    so.handler = s_handler;
    so.ctx = w;
    so.fetch_timeout_ms = 500;
    so.lost_after_ms = 300; /* six of the publisher's heartbeat intervals */
    evb_err err;
    w->sub = evb_sub_new(&so, &err);
    if (w->sub == NULL)
        fail_msg("sub: %s", err.msg);
    assert_int_equal(evb_sub_follow(w->sub, w->pub_ep, w->cu_ep, fo, &err), EVB_OK);
}

static void s_new_sub(world *w, const char *const *cats, size_t n)
{
    evb_follow_opts fo = {.categories = cats, .ncategories = n};
    s_new_sub_with(w, &fo);
}

static int s_setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    const char *tmp = getenv("EVB_TEST_TMP");
    snprintf(w->dir, sizeof w->dir, "%s/busXXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(w->dir) == NULL)
        return -1;
    snprintf(w->pub_ep, sizeof w->pub_ep, "ipc://%s/pub.sock", w->dir);
    snprintf(w->cu_ep, sizeof w->cu_ep, "ipc://%s/cu.sock", w->dir);
    w->pst = s_open(w, "pub", "pubsvc");
    w->sst = s_open(w, "sub", "subsvc");
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
    if (system(cmd) != 0)
        return -1;
    free(w);
    return 0;
}

static uint64_t s_append(world *w, const char *stream, int n)
{
    static const uint8_t payload[] = {0x81, 0xa1, 'n', 0x01};
    evb_err err;
    uint64_t last = 0;
    for (int i = 0; i < n; i++) {
        evb_event_t ev = {0};
        ev.type = "Thing";
        ev.payload = payload;
        ev.payload_len = sizeof payload;
        evb_append_result r;
        if (evb_store_append(w->pst, stream, EVB_EXPECT_ANY, &ev, 1, &r, &err) != EVB_OK)
            fail_msg("append: %s", err.msg);
        last = r.last_seq;
    }
    return last;
}

/* The subscriber's log holds exactly the publisher's events of `category`
 * (minus `skipped`), each once, in order. */
static void s_check_effects(world *w, const char *category, uint64_t skipped)
{
    evb_err err;
    evb_iter_t *pit = evb_store_read_category(w->pst, category, 0, NULL, &err);
    evb_iter_t *sit = evb_store_read_stream(w->sst, "applied", 1, 0, NULL, &err);
    assert_non_null(pit);
    assert_non_null(sit);
    const evb_event_t *pe, *se;
    uint64_t n = 0;
    while (evb_iter_next(pit, &pe, &err)) {
        if (pe->seq == skipped)
            continue;
        assert_true(evb_iter_next(sit, &se, &err));
        const uint8_t *p = (const uint8_t *)se->payload + 6;
        uint64_t seq = 0;
        for (int i = 0; i < 8; i++)
            seq = (seq << 8) | p[i];
        assert_int_equal(seq, pe->seq);
        n++;
    }
    assert_false(evb_iter_next(sit, &se, &err)); /* nothing applied twice or extra */
    assert_int_equal(err.code, EVB_OK);
    evb_iter_destroy(&pit);
    evb_iter_destroy(&sit);
    assert_true(n > 0);
}

typedef struct want {
    const char *category;
    evb_feed_state state;
    uint64_t applied;
    bool found;
    evb_feed_status got;
} want;

static int s_on_feed(const evb_feed_status *fs, void *ctx)
{
    want *wt = ctx;
    if (strcmp(fs->category, wt->category) == 0) {
        wt->found = true;
        wt->got = *fs;
    }
    return 0;
}

/* Turn both loops until the feed of category is in state with applied >= a. */
static evb_feed_status s_until(world *w, const char *category, evb_feed_state state,
                               uint64_t applied)
{
    int64_t end = evb_now_us() + DEADLINE_US;
    evb_err err;
    want wt = {category, state, applied, false, {0}};
    while (evb_now_us() < end) {
        if (w->pub)
            assert_int_equal(evb_pub_poll(w->pub, 0, &err), EVB_OK);
        assert_int_equal(evb_sub_poll(w->sub, 5, &err), EVB_OK);
        wt.found = false;
        evb_sub_status(w->sub, s_on_feed, &wt, &err);
        if (wt.found && wt.got.state == state && wt.got.applied >= applied)
            return wt.got;
    }
    fail_msg("feed %s never reached %s at %llu (now %s at %llu)", category,
             evb_feed_state_name(state), (unsigned long long)applied,
             wt.found ? evb_feed_state_name(wt.got.state) : "absent",
             (unsigned long long)wt.got.applied);
    return wt.got;
}

static void test_prefix_categories_do_not_mix(void **state)
{
    world *w = *state;
    s_new_pub(w);
    const char *cats[] = {"show"};
    s_new_sub(w, cats, 1);
    s_append(w, "showtime-1", 5);
    uint64_t last = s_append(w, "show-1", 3);
    s_append(w, "showtime-2", 5);
    s_until(w, "show", EVB_FEED_LIVE, last);
    assert_int_equal(w->count, 3);
    assert_int_equal(w->order_errors, 0);
    s_check_effects(w, "show", 0);
}

static void test_late_joiner_gets_history_then_live(void **state)
{
    world *w = *state;
    uint64_t sum = 0;
    uint64_t before = s_append(w, "show-7", 3000);
    for (uint64_t i = 1; i <= before; i++)
        sum += i;
    s_new_pub(w);
    const char *cats[] = {"show"};
    s_new_sub(w, cats, 1);
    s_until(w, "show", EVB_FEED_LIVE, before);
    uint64_t last = s_append(w, "show-7", 500);
    for (uint64_t i = before + 1; i <= last; i++)
        sum += i;
    evb_feed_status fs = s_until(w, "show", EVB_FEED_LIVE, last);
    assert_int_equal(w->count, last);
    assert_int_equal(w->sum, sum);
    assert_int_equal(w->order_errors, 0);
    assert_int_equal(fs.lag, 0);
    /* The checkpoint is in the subscriber's store. */
    evb_store_info pi;
    evb_store_get_info(w->pst, &pi);
    uint64_t ck;
    evb_err err;
    assert_int_equal(evb_store_checkpoint_get(w->sst, "test", &pi.log_id, "show", &ck, &err),
                     EVB_OK);
    assert_int_equal(ck, last);
    s_check_effects(w, "show", 0);
}

/* A follower of every category in log order: one feed, one checkpoint
 * (EVB_ALL_CATEGORIES), each event once in the publisher's order, across a
 * restart of the follower and live events mixed with a catch-up. */
static void s_new_log_order_sub(world *w)
{
    evb_follow_opts fo = {.log_order = true};
    s_new_sub_with(w, &fo);
    const char *cats[] = {"show"};
    evb_follow_opts bad = {.categories = cats, .ncategories = 1, .log_order = true};
    evb_err err;
    assert_int_equal(evb_sub_follow(w->sub, w->pub_ep, w->cu_ep, &bad, &err), EVB_EINVAL);
}

static uint64_t s_append_mixed(world *w, int rounds)
{
    static const char *const streams[] = {"show-1", "hall-2", "seat-3", "show-4"};
    uint64_t last = 0;
    for (int i = 0; i < rounds; i++)
        last = s_append(w, streams[i % 4], 1 + i % 3);
    return last;
}

static void test_log_order_follower(void **state)
{
    world *w = *state;
    uint64_t a = s_append_mixed(w, 400); /* history before anyone follows */
    s_new_pub(w);
    s_new_log_order_sub(w);
    s_until(w, EVB_ALL_CATEGORIES, EVB_FEED_LIVE, a);
    uint64_t b = s_append_mixed(w, 300); /* live */
    s_until(w, EVB_ALL_CATEGORIES, EVB_FEED_LIVE, b);
    evb_sub_destroy(&w->sub);
    uint64_t c = s_append_mixed(w, 200); /* while it is away */
    s_new_log_order_sub(w);
    evb_feed_status fs = s_until(w, EVB_ALL_CATEGORIES, EVB_FEED_LIVE, c);
    assert_int_equal(w->count, c);
    assert_int_equal(w->sum, c * (c + 1) / 2);
    assert_int_equal(w->log_order_errors, 0);
    assert_int_equal(fs.lag, 0);
    /* one feed only, and its checkpoint under EVB_ALL_CATEGORIES */
    want other = {"show", EVB_FEED_LIVE, 0, false, {0}};
    evb_err err;
    evb_sub_status(w->sub, s_on_feed, &other, &err);
    assert_false(other.found);
    evb_store_info pi;
    evb_store_get_info(w->pst, &pi);
    uint64_t ck;
    assert_int_equal(
        evb_store_checkpoint_get(w->sst, "test", &pi.log_id, EVB_ALL_CATEGORIES, &ck, &err),
        EVB_OK);
    assert_int_equal(ck, c);
}

/* ---- the tap: no store, positions in memory ---- */

typedef struct tap_seen {
    uint64_t n, last, order_errors, first;
    char cat[16]; /* when set: only events of it may come */
    uint64_t wrong_cat;
} tap_seen;

static int s_on_tap(const evb_tap_event *te, void *ctx, evb_err *err)
{
    (void)err;
    tap_seen *ts = ctx;
    if (ts->n == 0) ts->first = te->ev->seq;
    if (te->ev->seq <= ts->last) ts->order_errors++;
    if (ts->cat[0] && strcmp(te->ev->category, ts->cat) != 0) ts->wrong_cat++;
    if (te->raw_len == 0 || te->publisher == NULL || strcmp(te->service, "pubsvc") != 0)
        ts->order_errors++;
    ts->last = te->ev->seq;
    ts->n++;
    return EVB_OK;
}

static int s_tap_hb(const evb_feed_status *fs, void *ctx)
{
    if (fs->heartbeat_age_ms >= 0) *(bool *)ctx = true;
    return 0;
}

/* Turn the publisher and the tap until cond holds (or fail at the deadline). */
#define TAP_UNTIL(w, tap, cond)                                                          \
    do {                                                                                 \
        int64_t end_ = evb_now_us() + DEADLINE_US;                                       \
        evb_err e_;                                                                      \
        while (!(cond)) {                                                                \
            if (evb_now_us() > end_) fail_msg("tap: never %s", #cond);                   \
            assert_int_equal(evb_pub_poll((w)->pub, 0, &e_), EVB_OK);                    \
            assert_int_equal(evb_tap_poll((tap), 5, &e_), EVB_OK);                       \
        }                                                                                \
    } while (0)

static void test_tap_history_in_log_order(void **state)
{
    world *w = *state;
    uint64_t a = s_append_mixed(w, 300);
    s_new_pub(w);
    tap_seen ts = {0};
    evb_tap_opts to = {.on_event = s_on_tap, .ctx = &ts, .from = 1, .page_events = 100};
    evb_err err;
    evb_tap_t *tap = evb_tap_new(&to, &err);
    assert_non_null(tap);
    evb_follow_opts fo = {.log_order = true};
    assert_int_equal(evb_tap_follow(tap, w->pub_ep, w->cu_ep, &fo, &err), EVB_OK);
    TAP_UNTIL(w, tap, ts.last >= a);
    uint64_t b = s_append_mixed(w, 200);
    TAP_UNTIL(w, tap, ts.last >= b);
    assert_int_equal(ts.first, 1);
    assert_int_equal(ts.n, b); /* every event once */
    assert_int_equal(ts.order_errors, 0);
    evb_tap_destroy(&tap);
    assert_null(tap);
}

static void test_tap_live_only_by_category(void **state)
{
    world *w = *state;
    s_append_mixed(w, 100); /* before the tap: not shown */
    s_new_pub(w);
    tap_seen ts = {.cat = "show"};
    evb_tap_opts to = {.on_event = s_on_tap, .ctx = &ts};
    evb_err err;
    evb_tap_t *tap = evb_tap_new(&to, &err);
    assert_non_null(tap);
    const char *cats[] = {"show"};
    evb_follow_opts fo = {.categories = cats, .ncategories = 1};
    assert_int_equal(evb_tap_follow(tap, w->pub_ep, w->cu_ep, &fo, &err), EVB_OK);
    bool heard = false;
    TAP_UNTIL(w, tap, (evb_tap_status(tap, s_tap_hb, &heard, &e_), heard));
    evb_store_info pi;
    evb_store_get_info(w->pst, &pi);
    uint64_t start = pi.head;
    uint64_t b = s_append_mixed(w, 200);
    uint64_t expect = 0; /* show events after the start */
    evb_iter_t *it = evb_store_read_category(w->pst, "show", start, NULL, &err);
    const evb_event_t *ev;
    while (evb_iter_next(it, &ev, &err))
        if (ev->seq > start) expect++;
    evb_iter_destroy(&it);
    assert_true(expect > 0);
    TAP_UNTIL(w, tap, ts.n >= expect);
    assert_int_equal(ts.n, expect);
    assert_true(ts.first > start);
    assert_int_equal(ts.order_errors, 0);
    assert_int_equal(ts.wrong_cat, 0);
    assert_true(ts.last <= b);
    evb_tap_destroy(&tap);
}

/* The tap's feed status shows log id `id` (the publisher behind the
 * endpoints was replaced by one with another log). */
static int s_tap_log(const evb_feed_status *fs, void *ctx)
{
    const evb_id **look = ctx; /* [0] the id looked for, [1] set when seen */
    if (memcmp(&fs->log_id, look[0], sizeof *look[0]) == 0) look[1] = look[0];
    return 0;
}

/* A live-only tap whose publisher is replaced by one with another log (the
 * log recreated) follows the new log from where it met it: what comes after
 * is shown once, in order, nothing of the new log's history. */
static void test_tap_follows_a_recreated_log(void **state)
{
    world *w = *state;
    s_new_pub(w);
    tap_seen ts = {0};
    evb_tap_opts to = {.on_event = s_on_tap, .ctx = &ts};
    evb_err err;
    evb_tap_t *tap = evb_tap_new(&to, &err);
    assert_non_null(tap);
    evb_follow_opts fo = {.log_order = true};
    assert_int_equal(evb_tap_follow(tap, w->pub_ep, w->cu_ep, &fo, &err), EVB_OK);
    bool heard = false;
    TAP_UNTIL(w, tap, (evb_tap_status(tap, s_tap_hb, &heard, &e_), heard));
    s_append(w, "show-1", 5);
    TAP_UNTIL(w, tap, ts.n == 5);
    /* another log at the same endpoints, with a history of its own */
    evb_pub_destroy(&w->pub);
    evb_store_destroy(&w->pst);
    w->pst = s_open(w, "pub2", "pubsvc");
    uint64_t h = s_append(w, "show-9", 30);
    s_new_pub(w);
    evb_store_info pi;
    evb_store_get_info(w->pst, &pi);
    const evb_id *look[2] = {&pi.log_id, NULL};
    TAP_UNTIL(w, tap, (evb_tap_status(tap, s_tap_log, look, &e_), look[1] != NULL));
    ts.last = 0; /* the new log counts from 1 */
    uint64_t b = s_append(w, "show-9", 3);
    TAP_UNTIL(w, tap, ts.n >= 8);
    assert_int_equal(ts.n, 8);
    assert_int_equal(ts.last, b);
    assert_int_equal(b, h + 3);
    assert_int_equal(ts.order_errors, 0);
    evb_tap_destroy(&tap);
}

static void test_restart_resumes_without_duplicates(void **state)
{
    world *w = *state;
    s_new_pub(w);
    s_new_sub(w, NULL, 0);
    uint64_t a = s_append(w, "show-1", 200);
    s_until(w, "show", EVB_FEED_LIVE, a);
    evb_sub_destroy(&w->sub);
    uint64_t b = s_append(w, "show-1", 300); /* while the subscriber is away */
    s_new_sub(w, NULL, 0);
    s_until(w, "show", EVB_FEED_LIVE, b);
    assert_int_equal(w->count, b);
    assert_int_equal(w->sum, b * (b + 1) / 2);
    assert_int_equal(w->order_errors, 0);
    s_check_effects(w, "show", 0);
}

static void test_refusing_handler_stalls_then_skip(void **state)
{
    world *w = *state;
    s_new_pub(w);
    const char *cats[] = {"show"};
    s_new_sub(w, cats, 1);
    uint64_t a = s_append(w, "show-1", 10);
    s_until(w, "show", EVB_FEED_LIVE, a);
    w->refuse_seq = a + 1;
    uint64_t b = s_append(w, "show-1", 5);
    evb_feed_status fs = s_until(w, "show", EVB_FEED_STALLED, a);
    assert_int_equal(fs.applied, a);
    assert_true(strstr(fs.reason, "attempts") != NULL);
    /* 5 attempts; the first may call the handler twice (in its batch, then
     * alone to find the event at fault). */
    uint64_t calls = w->refusals;
    assert_true(calls >= 5 && calls <= 6);
    /* The attempts are in the store: a new subscriber object starts stalled. */
    evb_sub_destroy(&w->sub);
    s_new_sub(w, cats, 1);
    s_until(w, "show", EVB_FEED_STALLED, a);
    assert_int_equal(w->refusals, calls); /* stalled at start: not called again */
    evb_err err;
    assert_int_equal(evb_sub_skip(w->sub, NULL, "show", a, &err), EVB_EINVAL);
    assert_int_equal(evb_sub_skip(w->sub, NULL, "show", a + 1, &err), EVB_OK);
    fs = s_until(w, "show", EVB_FEED_LIVE, b);
    assert_int_equal(w->refusals, calls);
    s_check_effects(w, "show", a + 1); /* all but the skipped one */
    /* The skip is on record in the subscriber's store: the feed's position
     * passed it, so the checkpoint is beyond it. */
    evb_store_info pi;
    evb_store_get_info(w->pst, &pi);
    uint64_t ck;
    assert_int_equal(evb_store_checkpoint_get(w->sst, "test", &pi.log_id, "show", &ck, &err),
                     EVB_OK);
    assert_true(ck >= b);
}

static void test_retry_after_fix(void **state)
{
    world *w = *state;
    s_new_pub(w);
    const char *cats[] = {"show"};
    s_new_sub(w, cats, 1);
    w->refuse_seq = 3;
    uint64_t b = s_append(w, "show-1", 6);
    s_until(w, "show", EVB_FEED_STALLED, 2);
    w->refuse_seq = 0; /* "deploy the fix" */
    evb_err err;
    assert_int_equal(evb_sub_retry(w->sub, NULL, "show", &err), EVB_OK);
    s_until(w, "show", EVB_FEED_LIVE, b);
    s_check_effects(w, "show", 0);
}

static void test_garbage_requests_are_answered_and_counted(void **state)
{
    world *w = *state;
    s_new_pub(w);
    uint64_t a = s_append(w, "show-1", 50);
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, tmo = 5000;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(d, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    assert_int_equal(zmq_connect(d, w->cu_ep), 0);
    static const char *bad[] = {"", "\xc1", "\xdd\xff\xff\xff\xff", "\x93\x01\xa5hello",
                                "\x92\x01\xa4nope", "\x96\x02\xa5\146etch\x01\xc0\x00\x10"};
    static const size_t badlen[] = {0, 1, 5, 8, 7, 12};
    evb_err err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_true(zmq_send(d, bad[i], badlen[i], 0) >= 0);
        char buf[512];
        int got = -1;
        int64_t end = evb_now_us() + DEADLINE_US;
        while (got < 0 && evb_now_us() < end) {
            assert_int_equal(evb_pub_poll(w->pub, 10, &err), EVB_OK);
            got = zmq_recv(d, buf, sizeof buf, ZMQ_DONTWAIT);
        }
        assert_true(got > 0); /* every bad request gets an error reply */
        assert_non_null(memmem(buf, (size_t)got, "error", 5));
    }
    evb_pub_stats ps;
    evb_pub_get_stats(w->pub, &ps);
    assert_int_equal(ps.bad_requests, sizeof bad / sizeof bad[0]);
    zmq_close(d);
    zmq_ctx_term(ctx);
    /* ... and the publisher still serves a real subscriber. */
    s_new_sub(w, NULL, 0);
    s_until(w, "show", EVB_FEED_LIVE, a);
    s_check_effects(w, "show", 0);
}

/* One request on a fresh DEALER, its reply parsed (the publisher polled
 * meanwhile). */
static void s_ask(world *w, void *d, const void *req, size_t len, evb_wire_reply *rp)
{
    assert_true(zmq_send(d, req, len, 0) >= 0);
    char buf[4096];
    int got = -1;
    evb_err err;
    int64_t end = evb_now_us() + DEADLINE_US;
    while (got < 0 && evb_now_us() < end) {
        assert_int_equal(evb_pub_poll(w->pub, 10, &err), EVB_OK);
        got = zmq_recv(d, buf, sizeof buf, ZMQ_DONTWAIT);
    }
    assert_true(got > 0);
    size_t used;
    assert_int_equal(evb_wire_parse_reply(buf, (size_t)got, rp, &used, &err), EVB_OK);
}

/* PROTOCOL.md, "Catch-up": a fetch after the head (or after 2^64 - 1, where
 * after + 1 wraps) gets an empty page whose position is the head, never
 * after itself; an unknown message name is EVB_EINVAL; another version's
 * request is EVB_EVERSION naming its req_id. */
static void test_fetch_past_head_and_unknown_name(void **state)
{
    world *w = *state;
    s_new_pub(w);
    uint64_t head = s_append(w, "show-1", 20);
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_connect(d, w->cu_ep), 0);
    evb_wire_reply rp;
    evb_err err;
    const uint64_t afters[] = {head + 5, UINT64_MAX, head};
    for (size_t i = 0; i < 3; i++) {
        evb_buf b = {0};
        assert_int_equal(evb_wire_fetch(&b, 7 + i, NULL, afters[i], 100, &err), EVB_OK);
        s_ask(w, d, b.data, b.len, &rp);
        evb_buf_free(&b);
        assert_int_equal(rp.kind, EVB_WIRE_PAGE);
        assert_int_equal(rp.req_id, 7 + i);
        assert_int_equal(rp.count, 0);
        assert_false(rp.more);
        assert_int_equal(rp.position, head); /* was afters[i]; from seq 1 for 2^64-1 */
    }
    static const unsigned char nope[] = {0x93, 0x01, 0xa4, 'n', 'o', 'p', 'e', 0x05};
    s_ask(w, d, nope, sizeof nope, &rp);
    assert_int_equal(rp.kind, EVB_WIRE_ERROR);
    assert_string_equal(rp.code, "EVB_EINVAL"); /* was EVB_EDECODE */
    /* Another version: the error still names the request (req_id was 0). */
    static const unsigned char v2[] = {0x93, 0x02, 0xa5, 'h', 'e', 'l', 'l', 'o', 0x09};
    s_ask(w, d, v2, sizeof v2, &rp);
    assert_int_equal(rp.kind, EVB_WIRE_ERROR);
    assert_string_equal(rp.code, "EVB_EVERSION");
    assert_int_equal(rp.req_id, 9);
    assert_non_null(strstr(rp.message, "version 2, this peer speaks 1"));
    /* max_events 0 is a full page (here: all 20), more than 4096 is 4096. */
    const unsigned maxes[] = {0, 5, 100000};
    const uint32_t counts[] = {20, 5, 20};
    for (size_t i = 0; i < 3; i++) {
        evb_buf b = {0};
        assert_int_equal(evb_wire_fetch(&b, 20 + i, "show", 0, maxes[i], &err), EVB_OK);
        s_ask(w, d, b.data, b.len, &rp);
        evb_buf_free(&b);
        assert_int_equal(rp.kind, EVB_WIRE_PAGE);
        assert_int_equal(rp.count, counts[i]);
        assert_true(rp.more == (counts[i] < 20));
    }
    /* A request of two frames: EVB_EDECODE, req_id 0 (it is not read). */
    evb_buf b = {0};
    assert_int_equal(evb_wire_hello(&b, 30, &err), EVB_OK);
    assert_true(zmq_send(d, b.data, b.len, ZMQ_SNDMORE) >= 0);
    s_ask(w, d, b.data, b.len, &rp);
    assert_int_equal(rp.kind, EVB_WIRE_ERROR);
    assert_string_equal(rp.code, "EVB_EDECODE");
    assert_int_equal(rp.req_id, 0);
    /* A hello with a field appended (a later revision) is answered. */
    static const unsigned char hello4[] = {0x94, 0x01, 0xa5, 'h',  'e',
                                           'l',  'l',  'o',  0x1f, 0x03};
    s_ask(w, d, hello4, sizeof hello4, &rp);
    assert_int_equal(rp.kind, EVB_WIRE_HELLO);
    assert_int_equal(rp.req_id, 31);
    assert_int_equal(rp.head, head);
    evb_buf_free(&b);
    zmq_close(d);
    zmq_ctx_term(ctx);
}

/* A publisher of protocol version 2 (played here by hand: its heartbeats
 * and its catch-up answers): the subscriber applies nothing, and its
 * feed's status says why, naming both versions. */
static void test_publisher_of_another_version(void **state)
{
    world *w = *state;
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_PUB), *rt = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(rt, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(pub, w->pub_ep), 0);
    assert_int_equal(zmq_bind(rt, w->cu_ep), 0);
    evb_follow_opts fo = {.log_order = true};
    s_new_sub_with(w, &fo);
    evb_err err;
    /* "H\0" [2, "hb", log_id, 3, "future", [["show", 3]]] */
    static const unsigned char hb[] = {
        'H', 0,   0x96, 0x02, 0xa2, 'h',  'b',  0xc4, 0x10, 7,   7,   7,    7,    7,
        7,   7,   7,    7,    7,    7,    7,    7,    7,    7,   7,   0x03, 0xa6, 'f',
        'u', 't', 'u',  'r',  'e',  0x91, 0x92, 0xa4, 's',  'h', 'o', 'w',  0x03};
    want wt = {"*", EVB_FEED_CATCHING_UP, 0, false, {0}};
    bool said = false;
    int64_t end = evb_now_us() + DEADLINE_US;
    while (!said && evb_now_us() < end) {
        zmq_send(pub, hb, sizeof hb, ZMQ_DONTWAIT);
        assert_int_equal(evb_sub_poll(w->sub, 20, &err), EVB_OK);
        char id[256], req[512];
        int il = zmq_recv(rt, id, sizeof id, ZMQ_DONTWAIT);
        if (il > 0 && zmq_recv(rt, req, sizeof req, 0) > 0) { /* its hello: refused */
            static const unsigned char refusal[] = {
                0x95, 0x02, 0xa5, 'e', 'r', 'r', 'o', 'r', 0x00, 0xac, 'E', 'V', 'B', '_',
                'E',  'V',  'E',  'R', 'S', 'I', 'O', 'N', 0xa4, 'v',  'e', 'r', '2'};
            zmq_send(rt, id, (size_t)il, ZMQ_SNDMORE);
            zmq_send(rt, refusal, sizeof refusal, 0);
        }
        wt.found = false;
        evb_sub_status(w->sub, s_on_feed, &wt, &err);
        said = wt.found && strstr(wt.got.reason, "version") != NULL &&
               strstr(wt.got.reason, "speaks 1") != NULL;
    }
    if (!said)
        fail_msg("the status never named the versions (reason \"%s\")",
                 wt.found ? wt.got.reason : "no feed");
    assert_int_equal(w->count, 0);
    assert_true(wt.got.bad_frames > 0);
    zmq_close(pub);
    zmq_close(rt);
    zmq_ctx_term(ctx);
}

static void test_recreated_publisher_log_stops_feed(void **state)
{
    world *w = *state;
    s_new_pub(w);
    s_new_sub(w, NULL, 0);
    uint64_t a = s_append(w, "show-1", 20);
    s_until(w, "show", EVB_FEED_LIVE, a);
    /* The publisher's log is wiped and recreated: same endpoints, new log id. */
    evb_pub_destroy(&w->pub);
    evb_store_destroy(&w->pst);
    w->pst = s_open(w, "pub2", "pubsvc");
    s_append(w, "show-1", 30);
    s_new_pub(w);
    evb_feed_status fs = s_until(w, "show", EVB_FEED_STOPPED, 0);
    assert_true(strstr(fs.reason, "log id changed") != NULL);
    assert_int_equal(evb_store_head(w->sst), a); /* nothing of the new log applied */
}

/* The feed's history as "what(why)" entries joined by ", ". */
typedef struct hist_acc {
    char text[4096];
    bool lost;
    char service[64];
} hist_acc;

static int s_on_hist(const evb_feed_status *fs, void *ctx)
{
    hist_acc *h = ctx;
    size_t n = 0;
    h->text[0] = '\0';
    for (size_t i = 0; i < fs->nhistory; i++)
        n += (size_t)snprintf(h->text + n, sizeof h->text - n, "%s%s(%s)", i ? ", " : "",
                              fs->history[i].what, fs->history[i].why);
    h->lost = fs->publisher_lost;
    snprintf(h->service, sizeof h->service, "%s", fs->publisher_service);
    return 0;
}

static void test_lost_publisher_is_in_history_and_caught_up_after(void **state)
{
    world *w = *state;
    s_new_pub(w);
    s_new_sub(w, NULL, 0);
    uint64_t a = s_append(w, "show-1", 10);
    s_until(w, "show", EVB_FEED_LIVE, a);
    hist_acc h;
    evb_err err;
    evb_sub_status(w->sub, s_on_hist, &h, &err);
    assert_string_equal(h.service, "pubsvc");
    assert_false(h.lost);
    /* The publisher goes away: lost after lost_after_ms of silence. */
    evb_pub_destroy(&w->pub);
    int64_t end = evb_now_us() + DEADLINE_US;
    do {
        assert_int_equal(evb_sub_poll(w->sub, 20, &err), EVB_OK);
        evb_sub_status(w->sub, s_on_hist, &h, &err);
    } while (!h.lost && evb_now_us() < end);
    assert_true(h.lost);
    assert_non_null(strstr(h.text, "live(caught up), publisher-lost(nothing heard for"));
    /* Back with nothing new: the feed still catches up once (what went out
     * while the link was down never reached the SUB), then is live again. */
    s_new_pub(w);
    end = evb_now_us() + DEADLINE_US;
    const char *lost_entry = "publisher-lost(nothing heard for";
    const char *tail = "catching-up(publisher back: fetching what went out meanwhile), "
                       "live(caught up)";
    do {
        assert_int_equal(evb_pub_poll(w->pub, 0, &err), EVB_OK);
        assert_int_equal(evb_sub_poll(w->sub, 5, &err), EVB_OK);
        evb_sub_status(w->sub, s_on_hist, &h, &err);
    } while ((h.lost || strstr(h.text, tail) == NULL) && evb_now_us() < end);
    assert_false(h.lost);
    const char *l = strstr(h.text, lost_entry);
    assert_non_null(l);
    assert_non_null(strstr(l, tail));
    evb_feed_status fs = s_until(w, "show", EVB_FEED_LIVE, a);
    assert_int_equal(fs.applied, a);
    assert_int_equal(w->count, a); /* nothing applied twice */
}

/* The publisher's store replaced by a new one in w->dir/name (its path in
 * d) opened with o's other options. */
static void s_reopen_pub_store(world *w, const char *name, evb_store_opts *o, char *d,
                               size_t cap)
{
    evb_store_destroy(&w->pst);
    snprintf(d, cap, "%s/%s", w->dir, name);
    o->dir = d;
    o->service = "pubsvc";
    o->create = true;
    evb_err err;
    w->pst = evb_store_open(o, &err);
    if (w->pst == NULL) fail_msg("open %s: %s", d, err.msg);
}

/* The largest .ldb table in dir but the newest (a flush may be writing it:
 * flushes go one at a time, so the others are complete); 0 when there is
 * none such of at least `min` bytes. */
static long s_complete_table(const char *dir, long min, char *path, size_t cap)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    unsigned long newest = 0, num[64];
    long size[64];
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64) {
        char *end;
        unsigned long k = strtoul(e->d_name, &end, 10);
        if (strcmp(end, ".ldb") != 0) continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *f = fopen(p, "rb");
        if (f == NULL) continue; /* compacted away meanwhile */
        fseek(f, 0, SEEK_END);
        size[n] = ftell(f);
        fclose(f);
        num[n++] = k;
        if (k > newest) newest = k;
    }
    closedir(d);
    long best = 0;
    for (unsigned i = 0; i < n; i++)
        if (num[i] != newest && size[i] >= min && size[i] > best) {
            best = size[i];
            snprintf(path, cap, "%s/%06lu.ldb", dir, num[i]);
        }
    return best;
}

/* A hole the publisher meets while publishing live (a table block damaged
 * after the events were appended, before they went out). A feed of one
 * category cannot know whether the hole held events of its category: the
 * publisher's next live event and heartbeat of every category make it ask,
 * and the catch-up answers from the index (once the indexer is past the
 * hole) or, without an indexer that will get there, names the hole. `show`
 * has events in the hole, `quiet` one before and one after it. Returns the
 * `show` feed stalled at the hole; *last is the log's head. Before, the
 * next live event's prev was the category's last event published before
 * the hole, and every feed went on past it without a word. */
static evb_feed_status s_live_hole(world *w, evb_index_mode mode, uint64_t *last)
{
    char d[300];
    evb_store_opts o = {0};
    o.write_buffer_bytes = 64 * 1024; /* tables soon */
    o.index_mode = mode;
    s_reopen_pub_store(w, "pub-hole", &o, d, sizeof d);
    s_new_pub(w);
    const char *cats[] = {"show", "quiet"};
    s_new_sub(w, cats, 2);
    s_append(w, "quiet-1", 1);
    s_append(w, "other-1", 5);
    uint64_t first = s_append(w, "show-1", 5);
    s_until(w, "show", EVB_FEED_LIVE, first);

    /* Appended, not yet published (the publisher does not turn), until a
     * complete table holds many of them (tables here are about 18 KB). */
    char table[600];
    int64_t end = evb_now_us() + DEADLINE_US;
    long size;
    while ((size = s_complete_table(d, 8192, table, sizeof table)) == 0) {
        assert_true(evb_now_us() < end);
        for (int i = 0; i < 50; i++) {
            s_append(w, "other-1", 1);
            *last = s_append(w, "show-1", 1);
        }
    }
    /* and events after it that are readable */
    for (int i = 0; i < 50; i++) {
        s_append(w, "other-1", 1);
        s_append(w, "show-1", 1);
    }
    *last = s_append(w, "quiet-1", 1);
    /* With an indexer, it has to have indexed the events before the damage
     * for the index to know what the hole held (a slow one, under ASan,
     * would otherwise meet the damage itself and stop every category). */
    if (mode == EVB_INDEX_THREAD) {
        evb_store_info info;
        end = evb_now_us() + DEADLINE_US;
        for (evb_store_get_info(w->pst, &info); info.indexed < *last;
             evb_store_get_info(w->pst, &info)) {
            assert_true(evb_now_us() < end);
            usleep(1000); /* poll interval */
        }
    }
    FILE *f = fopen(table, "r+b");
    assert_non_null(f);
    static const char junk[16] = "damaged damaged";
    assert_int_equal(fseek(f, size / 2, SEEK_SET), 0);
    assert_int_equal(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    assert_int_equal(fclose(f), 0);

    evb_feed_status fs = s_until(w, "show", EVB_FEED_STALLED, 0);
    assert_true(fs.hole_from > first);
    assert_true(fs.hole_from <= fs.hole_to);
    assert_true(fs.hole_to < *last);
    assert_true(fs.applied < fs.hole_from);
    assert_non_null(strstr(fs.reason, "cannot be read"));
    evb_pub_stats ps;
    evb_pub_get_stats(w->pub, &ps);
    assert_int_equal(ps.published, *last); /* the events after the hole went out */
    assert_true(ps.holes >= 1);
    return fs;
}

/* With the indexer running (a service's store), the index knows `quiet`
 * had nothing in the hole: its feed goes on to the head, `show` stalls. */
static void test_live_hole_stalls_only_the_categories_in_it(void **state)
{
    world *w = *state;
    uint64_t last = 0;
    s_live_hole(w, EVB_INDEX_THREAD, &last);
    evb_feed_status q = s_until(w, "quiet", EVB_FEED_LIVE, last);
    assert_true(q.applied >= last);
    assert_int_equal(q.hole_from, 0);
}

/* Without an indexer that will cover the hole (here: indexing by hand, as
 * tools do; or one stuck at the damage), nobody can tell: every category's
 * feed stalls at the hole, `quiet` too. */
static void test_live_hole_without_index_stalls_every_category(void **state)
{
    world *w = *state;
    uint64_t last = 0;
    evb_feed_status s = s_live_hole(w, EVB_INDEX_MANUAL, &last);
    evb_feed_status q = s_until(w, "quiet", EVB_FEED_STALLED, 0);
    assert_int_equal(q.hole_from, s.hole_from);
    assert_int_equal(q.hole_to, s.hole_to);
}

static void s_check_published_le_synced(world *w, evb_sync sync)
{
    char d[300];
    evb_store_opts o = {0};
    o.sync = sync;
    o.group_interval_ms = 20;
    s_reopen_pub_store(w, "pub-sync", &o, d, sizeof d);
    evb_err err;
    s_new_pub(w);
    const char *cats[] = {"show"};
    s_new_sub(w, cats, 1);
    evb_pub_stats ps;
    uint64_t last = 0, behind = 0;
    for (int round = 0; round < 200; round++) {
        last = s_append(w, "show-1", 5);
        assert_int_equal(evb_pub_poll(w->pub, 0, &err), EVB_OK);
        evb_pub_get_stats(w->pub, &ps);
        /* the invariant: nothing goes out that a power loss could take back */
        assert_true(ps.published <= evb_store_synced(w->pst));
        behind += ps.published < last;
        assert_int_equal(evb_sub_poll(w->sub, 0, &err), EVB_OK);
    }
    s_until(w, "show", EVB_FEED_LIVE, last);
    evb_pub_get_stats(w->pub, &ps);
    assert_int_equal(ps.published, last);
    if (sync == EVB_SYNC_GROUP)
        assert_true(behind > 0); /* group fsync did hold events back */
    s_check_effects(w, "show", 0);
}

static void test_published_never_ahead_of_synced_group(void **state)
{
    s_check_published_le_synced(*state, EVB_SYNC_GROUP);
}

static void test_published_never_ahead_of_synced_every(void **state)
{
    s_check_published_le_synced(*state, EVB_SYNC_EVERY);
}

/* A live feed that reads more events in one turn than one batch holds, and
 * catch-up pages larger than a live message may be. */
static void test_big_turns_and_big_pages(void **state)
{
    world *w = *state;
    s_new_pub(w);
    const char *cats[] = {"show"};
    s_new_sub(w, cats, 1);
    uint64_t a = s_append(w, "show-1", 10);
    s_until(w, "show", EVB_FEED_LIVE, a);
    /* 12,000 events reach the subscriber's queue before it looks. */
    uint64_t b = s_append(w, "show-1", 12000);
    evb_err err;
    assert_int_equal(evb_pub_poll(w->pub, 0, &err), EVB_OK);
    s_until(w, "show", EVB_FEED_LIVE, b);
    s_check_effects(w, "show", 0);
    /* 2 KB payloads: a 2,000-event page is ~4 MB, beyond one live message. */
    evb_sub_destroy(&w->sub);
    static uint8_t big[2100];
    big[0] = 0x81;
    big[1] = 0xa1;
    big[2] = 'b';
    big[3] = 0xc5;
    big[4] = 2048 >> 8;
    big[5] = 2048 & 0xff;
    uint64_t c = 0;
    for (int i = 0; i < 3000; i++) {
        evb_event_t ev = {0};
        ev.type = "Big";
        ev.payload = big;
        ev.payload_len = 6 + 2048;
        evb_append_result r;
        assert_int_equal(evb_store_append(w->pst, "show-2", EVB_EXPECT_ANY, &ev, 1, &r, &err),
                         EVB_OK);
        c = r.last_seq;
    }
    s_new_sub(w, cats, 1);
    s_until(w, "show", EVB_FEED_LIVE, c);
    s_check_effects(w, "show", 0);
}

/* ---- CZMQ ---- */

typedef struct zl_ctx {
    world *w;
    int ticks;
    uint64_t last;
    bool timed_out, done;
} zl_ctx;

static int s_zl_tick(zloop_t *loop, int id, void *arg)
{
    (void)loop;
    (void)id;
    zl_ctx *z = arg;
    if (z->ticks++ < 20) { /* the service appends in its loop's thread */
        z->last = s_append(z->w, "show-9", 50);
        return 0;
    }
    want wt = {"show", EVB_FEED_LIVE, z->last, false, {0}};
    evb_err err;
    evb_sub_status(z->w->sub, s_on_feed, &wt, &err);
    if (wt.found && wt.got.state == EVB_FEED_LIVE && wt.got.applied >= z->last) {
        z->done = true;
        return -1; /* ends zloop_start */
    }
    return 0;
}

static int s_zl_deadline(zloop_t *loop, int id, void *arg)
{
    (void)loop;
    (void)id;
    ((zl_ctx *)arg)->timed_out = true;
    return -1;
}

static void test_zloop_runs_publisher_and_subscriber(void **state)
{
    world *w = *state;
    s_new_pub(w);
    const char *cats[] = {"show"};
    zloop_t *loop = zloop_new();
    assert_non_null(loop);
    evb_err err;
    assert_int_equal(evb_pub_attach(w->pub, loop, &err), EVB_OK);
    /* Attached before following: the follow adds its sockets to the loop. */
    evb_sub_opts so = {0};
    so.store = w->sst;
    so.consumer = "test";
    so.handler = s_handler;
    so.ctx = w;
    w->sub = evb_sub_new(&so, &err);
    assert_non_null(w->sub);
    assert_int_equal(evb_sub_attach(w->sub, loop, &err), EVB_OK);
    evb_follow_opts fo = {.categories = cats, .ncategories = 1};
    assert_int_equal(evb_sub_follow(w->sub, w->pub_ep, w->cu_ep, &fo, &err), EVB_OK);
    zl_ctx z = {w, 0, 0, false, false};
    zloop_timer(loop, 10, 0, s_zl_tick, &z);
    zloop_timer(loop, 30000, 1, s_zl_deadline, &z);
    zloop_start(loop);
    zloop_destroy(&loop);
    assert_false(z.timed_out);
    assert_true(z.done);
    assert_int_equal(z.last, 1000);
    s_check_effects(w, "show", 0);
}

/* ---- command socket ---- */

static int s_cmd_echo(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err)
{
    (void)ctx;
    char name[64];
    int rc = evb_map_str(args, len, "name", name, sizeof name, err);
    if (rc != EVB_OK)
        return rc == EVB_ENOTFOUND ? EVB_EINVAL : rc;
    if (strcmp(name, "nobody") == 0)
        return evb_err_set(err, EVB_EREJECTED, "nobody is not welcome");
    /* {"hello": name} */
    uint8_t head[] = {0x81, 0xa5, 'h', 'e', 'l', 'l', 'o', (uint8_t)(0xa0 | strlen(name))};
    evb_buf_append(out, head, sizeof head, NULL);
    return evb_buf_append(out, name, strlen(name), err);
}

/* {"blob": 2 MiB of bin}: a reply over the message ceiling. */
static int s_cmd_big(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err)
{
    (void)args;
    (void)len;
    (void)ctx;
    static const uint8_t head[] = {0x81, 0xa4, 'b', 'l', 'o', 'b', 0xc6, 0x00, 0x20, 0x00, 0x00};
    int rc = evb_buf_append(out, head, sizeof head, err);
    for (int i = 0; rc == EVB_OK && i < 2048; i++) {
        static const char kib[1024];
        rc = evb_buf_append(out, kib, sizeof kib, err);
    }
    return rc;
}

typedef struct cmd_world {
    evb_cmd_t *cmd;
    atomic_bool stop;
} cmd_world;

static void *s_cmd_thread(void *arg)
{
    cmd_world *cw = arg;
    evb_err err;
    while (!atomic_load(&cw->stop))
        evb_cmd_poll(cw->cmd, 10, &err);
    return NULL;
}

static void test_command_socket_replies_and_errors(void **state)
{
    world *w = *state;
    char ep[320];
    snprintf(ep, sizeof ep, "ipc://%s/cmd.sock", w->dir);
    evb_err err;
    cmd_world cw = {evb_cmd_new(&(evb_cmd_opts){.endpoint = ep}, &err), false};
    assert_non_null(cw.cmd);
    assert_int_equal(evb_cmd_on(cw.cmd, "echo", s_cmd_echo, NULL, &err), EVB_OK);
    assert_int_equal(evb_cmd_on(cw.cmd, "echo", s_cmd_echo, NULL, &err), EVB_EINVAL);
    assert_int_equal(evb_cmd_on(cw.cmd, "big", s_cmd_big, NULL, &err), EVB_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, s_cmd_thread, &cw), 0);
    evb_buf out = {0};
    static const uint8_t ann[] = {0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa3, 'a', 'n', 'n'};
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = ep}, "echo", ann,
                                  sizeof ann, 5000, &out, &err),
                     EVB_OK);
    char got[16];
    assert_int_equal(evb_map_str(out.data, out.len, "hello", got, sizeof got, &err), EVB_OK);
    assert_string_equal(got, "ann");
    static const uint8_t nobody[] = {0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa6,
                                     'n',  'o',  'b', 'o', 'd', 'y'};
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = ep}, "echo", nobody,
                                  sizeof nobody, 5000, &out, &err),
                     EVB_EREJECTED);
    assert_non_null(strstr(err.msg, "not welcome"));
    assert_int_equal(
        evb_cmd_call(&(evb_cmd_opts){.endpoint = ep}, "echo", NULL, 0, 5000, &out, &err),
        EVB_EINVAL);
    assert_non_null(strstr(err.msg, "name"));
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = ep}, "frobnicate", NULL, 0,
                                  5000, &out, &err),
                     EVB_EINVAL);
    assert_non_null(strstr(err.msg, "unknown command"));
    static const uint8_t notmap[] = {0x93, 1, 2, 3};
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = ep}, "echo", notmap,
                                  sizeof notmap, 5000, &out, &err),
                     EVB_EINVAL);
    /* Nobody at this endpoint: a clear timeout, not a hang. */
    char nowhere[320];
    snprintf(nowhere, sizeof nowhere, "ipc://%s/nobody.sock", w->dir);
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = nowhere}, "echo", ann,
                                  sizeof ann, 300, &out, &err),
                     EVB_ETIMEDOUT);
    assert_non_null(strstr(err.msg, "nobody.sock"));
    /* Garbage straight at the socket: an error reply, and the server goes on. */
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, tmo = 5000;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(d, ZMQ_RCVTIMEO, &tmo, sizeof tmo);
    assert_int_equal(zmq_connect(d, ep), 0);
    assert_true(zmq_send(d, "\xc1\xc1", 2, 0) == 2);
    char buf[256];
    int n = zmq_recv(d, buf, sizeof buf, 0);
    assert_true(n > 0);
    assert_non_null(memmem(buf, (size_t)n, "EVB_EDECODE", 11));
    /* Another version: EVB_EVERSION with the request's req_id (was 0) and
     * both versions named; a field appended after args (a later revision)
     * is skipped (was EVB_EDECODE). */
    static const unsigned char v2[] = {0x94, 0x02, 0x2a, 0xa4, 'e', 'c', 'h', 'o', 0x80};
    assert_true(zmq_send(d, v2, sizeof v2, 0) == (int)sizeof v2);
    n = zmq_recv(d, buf, sizeof buf, 0);
    assert_true(n > 3 && (unsigned char)buf[2] == 0x2a);
    assert_non_null(memmem(buf, (size_t)n, "EVB_EVERSION", 12));
    assert_non_null(memmem(buf, (size_t)n, "version 2, this peer speaks 1", 29));
    static const unsigned char more[] = {0x95, 0x01, 0x2b, 0xa4, 'e', 'c', 'h',
                                         'o',  0x81, 0xa4, 'n',  'a', 'm', 'e',
                                         0xa2, 'j',  'o',  0x91, 0x07};
    assert_true(zmq_send(d, more, sizeof more, 0) == (int)sizeof more);
    n = zmq_recv(d, buf, sizeof buf, 0);
    assert_true(n > 3 && (unsigned char)buf[2] == 0x2b);
    assert_non_null(memmem(buf, (size_t)n, "\xa2ok\x81\xa5hello\xa2jo", 12));
    zmq_close(d);
    zmq_ctx_term(ctx);
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = ep}, "echo", ann,
                                  sizeof ann, 5000, &out, &err),
                     EVB_OK);
    /* A reply over the ceiling: the caller is told so, never left to time out. */
    assert_int_equal(
        evb_cmd_call(&(evb_cmd_opts){.endpoint = ep}, "big", NULL, 0, 5000, &out, &err),
        EVB_ETOOBIG);
    assert_non_null(strstr(err.msg, "larger than the message ceiling"));
    assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = ep}, "echo", ann,
                                  sizeof ann, 5000, &out, &err),
                     EVB_OK);
    atomic_store(&cw.stop, true);
    pthread_join(t, NULL);
    assert_true(evb_cmd_bad_requests(cw.cmd) >= 2);
    evb_cmd_destroy(&cw.cmd);
    evb_buf_free(&out);
}

/* ---- persistent command client ---- */

/* "slow": answers {"hello": "late"} only once the test releases it (or after
 * the deadline), so the client's call times out first. */
typedef struct slow_ctx {
    atomic_bool release;
    atomic_int entered;
} slow_ctx;

static int s_cmd_slow(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err)
{
    (void)args;
    (void)len;
    slow_ctx *sc = ctx;
    atomic_fetch_add(&sc->entered, 1);
    int64_t end = evb_now_us() + DEADLINE_US;
    while (!atomic_load(&sc->release) && evb_now_us() < end)
        usleep(1000); /* waits for a condition the test sets */
    static const uint8_t late[] = {0x81, 0xa5, 'h', 'e', 'l', 'l', 'o', 0xa4,
                                   'l',  'a',  't', 'e'};
    return evb_buf_append(out, late, sizeof late, err);
}

static void s_start_cmd(world *w, cmd_world *cw, pthread_t *t, slow_ctx *sc, char *ep,
                        size_t cap)
{
    snprintf(ep, cap, "ipc://%s/cmd.sock", w->dir);
    evb_err err;
    cw->cmd = evb_cmd_new(&(evb_cmd_opts){.endpoint = ep}, &err);
    assert_non_null(cw->cmd);
    atomic_store(&cw->stop, false);
    assert_int_equal(evb_cmd_on(cw->cmd, "echo", s_cmd_echo, NULL, &err), EVB_OK);
    assert_int_equal(evb_cmd_on(cw->cmd, "slow", s_cmd_slow, sc, &err), EVB_OK);
    assert_int_equal(pthread_create(t, NULL, s_cmd_thread, cw), 0);
}

static void s_stop_cmd(cmd_world *cw, pthread_t t)
{
    atomic_store(&cw->stop, true);
    pthread_join(t, NULL);
    evb_cmd_destroy(&cw->cmd);
}

/* {"name": name} into b. */
static void s_name_args(evb_buf *b, const char *name)
{
    size_t n = strlen(name);
    assert_true(n < 32);
    uint8_t head[] = {0x81, 0xa4, 'n', 'a', 'm', 'e', (uint8_t)(0xa0 | n)};
    b->len = 0;
    assert_int_equal(evb_buf_append(b, head, sizeof head, NULL), EVB_OK);
    assert_int_equal(evb_buf_append(b, name, n, NULL), EVB_OK);
}

static void test_cmd_client_many_calls_on_one_socket(void **state)
{
    world *w = *state;
    cmd_world cw;
    pthread_t t;
    slow_ctx sc = {true, 0};
    char ep[320];
    s_start_cmd(w, &cw, &t, &sc, ep, sizeof ep);
    evb_err err;
    evb_cmd_client_t *c = evb_cmd_client_new(&(evb_cmd_opts){.endpoint = ep}, &err);
    assert_non_null(c);
    evb_buf args = {0}, out = {0};
    for (int i = 0; i < 500; i++) {
        char name[16], got[16];
        snprintf(name, sizeof name, "n%d", i);
        s_name_args(&args, name);
        assert_int_equal(
            evb_cmd_client_call(c, "echo", args.data, args.len, 5000, &out, &err), EVB_OK);
        assert_int_equal(evb_map_str(out.data, out.len, "hello", got, sizeof got, &err),
                         EVB_OK);
        assert_string_equal(got, name);
        /* Error replies come back on the same socket and leave it usable. */
        if (i % 100 == 0) {
            assert_int_equal(evb_cmd_client_call(c, "frobnicate", NULL, 0, 5000, &out, &err),
                             EVB_EINVAL);
            assert_non_null(strstr(err.msg, "unknown command"));
        }
    }
    evb_cmd_client_destroy(&c);
    assert_null(c);
    evb_cmd_client_destroy(&c); /* harmless again */
    s_stop_cmd(&cw, t);
    evb_buf_free(&args);
    evb_buf_free(&out);
}

static void test_cmd_client_timeout_then_good_call_drops_late_reply(void **state)
{
    world *w = *state;
    cmd_world cw;
    pthread_t t;
    slow_ctx sc = {false, 0};
    char ep[320];
    s_start_cmd(w, &cw, &t, &sc, ep, sizeof ep);
    evb_err err;
    evb_cmd_client_t *c = evb_cmd_client_new(&(evb_cmd_opts){.endpoint = ep}, &err);
    assert_non_null(c);
    evb_buf args = {0}, out = {0};
    assert_int_equal(evb_cmd_client_call(c, "slow", NULL, 0, 200, &out, &err),
                     EVB_ETIMEDOUT);
    assert_non_null(strstr(err.msg, "cmd.sock"));
    assert_int_equal(atomic_load(&sc.entered), 1); /* it was sent and is running */
    /* The server now answers the slow request, and only then reads the next
     * one: the late reply is first in the client's queue and must be dropped. */
    atomic_store(&sc.release, true);
    s_name_args(&args, "ann");
    assert_int_equal(evb_cmd_client_call(c, "echo", args.data, args.len, 5000, &out, &err),
                     EVB_OK);
    char got[16];
    assert_int_equal(evb_map_str(out.data, out.len, "hello", got, sizeof got, &err), EVB_OK);
    assert_string_equal(got, "ann");
    /* And the client goes on as usual. */
    s_name_args(&args, "bob");
    assert_int_equal(evb_cmd_client_call(c, "echo", args.data, args.len, 5000, &out, &err),
                     EVB_OK);
    assert_int_equal(evb_map_str(out.data, out.len, "hello", got, sizeof got, &err), EVB_OK);
    assert_string_equal(got, "bob");
    evb_cmd_client_destroy(&c);
    s_stop_cmd(&cw, t);
    evb_buf_free(&args);
    evb_buf_free(&out);
}

static void test_cmd_client_service_down_then_up(void **state)
{
    world *w = *state;
    char ep[320];
    snprintf(ep, sizeof ep, "ipc://%s/cmd.sock", w->dir);
    evb_err err;
    evb_cmd_client_t *c = evb_cmd_client_new(&(evb_cmd_opts){.endpoint = ep},
                                             &err); /* nobody listens yet */
    assert_non_null(c);
    evb_buf args = {0}, out = {0};
    assert_int_equal(evb_cmd_client_call(c, "slow", NULL, 0, 200, &out, &err),
                     EVB_ETIMEDOUT);
    cmd_world cw;
    pthread_t t;
    slow_ctx sc = {true, 0};
    s_start_cmd(w, &cw, &t, &sc, ep, sizeof ep);
    s_name_args(&args, "later");
    assert_int_equal(evb_cmd_client_call(c, "echo", args.data, args.len, 5000, &out, &err),
                     EVB_OK);
    char got[16];
    assert_int_equal(evb_map_str(out.data, out.len, "hello", got, sizeof got, &err), EVB_OK);
    assert_string_equal(got, "later");
    /* The request that timed out was never queued, so never carried out (had
     * it been, it would have reached the server before "later"). */
    assert_int_equal(atomic_load(&sc.entered), 0);
    evb_cmd_client_destroy(&c);
    s_stop_cmd(&cw, t);
    evb_buf_free(&args);
    evb_buf_free(&out);
}

static void test_cmd_client_bad_endpoint_is_not_einval(void **state)
{
    (void)state;
    evb_err err;
    static const char *const bad[] = {"nonsense://x", "tcp://127.0.0.1", "no-scheme"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        evb_err_clear(&err);
        assert_null(evb_cmd_client_new(&(evb_cmd_opts){.endpoint = bad[i]}, &err));
        assert_int_equal(err.code, EVB_EUNREACHABLE);
        assert_non_null(strstr(err.msg, bad[i]));
        evb_buf out = {0};
        assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = bad[i]}, "status", NULL,
                                      0, 100, &out, &err),
                         EVB_EUNREACHABLE);
        assert_int_equal(evb_cmd_call(&(evb_cmd_opts){.endpoint = bad[i]}, "status", NULL,
                                      0, 100, &out, NULL),
                         EVB_EUNREACHABLE);
        evb_buf_free(&out);
    }
    char longep[EVB_BUS_MAX_ENDPOINT + 16];
    memset(longep, 'a', sizeof longep - 1);
    longep[sizeof longep - 1] = '\0';
    memcpy(longep, "ipc://", 6);
    assert_null(evb_cmd_client_new(&(evb_cmd_opts){.endpoint = longep}, &err));
    assert_int_equal(err.code, EVB_EUNREACHABLE);
    assert_string_equal(evb_code_name(EVB_EUNREACHABLE), "EVB_EUNREACHABLE");
    assert_int_equal(evb_code_from_name("EVB_EUNREACHABLE"), EVB_EUNREACHABLE);
    assert_non_null(strstr(evb_strerror(EVB_EUNREACHABLE), "EVB_EUNREACHABLE"));
}

int main(void)
{
    evb_log_set_sink(NULL, NULL, EVB_LOG_ERROR + 1); /* quiet: the tests check states */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prefix_categories_do_not_mix, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_late_joiner_gets_history_then_live, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_log_order_follower, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tap_history_in_log_order, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_tap_live_only_by_category, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_tap_follows_a_recreated_log, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_restart_resumes_without_duplicates, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_refusing_handler_stalls_then_skip, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_fix, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_requests_are_answered_and_counted,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_publisher_of_another_version, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_past_head_and_unknown_name, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_lost_publisher_is_in_history_and_caught_up_after, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_recreated_publisher_log_stops_feed, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_command_socket_replies_and_errors, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_cmd_client_many_calls_on_one_socket, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(
            test_cmd_client_timeout_then_good_call_drops_late_reply, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cmd_client_service_down_then_up, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_cmd_client_bad_endpoint_is_not_einval,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_live_hole_stalls_only_the_categories_in_it,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_live_hole_without_index_stalls_every_category,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_published_never_ahead_of_synced_group,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_big_turns_and_big_pages, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_zloop_runs_publisher_and_subscriber, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_published_never_ahead_of_synced_every,
                                        s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
