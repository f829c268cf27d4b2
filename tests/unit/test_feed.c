/*
 * test_feed: the feed engine's rules (bus/feed.c), a table row each, for
 * both kinds of feed (one category; every category in log order).
 *
 * A row is a script of inputs and what must come of it. The owner here is a
 * fake: its "envelopes" are 8-byte sequence numbers, its apply takes every
 * event after the position (and refuses the one the row names), its fetches
 * and state changes are counted, and its clock moves only when the script
 * says so. Script steps, separated by spaces:
 *   S<n>          start at position n (catch up)     L<n>  start live at n
 *   e<seq>/<prev> a live event (prev ignored in log order)
 *   f             the end of a turn (apply what was gathered)
 *   h<cat>/<log>  a heartbeat: the feed's head, the log's head
 *   p<s,s,..>@<pos>[+]  a page answering the fetch ("+": more to come;
 *                 no seqs: an empty page)
 *   H<from>-<to>  a hole reply       R  a refusal reply
 *   X<seq>        the owner refuses seq from now on      x  it accepts again
 *   t<ms>         the clock moves on, then a tick        r  recheck (rejoin)
 * Built from the module's source with its private header (CMakeLists.txt).
 */
#define _POSIX_C_SOURCE 200809L /* strdup, strtok_r */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "feed.h"

typedef struct owner {
    int64_t now_us;
    uint64_t refuse; /* apply stops before this seq (0: none) */
    char applied[512]; /* seqs applied, comma-separated */
    unsigned applies, fetches, entries;
    uint64_t last_fetch_after;
} owner;

static uint64_t s_seq_of(const evb_wire_view *v)
{
    uint64_t s;
    memcpy(&s, v->p, 8);
    return s;
}

static int s_apply(void *ctx, bf_feed *f, const evb_wire_view *v, size_t n, uint64_t position,
                   bool *refused, evb_err *err)
{
    (void)err;
    owner *o = ctx;
    o->applies++;
    for (size_t i = 0; i < n; i++) {
        uint64_t seq = s_seq_of(&v[i]);
        if (seq <= f->applied) continue; /* a duplicate */
        if (o->refuse != 0 && seq == o->refuse) {
            *refused = true;
            f->retry_after_us = 100000;
            return EVB_OK;
        }
        size_t l = strlen(o->applied);
        snprintf(o->applied + l, sizeof o->applied - l, "%s%llu", l ? "," : "",
                 (unsigned long long)seq);
        f->applied = seq;
    }
    if (position > f->applied) f->applied = position;
    return EVB_OK;
}

static bool s_fetch(void *ctx, bf_feed *f, uint64_t req_id)
{
    owner *o = ctx;
    assert_true(req_id != 0);
    o->fetches++;
    o->last_fetch_after = f->applied;
    return true;
}

static void s_entered(void *ctx, bf_feed *f, evb_feed_state was, const char *why)
{
    owner *o = ctx;
    assert_true(was != f->state || why != NULL);
    assert_non_null(why);
    o->entries++;
}

static int64_t s_now(void *ctx)
{
    return ((owner *)ctx)->now_us;
}

static const bf_ops s_ops = {s_apply, s_fetch, s_entered, s_now};

/* The page or hole reply needs an outstanding fetch, taken as the owner
 * takes it. */
static void s_take(bf_feed *f)
{
    uint64_t req = f->fetch_req;
    if (req == 0) fail_msg("a reply, but no fetch is outstanding");
    assert_true(bf_takes_reply(f, req));
    assert_false(bf_takes_reply(f, req)); /* answered once */
}

