/*
 * feed.c: the decisions of one feed (feed.h).
 *
 *   CATCHING_UP: fetch pages after `applied` until a page says no more, while
 *                live events are kept (within bounds); then apply the kept
 *                ones that follow on and go LIVE, or fetch again at a gap.
 *   LIVE:        gather live events that follow on and apply them at the end
 *                of the turn (one apply for all); drop what is applied
 *                already; on anything else (a live event whose predecessor
 *                did not come, a heartbeat counting more than came) go back to
 *                CATCHING_UP. Falling behind is a state, never a lost feed.
 *   STALLED, STOPPED: nothing moves until the owner starts the feed again.
 * Duplicates are recognised by sequence alone (seq <= applied).
 */
#include "feed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BF_KEPT_EVENTS 10000
#define BF_KEPT_BYTES (16u * 1024u * 1024u)
#define BF_BATCH (EVB_BUS_MAX_PAGE_EVENTS + 1)
#define BF_FETCH_TIMEOUT_US 3000000
#define BF_RETRY_SOON_US 200000

void bf_init(bf_feed *f, bf_kind kind, const bf_limits *lim, const bf_ops *ops, void *ctx,
             uint64_t *next_req)
{
    memset(f, 0, sizeof *f);
    f->kind = kind;
    if (lim != NULL) f->lim = *lim;
    if (f->lim.kept_events == 0) f->lim.kept_events = BF_KEPT_EVENTS;
    if (f->lim.kept_bytes == 0) f->lim.kept_bytes = BF_KEPT_BYTES;
    if (f->lim.batch == 0 || f->lim.batch > BF_BATCH) f->lim.batch = BF_BATCH;
    if (f->lim.fetch_timeout_us == 0) f->lim.fetch_timeout_us = BF_FETCH_TIMEOUT_US;
    if (f->lim.retry_soon_us == 0) f->lim.retry_soon_us = BF_RETRY_SOON_US;
    f->ops = ops;
    f->ctx = ctx;
    f->next_req = next_req;
    f->state = EVB_FEED_CATCHING_UP;
}

static void s_drop_kept(bf_feed *f)
{
    for (size_t i = 0; i < f->nkept; i++)
        free(f->kept[i].data);
    f->nkept = 0;
    f->kept_bytes = 0;
}

void bf_reset(bf_feed *f)
{
    s_drop_kept(f);
    f->positioned = false;
    f->fetch_req = 0;
    f->fetch_deadline = 0;
}

void bf_free(bf_feed *f)
{
    s_drop_kept(f);
    free(f->kept);
    f->kept = NULL;
    f->capkept = 0;
    free(f->views);
    f->views = NULL;
}

static int64_t s_now(const bf_feed *f)
{
    return f->ops->now(f->ctx);
}

static void s_enter(bf_feed *f, evb_feed_state st, const char *why)
{
    if (f->state == st) return;
    evb_feed_state was = f->state;
    f->state = st;
    if (f->ops->entered != NULL) f->ops->entered(f->ctx, f, was, why);
}

static void s_fetch(bf_feed *f)
{
    f->fetch_req = (*f->next_req)++;
    bool sent = f->ops->fetch(f->ctx, f, f->fetch_req);
    f->fetch_deadline =
        s_now(f) + (sent ? f->lim.fetch_timeout_us : f->lim.retry_soon_us);
}

/* Offer again later what apply refused (through a catch-up). */
static void s_back_off(bf_feed *f)
{
    f->fetch_req = 0;
    f->fetch_deadline = s_now(f) + f->retry_after_us;
}

/* Events were lost on the way: catch up. */
static void s_gap(bf_feed *f, const char *why)
{
    f->gaps++;
    s_enter(f, EVB_FEED_CATCHING_UP, why);
    s_fetch(f);
}

static bool s_moving(const bf_feed *f)
{
    return f->state == EVB_FEED_CATCHING_UP || f->state == EVB_FEED_LIVE;
}

/* Room for a batch of views, made once. */
static evb_wire_view *s_views(bf_feed *f)
{
    if (f->views == NULL) f->views = malloc(f->lim.batch * sizeof *f->views);
    return f->views;
}

/* Apply through the owner, which may stall or stop the feed in it (the
 * views stay valid: nothing kept is freed during the call). */
static int s_apply(bf_feed *f, const evb_wire_view *v, size_t n, uint64_t position,
                   bool *refused, evb_err *err)
{
    *refused = false;
    f->in_apply++;
    int rc = f->ops->apply(f->ctx, f, v, n, position, refused, err);
    f->in_apply--;
    return rc;
}

void bf_start(bf_feed *f, uint64_t applied, const char *why)
{
    s_drop_kept(f);
    f->positioned = true;
    f->applied = applied;
    evb_feed_state was = f->state; /* a start is recorded even from catching up */
    f->state = EVB_FEED_CATCHING_UP;
    if (f->ops->entered != NULL) f->ops->entered(f->ctx, f, was, why);
    s_fetch(f);
}

