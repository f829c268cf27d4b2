/*
 * sub.c: the subscriber (PROTOCOL.md, "Subscriber", "Switch-over").
 *
 * Each feed's decisions (catching up, live, gaps, duplicates, the
 * switch-over) are the feed engine's (feed.c): this file gives it what it
 * needs to act on them. Applying is a store transaction: the handler per
 * event, then the feed's checkpoint, so an event's effects and the record
 * that it was applied cannot part. A feed is one category of a publisher's
 * log, or every category in log order with one checkpoint (category "*").
 * Before a run of events goes to the handler, an attempt is recorded; a feed
 * that makes no progress in SUB_MAX_ATTEMPTS stalls until an operator
 * retries or skips. Duplicates are recognised by sequence alone (seq <=
 * applied), never by id.
 *
 * What an operator reads in the log of a feed, each line naming the
 * publisher (its service and endpoints) and a sequence: connected (the
 * publisher's log met, the checkpoint read), live, catching up (a warning
 * when a live feed falls behind), stalled or stopped (errors), and for the
 * publisher lost (a warning) and back. A change is logged once, when it
 * happens; a feed that flips faster than S_TRANS_PER_S a second has the
 * rest counted and the state they left logged when the second is over.
 */
#include "evbus_bus.h"
#include "busmsg.h"
#include "codec_int.h"
#include "curve.h"
#include "feed.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define SUB_MAX_MSGS_PER_TURN 50000
#define SUB_LIVE_MAX_BYTES (16u * 1024u * 1024u) /* live events kept per feed */
#define MAX_FRAMES (EVB_BUS_MAX_PAGE_EVENTS + 2) /* a page: header + events */
#define SUB_MAX_ATTEMPTS 5 /* attempts without progress before a feed stalls */

typedef struct conn conn;

typedef struct feed {
    bf_feed core; /* state, position, what is kept, counters (feed.h) */
    evb_sub_t *s;
    conn *c;
    char category[EVB_MAX_CATEGORY_LEN + 1]; /* "*": every category, in log order */
    /* The oldest event seen and not applied yet, for the lag in seconds:
     * stale once applied reaches pending_seq. */
    uint64_t pending_seq;
    int64_t pending_ts_us;
    uint64_t att_pos;   /* durable attempt record: position it started from */
    uint32_t att_count; /* attempts from att_pos without progress (crashes count) */
    char last_error[160];
    uint64_t applied_events, refusals;
    /* The last changes (a ring, hist_n of them, the next at hist_next). */
    struct {
        int64_t at_ms;
        int what; /* an evb_feed_state, or H_LOST / H_BACK */
        char why[120];
    } hist[EVB_FEED_HISTORY];
    unsigned hist_n, hist_next;
    /* Changes between live and catching up are logged as they happen, but
     * at most S_TRANS_PER_S a second (a busy feed can flip many times): the
     * changes left out are counted, and the state they left is logged once
     * when the second is over (s_timers). */
    const char *consumer;
    int64_t tlog_us;   /* the second the lines are counted in began here */
    unsigned tlog_n;   /* lines logged in it */
    uint64_t tskipped; /* changes left out since the last line */
} feed;

#define S_TRANS_PER_S 2 /* catching up, then live: both at once */

/* How log lines name a publisher and a feed: "SERVICE PUB,CU" (the service
 * as its heartbeats or hello name it, once heard) and "SERVICE PUB,CU/CAT",
 * whose "PUB,CU/CAT" is what `evbus feed retry|skip` takes. */
#define S_LABEL_LEN                                                                      \
    (EVB_MAX_SERVICE_LEN + 2 * EVB_BUS_MAX_ENDPOINT + EVB_MAX_CATEGORY_LEN + 8)

enum { H_LOST = 100, H_BACK };

struct conn {
    char pub_ep[EVB_BUS_MAX_ENDPOINT], cu_ep[EVB_BUS_MAX_ENDPOINT];
    char name[2 * EVB_BUS_MAX_ENDPOINT + 2];
    void *sub, *dealer;
    bool all;       /* every category: a feed for each as it shows up */
    bool log_order; /* every category as one feed, in log order */
    bool have_log_id;
    evb_id log_id;
    uint64_t head;
    uint64_t start_head; /* the log's head when the conn met its log (a tap's start) */
    int64_t last_hb_us;   /* last heartbeat, 0 = none yet */
    int64_t last_seen_us; /* last heartbeat or reply: the dead-publisher timer */
    int64_t last_heard_us; /* the same, never reset: the lost-publisher timer */
    bool lost;             /* nothing heard for lost_after_ms */
    bool rejoin;           /* the hello out is a reconnect's: recheck live feeds */
    char service[EVB_MAX_SERVICE_LEN + 1]; /* as its heartbeats name it */
    uint64_t hello_req;
    int64_t hello_deadline;
    unsigned hello_wait_ms; /* current re-ask interval */
    feed **feeds;
    size_t nfeeds;
    uint64_t bad_frames;
    bm_ratelog bad_log; /* "bad frame" lines */
    /* The publisher speaks another protocol version (PROTOCOL.md,
     * "Versions"): why its feeds do not move, for the status; "" if not. */
    char version_why[1024];
    /* Security (PROTOCOL.md, "Security"): the publisher's key ("": plain)
     * and the handshakes of the SUB [0] and the DEALER [1]. */
    char server_key[EVB_CURVE_Z85];
    evb_curve_link link[2];
    int64_t hs_log_us;
};

struct evb_sub {
    evb_sub_opts o;
    char consumer[EVB_MAX_CONSUMER_LEN + 1];
    void *zctx;
    conn **conns;
    size_t nconns;
    uint64_t next_req;
    evb_buf msg;
    evb_event_t ev;
    zmq_pollitem_t *items; /* two per conn */
    zloop_t *loop;         /* attached to, or NULL */
    zl_hook zl;
    evb_wire_reply reply;           /* parse buffers, per object (not static: */
    evb_wire_view *views;                /* two subscribers may live in two threads) */
    evb_curve_keys keys;            /* our certificate (keys.on), else plain */
    char server_key[EVB_CURVE_Z85]; /* evb_sub_opts.curve->server_key, or "" */
    /* A tap (evb_tap_new): no store, positions in memory, on_event instead
     * of the handler's transaction, holes gone past. */
    bool tap;
    evb_tap_opts t;
};

struct evb_tap {
    evb_sub_t *s;
};

const char *evb_feed_state_name(evb_feed_state s)
{
    switch (s) {
    case EVB_FEED_CATCHING_UP:
        return "catching-up";
    case EVB_FEED_LIVE:
        return "live";
    case EVB_FEED_STALLED:
        return "stalled";
    case EVB_FEED_STOPPED:
        return "stopped";
    }
    return "?";
}

static const char *s_hist_name(int what)
{
    return what == H_LOST ? "publisher-lost"
           : what == H_BACK ? "publisher-back"
                            : evb_feed_state_name((evb_feed_state)what);
}

/* Record a change in the feed's history. */
static void s_hist(feed *f, int what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_hist(feed *f, int what, const char *fmt, ...)
{
    unsigned i = f->hist_next;
    f->hist[i].at_ms = evb_now_us() / 1000;
    f->hist[i].what = what;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->hist[i].why, sizeof f->hist[i].why, fmt, ap);
    va_end(ap);
    f->hist_next = (i + 1) % EVB_FEED_HISTORY;
    if (f->hist_n < EVB_FEED_HISTORY) f->hist_n++;
}

static const char *s_plabel(const conn *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", c->service, c->service[0] ? " " : "", c->name);
    return out;
}

static const char *s_flabel(const feed *f, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s/%s", f->c->service, f->c->service[0] ? " " : "",
             f->c->name, f->category);
    return out;
}

/* Why the feed entered its state: the newest entry of the state itself (a
 * publisher-lost or -back entry may have come after it). */
static const char *s_state_why(const feed *f)
{
    for (unsigned k = 1; k <= f->hist_n; k++) {
        unsigned r = (f->hist_next + EVB_FEED_HISTORY - k) % EVB_FEED_HISTORY;
        if (f->hist[r].what == (int)f->core.state) return f->hist[r].why;
    }
    return "";
}

/* One line for the feed's state, live or catching up, and why. Falling
 * behind is a warning; catching up to start, after an operator's retry or
 * skip, or to check what went out while the publisher was away is not. */
static void s_trans_line(feed *f, evb_log_level level, const char *why, uint64_t skipped)
{
    char label[S_LABEL_LEN], more[48] = "";
    s_flabel(f, label, sizeof label);
    if (skipped > 0)
        snprintf(more, sizeof more, " (%llu changes not logged)",
                 (unsigned long long)skipped);
    if (f->core.state == EVB_FEED_LIVE)
        evb_log(level, "consumer %s, %s: live at %llu: %s%s", f->consumer, label,
                (unsigned long long)f->core.applied, why, more);
    else
        evb_log(level,
                "consumer %s, %s: catching up from %llu, publisher head %llu: %s%s",
                f->consumer, label, (unsigned long long)f->core.applied,
                (unsigned long long)f->c->head, why, more);
}

