/*
 * feed.h (private): the decisions of one feed, without sockets or a store
 * (PROTOCOL.md, "Subscriber", "Switch-over").
 *
 * A feed follows one publisher's log: one category of it (BF_BY_CATEGORY,
 * the live events' `prev` links them) or every category in log order
 * (BF_IN_LOG_ORDER: one position, and every seq follows the one before).
 * Its position `applied` says that every event of the feed up to it is
 * applied. The engine decides what each input means: a live event is
 * applied, kept for the switch-over, dropped as a duplicate, or shows a gap;
 * a heartbeat shows lost events or moves a quiet feed on; a page is applied
 * and fetched on from, and its end drains what was kept. The owner does the
 * rest through bf_ops: applying (with its store and transactions, or
 * printing), sending a fetch, recording a change of state.
 *
 * Who uses it: the subscriber (sub.c) and the sniffer's tap, each with the
 * sockets of its publisher links beside it. tests/unit/test_feed.c holds
 * the rules, a table row each, for both kinds.
 */
#if !defined(EVB_BUILDING_BUS)
#error "bus/feed.h is private to libevbus's bus module; programs include <evbus/evbus_bus.h>"
#endif
#ifndef EVB_BUS_FEED_H
#define EVB_BUS_FEED_H

#include "evbus_bus.h"
#include "evbus_wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum bf_kind {
    BF_BY_CATEGORY = 0, /* one category: live events follow on by prev */
    BF_IN_LOG_ORDER     /* every category, one position: seq follows seq */
} bf_kind;

/* What a hole (events the publisher cannot read) does to the feed. */
typedef enum bf_hole_policy {
    BF_HOLE_STALL = 0, /* stop there until an operator decides (a consumer) */
    BF_HOLE_SKIP       /* go on after it, counting what was lost (a watcher) */
} bf_hole_policy;

typedef struct bf_kept {
    uint64_t seq, prev;
    size_t len;
    char *data;
} bf_kept;

typedef struct bf_feed bf_feed;

typedef struct bf_ops {
    /* Apply v[0..n) (envelopes in log order, maybe with duplicates) and move
     * the position to at least `position` (0: none) when every one went in:
     * set f->applied as far as it got. *refused when it stopped short (a
     * handler refused): the engine offers the events again after
     * f->retry_after_us. Anything but EVB_OK stops the owner. */
    int (*apply)(void *ctx, bf_feed *f, const evb_wire_view *v, size_t n, uint64_t position,
                 bool *refused, evb_err *err);
    /* Ask the publisher for the events after f->applied: false when the
     * request could not go out now (it is asked again soon). */
    bool (*fetch)(void *ctx, bf_feed *f, uint64_t req_id);
    /* The feed changed state (why says why; f->reason for stalled and
     * stopped). May be NULL. */
    void (*entered)(void *ctx, bf_feed *f, evb_feed_state was, const char *why);
    /* Microseconds of a monotonic clock (the tests give theirs). */
    int64_t (*now)(void *ctx);
} bf_ops;

typedef struct bf_limits {
    size_t kept_events;   /* live events kept while catching up (0: 10,000) */
    size_t kept_bytes;    /* their bytes (0: 16 MiB) */
    size_t batch;         /* live events applied in one go at most (0: 2,001) */
    int64_t fetch_timeout_us; /* a fetch unanswered this long is sent again (0: 3 s) */
    int64_t retry_soon_us;    /* a fetch that could not go out (0: 200 ms) */
    bf_hole_policy holes;
} bf_limits;

struct bf_feed {
    bf_kind kind;
    bf_limits lim;
    const bf_ops *ops;
    void *ctx;
    evb_feed_state state;
    bool positioned;      /* applied is known (a checkpoint, or a live start) */
    uint64_t applied;     /* every event of the feed up to here is applied */
    uint64_t heard;       /* the highest seq of the feed heard of */
    uint64_t fetch_req;   /* the outstanding fetch, 0 = none */
    int64_t fetch_deadline; /* send it again after; or a back-off */
    int64_t retry_after_us; /* set by apply when it refused */
    uint64_t hole_from, hole_to;
    char reason[256];     /* why stalled or stopped */
    bf_kept *kept;
    size_t nkept, capkept, kept_bytes;
    evb_wire_view *views; /* a batch's views (lim.batch of them) */
    unsigned in_apply;    /* inside ops->apply: what is kept stays until it returns */
    bool probing;         /* the fetch out is a recheck's: events it brings were lost */
    uint64_t duplicates, gaps, pages, dropped_live, unreadable;
    uint64_t *next_req;   /* the link's request counter (shared by its feeds) */
    void *owner;          /* the owner's own per-feed record */
};

void bf_init(bf_feed *f, bf_kind kind, const bf_limits *lim, const bf_ops *ops, void *ctx,
             uint64_t *next_req);
/* Drop what is kept; the feed can be started again. */
void bf_reset(bf_feed *f);
void bf_free(bf_feed *f);

/* The position is known (a checkpoint): catch up from it. */
void bf_start(bf_feed *f, uint64_t applied, const char *why);
/* Start live at `applied` without a catch-up (a watcher that wants only
 * what comes from now on). */
void bf_start_live(bf_feed *f, uint64_t applied);
/* Stall or stop the feed (reason says why); what was kept is dropped. The
 * owner's apply may call it (a handler that keeps failing). */
void bf_stop(bf_feed *f, evb_feed_state st, const char *reason);

/* A live event: seq and prev from its frame (prev ignored in log order). */
int bf_on_live(bf_feed *f, uint64_t seq, uint64_t prev, const void *env, size_t len,
               evb_err *err);
/* The end of a turn: apply the live events gathered. */
int bf_flush(bf_feed *f, evb_err *err);
/* A heartbeat: `heard` is the feed's head in it (its category's, or the
 * log's in log order), `log_head` the log's. */
int bf_on_heartbeat(bf_feed *f, uint64_t heard, uint64_t log_head, evb_err *err);
/* A page answering the outstanding fetch. */
int bf_on_page(bf_feed *f, const evb_wire_view *v, size_t n, uint64_t position, bool more,
               evb_err *err);
/* The publisher cannot read events from..to (a hole reply). */
void bf_on_hole(bf_feed *f, uint64_t from, uint64_t to);
/* The publisher refused the fetch: ask again after the fetch timeout. */
void bf_on_refusal(bf_feed *f);
/* A live feed checks for what it missed (the publisher came back, the link
 * was made again): it catches up once; events the first page brings were
 * lost live and count as a gap. */
void bf_recheck(bf_feed *f, const char *why);
/* Timers: a catching-up feed whose fetch is due sends it. */
void bf_tick(bf_feed *f);
/* Is reply req_id the answer to this feed's fetch? Then it is no longer
 * outstanding. */
bool bf_takes_reply(bf_feed *f, uint64_t req_id);

#endif