void bf_start_live(bf_feed *f, uint64_t applied)
{
    s_drop_kept(f);
    f->positioned = true;
    f->applied = applied;
    f->fetch_req = 0;
    s_enter(f, EVB_FEED_LIVE, "live from here");
}

void bf_stop(bf_feed *f, evb_feed_state st, const char *reason)
{
    snprintf(f->reason, sizeof f->reason, "%s", reason);
    s_enter(f, st, f->reason);
    f->fetch_req = 0;
    if (f->in_apply == 0) s_drop_kept(f); /* else when the apply returns */
}

/* Keep a live event: while catching up for the switch-over, while live as
 * the turn's batch. False when over the bounds (the catch-up brings it). */
static bool s_keep(bf_feed *f, uint64_t seq, uint64_t prev, const void *env, size_t len)
{
    if (f->nkept >= f->lim.kept_events || f->kept_bytes + len > f->lim.kept_bytes) {
        f->dropped_live++;
        return false;
    }
    if (f->nkept == f->capkept) {
        size_t nc = f->capkept ? f->capkept * 2 : 64;
        bf_kept *nb = realloc(f->kept, nc * sizeof *nb);
        if (nb == NULL) return false;
        f->kept = nb;
        f->capkept = nc;
    }
    char *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL) return false;
    memcpy(copy, env, len);
    f->kept[f->nkept++] = (bf_kept){seq, prev, len, copy};
    f->kept_bytes += len;
    return true;
}

int bf_on_live(bf_feed *f, uint64_t seq, uint64_t prev, const void *env, size_t len,
               evb_err *err)
{
    if (f->kind == BF_IN_LOG_ORDER) prev = seq - 1;
    if (!f->positioned) return EVB_OK; /* the owner positions a feed first */
    if (seq > f->heard) f->heard = seq;
    if (!s_moving(f)) return EVB_OK;
    if (seq <= f->applied) {
        f->duplicates++;
        return EVB_OK;
    }
    if (f->state == EVB_FEED_LIVE) {
        uint64_t upto = f->nkept ? f->kept[f->nkept - 1].seq : f->applied;
        if (seq <= upto) {
            f->duplicates++;
            return EVB_OK;
        }
        if (prev > upto) {
            int rc = bf_flush(f, err);
            if (rc != EVB_OK) return rc;
            if (f->state == EVB_FEED_LIVE) s_gap(f, "gap in the live events");
        } else if (f->nkept >= f->lim.batch || f->nkept >= f->lim.kept_events ||
                   f->kept_bytes + len > f->lim.kept_bytes) {
            int rc = bf_flush(f, err); /* keep the batch bounded */
            if (rc != EVB_OK) return rc;
            /* Whatever the flush did, this event must still follow on. */
            if (f->state == EVB_FEED_LIVE && prev > f->applied)
                s_gap(f, "gap in the live events");
        }
        if (!s_moving(f)) return EVB_OK;
    }
    s_keep(f, seq, prev, env, len);
    return EVB_OK;
}