/* A change between live and catching up: logged now if this second has
 * room, else counted (s_trans_pending logs where it led). */
static void s_trans_log(feed *f, evb_feed_state was, const char *why)
{
    int64_t now = evb_now_us();
    if (now - f->tlog_us >= 1000000) {
        f->tlog_us = now;
        f->tlog_n = 0;
    }
    if (f->tlog_n >= S_TRANS_PER_S) {
        f->tskipped++;
        return;
    }
    f->tlog_n++;
    bool behind =
        f->core.state == EVB_FEED_CATCHING_UP && was == EVB_FEED_LIVE && !f->core.probing;
    s_trans_line(f, behind ? EVB_LOG_WARN : EVB_LOG_INFO, why, f->tskipped);
    f->tskipped = 0;
}

/* Changes were left out and their second is over: the state they left,
 * once, with their count. Stalled and stopped feeds were logged as they
 * stopped. */
static void s_trans_pending(feed *f, int64_t now)
{
    if (f->tskipped == 0 || now - f->tlog_us < 1000000) return;
    if (f->core.state == EVB_FEED_LIVE || f->core.state == EVB_FEED_CATCHING_UP) {
        s_trans_line(f, f->core.state == EVB_FEED_LIVE ? EVB_LOG_INFO : EVB_LOG_WARN,
                     s_state_why(f), f->tskipped);
        f->tlog_us = now;
        f->tlog_n = 1;
    }
    f->tskipped = 0;
}

/* The engine's word that the feed changed state: into the history (with
 * the reason of a stalled or stopped feed), and into the log (s_trans_log)
 * once the feed has a position. A start from catching up (a checkpoint
 * loaded) is no change: s_load said where the feed starts. Stalled and
 * stopped feeds are logged where they stop, as errors. */
static void s_entered(void *ctx, bf_feed *core, evb_feed_state was, const char *why)
{
    (void)core;
    feed *f = ctx;
    evb_feed_state st = f->core.state;
    bool said = st == EVB_FEED_STALLED || st == EVB_FEED_STOPPED;
    s_hist(f, (int)st, "%s", said ? f->core.reason : why);
    if (!said && was != st && f->core.positioned) s_trans_log(f, was, why);
}

static int64_t s_clock(void *ctx)
{
    (void)ctx;
    return evb_now_us();
}

/* Stall or stop the feed (reason says why) and log it as an error. */
static void s_halt(feed *f, evb_feed_state st, const char *reason)
{
    bf_stop(&f->core, st, reason);
    char label[S_LABEL_LEN];
    evb_log(EVB_LOG_ERROR, "consumer %s, %s: feed %s at %llu: %s", f->consumer,
            s_flabel(f, label, sizeof label),
            st == EVB_FEED_STALLED ? "STALLED" : "STOPPED",
            (unsigned long long)f->core.applied, f->core.reason);
}

static evb_sub_t *s_new(const evb_sub_opts *o, evb_err *err);

evb_sub_t *evb_sub_new(const evb_sub_opts *o, evb_err *err)
{
    if (o == NULL || o->store == NULL || o->handler == NULL || o->consumer == NULL) {
        evb_err_set(err, EVB_EINVAL,
                    "subscriber: store, consumer and handler are required");
        return NULL;
    }
    return s_new(o, err);
}

static evb_sub_t *s_new(const evb_sub_opts *o, evb_err *err)
{
    size_t cn = strlen(o->consumer);
    if (cn == 0 || cn > EVB_MAX_CONSUMER_LEN) {
        evb_err_set(err, EVB_EINVAL, "subscriber: consumer name must be 1..%u bytes",
                    EVB_MAX_CONSUMER_LEN);
        return NULL;
    }
    evb_sub_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        return NULL;
    }
    s->o = *o;
    memcpy(s->consumer, o->consumer, cn + 1);
    s->o.consumer = s->consumer;
    if (s->o.page_events == 0 || s->o.page_events > EVB_BUS_MAX_PAGE_EVENTS)
        s->o.page_events = 2000;
    if (s->o.fetch_timeout_ms == 0) s->o.fetch_timeout_ms = 3000;
    if (s->o.dead_after_ms == 0) s->o.dead_after_ms = 5000;
    if (s->o.lost_after_ms == 0) s->o.lost_after_ms = 1000;
    if (s->o.rcvhwm <= 0) s->o.rcvhwm = 100000;
    if (s->o.live_buffer == 0) s->o.live_buffer = 10000;
    s->next_req = 1;
    s->o.curve = NULL; /* borrowed for this call only */
    if (o->curve != NULL &&
        (evb_curve_keys_load(o->curve->cert_file, &s->keys, err) != EVB_OK ||
         (o->curve->server_key != NULL && o->curve->server_key[0] != '\0' &&
          evb_curve_server_key(o->curve->server_key, s->server_key, err) != EVB_OK))) {
        evb_curve_keys_wipe(&s->keys);
        free(s);
        return NULL;
    }
    s->views = calloc(MAX_FRAMES, sizeof *s->views);
    s->zctx = s->views ? zmq_ctx_new() : NULL;
    if (s->zctx == NULL) {
        evb_err_set(err, EVB_EIO, "zmq_ctx_new: %s", zmq_strerror(errno));
        evb_curve_keys_wipe(&s->keys);
        free(s->views);
        free(s);
        return NULL;
    }
    return s;
}

static void s_feed_free(feed *f)
{
    bf_free(&f->core);
    free(f);
}

static int s_zl_conn(evb_sub_t *s, conn *c);

static void s_conn_free(conn *c)
{
    for (size_t j = 0; j < c->nfeeds; j++)
        s_feed_free(c->feeds[j]);
    free(c->feeds);
    evb_curve_link_close(&c->link[0]);
    evb_curve_link_close(&c->link[1]);
    if (c->sub) zmq_close(c->sub);
    if (c->dealer) zmq_close(c->dealer);
    free(c);
}

void evb_sub_destroy(evb_sub_t **sp)
{
    if (sp == NULL || *sp == NULL) return;
    evb_sub_t *s = *sp;
    for (size_t i = 0; i < s->nconns; i++)
        s_conn_free(s->conns[i]);
    free(s->conns);
    free(s->items);
    if (s->zctx) zmq_ctx_term(s->zctx);
    evb_curve_keys_wipe(&s->keys);
    evb_buf_free(&s->msg);
    evb_event_clear(&s->ev);
    free(s->views);
    free(s);
    *sp = NULL;
}

/* ---- helpers ---- */

static void s_bad_frame(conn *c, const char *why);

/* A message that did not parse: a bad frame, and when it is of another
 * protocol version, the reason the status shows (both versions named). */
static void s_bad_msg(conn *c, const evb_err *perr, const char *fallback)
{
    if (perr->code == EVB_EVERSION)
        snprintf(c->version_why, sizeof c->version_why,
                 "publisher %s speaks another bus protocol version: %.200s", c->name,
                 perr->msg);
    s_bad_frame(c, perr->msg[0] ? perr->msg : fallback);
}

static void s_bad_frame(conn *c, const char *why)
{
    c->bad_frames++;
    uint64_t skipped;
    if (bm_ratelog_ok(&c->bad_log, &skipped))
        evb_log(EVB_LOG_WARN, "bad frame from %s: %s (%llu more not logged)", c->name, why,
                (unsigned long long)skipped);
}

static int s_apply_op(void *ctx, bf_feed *core, const evb_wire_view *frames, size_t n,
                      uint64_t position, bool *refused, evb_err *err);
static bool s_fetch_op(void *ctx, bf_feed *core, uint64_t req_id);
static const bf_ops s_feed_ops = {s_apply_op, s_fetch_op, s_entered, s_clock};

/* The feed of category (EVB_ALL_CATEGORIES: the conn's one feed in log
 * order), made when create says so. */
static feed *s_feed(evb_sub_t *s, conn *c, const char *category, bool create)
{
    if (c->log_order) category = EVB_ALL_CATEGORIES;
    for (size_t i = 0; i < c->nfeeds; i++)
        if (strcmp(c->feeds[i]->category, category) == 0) return c->feeds[i];
    if (!create) return NULL;
    feed **nf = realloc(c->feeds, (c->nfeeds + 1) * sizeof *nf);
    if (nf == NULL) return NULL;
    c->feeds = nf;
    feed *f = calloc(1, sizeof *f);
    if (f == NULL) return NULL;
    f->s = s;
    f->c = c;
    f->consumer = s->consumer;
    snprintf(f->category, sizeof f->category, "%s", category);
    bf_limits lim = {.kept_events = s->o.live_buffer,
                     .kept_bytes = SUB_LIVE_MAX_BYTES,
                     .batch = MAX_FRAMES - 1,
                     .fetch_timeout_us = (int64_t)s->o.fetch_timeout_ms * 1000,
                     .retry_soon_us = (int64_t)s->o.fetch_timeout_ms * 1000,
                     .holes = s->tap ? BF_HOLE_SKIP : BF_HOLE_STALL};
    bf_init(&f->core, c->log_order ? BF_IN_LOG_ORDER : BF_BY_CATEGORY, &lim, &s_feed_ops, f,
            &s->next_req);
    s_hist(f, EVB_FEED_CATCHING_UP, "followed");
    c->feeds[c->nfeeds++] = f;
    return f;
}