static void s_run(bf_feed *f, owner *o, const char *script)
{
    char *dup = strdup(script), *save = NULL;
    assert_non_null(dup);
    evb_err err = {0};
    for (char *t = strtok_r(dup, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
        unsigned long long a = 0, b = 0;
        switch (t[0]) {
        case 'S':
            bf_start(f, strtoull(t + 1, NULL, 10), "checkpoint loaded");
            break;
        case 'L':
            bf_start_live(f, strtoull(t + 1, NULL, 10));
            break;
        case 'e': {
            assert_int_equal(sscanf(t + 1, "%llu/%llu", &a, &b) >= 1, 1);
            uint64_t seq = a;
            assert_int_equal(bf_on_live(f, seq, b, &seq, 8, &err), EVB_OK);
            break;
        }
        case 'f':
            assert_int_equal(bf_flush(f, &err), EVB_OK);
            break;
        case 'h':
            assert_int_equal(sscanf(t + 1, "%llu/%llu", &a, &b), 2);
            assert_int_equal(bf_on_heartbeat(f, a, b, &err), EVB_OK);
            break;
        case 'p': {
            uint64_t seqs[64];
            evb_wire_view v[64];
            size_t n = 0;
            char *at = strchr(t, '@');
            assert_non_null(at);
            for (char *q = t + 1; q < at && *q != '@';) {
                seqs[n] = strtoull(q, &q, 10);
                v[n] = (evb_wire_view){&seqs[n], 8};
                n++;
                if (*q == ',') q++;
            }
            uint64_t pos = strtoull(at + 1, NULL, 10);
            bool more = t[strlen(t) - 1] == '+';
            s_take(f);
            assert_int_equal(bf_on_page(f, v, n, pos, more, &err), EVB_OK);
            break;
        }
        case 'H':
            assert_int_equal(sscanf(t + 1, "%llu-%llu", &a, &b), 2);
            s_take(f);
            bf_on_hole(f, a, b);
            break;
        case 'R':
            s_take(f);
            bf_on_refusal(f);
            break;
        case 'X':
            o->refuse = strtoull(t + 1, NULL, 10);
            break;
        case 'x':
            o->refuse = 0;
            break;
        case 't':
            o->now_us += (int64_t)strtoll(t + 1, NULL, 10) * 1000;
            bf_tick(f);
            break;
        case 'r':
            bf_recheck(f, "publisher back");
            break;
        default:
            fail_msg("bad script step '%s'", t);
        }
    }
    free(dup);
}

typedef struct row {
    const char *rule;
    bf_kind kind;
    bf_hole_policy holes;
    size_t batch; /* 0: the default */
    const char *script;
    /* what must come of it */
    evb_feed_state state;
    uint64_t applied;
    const char *seqs; /* applied, in order */
    unsigned fetches;
    uint64_t gaps, duplicates, dropped;
} row;

#define C EVB_FEED_CATCHING_UP
#define LIVE EVB_FEED_LIVE
#define STALL EVB_FEED_STALLED
#define CAT BF_BY_CATEGORY
#define LOG BF_IN_LOG_ORDER

static const row s_rows[] = {
    /* catching up */
    {"a page without more ends the catch-up: live", CAT, 0, 0, "S0 p1,2,3@3", LIVE, 3,
     "1,2,3", 1, 0, 0, 0},
    {"a page with more: fetch on from the last event", CAT, 0, 0, "S0 p1,2@2+", C, 2, "1,2",
     2, 0, 0, 0},
    {"the last page's position moves the feed past what it holds", CAT, 0, 0, "S0 p1,2@7",
     LIVE, 7, "1,2", 1, 0, 0, 0},
    {"a page that ends short of its position: fetch on", CAT, 0, 0, "S5 p6@9+", C, 6, "6", 2,
     0, 0, 0},
    {"events in a page at or before the position are duplicates", CAT, 0, 0, "S2 p1,2,3@3",
     LIVE, 3, "3", 1, 0, 0, 0},
    {"events kept while catching up are applied at the switch-over", CAT, 0, 0,
     "S0 e4/3 e5/4 p1,2,3@3", LIVE, 5, "1,2,3,4,5", 1, 0, 0, 0},
    {"a kept event already in the pages is a duplicate", CAT, 0, 0, "S0 e3/2 e4/3 p1,2,3@3",
     LIVE, 4, "1,2,3,4", 1, 0, 1, 0},
    {"a kept event that does not follow on: a gap, fetch again", CAT, 0, 0,
     "S0 e6/5 p1,2,3@3", C, 3, "1,2,3", 2, 1, 0, 0},
    {"an unanswered fetch is sent again after its timeout", CAT, 0, 0, "S0 t2999 t2",
     C, 0, "", 2, 0, 0, 0},
    {"a refused fetch is asked again after the timeout", CAT, 0, 0, "S0 R t2999 t1", C, 0,
     "", 2, 0, 0, 0},
    {"a page refused by the owner is offered again after the back-off", CAT, 0, 0,
     "X2 S0 p1,2,3@3 t50 x t60", C, 1, "1", 2, 0, 0, 0},
    /* live */
    {"live events that follow on are applied together at the end of the turn", CAT, 0, 0,
     "S0 p@0 e1/0 e2/1 f", LIVE, 2, "1,2", 1, 0, 0, 0},
    {"a live event already applied is a duplicate", CAT, 0, 0, "S0 p1,2@2 e2/1 f", LIVE, 2,
     "1,2", 1, 0, 1, 0},
    {"by category, prev links a category's events across other seqs", CAT, 0, 0,
     "L0 e3/0 e7/3 e8/7 f", LIVE, 8, "3,7,8", 0, 0, 0, 0},
    {"a live event whose prev did not come: a gap, catch up", CAT, 0, 0, "L0 e1/0 e3/2", C,
     1, "1", 1, 1, 0, 0},
    {"a heartbeat counting events not received: catch up", CAT, 0, 0, "S0 p1,2@2 h3/3", C, 2,
     "1,2", 2, 1, 0, 0},
    {"a heartbeat with nothing missing moves a quiet feed to the log's head", CAT, 0, 0,
     "S0 p1,2@2 h2/9", LIVE, 9, "1,2", 1, 0, 0, 0},
    {"a heartbeat applies the turn's live events first", CAT, 0, 0, "L0 e1/0 e2/1 h2/2",
     LIVE, 2, "1,2", 0, 0, 0, 0},
    {"a refused live batch: catch up after the back-off", CAT, 0, 0, "L0 X2 e1/0 e2/1 f",
     C, 1, "1", 0, 0, 0, 0},
    {"a full batch is applied before the next event", CAT, 0, 2, "L0 e1/0 e2/1 e3/2", LIVE,
     2, "1,2", 0, 0, 0, 0},
    {"the publisher back: a live feed catches up once", CAT, 0, 0, "S0 p@0 r r", C, 0, "", 2,
     0, 0, 0},
    {"a recheck that brings events counts them as a gap", CAT, 0, 0, "S0 p@0 r p1,2@2", LIVE,
     2, "1,2", 2, 1, 0, 0},
    {"a recheck that brings nothing is no gap", LOG, 0, 0, "S0 p1@1 r p@1", LIVE, 1, "1", 2, 0,
     0, 0},
    {"events before the feed has a position are not taken", CAT, 0, 0, "e1/0 f", C, 0, "",
     0, 0, 0, 0},
    /* holes */
    {"a hole stalls a consumer's feed", CAT, BF_HOLE_STALL, 0, "S0 H1-5 e6/5 f", STALL, 0,
     "", 1, 0, 0, 0},
    {"a hole a watcher goes past", CAT, BF_HOLE_SKIP, 0, "S0 H1-5 p6@6", LIVE, 6, "6", 2, 0,
     0, 0},
    {"a hole behind the position: fetch past it", CAT, BF_HOLE_STALL, 0, "S5 H1-3 p6@6",
     LIVE, 6, "6", 2, 0, 0, 0},
    /* every category, in log order */
    {"log order: each seq follows the one before, whatever prev says", LOG, 0, 0,
     "L0 e1/0 e2/0 e3/1 f", LIVE, 3, "1,2,3", 0, 0, 0, 0},
    {"log order: a missing seq is a gap", LOG, 0, 0, "L0 e1/0 e3/0", C, 1, "1", 1, 1, 0, 0},
    {"log order: the log's head in a heartbeat is the feed's", LOG, 0, 0, "L2 h0/5", C, 2,
     "", 1, 1, 0, 0},
    {"log order: kept events drain by seq", LOG, 0, 0, "S0 e4/1 e5/2 p1,2,3@3", LIVE, 5,
     "1,2,3,4,5", 1, 0, 0, 0},
    {"log order: a kept event past a missing seq is a gap", LOG, 0, 0, "S0 e5/4 p1,2,3@3", C,
     3, "1,2,3", 2, 1, 0, 0},
    {"log order: a duplicate live event", LOG, 0, 0, "S0 p1,2@2 e2/1 e3/2 f", LIVE, 3,
     "1,2,3", 1, 0, 1, 0},
};

static void test_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_rows / sizeof s_rows[0]; i++) {
        const row *r = &s_rows[i];
        owner o = {.now_us = 1000000};
        uint64_t next_req = 1;
        bf_limits lim = {.holes = r->holes, .batch = r->batch};
        bf_feed f;
        bf_init(&f, r->kind, &lim, &s_ops, &o, &next_req);
        s_run(&f, &o, r->script);
        if (f.state != r->state || f.applied != r->applied || strcmp(o.applied, r->seqs) != 0 ||
            o.fetches != r->fetches || f.gaps != r->gaps || f.duplicates != r->duplicates ||
            f.dropped_live != r->dropped)
            fail_msg("rule \"%s\" (%s): state %s applied %llu [%s] fetches %u gaps %llu "
                     "duplicates %llu dropped %llu; want %s %llu [%s] %u %llu %llu %llu",
                     r->rule, r->script, evb_feed_state_name(f.state),
                     (unsigned long long)f.applied, o.applied, o.fetches,
                     (unsigned long long)f.gaps, (unsigned long long)f.duplicates,
                     (unsigned long long)f.dropped_live, evb_feed_state_name(r->state),
                     (unsigned long long)r->applied, r->seqs, r->fetches,
                     (unsigned long long)r->gaps, (unsigned long long)r->duplicates,
                     (unsigned long long)r->dropped);
        bf_free(&f);
    }
}

/* Kept live events are bounded: past the bound they are dropped (counted)
 * and the catch-up brings them. */
static void test_kept_bound(void **state)
{
    (void)state;
    owner o = {.now_us = 1};
    uint64_t next_req = 1;
    bf_limits lim = {.kept_events = 3};
    bf_feed f;
    bf_init(&f, BF_BY_CATEGORY, &lim, &s_ops, &o, &next_req);
    s_run(&f, &o, "S0 e1/0 e2/1 e3/2 e4/3 e5/4");
    assert_int_equal(f.nkept, 3);
    assert_int_equal(f.dropped_live, 2);
    s_run(&f, &o, "p1,2,3,4,5@5");
    assert_int_equal(f.state, EVB_FEED_LIVE);
    assert_string_equal(o.applied, "1,2,3,4,5");
    assert_int_equal(f.duplicates, 3); /* the kept ones, in the page already */
    bf_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_kept_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