int bf_flush(bf_feed *f, evb_err *err)
{
    if (f->state != EVB_FEED_LIVE || f->nkept == 0) return EVB_OK;
    size_t total = f->nkept;
    size_t n = total < f->lim.batch ? total : f->lim.batch;
    evb_wire_view *v = s_views(f);
    if (v == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory applying live events");
    for (size_t i = 0; i < n; i++)
        v[i] = (evb_wire_view){f->kept[i].data, f->kept[i].len};
    bool refused;
    int rc = s_apply(f, v, n, 0, &refused, err);
    s_drop_kept(f); /* what did not go in comes again by catch-up */
    if (rc != EVB_OK) return rc;
    if (refused && f->state == EVB_FEED_LIVE) {
        s_enter(f, EVB_FEED_CATCHING_UP, "the handler failed: offered again");
        s_back_off(f);
    } else if (f->state == EVB_FEED_LIVE && n < total) {
        s_enter(f, EVB_FEED_CATCHING_UP, "live batch cut short");
        s_fetch(f);
    }
    return EVB_OK;
}

/* A catch-up ended: apply the kept live events that follow on, in batches,
 * and go live; at a gap, fetch again. */
static int s_drain(bf_feed *f, evb_err *err)
{
    size_t i = 0;
    int rc = EVB_OK;
    bool refused = false, gap = false;
    evb_wire_view *v = s_views(f);
    if (v == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory applying live events");
    while (i < f->nkept && !refused && !gap && s_moving(f)) {
        size_t n = 0, j = i;
        uint64_t upto = f->applied;
        for (; j < f->nkept && n < f->lim.batch; j++) {
            const bf_kept *k = &f->kept[j];
            if (k->seq <= upto) {
                f->duplicates++;
                continue;
            }
            if (k->prev > upto) {
                gap = true;
                break;
            }
            v[n++] = (evb_wire_view){k->data, k->len};
            upto = k->seq;
        }
        if (n > 0) {
            rc = s_apply(f, v, n, 0, &refused, err);
            if (rc != EVB_OK) break;
            if (f->applied < upto) refused = true; /* stopped short */
        }
        i = j;
    }
    bool all_done = i >= f->nkept && !gap && !refused;
    s_drop_kept(f);
    if (rc != EVB_OK || f->state != EVB_FEED_CATCHING_UP) return rc;
    if (all_done) {
        s_enter(f, EVB_FEED_LIVE, "caught up");
    } else if (refused) {
        s_back_off(f);
    } else {
        f->gaps++;
        s_fetch(f);
    }
    return EVB_OK;
}

int bf_on_heartbeat(bf_feed *f, uint64_t heard, uint64_t log_head, evb_err *err)
{
    if (f->kind == BF_IN_LOG_ORDER) heard = log_head;
    if (!f->positioned) return EVB_OK;
    int rc = bf_flush(f, err);
    if (rc != EVB_OK) return rc;
    if (heard > f->heard) f->heard = heard;
    if (f->state != EVB_FEED_LIVE) return EVB_OK;
    /* The heartbeat follows every event it counts on the same socket: a head
     * beyond what was applied means the last event(s) were lost. */
    if (heard > f->applied) {
        s_gap(f, "a heartbeat counts events not received");
    } else if (log_head > f->applied) {
        /* Nothing of the feed is missing up to the log's head: the position
         * moves there, so a quiet feed shows no lag and a restart starts
         * further on. */
        bool refused;
        rc = s_apply(f, NULL, 0, log_head, &refused, err);
    }
    return rc;
}

int bf_on_page(bf_feed *f, const evb_wire_view *v, size_t n, uint64_t position, bool more,
               evb_err *err)
{
    if (!f->positioned || !s_moving(f)) return EVB_OK;
    f->pages++;
    bool refused;
    uint64_t before = f->applied;
    int rc = s_apply(f, v, n, more ? 0 : position, &refused, err);
    if (rc != EVB_OK) return rc;
    /* A recheck that brings events: they were lost live, a gap. */
    if (f->probing && n > 0 && f->applied > before) f->gaps++;
    f->probing = false;
    if (!s_moving(f)) {
        s_drop_kept(f);
        return EVB_OK;
    }
    if (refused || f->state != EVB_FEED_CATCHING_UP) {
        s_back_off(f);
        return EVB_OK;
    }
    if (more || f->applied < position) {
        s_fetch(f);
        return EVB_OK;
    }
    return s_drain(f, err);
}

void bf_on_hole(bf_feed *f, uint64_t from, uint64_t to)
{
    if (!f->positioned || !s_moving(f)) return;
    if (to <= f->applied || from <= f->applied) {
        if (f->lim.holes == BF_HOLE_SKIP && to > f->applied) {
            f->unreadable += to - f->applied;
            f->applied = to;
        }
        s_fetch(f); /* nothing we lack (any more): ask past it */
        return;
    }
    if (f->lim.holes == BF_HOLE_SKIP) {
        f->unreadable += to - from + 1;
        f->applied = to;
        s_fetch(f);
        return;
    }
    /* Applying on would lose the hole's events without a word: an operator
     * decides (skip them, or serve a salvaged log). */
    f->hole_from = from;
    f->hole_to = to;
    char why[256];
    snprintf(why, sizeof why,
             "events %llu..%llu of the publisher's log cannot be read (it is damaged); "
             "skip them up to %llu, or serve a salvaged log",
             (unsigned long long)from, (unsigned long long)to, (unsigned long long)to);
    bf_stop(f, EVB_FEED_STALLED, why);
}

void bf_on_refusal(bf_feed *f)
{
    f->fetch_req = 0;
    f->fetch_deadline = s_now(f) + f->lim.fetch_timeout_us;
}

void bf_recheck(bf_feed *f, const char *why)
{
    if (f->state != EVB_FEED_LIVE || !f->positioned || f->fetch_req != 0) return;
    f->probing = true; /* first: the owner's entered() may ask why it catches up */
    s_enter(f, EVB_FEED_CATCHING_UP, why); /* this turn's batch is kept for the drain */
    s_fetch(f);
}

void bf_tick(bf_feed *f)
{
    if (!f->positioned || f->state != EVB_FEED_CATCHING_UP) return;
    int64_t now = s_now(f);
    if ((f->fetch_req != 0 && now > f->fetch_deadline) ||
        (f->fetch_req == 0 && now >= f->fetch_deadline))
        s_fetch(f);
}

bool bf_takes_reply(bf_feed *f, uint64_t req_id)
{
    if (f->fetch_req == 0 || f->fetch_req != req_id) return false;
    f->fetch_req = 0;
    return true;
}