/* Send a request frame on the conn's DEALER; false when no peer takes it now
 * (ZMQ_IMMEDIATE: nothing queues for a publisher that is not there). */
static bool s_send(conn *c, const evb_buf *b)
{
    return zmq_send(c->dealer, b->data, b->len, ZMQ_DONTWAIT) >= 0;
}

static void s_hello(evb_sub_t *s, conn *c)
{
    s->msg.len = 0;
    c->hello_req = s->next_req++;
    /* Re-ask soon at first: with ZMQ_IMMEDIATE a hello sent before the
     * connection is up is dropped, not queued. Then back off to the fetch
     * timeout. */
    c->hello_wait_ms = c->hello_wait_ms ? c->hello_wait_ms * 2 : 20;
    if (c->hello_wait_ms > s->o.fetch_timeout_ms)
        c->hello_wait_ms = s->o.fetch_timeout_ms;
    c->hello_deadline = evb_now_us() + (int64_t)c->hello_wait_ms * 1000;
    if (evb_wire_hello(&s->msg, c->hello_req, NULL) == EVB_OK) (void)s_send(c, &s->msg);
}

/* The engine asks for the events after the feed's position. */
static bool s_fetch_op(void *ctx, bf_feed *core, uint64_t req_id)
{
    feed *f = ctx;
    evb_sub_t *s = f->s;
    s->msg.len = 0;
    return evb_wire_fetch(&s->msg, req_id, f->c->log_order ? "" : f->category,
                          core->applied, s->o.page_events, NULL) == EVB_OK &&
           s_send(f->c, &s->msg);
}

/* ---- attempts ----
 * Before a run of events is handed to the handler, the feed records in its
 * store (position, attempts): an attempt from the same position as the last
 * recorded one means the last one made no progress (the handler refused, or
 * the process died in it), so crashes count too. After SUB_MAX_ATTEMPTS
 * without progress the feed stalls until an operator retries or skips. The
 * records live among the consumer's keys under a "\0evb:" prefix. */
static size_t s_feed_key(evb_sub_t *s, const feed *f, const char *kind, char *key)
{
    size_t n = 0, cl = strlen(s->consumer), kl = strlen(kind), catl = strlen(f->category);
    key[n++] = '\0';
    memcpy(key + n, "evb:", 4);
    n += 4;
    memcpy(key + n, kind, kl);
    n += kl;
    key[n++] = '\0';
    memcpy(key + n, s->consumer, cl);
    n += cl;
    key[n++] = '\0';
    memcpy(key + n, f->c->log_id.b, EVB_ID_LEN);
    n += EVB_ID_LEN;
    memcpy(key + n, f->category, catl);
    return n + catl;
}

static int s_att_load(evb_sub_t *s, feed *f, evb_err *err)
{
    char key[EVB_MAX_KEY_LEN];
    size_t kl = s_feed_key(s, f, "att", key);
    f->att_pos = 0;
    f->att_count = 0;
    int rc = evb_store_get(s->o.store, key, kl, &s->msg, err);
    if (rc == EVB_ENOTFOUND) {
        evb_err_clear(err);
        return EVB_OK;
    }
    if (rc != EVB_OK) return rc;
    if (s->msg.len == 12) {
        const uint8_t *p = (const uint8_t *)s->msg.data;
        for (int i = 0; i < 8; i++)
            f->att_pos = (f->att_pos << 8) | p[i];
        for (int i = 8; i < 12; i++)
            f->att_count = (f->att_count << 8) | p[i];
    }
    return EVB_OK;
}

static int s_att_write(evb_sub_t *s, feed *f, uint64_t pos, uint32_t count, evb_err *err)
{
    char key[EVB_MAX_KEY_LEN];
    size_t kl = s_feed_key(s, f, "att", key);
    uint8_t v[12];
    for (int i = 0; i < 8; i++)
        v[i] = (uint8_t)(pos >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        v[8 + i] = (uint8_t)(count >> (24 - 8 * i));
    evb_txn_t *tx = evb_txn_begin(s->o.store, err);
    if (tx == NULL) return err ? err->code : EVB_EBUSY;
    int rc = evb_txn_put(tx, key, kl, v, sizeof v, err);
    if (rc == EVB_OK) rc = evb_txn_commit(&tx, err);
    evb_txn_destroy(&tx);
    if (rc == EVB_OK) {
        f->att_pos = pos;
        f->att_count = count;
    }
    return rc;
}

/* Count an attempt from the feed's position; false (and the feed stalled)
 * when it has had its share. */
static bool s_attempt(evb_sub_t *s, feed *f, int *rc, evb_err *err)
{
    uint64_t at = f->core.applied;
    uint32_t count = (f->att_pos == at && f->att_count > 0) ? f->att_count + 1 : 1;
    if (count > SUB_MAX_ATTEMPTS) {
        char why[256];
        snprintf(why, sizeof why,
                 "no progress past %llu after %u attempts: %.100s; retry or skip it",
                 (unsigned long long)at, f->att_count,
                 f->last_error[0] ? f->last_error : "the process died in the handler");
        s_halt(f, EVB_FEED_STALLED, why);
        *rc = EVB_OK;
        return false;
    }
    *rc = s_att_write(s, f, at, count, err);
    return *rc == EVB_OK;
}

/* A tap's feed starts where its options say: from an event on (catching up
 * to it), the last events before the log's head when the conn met the log,
 * or live from that head. */
static void s_tap_load(evb_sub_t *s, feed *f)
{
    if (s->t.from > 0) {
        bf_start(&f->core, s->t.from - 1, "history asked for");
        return;
    }
    if (s->t.last > 0) {
        uint64_t head = f->c->start_head;
        bf_start(&f->core, head > s->t.last ? head - s->t.last : 0,
                 "the last events asked for");
        return;
    }
    bf_start_live(&f->core, f->c->start_head);
}

/* Read the feed's checkpoint for the conn's log and start catching up. */
static int s_load(evb_sub_t *s, feed *f, evb_err *err)
{
    if (s->tap) {
        s_tap_load(s, f);
        return EVB_OK;
    }
    uint64_t seq;
    int rc = evb_store_checkpoint_get(s->o.store, s->consumer, &f->c->log_id, f->category,
                                      &seq, err);
    if (rc != EVB_OK) return rc;
    if ((rc = s_att_load(s, f, err)) != EVB_OK) return rc;
    char label[S_LABEL_LEN], hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&f->c->log_id, hex);
    /* The heartbeat that brought the log has not moved c->head yet. */
    uint64_t head = f->c->head > f->c->start_head ? f->c->head : f->c->start_head;
    evb_log(
        EVB_LOG_INFO,
        "consumer %s, %s: connected to log %s, following from %llu, publisher head %llu",
        s->consumer, s_flabel(f, label, sizeof label), hex, (unsigned long long)seq,
        (unsigned long long)head);
    if (f->att_pos == seq && f->att_count >= SUB_MAX_ATTEMPTS) {
        char why[256];
        snprintf(why, sizeof why,
                 "no progress past %llu after %u attempts (before a restart); retry or "
                 "skip it",
                 (unsigned long long)seq, f->att_count);
        f->core.applied = seq;
        f->core.positioned = true;
        s_halt(f, EVB_FEED_STALLED, why);
        return EVB_OK;
    }
    bf_start(&f->core, seq, "checkpoint loaded");
    return EVB_OK;
}

/* A log id heard from the publisher: learn it, or react to a change. */
static bool s_check_log(evb_sub_t *s, conn *c, const evb_id *log_id, uint64_t head,
                        evb_err *err)
{
    if (!c->have_log_id) {
        /* One log, one set of checkpoints: a second connection to the same
         * log (another spelling of its endpoints, a copy served elsewhere)
         * would apply every event again. */
        for (size_t i = 0; i < s->nconns; i++) {
            const conn *o = s->conns[i];
            if (o != c && o->have_log_id &&
                memcmp(&o->log_id, log_id, sizeof *log_id) == 0) {
                for (size_t j = 0; j < c->nfeeds; j++) {
                    feed *f = c->feeds[j];
                    if (f->core.state == EVB_FEED_STOPPED) continue;
                    char why[256];
                    snprintf(why, sizeof why,
                             "same log as publisher %.200s: followed once only", o->name);
                    bf_stop(&f->core, EVB_FEED_STOPPED, why);
                    evb_log(EVB_LOG_ERROR, "publisher %s, category %s: %s", c->name,
                            f->category, f->core.reason);
                }
                return false;
            }
        }
        c->log_id = *log_id;
        c->have_log_id = true;
        c->start_head = head;
        for (size_t i = 0; i < c->nfeeds; i++)
            if (!c->feeds[i]->core.positioned && s_load(s, c->feeds[i], err) != EVB_OK)
                return false;
        return true;
    }
    if (memcmp(&c->log_id, log_id, sizeof *log_id) == 0) return true;
    char was[EVB_ID_HEX_LEN + 1], now[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&c->log_id, was);
    evb_id_to_hex(log_id, now);
    if (s->o.log_id_policy == EVB_LOGID_RESTART) {
        evb_log(EVB_LOG_WARN,
                "publisher %s: log id changed from %s to %s (log recreated); starting "
                "over from sequence 1 as configured",
                c->name, was, now);
        c->log_id = *log_id;
        c->head = c->start_head = head;
        for (size_t i = 0; i < c->nfeeds; i++) {
            feed *f = c->feeds[i];
            bf_reset(&f->core);
            if (f->core.state != EVB_FEED_STOPPED && s_load(s, f, err) != EVB_OK)
                return false;
        }
        return false;
    }
    for (size_t i = 0; i < c->nfeeds; i++) {
        feed *f = c->feeds[i];
        if (f->core.state == EVB_FEED_STOPPED) continue;
        evb_log(
            EVB_LOG_ERROR,
            "publisher %s, category %s: log id changed from %s to %s (its log was "
            "wiped and recreated); feed stopped at %llu. Its old events are not in the "
            "new log: check the publisher, then restart this consumer with the "
            "restart policy to start over from sequence 1",
            c->name, f->category, was, now, (unsigned long long)f->core.applied);
        char why[256];
        snprintf(why, sizeof why, "publisher log id changed from %s to %s", was, now);
        bf_stop(&f->core, EVB_FEED_STOPPED, why);
    }
    return false;
}

/* ---- applying ---- */

/* The handler refused seq (or it does not decode): the attempt failed. The
 * next attempt from the same position counts on (s_attempt). */
static void s_refused(evb_sub_t *s, feed *f, uint64_t seq, const char *type,
                      const char *why)
{
    f->refusals++;
    snprintf(f->last_error, sizeof f->last_error, "event %llu (%.40s): %.100s",
             (unsigned long long)seq, type, why);
    char label[S_LABEL_LEN];
    evb_log(EVB_LOG_WARN, "consumer %s, %s: event %llu (%s) not applied (attempt %u): %s",
            s->consumer, s_flabel(f, label, sizeof label), (unsigned long long)seq, type,
            f->att_count, why);
}

typedef enum { RUN_OK, RUN_STOPPED, RUN_RETRY_SINGLY } run_result;

/* One transaction over frames[0..n): handler per event, then the checkpoint
 * (at least `position`), then commit. With `batch`, any trouble aborts the
 * whole transaction and asks for a retry one event at a time; unbatched runs
 * hold at most one event, and stop (nothing committed) if it cannot go in. */
static int s_run(evb_sub_t *s, feed *f, const evb_wire_view *frames, size_t n,
                 uint64_t position, bool batch, run_result *res, evb_err *err)
{
    *res = RUN_OK;
    evb_txn_t *tx = evb_txn_begin(s->o.store, err);
    if (tx == NULL) return err ? err->code : EVB_EBUSY;
    uint64_t pos = f->core.applied, done = 0, dups = 0;
    for (size_t i = 0; i < n && *res == RUN_OK; i++) {
        evb_err e;
        evb_err_clear(&e);
        if (evb_event_decode_into(frames[i].p, frames[i].len, &s->ev, &e) != EVB_OK) {
            s_bad_frame(f->c, e.msg);
            *res = batch ? RUN_RETRY_SINGLY : RUN_STOPPED;
            if (!batch) s_refused(s, f, pos + 1, "?", e.msg);
            break;
        }
        const evb_event_t *ev = &s->ev;
        if (ev->seq <= pos) {
            dups++;
            continue;
        }
        if (f->pending_seq <= f->core.applied || ev->seq < f->pending_seq) {
            f->pending_seq = ev->seq;
            f->pending_ts_us = ev->ts_us;
        }
        if ((!f->c->log_order && strcmp(ev->category, f->category) != 0) ||
            memcmp(&ev->log_id, &f->c->log_id, sizeof ev->log_id) != 0) {
            s_bad_frame(f->c, "an event of another category or log in a feed");
            *res = batch ? RUN_RETRY_SINGLY : RUN_STOPPED;
            break;
        }
        if (s->o.handler(ev, tx, s->o.ctx, &e) != EVB_OK) {
            *res = batch ? RUN_RETRY_SINGLY : RUN_STOPPED;
            if (!batch)
                s_refused(s, f, ev->seq, ev->type, e.msg[0] ? e.msg : "handler refused");
            break;
        }
        pos = ev->seq;
        done++;
    }
    if (*res == RUN_RETRY_SINGLY) {
        evb_txn_destroy(&tx);
        return EVB_OK;
    }
    /* Unbatched runs hold one event, so a stopped run has applied nothing:
     * the handler's writes for the refused event are discarded with tx. */
    if (*res == RUN_OK && position > pos) pos = position;
    f->core.duplicates += dups;
    if (pos <= f->core.applied || *res == RUN_STOPPED) {
        evb_txn_destroy(&tx);
        return EVB_OK;
    }
    EVB_CRASH("sub.before_commit"); /* handler done, effects not committed */
    int rc = evb_txn_checkpoint(tx, s->consumer, &f->c->log_id, f->category, pos, err);
    if (rc == EVB_OK) rc = evb_txn_commit(&tx, err);
    if (rc == EVB_OK) EVB_CRASH("sub.after_commit");
    evb_txn_destroy(&tx);
    if (rc != EVB_OK) return rc;
    f->core.applied = pos;
    f->applied_events += done;
    if (done > 0) f->last_error[0] = '\0';
    return EVB_OK;
}

/* Apply frames[0..n) (envelopes in log order) and move the feed's position to
 * at least `position` when all of them went in. One transaction for the lot;
 * if anything goes wrong, again one event per transaction, stopping at the
 * event that cannot be applied (*refused). */
static int s_apply(evb_sub_t *s, feed *f, const evb_wire_view *frames, size_t n,
                   uint64_t position, bool *refused, evb_err *err)
{
    *refused = false;
    run_result res;
    int rc;
    if (n > 0 && !s_attempt(s, f, &rc, err)) {
        *refused = true;
        return rc;
    }
    /* A repeated attempt goes one event at a time, to find the one at fault. */
    bool batch = n > 1 && f->att_count <= 1;
    if (batch || n <= 1) {
        rc = s_run(s, f, frames, n, position, batch, &res, err);
        if (rc != EVB_OK || res == RUN_OK) return rc;
        if (res == RUN_STOPPED) {
            *refused = true;
            return EVB_OK;
        }
    }
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && f->core.applied != f->att_pos && !s_attempt(s, f, &rc, err)) {
            *refused = true;
            return rc;
        }
        rc = s_run(s, f, &frames[k], 1, 0, false, &res, err);
        if (rc != EVB_OK) return rc;
        if (res != RUN_OK) {
            *refused = true;
            return EVB_OK;
        }
    }
    if (position > f->core.applied)
        return s_run(s, f, NULL, 0, position, false, &res, err);
    return EVB_OK;
}

/* A tap's apply: each event after the position to on_event, in order; one
 * that does not decode, or of another category or log, is a bad frame and
 * passed over. */
static int s_tap_apply(feed *f, const evb_wire_view *frames, size_t n, uint64_t position,
                       bool *refused, evb_err *err)
{
    evb_sub_t *s = f->s;
    uint64_t before = f->core.applied;
    for (size_t i = 0; i < n; i++) {
        evb_err e;
        if (evb_event_decode_into(frames[i].p, frames[i].len, &s->ev, &e) != EVB_OK) {
            s_bad_frame(f->c, e.msg);
            continue;
        }
        if (s->ev.seq <= f->core.applied) {
            f->core.duplicates++;
            continue;
        }
        if ((!f->c->log_order && strcmp(s->ev.category, f->category) != 0) ||
            memcmp(&s->ev.log_id, &f->c->log_id, sizeof s->ev.log_id) != 0) {
            s_bad_frame(f->c, "an event of another category or log in a feed");
            continue;
        }
        evb_tap_event te = {&s->ev, frames[i].p, frames[i].len, f->c->name,
                            f->c->service[0] ? f->c->service : s->ev.service,
                            evb_now_us()};
        int rc = s->t.on_event(&te, s->t.ctx, err);
        if (rc != EVB_OK) return rc; /* the event is not passed: it comes again */
        f->core.applied = s->ev.seq;
        f->applied_events++;
    }
    if (position > f->core.applied) f->core.applied = position;
    /* Frames that took it nowhere (all bad): asked for again after a
     * back-off, not at once. */
    if (n > 0 && f->core.applied == before) {
        *refused = true;
        f->core.retry_after_us = (int64_t)s->o.fetch_timeout_ms * 1000;
    }
    return EVB_OK;
}

/* The engine applies through here; a refusal is offered again after a
 * back-off that grows with the attempts. */
static int s_apply_op(void *ctx, bf_feed *core, const evb_wire_view *frames, size_t n,
                      uint64_t position, bool *refused, evb_err *err)
{
    feed *f = ctx;
    if (f->s->tap) return s_tap_apply(f, frames, n, position, refused, err);
    int rc = s_apply(f->s, f, frames, n, position, refused, err);
    if (*refused) core->retry_after_us = 100000LL * f->att_count;
    return rc;
}

/* ---- receiving ---- */

/* Where a conn's feeds are, for the lost and back lines: "show at 3,
 * booking at 5" (as many as fit in cap, then how many more). */
static const char *s_positions(const conn *c, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    if (c->nfeeds == 0) {
        snprintf(out, cap, "no feeds yet");
        return out;
    }
    for (size_t i = 0; i < c->nfeeds; i++) {
        const feed *f = c->feeds[i];
        char one[EVB_MAX_CATEGORY_LEN + 32];
        int n = snprintf(one, sizeof one, "%s%s at %llu", i ? ", " : "", f->category,
                         (unsigned long long)f->core.applied);
        if (o + (size_t)n + 24 >= cap) {
            snprintf(out + o, cap - o, " and %zu more", c->nfeeds - i);
            break;
        }
        memcpy(out + o, one, (size_t)n + 1);
        o += (size_t)n;
    }
    return out;
}

/* Heard from the publisher at now. After it was lost, its live feeds catch
 * up once: what it published while the link was down never reached us. */
static void s_heard(evb_sub_t *s, conn *c, int64_t now)
{
    int64_t quiet_ms = (now - c->last_heard_us) / 1000;
    c->last_heard_us = now;
    if (!c->lost) return;
    c->lost = false;
    char label[S_LABEL_LEN], where[256];
    evb_log(EVB_LOG_INFO, "consumer %s, %s: publisher back after %.1f s; %s", s->consumer,
            s_plabel(c, label, sizeof label), (double)quiet_ms / 1000.0,
            s_positions(c, where, sizeof where));
    for (size_t i = 0; i < c->nfeeds; i++) {
        feed *f = c->feeds[i];
        if (f->core.state == EVB_FEED_LIVE && f->core.positioned && f->core.fetch_req == 0) {
            bf_recheck(&f->core, "publisher back: fetching what went out meanwhile");
        } else {
            s_hist(f, H_BACK, "after %.1f s", (double)quiet_ms / 1000.0);
        }
    }
}

static int s_on_heartbeat(evb_sub_t *s, conn *c, const void *body, size_t len,
                          evb_err *err)
{
    evb_wire_reply *rp = &s->reply;
    evb_err perr;
    evb_err_clear(&perr);
    size_t used;
    if (evb_wire_parse_reply(body, len, rp, &used, &perr) != EVB_OK ||
        rp->kind != EVB_WIRE_HB) {
        s_bad_msg(c, &perr, "heartbeat topic, other message");
        return EVB_OK;
    }
    c->version_why[0] = '\0';
    c->last_hb_us = c->last_seen_us = evb_now_us();
    s_heard(s, c, c->last_hb_us);
    snprintf(c->service, sizeof c->service, "%s", rp->service);
    if (!s_check_log(s, c, &rp->log_id, rp->head, err))
        return err && err->code ? err->code : EVB_OK;
    if (rp->head > c->head) c->head = rp->head;
    /* In log order, the one feed hears the log's head; by category, each
     * feed its category's (s_feed makes the feeds of a follow of every
     * category as they show up). */
    size_t n = c->log_order ? 1 : rp->nheads;
    for (size_t i = 0; i < n; i++) {
        feed *f = s_feed(s, c, c->log_order ? EVB_ALL_CATEGORIES : rp->heads[i].name,
                         c->all || c->log_order);
        if (f == NULL) continue;
        if (!f->core.positioned) {
            int rc = s_load(s, f, err);
            if (rc != EVB_OK) return rc;
            continue;
        }
        int rc = bf_on_heartbeat(&f->core, c->log_order ? rp->head : rp->heads[i].head,
                                 rp->head, err);
        if (rc != EVB_OK) return rc;
    }
    return EVB_OK;
}

/* The end of a turn: apply the live events each feed gathered. */
static int s_flush_conn(conn *c, evb_err *err)
{
    for (size_t i = 0; i < c->nfeeds; i++) {
        int rc = bf_flush(&c->feeds[i]->core, err);
        if (rc != EVB_OK) return rc;
    }
    return EVB_OK;
}

/* A live message: cat from its topic; body = header then envelope. */
static int s_on_live(evb_sub_t *s, conn *c, const char *cat, const uint8_t *body,
                     size_t blen, evb_err *err)
{
    uint64_t prev;
    size_t hlen;
    evb_err perr;
    evb_err_clear(&perr);
    if (evb_wire_parse_live_header(body, blen, &prev, &hlen, &perr) != EVB_OK) {
        s_bad_msg(c, &perr, "live header");
        return EVB_OK;
    }
    evb_wire_view env = {body + hlen, blen - hlen};
    if (evb_event_decode_into(env.p, env.len, &s->ev, &perr) != EVB_OK) {
        s_bad_frame(c, perr.msg);
        return EVB_OK;
    }
    if (strcmp(s->ev.category, cat) != 0 || prev >= s->ev.seq) {
        s_bad_frame(c, "live event: topic or prev disagrees with the envelope");
        return EVB_OK;
    }
    if (!c->have_log_id)
        return EVB_OK; /* not yet introduced: the catch-up will bring it */
    /* Another log behind the same endpoints, met by this event: a tap
     * restarted live starts just before it. */
    if (!s_check_log(s, c, &s->ev.log_id, s->ev.seq - 1, err))
        return err && err->code ? err->code : EVB_OK;
    feed *f = s_feed(s, c, cat, c->all || c->log_order);
    if (f == NULL) return EVB_OK;
    uint64_t seq = s->ev.seq;
    if (!f->core.positioned) {
        int rc = s_load(s, f, err);
        if (rc != EVB_OK) return rc;
    }
    if (seq > c->head) c->head = seq;
    /* Live events that follow on are gathered and applied together at the
     * end of the turn (s_flush_conn): one transaction for all of them. */
    return bf_on_live(&f->core, seq, prev, env.p, env.len, err);
}

static int s_on_reply(evb_sub_t *s, conn *c, const uint8_t *msg, size_t mlen,
                      evb_err *err)
{
    evb_wire_reply *rp = &s->reply;
    evb_err perr;
    evb_err_clear(&perr);
    size_t used;
    if (evb_wire_parse_reply(msg, mlen, rp, &used, &perr) != EVB_OK ||
        rp->kind == EVB_WIRE_HB) {
        s_bad_msg(c, &perr, "a heartbeat on the catch-up socket");
        return EVB_OK;
    }
    if (rp->kind == EVB_WIRE_ERROR && strcmp(rp->code, "EVB_EVERSION") == 0) {
        /* It does not speak our version: its message names its own. */
        snprintf(c->version_why, sizeof c->version_why,
                 "publisher %s refuses bus protocol %u: %s", c->name, EVB_BUS_PROTOCOL,
                 rp->message);
        s_bad_frame(c, c->version_why);
        return EVB_OK;
    }
    c->version_why[0] = '\0';
    c->last_seen_us = evb_now_us();
    s_heard(s, c, c->last_seen_us);
    if (rp->kind == EVB_WIRE_HELLO) {
        if (rp->req_id != c->hello_req) return EVB_OK; /* an answer to an older hello */
        c->hello_req = 0;
        c->hello_wait_ms = 0;
        if (rp->service[0]) snprintf(c->service, sizeof c->service, "%s", rp->service);
        if (rp->head > c->head) c->head = rp->head;
        if (!s_check_log(s, c, &rp->log_id, rp->head, err))
            return err && err->code ? err->code : EVB_OK;
        /* Known log (reconnect): feeds that were live check for a gap. */
        bool rejoin = c->rejoin;
        c->rejoin = false;
        for (size_t i = 0; i < c->nfeeds; i++) {
            feed *f = c->feeds[i];
            if (!f->core.positioned) {
                int rc = s_load(s, f, err);
                if (rc != EVB_OK) return rc;
            } else if (rejoin) {
                bf_recheck(&f->core, "reconnected: fetching what went out meanwhile");
            }
        }
        return EVB_OK;
    }
    feed *f = NULL;
    for (size_t i = 0; i < c->nfeeds && f == NULL; i++)
        if (bf_takes_reply(&c->feeds[i]->core, rp->req_id)) f = c->feeds[i];
    if (f == NULL) return EVB_OK; /* a reply to a fetch we gave up on */
    if (rp->kind == EVB_WIRE_HOLE) {
        if (!s_check_log(s, c, &rp->log_id, rp->head, err))
            return err && err->code ? err->code : EVB_OK;
        if (rp->head > c->head) c->head = rp->head;
        /* Applying on would lose the hole's events without a word: the feed
         * stalls and an operator decides (skip them, or serve a salvaged
         * log). A hole behind the position is fetched past. */
        uint64_t before = f->core.applied;
        bf_on_hole(&f->core, rp->hole_from, rp->hole_to);
        if (f->core.applied > before)
            evb_log(EVB_LOG_WARN,
                    "%s: events %llu..%llu of its log cannot be read (the log is damaged): "
                    "going on after them",
                    c->name, (unsigned long long)(before + 1 > rp->hole_from ? before + 1
                                                                               : rp->hole_from),
                    (unsigned long long)rp->hole_to);
        char label[S_LABEL_LEN];
        if (f->core.state == EVB_FEED_STALLED)
            evb_log(EVB_LOG_ERROR, "consumer %s, %s: feed STALLED at %llu: %s",
                    s->consumer, s_flabel(f, label, sizeof label),
                    (unsigned long long)f->core.applied, f->core.reason);
        return EVB_OK;
    }
    if (rp->kind == EVB_WIRE_ERROR) {
        evb_log(EVB_LOG_WARN, "publisher %s refused a fetch of %s after %llu: %s %s",
                c->name, f->category, (unsigned long long)f->core.applied, rp->code,
                rp->message);
        bf_on_refusal(&f->core);
        return EVB_OK;
    }
    /* The envelopes follow the header in the same frame: find their bounds
     * (each is checked again when it is decoded). */
    size_t count;
    if (evb_wire_split(msg + used, mlen - used, s->views, rp->count, &count, NULL) !=
            EVB_OK ||
        count != rp->count) {
        s_bad_frame(c, "page: its events disagree with its header");
        f->core.fetch_deadline = 0; /* ask again now */
        return EVB_OK;
    }
    if (rp->more && count == 0) {
        s_bad_frame(c, "page: says more but holds no event");
        bf_on_refusal(&f->core); /* ask again after the timeout */
        return EVB_OK;
    }
    if (!s_check_log(s, c, &rp->log_id, rp->head, err))
        return err && err->code ? err->code : EVB_OK;
    if (rp->head > c->head) c->head = rp->head;
    return bf_on_page(&f->core, s->views, count, rp->position, rp->more, err);
}

static int s_read_sub(evb_sub_t *s, conn *c, evb_err *err, size_t *handled)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return s_flush_conn(c, err);
        }
        int rc = EVB_OK;
        char cat[EVB_MAX_CATEGORY_LEN + 1];
        const uint8_t *body = NULL;
        size_t blen = 0;
        const char *why = NULL;
        if (evb_wire_drain(c->sub, zmq_msg_more(&m)) != 0) {
            s_bad_frame(c, "a multipart message on the live socket");
        } else {
            switch (evb_wire_live_topic(zmq_msg_data(&m), zmq_msg_size(&m), cat, &body,
                                        &blen, &why)) {
            case EVB_WIRE_LIVE_HB:
                rc = s_on_heartbeat(s, c, body, blen, err);
                break;
            case EVB_WIRE_LIVE_EVENT:
                rc = s_on_live(s, c, cat, body, blen, err);
                break;
            case EVB_WIRE_LIVE_BAD:
                s_bad_frame(c, why);
                break;
            }
        }
        zmq_msg_close(&m);
        if (rc != EVB_OK) return rc;
        if (++*handled >= SUB_MAX_MSGS_PER_TURN) return s_flush_conn(c, err);
    }
}

static int s_read_dealer(evb_sub_t *s, conn *c, evb_err *err, size_t *handled)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return EVB_OK;
        }
        int rc = EVB_OK;
        if (evb_wire_drain(c->dealer, zmq_msg_more(&m)) != 0)
            s_bad_frame(c, "a multipart message on the catch-up socket");
        else
            rc = s_on_reply(s, c, zmq_msg_data(&m), zmq_msg_size(&m), err);
        zmq_msg_close(&m);
        if (rc != EVB_OK) return rc;
        if (++*handled >= SUB_MAX_MSGS_PER_TURN / 100) return EVB_OK;
    }
}

/* ---- public ---- */

/* Make the conn's sockets; EVB_OK or an error naming the endpoint. */
static int s_conn_open(evb_sub_t *s, conn *c, const char *const *categories, size_t n,
                       evb_err *err)
{
    c->sub = zmq_socket(s->zctx, ZMQ_SUB);
    c->dealer = zmq_socket(s->zctx, ZMQ_DEALER);
    if (c->sub == NULL || c->dealer == NULL)
        return evb_err_set(err, EVB_EIO, "socket: %s", zmq_strerror(errno));
    evb_wire_sub_sockopts(c->sub, c->dealer, s->o.rcvhwm);
    void *socks[2] = {c->sub, c->dealer};
    if (n == 0) {
        zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, "E", 1);
        if (c->log_order && s_feed(s, c, EVB_ALL_CATEGORIES, true) == NULL)
            return evb_err_set(err, EVB_ENOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++) {
            char topic[EVB_WIRE_TOPIC_MAX];
            size_t tl = evb_wire_topic_event(topic, categories[i]);
            if (tl == 0)
                return evb_err_set(err, EVB_EINVAL, "category '%s' is not one",
                                   categories[i]);
            zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, topic, tl);
            if (s_feed(s, c, categories[i], true) == NULL)
                return evb_err_set(err, EVB_ENOMEM, "out of memory");
        }
    }
    /* Both sockets are watched, plain ones too: a plain subscriber of a
     * CURVE publisher is told so instead of waiting forever. */
    for (int i = 0; i < 2; i++) {
        int rc = c->server_key[0]
                     ? evb_curve_make_client(socks[i], &s->keys, c->server_key, err)
                     : EVB_OK;
        if (rc != EVB_OK) return rc;
        rc = evb_curve_link_open(&c->link[i], s->zctx, socks[i],
                                 i == 0 ? c->pub_ep : c->cu_ep,
                                 c->server_key[0] ? &s->keys : NULL, err);
        if (rc != EVB_OK) return rc;
    }
    return evb_wire_sub_connect(c->sub, c->dealer, c->pub_ep, c->cu_ep, err);
}

int evb_sub_follow(evb_sub_t *s, const char *pub_ep, const char *cu_ep,
                   const evb_follow_opts *opts, evb_err *err)
{
    static const evb_follow_opts every = {0};
    if (opts == NULL) opts = &every;
    const char *const *categories = opts->categories;
    size_t n = opts->ncategories;
    const char *server_key =
        opts->server_key != NULL && opts->server_key[0] != '\0' ? opts->server_key
                                                                  : s->server_key;
    char key[EVB_CURVE_Z85] = "";
    if (server_key[0] != '\0') {
        if (!s->keys.on)
            return evb_err_set(err, EVB_EINVAL,
                               "follow %s: a server key needs our own certificate "
                               "(evb_sub_opts.curve)",
                               pub_ep ? pub_ep : "?");
        if (evb_curve_server_key(server_key, key, err) != EVB_OK) return EVB_EINVAL;
    }
    if (pub_ep == NULL || cu_ep == NULL || strlen(pub_ep) >= EVB_BUS_MAX_ENDPOINT ||
        strlen(cu_ep) >= EVB_BUS_MAX_ENDPOINT)
        return evb_err_set(err, EVB_EINVAL, "follow: two endpoints of at most %u bytes",
                           EVB_BUS_MAX_ENDPOINT - 1);
    if (opts->log_order && n > 0)
        return evb_err_set(err, EVB_EINVAL,
                           "follow %s: log order takes every category; name none", pub_ep);
    for (size_t i = 0; i < n; i++)
        if (evb_check_category(categories[i], err) != EVB_OK) return EVB_EINVAL;
    conn *c = calloc(1, sizeof *c);
    if (c == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
    snprintf(c->pub_ep, sizeof c->pub_ep, "%s", pub_ep);
    snprintf(c->cu_ep, sizeof c->cu_ep, "%s", cu_ep);
    snprintf(c->name, sizeof c->name, "%s,%s", pub_ep, cu_ep);
    memcpy(c->server_key, key, sizeof key);
    c->log_order = opts->log_order;
    c->all = n == 0 && !opts->log_order;
    /* Built whole before it joins the subscriber: a failed follow leaves
     * nothing half-made behind. */
    int rc = s_conn_open(s, c, categories, n, err);
    conn **nc = rc == EVB_OK ? realloc(s->conns, (s->nconns + 1) * sizeof *nc) : NULL;
    zmq_pollitem_t *np = nc ? realloc(s->items, 2 * (s->nconns + 1) * sizeof *np) : NULL;
    if (nc) s->conns = nc;
    if (np) s->items = np;
    if (rc == EVB_OK && (nc == NULL || np == NULL))
        rc = evb_err_set(err, EVB_ENOMEM, "out of memory");
    if (rc != EVB_OK) {
        s_conn_free(c);
        return rc;
    }
    s->conns[s->nconns++] = c;
    if (s->loop != NULL && s_zl_conn(s, c) != 0)
        return evb_err_set(err, EVB_ENOMEM, "follow: cannot add %s to the zloop",
                           c->name);
    c->last_seen_us = c->last_heard_us = evb_now_us();
    s_hello(s, c);
    return EVB_OK;
}

/* Drop a publisher's connection and its feeds. What they applied is in the
 * checkpoints (keyed by the log id, not the endpoints), so following the same
 * log at new endpoints resumes exactly there; buffered live events are
 * dropped (they are fetched again). Called between two polls, or from
 * another handler of the same zloop. */
int evb_sub_unfollow(evb_sub_t *s, const char *pub_ep, const char *cu_ep, evb_err *err)
{
    for (size_t i = 0; i < s->nconns; i++) {
        conn *c = s->conns[i];
        if (strcmp(c->pub_ep, pub_ep ? pub_ep : "") != 0 ||
            (cu_ep != NULL && strcmp(c->cu_ep, cu_ep) != 0))
            continue;
        if (s->loop != NULL) {
            zl_remove_socket(s->loop, c->sub);
            zl_remove_socket(s->loop, c->dealer);
        }
        memmove(&s->conns[i], &s->conns[i + 1], (s->nconns - i - 1) * sizeof *s->conns);
        s->nconns--;
        s_conn_free(c);
        return EVB_OK;
    }
    return evb_err_set(err, EVB_ENOTFOUND, "unfollow: not following %s,%s",
                       pub_ep ? pub_ep : "", cu_ep ? cu_ep : "*");
}

/* Handshake events of a conn's sockets: a refused or failed handshake is
 * logged (again when the reason changes, or every minute while it lasts) and
 * shown in the feeds' status until a handshake passes; the link connects
 * again after a back-off. */
static void s_watch(evb_sub_t *s, conn *c)
{
    int64_t now = evb_now_us();
    for (int i = 0; i < 2; i++) {
        evb_curve_link *l = &c->link[i];
        evb_curve_ev ev = evb_curve_link_check(l, now);
        if (ev == EVB_CURVE_EV_OK) {
            if (!c->link[0].bad && !c->link[1].bad)
                evb_log(EVB_LOG_INFO, "consumer %s, %s: handshake accepted now",
                        s->consumer, c->name);
        } else if (ev != EVB_CURVE_EV_NONE ||
                   (l->bad && now - c->hs_log_us >= 60000000)) {
            evb_log(EVB_LOG_ERROR, "consumer %s, %s: %s (%llu failed handshakes)",
                    s->consumer, c->name, l->why,
                    (unsigned long long)(c->link[0].failures + c->link[1].failures));
            c->hs_log_us = now;
        }
    }
}

static const char *s_hs_why(const conn *c)
{
    return c->link[0].bad   ? c->link[0].why
           : c->link[1].bad ? c->link[1].why
                            : c->version_why;
}

/* Timers: hellos and fetches that got no answer, refusal back-offs, and
 * publishers that went quiet. */
static void s_timers(evb_sub_t *s)
{
    int64_t now = evb_now_us();
    for (size_t i = 0; i < s->nconns; i++) {
        conn *c = s->conns[i];
        if (!c->lost && now - c->last_heard_us > (int64_t)s->o.lost_after_ms * 1000) {
            c->lost = true;
            double quiet = (double)(now - c->last_heard_us) / 1e6;
            char label[S_LABEL_LEN], where[256];
            evb_log(EVB_LOG_WARN,
                    "consumer %s, %s: publisher lost, nothing heard for %.1f s; %s",
                    s->consumer, s_plabel(c, label, sizeof label), quiet,
                    s_positions(c, where, sizeof where));
            for (size_t j = 0; j < c->nfeeds; j++)
                s_hist(c->feeds[j], H_LOST, "nothing heard for %.1f s", quiet);
        }
        if (now - c->last_seen_us > (int64_t)s->o.dead_after_ms * 1000) {
            /* Quiet for too long: dial the live endpoint again (its SUB has
             * no ZMTP heartbeats), ask again who is there (a restarted
             * publisher may have a new log) and re-check every feed. */
            c->last_seen_us = now;
            evb_wire_sub_redial(c->sub, c->pub_ep);
            c->rejoin = true;
            s_hello(s, c);
        } else if (c->hello_req != 0 && now > c->hello_deadline) {
            s_hello(s, c);
        }
        for (size_t j = 0; j < c->nfeeds; j++) {
            feed *f = c->feeds[j];
            s_trans_pending(f, now);
            bf_tick(&f->core);
        }
    }
}

int evb_sub_poll(evb_sub_t *s, int timeout_ms, evb_err *err)
{
    evb_err_clear(err);
    size_t n = 2 * s->nconns;
    zmq_pollitem_t *items = s->items;
    for (size_t i = 0; i < s->nconns; i++) {
        items[2 * i] = (zmq_pollitem_t){s->conns[i]->sub, 0, ZMQ_POLLIN, 0};
        items[2 * i + 1] = (zmq_pollitem_t){s->conns[i]->dealer, 0, ZMQ_POLLIN, 0};
    }
    if (timeout_ms > 100 || timeout_ms < 0)
        timeout_ms = 100; /* timers need a turn now and then */
    int64_t now = evb_now_us();
    for (size_t i = 0; i < s->nconns; i++) { /* ... and a hello retry sooner */
        const conn *c = s->conns[i];
        if (c->hello_req != 0) {
            int64_t ms = (c->hello_deadline - now) / 1000 + 1;
            if (ms < timeout_ms) timeout_ms = ms < 0 ? 0 : (int)ms;
        }
    }
    int rc = n ? zmq_poll(items, (int)n, timeout_ms) : 0;
    if (rc < 0 && errno != EINTR)
        return evb_err_set(err, EVB_EIO, "zmq_poll: %s", zmq_strerror(errno));
    size_t handled = 0;
    for (size_t i = 0; i < s->nconns; i++) {
        conn *c = s->conns[i];
        if ((rc = s_read_dealer(s, c, err, &handled)) != EVB_OK) return rc;
        if ((rc = s_read_sub(s, c, err, &handled)) != EVB_OK) return rc;
        s_watch(s, c);
    }
    s_timers(s);
    return EVB_OK;
}

/* The age of the oldest event of the category not applied yet: 0 when
 * caught up, NaN while that event has not been seen (a catch-up between two
 * pages, live events still buffered). Event times are the publisher's
 * clock. */
static double s_lag_seconds(const feed *f, const conn *c, int64_t now)
{
    uint64_t applied = f->core.applied;
    bool behind = f->core.heard > applied && c->head > applied;
    if (!behind) return 0.0;
    if (f->pending_seq <= applied) return 0.0 / 0.0;
    double age = (double)(now - f->pending_ts_us) / 1e6;
    return age > 0 ? age : 0.0;
}

int evb_sub_status(evb_sub_t *s, evb_feed_fn fn, void *ctx, evb_err *err)
{
    (void)err;
    int64_t now = evb_now_us();
    evb_feed_change hist[EVB_FEED_HISTORY];
    for (size_t i = 0; i < s->nconns; i++) {
        conn *c = s->conns[i];
        if (c->nfeeds == 0 && (c->link[0].bad || c->link[1].bad || c->version_why[0])) {
            /* Following every category of a publisher that never let us in
             * (or speaks another protocol version): no feed exists yet, but
             * the refusal must show. */
            evb_feed_status fs = {
                .publisher = c->name,
                .category = "*",
                .state = EVB_FEED_CATCHING_UP,
                .reason = s_hs_why(c),
                .heartbeat_age_ms = -1,
                .handshake_refusals = c->link[0].failures + c->link[1].failures,
                .bad_frames = c->bad_frames,
                .publisher_service = c->service,
                .publisher_lost = c->lost,
            };
            int rc = fn(&fs, ctx);
            if (rc != 0) return rc;
        }
        for (size_t j = 0; j < c->nfeeds; j++) {
            feed *f = c->feeds[j];
            evb_feed_status fs = {
                .publisher = c->name,
                .category = f->category,
                .log_id = c->log_id,
                .applied = f->core.applied,
                .head = c->head,
                /* Lag counts the log's events after applied, but only while
                 * the category has events we lack: a caught-up feed of a
                 * quiet category shows 0 however busy the log is. */
                .lag = (f->core.heard > f->core.applied && c->head > f->core.applied)
                           ? c->head - f->core.applied
                           : 0,
                .state = f->core.state,
                .reason = f->core.reason[0] ? f->core.reason : s_hs_why(c),
                .applied_events = f->applied_events,
                .duplicates = f->core.duplicates,
                .gaps = f->core.gaps,
                .pages = f->core.pages,
                .bad_frames = c->bad_frames,
                .refusals = f->refusals,
                .heartbeat_age_ms = c->last_hb_us ? (now - c->last_hb_us) / 1000 : -1,
                .handshake_refusals = c->link[0].failures + c->link[1].failures,
                .hole_from = f->core.state == EVB_FEED_STALLED ? f->core.hole_from : 0,
                .hole_to = f->core.state == EVB_FEED_STALLED ? f->core.hole_to : 0,
                .lag_seconds = s_lag_seconds(f, c, now),
                .publisher_service = c->service,
                .publisher_lost = c->lost,
                .history = hist,
                .nhistory = f->hist_n,
                .dropped_live = f->core.dropped_live,
                .unreadable = f->core.unreadable,
            };
            unsigned first = (f->hist_next + EVB_FEED_HISTORY - f->hist_n) % EVB_FEED_HISTORY;
            for (unsigned k = 0; k < f->hist_n; k++) {
                unsigned r = (first + k) % EVB_FEED_HISTORY;
                hist[k] = (evb_feed_change){f->hist[r].at_ms, s_hist_name(f->hist[r].what),
                                            f->hist[r].why};
            }
            int rc = fn(&fs, ctx);
            if (rc != 0) return rc;
        }
    }
    return EVB_OK;
}

/* ---- operator actions ---- */

static feed *s_find_feed(evb_sub_t *s, const char *publisher, const char *category,
                         evb_err *err)
{
    for (size_t i = 0; i < s->nconns; i++) {
        conn *c = s->conns[i];
        if (publisher != NULL && strcmp(publisher, c->name) != 0 &&
            strcmp(publisher, c->pub_ep) != 0)
            continue;
        for (size_t j = 0; j < c->nfeeds; j++)
            if (strcmp(c->feeds[j]->category, category) == 0) return c->feeds[j];
    }
    evb_err_set(err, EVB_ENOTFOUND, "no feed %s/%s", publisher ? publisher : "*",
                category);
    return NULL;
}

int evb_sub_retry(evb_sub_t *s, const char *publisher, const char *category, evb_err *err)
{
    feed *f = s_find_feed(s, publisher, category, err);
    if (f == NULL) return EVB_ENOTFOUND;
    if (f->core.state != EVB_FEED_STALLED)
        return evb_err_set(err, EVB_EINVAL, "feed %s/%s is %s, not stalled", f->c->name,
                           category, evb_feed_state_name(f->core.state));
    int rc = s_att_write(s, f, f->core.applied, 0, err);
    if (rc != EVB_OK) return rc;
    char label[S_LABEL_LEN];
    evb_log(EVB_LOG_INFO, "consumer %s, %s: retry from %llu by operator", s->consumer,
            s_flabel(f, label, sizeof label), (unsigned long long)f->core.applied);
    f->core.reason[0] = '\0';
    bf_start(&f->core, f->core.applied, "retried by the operator");
    return EVB_OK;
}

int evb_sub_skip(evb_sub_t *s, const char *publisher, const char *category, uint64_t seq,
                 evb_err *err)
{
    feed *f = s_find_feed(s, publisher, category, err);
    if (f == NULL) return EVB_ENOTFOUND;
    if (f->core.state != EVB_FEED_STALLED)
        return evb_err_set(err, EVB_EINVAL, "feed %s/%s is %s, not stalled", f->c->name,
                           category, evb_feed_state_name(f->core.state));
    if (seq <= f->core.applied)
        return evb_err_set(err, EVB_EINVAL, "feed %s/%s is already past %llu", f->c->name,
                           category, (unsigned long long)seq);
    /* The skip is recorded with the checkpoint that passes over it. */
    char key[EVB_MAX_KEY_LEN];
    size_t kl = s_feed_key(s, f, "skip", key);
    for (int i = 0; i < 8; i++)
        key[kl++] = (char)(seq >> (56 - 8 * i));
    char val[256];
    int vl =
        snprintf(val, sizeof val, "skipped by operator at %lld us; applied was %llu; %s",
                 (long long)evb_now_us(), (unsigned long long)f->core.applied, f->core.reason);
    evb_txn_t *tx = evb_txn_begin(s->o.store, err);
    if (tx == NULL) return err ? err->code : EVB_EBUSY;
    int rc = evb_txn_put(tx, key, kl, val,
                         (size_t)vl < sizeof val ? (size_t)vl : sizeof val - 1, err);
    if (rc == EVB_OK)
        rc = evb_txn_checkpoint(tx, s->consumer, &f->c->log_id, category, seq, err);
    if (rc == EVB_OK) rc = evb_txn_commit(&tx, err);
    evb_txn_destroy(&tx);
    if (rc != EVB_OK) return rc;
    char label[S_LABEL_LEN];
    evb_log(EVB_LOG_WARN, "consumer %s, %s: events up to %llu skipped by operator",
            s->consumer, s_flabel(f, label, sizeof label), (unsigned long long)seq);
    f->core.reason[0] = '\0';
    bf_start(&f->core, seq, "events skipped by the operator");
    return EVB_OK;
}

/* ---- CZMQ ---- */

static int s_poll_any(void *s, int timeout_ms, evb_err *err)
{
    return evb_sub_poll(s, timeout_ms, err);
}

static int s_zl_conn(evb_sub_t *s, conn *c)
{
    return zl_add_socket(s->loop, c->sub, &s->zl) == 0 &&
                   zl_add_socket(s->loop, c->dealer, &s->zl) == 0
               ? 0
               : -1;
}

int evb_sub_attach(evb_sub_t *s, zloop_t *loop, evb_err *err)
{
    s->loop = loop;
    s->zl = (zl_hook){s_poll_any, s, "subscriber"};
    for (size_t i = 0; i < s->nconns; i++)
        if (s_zl_conn(s, s->conns[i]) != 0)
            return evb_err_set(err, EVB_ENOMEM, "consumer %s: cannot attach to a zloop",
                               s->consumer);
    /* The timer runs fetch timeouts, hello retries and refusal back-offs. */
    if (zl_add_timer(loop, 20, &s->zl) != 0)
        return evb_err_set(err, EVB_ENOMEM, "consumer %s: cannot attach to a zloop",
                           s->consumer);
    return EVB_OK;
}

/* ---- tap ---- */

evb_tap_t *evb_tap_new(const evb_tap_opts *o, evb_err *err)
{
    if (o == NULL || o->on_event == NULL) {
        evb_err_set(err, EVB_EINVAL, "tap: on_event is required");
        return NULL;
    }
    if (o->from > 0 && o->last > 0) {
        evb_err_set(err, EVB_EINVAL, "tap: from and last exclude each other");
        return NULL;
    }
    evb_tap_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        return NULL;
    }
    evb_sub_opts so = {
        .consumer = "tap",
        .page_events = o->page_events,
        .fetch_timeout_ms = o->fetch_timeout_ms,
        .dead_after_ms = o->dead_after_ms,
        .lost_after_ms = o->lost_after_ms,
        .rcvhwm = o->rcvhwm,
        .live_buffer = o->live_buffer,
        .log_id_policy = EVB_LOGID_RESTART,
        .curve = o->curve,
    };
    t->s = s_new(&so, err);
    if (t->s == NULL) {
        free(t);
        return NULL;
    }
    t->s->tap = true;
    t->s->t = *o;
    t->s->t.curve = NULL; /* borrowed for this call only */
    return t;
}

void evb_tap_destroy(evb_tap_t **tp)
{
    if (tp == NULL || *tp == NULL) return;
    evb_sub_destroy(&(*tp)->s);
    free(*tp);
    *tp = NULL;
}

int evb_tap_follow(evb_tap_t *t, const char *pub_ep, const char *cu_ep,
                   const evb_follow_opts *opts, evb_err *err)
{
    return evb_sub_follow(t->s, pub_ep, cu_ep, opts, err);
}

int evb_tap_poll(evb_tap_t *t, int timeout_ms, evb_err *err)
{
    return evb_sub_poll(t->s, timeout_ms, err);
}

int evb_tap_status(evb_tap_t *t, evb_feed_fn fn, void *ctx, evb_err *err)
{
    return evb_sub_status(t->s, fn, ctx, err);
}
