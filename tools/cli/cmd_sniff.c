/*
 * cmd_sniff.c: `evbus sniff`: a store-less tap on the bus. It follows one or
 * more publishers and prints what goes by as aligned columns or JSON lines,
 * writing nothing anywhere unless asked to record.
 *
 * Key decisions:
 *  - The feeds are the library's tap (evb_tap_*, bus/feed.c): the same
 *    catch-up, switch-over, gap and duplicate rules as a service's
 *    subscriber, positions in memory only. This file keeps what is the
 *    sniffer's own: flags, filters, formats, record/replay, stats.
 *  - History (--from, --from-start, --since) of several categories or all,
 *    and live without --category, is one feed of every category in log
 *    order, so it prints in log order (categories not asked for are passed
 *    over); with --category (live, or one category) a feed per category.
 *  - Live only (the default): feeds start at the log's head when the tap
 *    meets the publisher; nothing before counts as a gap.
 *  - Filters (--type, --stream, --where, --since, --from) only decide what is
 *    printed, counted by --count and recorded; every event still moves its
 *    feed, so gap detection does not depend on them.
 *  - Bounded: a finite SUB high-water mark (--rcvhwm: a slow sniffer loses
 *    only its own copies, counted as gaps and fetched), kept live events.
 *
 * Record format (--record FILE, read back by --replay FILE): JSON lines, one
 * per printed event, {"rx_us": receive time in microseconds since the epoch,
 * "publisher": "PUB_EP,CATCHUP_EP", "service": the publisher's service name,
 * "raw": the event's envelope (codec/FORMAT.md msgpack) in standard base64
 * with padding}. Unknown fields are ignored on replay.
 */
#include "cli.h"
#include "json_in.h"
#include "disc_cli.h"
#include "filter.h"
#include "rows.h"
#include "context.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <evbus/evbus_bus.h>

#define S_PAGE_EVENTS 1000u              /* events asked per catch-up page */
#define S_SILENT_US 5000000              /* say so when a publisher never answers */
#define S_LIVE_MAX_EVENTS 10000u         /* kept per feed while catching up */
#define S_MAX_FEEDS 4096u                /* categories counted apart per publisher */
#define S_MAX_LINE (8u * 1024u * 1024u) /* a --replay line (base64 of an event) */
#define S_PUB_CAP (2 * EVB_BUS_MAX_ENDPOINT + 2)

/* Events seen per (publisher, category), for --stats: the feeds (their
 * states, gaps, ...) are the tap's (evb_tap_status). */
typedef struct catcount {
    size_t pub; /* index in --follow */
    char category[EVB_MAX_CATEGORY_LEN + 1];
    uint64_t events, rate_mark, rate;
} catcount;

/* What the sniffer keeps of a publisher beside the tap. */
typedef struct pubinfo {
    char name[S_PUB_CAP]; /* "PUB_EP,CATCHUP_EP" */
    char service[EVB_MAX_SERVICE_LEN + 1]; /* as its heartbeats name it */
    bool announced, warned_silent;         /* the "live on" line; "no answer" */
    bool end_known;                        /* --until-end: its head when first heard */
    uint64_t end;
    uint64_t gaps_seen;                    /* gaps already said */
} pubinfo;

typedef struct sniff {
    cli_t *cli;
    /* options */
    const cli_list *cats;
    filter_t filter; /* --type, --stream, --where (filter.h) */
    bool json, stats, history;
    uint64_t from;    /* first sequence printed (1 = all) */
    uint64_t last;    /* --from -N: the tap starts N events before each head */
    int64_t since_us; /* INT64_MIN = no filter */
    uint64_t count;   /* 0 = no limit */
    int rcvhwm;
    FILE *record;
    const char *record_path;
    bool record_failed;
    /* the bus */
    evb_tap_t *tap;
    pubinfo pubs[CLI_MAX_LIST];
    size_t npubs;
    catcount *counts;
    size_t ncounts, capcounts;
    int64_t started_us;
    /* scratch */
    evb_buf line, payload, tmp;
    /* output */
    uint64_t printed, matched;
    bool done; /* --count reached, or --until-end's heads */
    bool until_end;
    int wseq, wver, wpub;
    int64_t last_progress_us, last_gap_log_us;
    unsigned stats_lines; /* lines of the last table drawn on a terminal */
    evb_err fatal;
    /* CURVE (README.md, "Security"): our certificate, each --follow's key */
    const char *cert;
    const char *server_keys[CLI_MAX_LIST];
} sniff_t;

/* ---- small helpers ---- */

static const char s_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int s_base64_enc(evb_buf *b, const uint8_t *p, size_t n, evb_err *err)
{
    if (n > SIZE_MAX / 2) return evb_err_set(err, EVB_ETOOBIG, "base64: too big");
    int rc = evb_buf_reserve(b, (n + 2) / 3 * 4, err);
    for (size_t i = 0; rc == EVB_OK && i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        char q[4] = {s_b64[(v >> 18) & 63], s_b64[(v >> 12) & 63],
                     i + 1 < n ? s_b64[(v >> 6) & 63] : '=', i + 2 < n ? s_b64[v & 63] : '='};
        rc = evb_buf_append(b, q, 4, err);
    }
    return rc;
}

static int s_b64_val(char ch)
{
    const char *p = ch != '\0' ? strchr(s_b64, ch) : NULL;
    return p != NULL ? (int)(p - s_b64) : -1;
}

/* Strict: length a multiple of 4, padding only at the end. */
static int s_base64_dec(evb_buf *b, const char *s, size_t n, evb_err *err)
{
    if (n % 4 != 0) return evb_err_set(err, EVB_EDECODE, "base64: bad length");
    int rc = evb_buf_reserve(b, n / 4 * 3, err);
    for (size_t i = 0; rc == EVB_OK && i < n; i += 4) {
        int v[4];
        size_t pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad > 0 || (v[k] = s_b64_val(s[i + k])) < 0) {
                return evb_err_set(err, EVB_EDECODE, "base64: bad character at %zu",
                                   i + (size_t)k);
            }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        uint8_t o[3] = {(uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x};
        rc = evb_buf_append(b, o, 3 - pad, err);
    }
    return rc;
}

/* Columns of a line that holds ANSI colour sequences ("\033[...m"). */
static size_t s_visible(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\033') {
            while (i < n && s[i] != 'm')
                i++;
            continue;
        }
        if (((unsigned char)s[i] & 0xc0) != 0x80) c++;
    }
    return c;
}

static const char *s_col(const sniff_t *s, const char *code)
{
    return s->cli->color ? code : "";
}

/* A stable colour per event type, so one type reads the same everywhere. */
static const char *s_type_color(const sniff_t *s, const char *type)
{
    static const char *const pal[] = {"\033[32m", "\033[33m", "\033[34m",
                                      "\033[35m", "\033[36m", "\033[91m"};
    uint32_t h = 2166136261u;
    for (const char *p = type; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return s_col(s, pal[h % (sizeof pal / sizeof pal[0])]);
}

/* ---- filters ---- */

/* The positions (--from, --since) are the sniffer's; the rest is filter.c. */
static bool s_match(sniff_t *s, const evb_event_t *ev)
{
    if (ev->seq < s->from && s->history) return false;
    if (ev->ts_us < s->since_us) return false;
    return filter_match(&s->filter, ev);
}

/* ---- output ---- */

static void s_header(sniff_t *s)
{
    if (s->json || s->stats) return;
    cli_printf(s->cli, "%s%-*s  %-*s  %*s  %-*s  %*s  %-*s  %s%s\n", cli_bold(s->cli),
               ROW_TIME_W, "TIME", s->wpub, "PUBLISHER", s->wseq, "SEQ", ROW_STREAM_W,
               "STREAM", s->wver, "VER", ROW_TYPE_W, "TYPE", "PAYLOAD",
               cli_reset(s->cli));
}

/* Grow a number column to fit v (never shrinks, so columns stay aligned;
 * stream and type have fixed widths: rows.h). */
static void s_fit(int *w, size_t v, int max)
{
    int n = v > (size_t)max ? max : (int)v;
    if (n > *w) *w = n;
}

static int s_text_line(sniff_t *s, const evb_event_t *ev, const char *pubname,
                       evb_err *err)
{
    evb_buf *l = &s->line;
    char tm[32];
    row_time(ev->ts_us, tm);
    s_fit(&s->wseq, (size_t)cli_digits(ev->seq), 20);
    s_fit(&s->wver, (size_t)cli_digits(ev->version), 20);
    const char *dim = s_col(s, "\033[2m"), *cyan = s_col(s, "\033[36m"),
               *bold = s_col(s, "\033[1m"), *rst = s_col(s, "\033[0m");
    l->len = 0;
    int rc = evb_buf_printf(l, err, "%s%-*s%s  %s%-*.*s%s  %*" PRIu64 "  %s", dim,
                            ROW_TIME_W, tm, rst, cyan, s->wpub, s->wpub, pubname, rst,
                            s->wseq, ev->seq, bold);
    if (rc == EVB_OK) rc = row_cell(l, ev->stream, ROW_STREAM_W, err);
    if (rc == EVB_OK)
        rc = evb_buf_printf(l, err, "%s  %*" PRIu64 "  %s", rst, s->wver, ev->version,
                            s_type_color(s, ev->type));
    if (rc == EVB_OK) rc = row_cell(l, ev->type, ROW_TYPE_W, err);
    if (rc == EVB_OK) rc = evb_buf_printf(l, err, "%s  ", rst);
    if (rc != EVB_OK) return rc;
    unsigned width = cli_term_width(s->cli);
    size_t used = width > 0 ? s_visible(l->data, l->len) : 0;
    return cli_row_payload(s->cli, width, used, ev, l, &s->payload, err);
}

static int s_json_line(sniff_t *s, const evb_event_t *ev, const char *publisher,
                       evb_err *err)
{
    evb_buf *l = &s->line;
    l->len = 0;
    int rc = evb_event_to_json(ev, l, err);
    if (rc != EVB_OK) return rc;
    if (l->len == 0 || l->data[l->len - 1] != '}')
        return evb_err_set(err, EVB_EINVAL, "rendering: not a JSON object");
    l->len--; /* the object goes on with the publisher */
    rc = evb_buf_append(l, ",\"publisher\":", 13, err);
    if (rc == EVB_OK) rc = cli_json_str(l, publisher, err);
    if (rc == EVB_OK) rc = evb_buf_append(l, "}\n", 2, err);
    return rc;
}

/* Lines go out at the end of each loop turn: a sniffer is watched live,
 * and one flush per turn (not per line) keeps a flood cheap. */
static void s_flush_stdout(sniff_t *s)
{
    cli_t *cli = s->cli;
    if (cli->pipe_closed || cli->write_failed) return;
    errno = 0;
    if (fflush(stdout) == 0) return;
    if (errno == EPIPE) {
        cli->pipe_closed = true;
    } else {
        cli_error(cli, "writing to stdout: %s", strerror(errno != 0 ? errno : EIO));
        cli->write_failed = true;
    }
    evb_err_set(&s->fatal, EVB_EIO, "stdout");
}

static void s_record(sniff_t *s, const void *raw, size_t len, int64_t rx_us,
                     const char *publisher, const char *service)
{
    if (s->record == NULL || s->record_failed) return;
    evb_buf *b = &s->tmp;
    b->len = 0;
    evb_err err;
    int rc = evb_buf_printf(b, &err, "{\"rx_us\":%" PRId64 ",\"publisher\":", rx_us);
    if (rc == EVB_OK) rc = cli_json_str(b, publisher, &err);
    if (rc == EVB_OK) rc = evb_buf_append(b, ",\"service\":", 11, &err);
    if (rc == EVB_OK) rc = cli_json_str(b, service, &err);
    if (rc == EVB_OK) rc = evb_buf_append(b, ",\"raw\":\"", 8, &err);
    if (rc == EVB_OK) rc = s_base64_enc(b, raw, len, &err);
    if (rc == EVB_OK) rc = evb_buf_append(b, "\"}\n", 3, &err);
    if (rc != EVB_OK || fwrite(b->data, 1, b->len, s->record) != b->len) {
        cli_error(s->cli, "--record %s: %s", s->record_path,
                  rc != EVB_OK ? err.msg : strerror(errno));
        s->record_failed = true;
    }
}

/* An event for the output: filter, print (or count for --stats), record.
 * raw is the envelope the event was decoded from. Returns EVB_OK or an
 * error that ends the program (stdout failed). */
static int s_output(sniff_t *s, const evb_event_t *ev, const void *raw, size_t len,
                    int64_t rx_us, const char *publisher, const char *service)
{
    if (s->done || !s_match(s, ev)) return EVB_OK;
    s->matched++;
    s_record(s, raw, len, rx_us, publisher, service);
    if (!s->stats) {
        evb_err err;
        int rc = s->json ? s_json_line(s, ev, publisher, &err)
                         : s_text_line(s, ev, service[0] != '\0' ? service : ev->service,
                                       &err);
        if (rc != EVB_OK) {
            cli_error(s->cli, "%s: seq %" PRIu64 ": rendering: %s", publisher, ev->seq,
                      err.msg);
            return evb_err_set(&s->fatal, rc, "rendering");
        }
        cli_progress_end(s->cli);
        if (cli_write(s->cli, s->line.data, s->line.len) != 0)
            return evb_err_set(&s->fatal, EVB_EIO, "stdout");
    }
    s->printed++;
    if (s->count > 0 && s->printed >= s->count) s->done = true;
    return EVB_OK;
}

/* ---- the tap ---- */

static bool s_wanted(const sniff_t *s, const char *cat)
{
    if (s->cats->n == 0) return true;
    for (size_t i = 0; i < s->cats->n; i++)
        if (strcmp(s->cats->v[i], cat) == 0) return true;
    return false;
}

static size_t s_pub_index(const sniff_t *s, const char *publisher)
{
    for (size_t i = 0; i < s->npubs; i++)
        if (strcmp(s->pubs[i].name, publisher) == 0) return i;
    return 0;
}

/* The events counter of (publisher, category), made on first sight; NULL
 * past S_MAX_FEEDS categories of a publisher (not counted apart). */
static catcount *s_count(sniff_t *s, size_t pub, const char *cat)
{
    size_t of_pub = 0;
    for (size_t i = 0; i < s->ncounts; i++) {
        if (s->counts[i].pub != pub) continue;
        if (strcmp(s->counts[i].category, cat) == 0) return &s->counts[i];
        of_pub++;
    }
    if (of_pub >= S_MAX_FEEDS) return NULL;
    if (s->ncounts == s->capcounts) {
        size_t nc = s->capcounts ? 2 * s->capcounts : 16;
        catcount *n = realloc(s->counts, nc * sizeof *n);
        if (n == NULL) return NULL;
        s->counts = n;
        s->capcounts = nc;
    }
    catcount *c = &s->counts[s->ncounts++];
    *c = (catcount){.pub = pub};
    snprintf(c->category, sizeof c->category, "%s", cat);
    return c;
}

/* Each event, once, in order per feed: count it, and print what the
 * filters let through (an all-categories history brings the categories not
 * asked for too). */
static int s_on_event(const evb_tap_event *te, void *ctx, evb_err *err)
{
    (void)err;
    sniff_t *s = ctx;
    if (!s_wanted(s, te->ev->category)) return EVB_OK;
    catcount *c = s_count(s, s_pub_index(s, te->publisher), te->ev->category);
    if (c != NULL) c->events++;
    if (s->fatal.code == EVB_OK)
        s_output(s, te->ev, te->raw, te->raw_len, te->rx_us, te->publisher, te->service);
    return EVB_OK;
}

/* What the tap says of each feed: fn(s, status, arg) for each. */
typedef struct feeds_view {
    sniff_t *s;
    void (*fn)(sniff_t *s, const evb_feed_status *fs, void *arg);
    void *arg;
} feeds_view;

static int s_each_feed(const evb_feed_status *fs, void *ctx)
{
    feeds_view *v = ctx;
    v->fn(v->s, fs, v->arg);
    return 0;
}

static void s_feeds(sniff_t *s, void (*fn)(sniff_t *, const evb_feed_status *, void *),
                    void *arg)
{
    feeds_view v = {s, fn, arg};
    evb_err err;
    evb_tap_status(s->tap, s_each_feed, &v, &err);
}

/* Per turn: the "live on" line at a publisher's first heartbeat (scripts
 * wait for it before they publish: from there on nothing it publishes goes
 * unseen), gaps said (at most once a second), a publisher that never
 * answers. */
static void s_watch(sniff_t *s, const evb_feed_status *fs, void *arg)
{
    (void)arg;
    pubinfo *p = &s->pubs[s_pub_index(s, fs->publisher)];
    if (fs->publisher_service != NULL && fs->publisher_service[0] != '\0')
        snprintf(p->service, sizeof p->service, "%s", fs->publisher_service);
    if (s->until_end && !p->end_known && (fs->heartbeat_age_ms >= 0 || fs->head > 0)) {
        p->end_known = true; /* the end: what the log held when first heard */
        p->end = fs->head;
    }
    if (!p->announced && fs->heartbeat_age_ms >= 0) {
        p->announced = true;
        char id[EVB_ID_HEX_LEN + 1];
        evb_id_to_hex(&fs->log_id, id);
        cli_progress_end(s->cli);
        fprintf(stderr, "%s: live on %s (service %s, log %s, head %" PRIu64 ")\n",
                s->cli->name, p->name, fs->publisher_service, id, fs->head);
    }
    if (fs->gaps > p->gaps_seen) {
        p->gaps_seen = fs->gaps;
        int64_t now = evb_now_us();
        if (now - s->last_gap_log_us >= 1000000) {
            s->last_gap_log_us = now;
            evb_log(EVB_LOG_WARN,
                    "%s: gap in category %s after seq %" PRIu64 " (publisher at %" PRIu64
                    "): fetching the missing events",
                    p->name, fs->category, fs->applied, fs->head);
        }
    }
    if (!p->warned_silent && fs->heartbeat_age_ms < 0 &&
        evb_now_us() - s->started_us > S_SILENT_US) {
        p->warned_silent = true;
        evb_log(EVB_LOG_WARN, "no answer from %s after %d s (is the publisher running?)",
                p->name, (int)(S_SILENT_US / 1000000));
    }
}

/* --until-end: false while a feed has not reached its publisher's end. */
static void s_at_end(sniff_t *s, const evb_feed_status *fs, void *arg)
{
    bool *all = arg;
    const pubinfo *p = &s->pubs[s_pub_index(s, fs->publisher)];
    if (!p->end_known || fs->applied < p->end) *all = false;
}

/* ---- progress, stats, summary ---- */

typedef struct totals {
    uint64_t events, gaps, dups, dropped, bad, catching;
    uint64_t bad_of[CLI_MAX_LIST]; /* a publisher's bad frames (on each of its feeds) */
} totals;

static void s_add_feed(sniff_t *s, const evb_feed_status *fs, void *arg)
{
    totals *t = arg;
    t->gaps += fs->gaps;
    t->dups += fs->duplicates;
    t->dropped += fs->dropped_live;
    size_t p = s_pub_index(s, fs->publisher);
    if (fs->bad_frames > t->bad_of[p]) t->bad_of[p] = fs->bad_frames;
    if (fs->state == EVB_FEED_CATCHING_UP) t->catching++;
}

static totals s_totals(sniff_t *s)
{
    totals t = {0};
    if (s->tap != NULL) s_feeds(s, s_add_feed, &t);
    for (size_t i = 0; i < s->npubs; i++)
        t.bad += t.bad_of[i];
    for (size_t i = 0; i < s->ncounts; i++)
        t.events += s->counts[i].events;
    return t;
}

/* The first feed catching up, for the progress line. */
typedef struct progress {
    bool found, waiting, all;
    char pub[S_PUB_CAP], cat[EVB_MAX_CATEGORY_LEN + 1];
    uint64_t applied, head;
} progress;

static void s_catching(sniff_t *s, const evb_feed_status *fs, void *arg)
{
    progress *p = arg;
    if (p->found || fs->state != EVB_FEED_CATCHING_UP) return;
    p->found = true;
    p->waiting = fs->heartbeat_age_ms < 0 && fs->head == 0;
    p->all = strcmp(fs->category, EVB_ALL_CATEGORIES) == 0;
    const char *svc = s->pubs[s_pub_index(s, fs->publisher)].service;
    snprintf(p->pub, sizeof p->pub, "%s",
             p->waiting || svc[0] == '\0' ? fs->publisher : svc);
    snprintf(p->cat, sizeof p->cat, "%s", fs->category);
    p->applied = fs->applied;
    p->head = fs->head;
}

static void s_progress(sniff_t *s, int64_t now)
{
    if (!s->cli->err_tty || s->stats || now - s->last_progress_us < 100000) return;
    s->last_progress_us = now;
    progress p = {0};
    s_feeds(s, s_catching, &p);
    if (!p.found)
        cli_progress_end(s->cli);
    else if (p.waiting)
        cli_progress(s->cli, "%s: waiting for %s", s->cli->name, p.pub);
    else
        cli_progress(s->cli, "%s: catching up %s%s%s: seq %" PRIu64 " / head %" PRIu64,
                     s->cli->name, p.pub, p.all ? "" : "/", p.all ? "" : p.cat, p.applied,
                     p.head);
}

/* A stats row: a category's events with the state of the feed that brings
 * it (its own, or the publisher's feed of every category). */
typedef struct row {
    const catcount *c;
    const char *publisher, *service, *state;
    uint64_t applied, gaps, dups, dropped, bad, unreadable;
    int64_t hb_age_ms;
    bool found;
} row;

static void s_row_feed(sniff_t *s, const evb_feed_status *fs, void *arg)
{
    row *r = arg;
    if (r->found || s_pub_index(s, fs->publisher) != r->c->pub) return;
    if (strcmp(fs->category, r->c->category) != 0 &&
        strcmp(fs->category, EVB_ALL_CATEGORIES) != 0)
        return;
    r->found = true;
    r->state = evb_feed_state_name(fs->state);
    r->applied = fs->applied;
    r->gaps = fs->gaps;
    r->dups = fs->duplicates;
    r->dropped = fs->dropped_live;
    r->bad = fs->bad_frames;
    r->unreadable = fs->unreadable;
    r->hb_age_ms = fs->heartbeat_age_ms;
}

static row s_row(sniff_t *s, const catcount *c)
{
    row r = {.c = c, .state = "waiting", .hb_age_ms = -1};
    r.publisher = s->pubs[c->pub].name;
    r.service = s->pubs[c->pub].service;
    s_feeds(s, s_row_feed, &r);
    return r;
}

static int s_stats_json(sniff_t *s, int64_t now)
{
    evb_buf *b = &s->line;
    evb_err err;
    b->len = 0;
    char ts[32];
    evb_ts_format(now, ts);
    int rc = evb_buf_printf(b, &err, "{\"ts\":\"%s\",\"printed\":%" PRIu64 ",\"feeds\":[",
                            ts, s->matched);
    for (size_t i = 0; rc == EVB_OK && i < s->ncounts; i++) {
        const catcount *c = &s->counts[i];
        row r = s_row(s, c);
        rc = evb_buf_append(
            b, i == 0 ? "{\"publisher\":" : ",{\"publisher\":", i == 0 ? 13 : 14, &err);
        if (rc == EVB_OK) rc = cli_json_str(b, r.publisher, &err);
        if (rc == EVB_OK) rc = evb_buf_append(b, ",\"service\":", 11, &err);
        if (rc == EVB_OK) rc = cli_json_str(b, r.service, &err);
        if (rc == EVB_OK)
            rc = evb_buf_printf(
                b, &err,
                ",\"category\":\"%s\",\"state\":\"%s\",\"applied\":%" PRIu64
                ",\"rate\":%" PRIu64 ",\"events\":%" PRIu64 ",\"gaps\":%" PRIu64
                ",\"duplicates\":%" PRIu64 ",\"dropped\":%" PRIu64
                ",\"bad_frames\":%" PRIu64 ",\"unreadable\":%" PRIu64
                ",\"heartbeat_age_ms\":%" PRId64 "}",
                c->category, r.state, r.applied, c->rate, c->events, r.gaps, r.dups,
                r.dropped, r.bad, r.unreadable, r.hb_age_ms);
    }
    if (rc == EVB_OK) rc = evb_buf_append(b, "]}\n", 3, &err);
    if (rc != EVB_OK) return rc;
    return cli_write(s->cli, b->data, b->len) == 0 ? EVB_OK : EVB_EIO;
}

/* One stats tick: rates over the last second, then a table (terminal,
 * redrawn in place), a line (pipe) or a JSON object (--json). In log order
 * one feed brings every category of a publisher: its state and counters
 * show on each of them. */
static void s_stats(sniff_t *s, int64_t now)
{
    uint64_t rate = 0;
    for (size_t i = 0; i < s->ncounts; i++) {
        catcount *c = &s->counts[i];
        c->rate = c->events - c->rate_mark;
        c->rate_mark = c->events;
        rate += c->rate;
    }
    if (s->json) {
        if (s_stats_json(s, now) != EVB_OK) evb_err_set(&s->fatal, EVB_EIO, "stdout");
        fflush(stdout);
        return;
    }
    totals t = s_totals(s);
    char ts[32];
    row_time(now, ts);
    if (!s->cli->out_tty) {
        cli_printf(s->cli,
                   "%s  %" PRIu64 " ev/s  events %" PRIu64 "  matched %" PRIu64
                   "  gaps %" PRIu64 "  dups %" PRIu64 "  dropped %" PRIu64
                   "  bad %" PRIu64 "\n",
                   ts, rate, t.events, s->matched, t.gaps, t.dups, t.dropped, t.bad);
        fflush(stdout);
        return;
    }
    if (s->stats_lines > 0) cli_printf(s->cli, "\033[%uA", s->stats_lines);
    unsigned n = 0;
    cli_printf(s->cli, "\r\033[K%s%-24s %-16s %-11s %8s %10s %6s %6s %6s %6s %7s%s\n",
               cli_bold(s->cli), "PUBLISHER", "CATEGORY", "STATE", "EV/S", "EVENTS",
               "GAPS", "DUPS", "DROP", "BAD", "HB AGE", cli_reset(s->cli));
    n++;
    for (size_t i = 0; i < s->ncounts; i++) {
        const catcount *c = &s->counts[i];
        row r = s_row(s, c);
        char age[32] = "-";
        if (r.hb_age_ms >= 0)
            snprintf(age, sizeof age, "%.1fs", (double)r.hb_age_ms / 1e3);
        bool live = strcmp(r.state, "live") == 0;
        cli_printf(s->cli,
                   "\r\033[K%-24.24s %-16.16s %s%-11s%s %8" PRIu64 " %10" PRIu64
                   " %s%6" PRIu64 "%s %6" PRIu64 " %6" PRIu64 " %6" PRIu64 " %7s\n",
                   r.service[0] ? r.service : r.publisher, c->category,
                   live ? cli_green(s->cli) : "", r.state, cli_reset(s->cli), c->rate,
                   c->events, r.gaps > 0 ? cli_red(s->cli) : "", r.gaps,
                   cli_reset(s->cli), r.dups, r.dropped, r.bad, age);
        n++;
    }
    cli_printf(s->cli, "\r\033[K%s  matched %" PRIu64 "  gaps %" PRIu64 "  bad frames %" PRIu64
                       "\n",
               ts, s->matched, t.gaps, t.bad);
    n++;
    s->stats_lines = n;
    fflush(stdout);
}

static void s_summary(sniff_t *s, bool always)
{
    totals t = s_totals(s);
    if (!always && t.gaps == 0 && t.bad == 0 && t.dropped == 0) return;
    cli_progress_end(s->cli);
    fflush(stdout);
    fprintf(
        stderr,
        "%s: %" PRIu64 " events %s; %" PRIu64 " gaps found (fetched again), %" PRIu64
        " duplicates, %" PRIu64 " dropped while catching up, %" PRIu64 " bad frames%s\n",
        s->cli->name, s->matched, s->stats ? "matched" : "printed", t.gaps, t.dups,
        t.dropped, t.bad, t.catching > 0 ? "; some feeds were still catching up" : "");
}

/* ---- replay ---- */

static int s_replay(sniff_t *s, const char *path, int64_t deadline)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        cli_error(s->cli, "--replay %s: %s", path, strerror(errno));
        return CLI_EXIT_RUNTIME;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0, bad = 0;
    evb_buf raw = {0};
    evb_event_t ev = {0};
    int rc = CLI_EXIT_OK;
    s_header(s);
    while (!s->done && !cli_stop_requested() && (n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (deadline != 0 && evb_now_us() >= deadline) break;
        if (n == 0 || (n == 1 && line[0] == '\n')) continue;
        evb_err err = {0};
        json_val *v = NULL;
        const json_val *jrx, *jpub, *jraw, *jsvc;
        if ((size_t)n > S_MAX_LINE) {
            evb_err_set(&err, EVB_ETOOBIG, "line longer than %u bytes", S_MAX_LINE);
        } else if (json_parse(line, (size_t)n, &v, &err) == EVB_OK) {
            jrx = json_get(v, "rx_us");
            jpub = json_get(v, "publisher");
            jraw = json_get(v, "raw");
            jsvc = json_get(v, "service");
            raw.len = 0;
            if (jraw == NULL || jraw->type != JSON_STR)
                evb_err_set(&err, EVB_EDECODE, "field \"raw\": want a base64 string");
            else if (jrx == NULL || jrx->type != JSON_INT)
                evb_err_set(&err, EVB_EDECODE, "field \"rx_us\": want an integer");
            else if (jpub != NULL && jpub->type != JSON_STR)
                evb_err_set(&err, EVB_EDECODE, "field \"publisher\": want a string");
            else if (s_base64_dec(&raw, jraw->str, jraw->len, &err) == EVB_OK &&
                     evb_event_decode_into(raw.data, raw.len, &ev, &err) == EVB_OK) {
                const char *svc = jsvc != NULL && jsvc->type == JSON_STR ? jsvc->str
                                                                         : ev.service;
                if (s_output(s, &ev, raw.data, raw.len, jrx->i,
                             jpub != NULL ? jpub->str : "", svc) != EVB_OK) {
                    json_free(&v);
                    rc = s->cli->pipe_closed ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
                    break;
                }
            }
        }
        json_free(&v);
        if (err.code != EVB_OK) {
            bad++;
            cli_error(s->cli, "--replay %s: line %" PRIu64 ": %s", path, lineno, err.msg);
        }
    }
    if (rc == CLI_EXIT_OK && ferror(f)) {
        cli_error(s->cli, "--replay %s: %s", path, strerror(errno));
        rc = CLI_EXIT_RUNTIME;
    }
    if (rc == CLI_EXIT_OK && bad > 0) rc = CLI_EXIT_PROBLEMS;
    if (s->stats) s_stats(s, evb_now_us());
    free(line);
    evb_buf_free(&raw);
    evb_event_clear(&ev);
    if (f != stdin) fclose(f);
    return rc;
}

/* ---- the command ---- */

/* How the tap follows: with history over several categories (or all), one
 * feed in log order, so the history prints in log order (categories not
 * asked for are fetched too and passed over); else a feed per category. */
static evb_follow_opts s_follow_opts(const sniff_t *s, size_t i)
{
    evb_follow_opts fo = {.server_key = s->server_keys[i]};
    if (s->cats->n == 0 || (s->history && s->cats->n > 1)) {
        fo.log_order = true;
    } else {
        fo.categories = (const char *const *)s->cats->v;
        fo.ncategories = s->cats->n;
    }
    return fo;
}

static int s_run(sniff_t *s, const cli_list *follow, int64_t deadline)
{
    const evb_curve curve = {.cert_file = s->cert};
    evb_tap_opts to = {.on_event = s_on_event,
                       .ctx = s,
                       .from = s->history && s->last == 0 ? s->from : 0,
                       .last = s->last,
                       .page_events = S_PAGE_EVENTS,
                       .rcvhwm = s->rcvhwm,
                       .live_buffer = S_LIVE_MAX_EVENTS,
                       .curve = s->cert != NULL ? &curve : NULL};
    evb_err err = {0};
    s->started_us = evb_now_us();
    if ((s->tap = evb_tap_new(&to, &err)) == NULL)
        return err.code == EVB_EINVAL
                   ? cli_usage_error(s->cli, "--cert: %s", err.msg)
                   : (cli_error(s->cli, "%s", err.msg), CLI_EXIT_RUNTIME);
    for (size_t i = 0; i < follow->n; i++) {
        char pub[EVB_BUS_MAX_ENDPOINT], cu[EVB_BUS_MAX_ENDPOINT];
        cli_split_follow(follow->v[i], pub, cu); /* checked before */
        pubinfo *p = &s->pubs[s->npubs++];
        snprintf(p->name, sizeof p->name, "%s,%s", pub, cu);
        evb_follow_opts fo = s_follow_opts(s, i);
        if (evb_tap_follow(s->tap, pub, cu, &fo, &err) != EVB_OK) {
            cli_error(s->cli, "--follow %s: %s", follow->v[i], err.msg);
            return err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
        }
    }
    s_header(s);
    int64_t now = evb_now_us(), next_stats = now + 1000000;
    int rc = CLI_EXIT_OK;
    while (!cli_stop_requested() && !s->done && s->fatal.code == EVB_OK) {
        now = evb_now_us();
        int64_t wait = 100000;
        if (deadline != 0 && deadline - now < wait) wait = deadline - now;
        if (s->stats && next_stats - now < wait) wait = next_stats - now;
        if (wait < 0) wait = 0;
        if (evb_tap_poll(s->tap, (int)(wait / 1000), &err) != EVB_OK) {
            cli_error(s->cli, "%s", err.msg);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        s_flush_stdout(s);
        s_feeds(s, s_watch, NULL);
        if (s->until_end) {
            bool all = true;
            s_feeds(s, s_at_end, &all);
            if (all) s->done = true;
        }
        if (s->record != NULL && !s->record_failed && fflush(s->record) != 0) {
            cli_error(s->cli, "--record %s: %s", s->record_path, strerror(errno));
            s->record_failed = true;
        }
        if (s->record_failed) {
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        now = evb_now_us();
        if (s->stats && now >= next_stats) {
            s_stats(s, now);
            next_stats += 1000000;
            if (next_stats < now) next_stats = now + 1000000;
        }
        s_progress(s, now);
        if (deadline != 0 && now >= deadline) break;
    }
    if (s->fatal.code != EVB_OK && rc == CLI_EXIT_OK)
        rc = s->cli->pipe_closed ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
    return rc;
}

static void s_free(sniff_t *s)
{
    evb_tap_destroy(&s->tap);
    filter_free(&s->filter);
    free(s->counts);
    evb_buf_free(&s->line);
    evb_buf_free(&s->payload);
    evb_buf_free(&s->tmp);
}

int cmd_sniff(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus sniff");
    cli_list follow = {0}, cats = {0}, types = {0}, streams = {0}, wheres = {0};
    cli_list services = {0}; /* --service NAME: endpoints from beacons (disc_cli.h) */
    const char *beacon_iface = NULL;
    uint64_t beacon_port = 0;
    bool beacon_port_set = false;
    const char *color = "auto", *since = NULL, *record = NULL, *replay = NULL;
    const char *from_s = NULL; /* SEQ or -N: filter_parse_from */
    const char *cert = NULL; /* CURVE: our certificate (README.md, "Security") */
    const char *context = NULL; /* context.h: --follow, --service, --cert */
    bool json = false, stats = false, from_start = false, from_set = false, until_end = false;
    bool count_set = false, timeout_set = false, hwm_set = false;
    uint64_t count = 0, timeout_ms = 0, rcvhwm = 100000;
    const cli_opt opts[] = {
        {"follow", CLI_LIST, &follow, NULL, "PUB_EP,CATCHUP_EP",
         "a publisher's endpoints (required; may repeat)"},
        {"service", CLI_LIST, &services, NULL, "NAME",
         "a service found by its beacon, instead of --follow (may repeat)"},
        {"beacon-iface", CLI_STR, &beacon_iface, NULL, "NAME",
         "for --service: the beacon interface (default $EVBUS_BEACON_IFACE)"},
        {"beacon-port", CLI_U64, &beacon_port, &beacon_port_set, "N",
         "for --service: the beacons' UDP port (default 5670)"},
        {"category", CLI_LIST, &cats, NULL, "C", "only this category (may repeat)"},
        FILTER_OPTS(&types, &streams, &wheres),
        {"json", CLI_FLAG, &json, NULL, NULL,
         "JSON lines, as `evbus log cat --json` + \"publisher\""},
        {"color", CLI_STR, &color, NULL, "WHEN", "auto (default), always or never"},
        {"count", CLI_U64, &count, &count_set, "N", "exit after N events printed"},
        {"timeout", CLI_DUR_S, &timeout_ms, &timeout_set, "DURATION",
         "exit after this long (e.g. 2.5s, 1m)"},
        {"from", CLI_STR, &from_s, &from_set, "SEQ|-N",
         "history from sequence SEQ on (-N: the last N events), then live"},
        {"from-start", CLI_FLAG, &from_start, NULL, NULL, "same as --from 1"},
        {"until-end", CLI_FLAG, &until_end, NULL, NULL,
         "history, then exit 0 at each publisher's head when first heard"},
        {"since", CLI_STR, &since, NULL, "TIME",
         "history from TIME (RFC 3339) on, then live"},
        {"stats", CLI_FLAG, &stats, NULL, NULL,
         "rates, gaps, duplicates, bad frames each second"},
        {"rcvhwm", CLI_U64, &rcvhwm, &hwm_set, "N",
         "SUB high-water mark in messages (default 100000)"},
        {"record", CLI_STR, &record, NULL, "FILE",
         "also write each printed event to FILE (format below)"},
        {"replay", CLI_STR, &replay, NULL, "FILE",
         "print a --record file ('-': stdin), not the bus"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "CURVE: our certificate (NAME_secret), for a --follow with a server key"},
        {"context", CLI_STR, &context, NULL, "NAME",
         "--follow, --service, --cert from saved context NAME (default $EVBUS_CONTEXT)"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS),
        "--follow PUB_EP,CATCHUP_EP... [--category C]... [--type T]...\n"
        "       [--stream GLOB]... [--where FIELD=VALUE]... [--json] [--color WHEN]\n"
        "       [--count N] [--timeout DURATION] [--from SEQ|-N | --from-start | --since TIME]\n"
        "       [--until-end]\n"
        "       [--stats] [--rcvhwm N] [--record FILE] [--cert FILE] [--context NAME]\n"
        "   or: evbus sniff --replay FILE [filters and output options]",
        "Watch the events that go over the bus, without a store: follow one or\n"
        "more publishers (evbus serve, evbus mirror, a service) and print each\n"
        "event as it is published: time (RFC 3339, UTC, as `evbus log cat`),\n"
        "publisher's service, seq, stream, version, type and payload (JSON, cut\n"
        "to the terminal's width), in colour on a terminal. Nothing is written\n"
        "anywhere, except with --record.\n"
        "Live by default; --from, --from-start and --since first print the\n"
        "history through the catch-up protocol, then switch to live without gaps\n"
        "or duplicates. Gaps seen live (lost messages) are counted and filled by\n"
        "a fetch; a slow sniffer only loses its own copies (see --rcvhwm).",
        FILTER_NOTES
        "Without --category every category is followed. --since fetches from\n"
        "the start and prints events whose time is at or after TIME.\n"
        "--from -N (kcat's -o -N): the last N events of each publisher's log\n"
        "(from its head when first met, less N - 1; from 1 when it holds fewer),\n"
        "then live; the filters apply to those N. '--from -5' and '--from=-5'\n"
        "both work.\n"
        "--until-end (kcat's -e): print the history up to the head each publisher\n"
        "had when first heard, then exit 0, also when there was nothing to print;\n"
        "from the start unless --from or --since says where.\n"
        "Output: columns, or with --json one object per line, the same as\n"
        "`evbus log cat --json` plus \"publisher\": \"PUB_EP,CATCHUP_EP\" (jq-ready).\n"
        ROW_NOTES
        "--color auto colours only a terminal with NO_COLOR unset.\n"
        "Progress of a catch-up goes to stderr when stderr is a terminal; so\n"
        "does 'live on PUB_EP,CATCHUP_EP ...' once a publisher's first heartbeat\n"
        "arrives (from then on nothing it publishes goes unseen).\n"
        "--stats: instead of events, a table redrawn each second on a terminal,\n"
        "one summary line per second when piped, or with --json one object per\n"
        "second {ts, printed, feeds: [{publisher, service, category, state,\n"
        "applied, rate, events, gaps, duplicates, dropped, bad_frames,\n"
        "heartbeat_age_ms}]}. Filters decide what counts as printed (matched).\n"
        "At exit, gaps, duplicates and bad frames are reported on stderr when\n"
        "there were any (always when stderr is a terminal).\n"
        "--record FILE writes JSON lines, one per printed event:\n"
        "  {\"rx_us\": receive time (us since the epoch), \"publisher\":\n"
        "   \"PUB_EP,CATCHUP_EP\", \"service\": NAME, \"raw\": the envelope's msgpack\n"
        "   bytes in base64}\n"
        "--replay FILE prints such a file again with the same output options and\n"
        "filters (--follow, --category, --from, --rcvhwm do not apply).\n"
        "Exit code 0 after SIGINT/SIGTERM, after --count N events, at the end of\n"
        "--replay or with --until-end, or when --timeout passes with at least\n"
        "one event printed (N with --count); 1 when --timeout passes with none\n"
        "(fewer than N), or --replay met bad lines; 2 for a bad flag or\n"
        "endpoint; 4 when stdout, --record or --replay fails.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    /* A replay reads no bus, and EVBUS_CONTEXT gives nothing to a command
     * line that names its publishers: no context then. */
    const ctx_entry *ctx = NULL;
    if (replay == NULL && (context != NULL || (follow.n == 0 && services.n == 0))) {
        ctx_apply ca = {.follow = &follow, .services = &services, .cert = &cert};
        if ((rc = ctx_open(&cli, context, &ctx)) >= 0 ||
            (rc = ctx_fill(&cli, ctx, &ca)) >= 0)
            return rc;
        if (ctx != NULL && follow.n == 0 && services.n == 0)
            return cli_usage_error(
                &cli,
                "context %s has no follow or service values (file %s): "
                "give --follow",
                ctx->name, ctx_used_path());
    }
    for (size_t i = 0; replay == NULL && ctx == NULL && i < services.n; i++) {
        char what[EVB_MAX_SERVICE_LEN + 16];
        snprintf(what, sizeof what, "--service %s", services.v[i]);
        ctx_note_beacon(&cli, services.v[i], what);
    }

    /* --service NAME: resolved once, at start, into --follow PUB,CATCHUP. */
    static char svc_eps[CLI_MAX_LIST][S_PUB_CAP];
    if (services.n > 0 && replay == NULL) {
        evb_disc_entry *found = calloc(services.n, sizeof *found);
        const char *difc;
        unsigned dport;
        if (found == NULL) return CLI_EXIT_RUNTIME;
        if (follow.n + services.n > CLI_MAX_LIST)
            rc = cli_usage_error(&cli, "more than %d publishers", CLI_MAX_LIST);
        else if ((rc = disc_cli_settings(&cli, false, beacon_iface, beacon_port, beacon_port_set,
                                         &difc, &dport)) < 0)
            rc = disc_cli_resolve(&cli, difc, dport, services.v, services.n,
                                  DISC_CLI_DEFAULT_WAIT_MS, CLI_EXIT_USAGE, found);
        for (size_t i = 0; rc < 0 && i < services.n; i++) {
            if (found[i].b.pub[0] == '\0') {
                cli_error(&cli, "service %s announces no publisher", services.v[i]);
                rc = CLI_EXIT_USAGE;
                break;
            }
            snprintf(svc_eps[i], sizeof svc_eps[i], "%s,%s", found[i].b.pub,
                     found[i].b.catchup);
            follow.v[follow.n++] = svc_eps[i];
        }
        free(found);
        if (rc >= 0) return rc;
    }
    if (replay == NULL && follow.n == 0)
        return cli_usage_error(&cli,
                               "--follow PUB_EP,CATCHUP_EP is required (or --service "
                               "NAME, or --context NAME)");
    if (replay != NULL && (follow.n > 0 || cats.n > 0))
        return cli_usage_error(&cli, "--replay excludes --follow and --category");
    if (replay != NULL && until_end)
        return cli_usage_error(&cli, "--replay excludes --until-end");
    if (replay != NULL && record != NULL)
        return cli_usage_error(&cli, "--replay excludes --record");
    if ((from_set ? 1 : 0) + (from_start ? 1 : 0) + (since != NULL ? 1 : 0) > 1)
        return cli_usage_error(&cli, "--from, --from-start and --since exclude each other");
    uint64_t from = 0, last = 0; /* --from SEQ, or --from -N */
    if (from_set && (rc = filter_parse_from(&cli, from_s, &from, &last)) >= 0) return rc;
    if (from_set && from == 0 && last == 0)
        return cli_usage_error(&cli, "--from: sequences count from 1");
    if (replay != NULL && last > 0)
        return cli_usage_error(&cli, "--from %s: the last N events of a publisher's log; a "
                               "--replay file is read whole (--from SEQ filters it)", from_s);
    if (count_set && count == 0) return cli_usage_error(&cli, "--count: at least 1");
    if (timeout_set && (timeout_ms == 0 || timeout_ms > 365 * 86400000ull))
        return cli_usage_error(&cli, "--timeout: expected 1ms..365d");
    if (hwm_set && (rcvhwm == 0 || rcvhwm > 100000000))
        return cli_usage_error(&cli, "--rcvhwm: expected 1..100000000 messages");
    if (strcmp(color, "always") == 0)
        cli.color = true;
    else if (strcmp(color, "never") == 0)
        cli.color = false;
    else if (strcmp(color, "auto") != 0)
        return cli_usage_error(&cli, "--color: expected auto, always or never, got '%s'",
                               color);
    evb_err err = {0};
    for (size_t i = 0; i < cats.n; i++)
        if (evb_check_category(cats.v[i], &err) != EVB_OK)
            return cli_usage_error(&cli, "--category '%s': %s", cats.v[i], err.msg);
    sniff_t s = {0};
    rc = filter_init(&cli, &s.filter, &types, &streams, &wheres);
    if (rc >= 0) return rc;
    s.since_us = INT64_MIN;
    if (since != NULL && evb_ts_parse(since, &s.since_us, &err) != EVB_OK)
        return cli_usage_error(&cli, "--since '%s': %s (want e.g. 2026-11-24T23:40:12Z)",
                               since, err.msg);
    rc = cli_follow_keys(&cli, &follow, cert != NULL, s.server_keys);
    if (rc >= 0) return rc;
    s.cert = cert; /* read by the tap: a bad one is a usage error there */
    rc = cli_follow_split(&cli, &follow, NULL);
    if (rc >= 0) return rc;

    s.cli = &cli;
    s.cats = &cats;
    s.json = json;
    s.stats = stats;
    s.history = from_set || from_start || since != NULL || until_end;
    s.until_end = until_end;
    s.from = from_set && last == 0 ? from : 1;
    s.last = last;
    s.count = count;
    s.rcvhwm = (int)rcvhwm;
    s.wseq = 4;
    s.wver = 3;
    s.wpub = 12;
    s.record_path = record;

    cli_install_log_sink(&cli);
    cli_catch_stop_signals();
    if (record != NULL && (s.record = fopen(record, "w")) == NULL) {
        cli_error(&cli, "--record %s: %s", record, strerror(errno));
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return CLI_EXIT_RUNTIME;
    }
    int64_t deadline = timeout_set ? evb_now_us() + (int64_t)timeout_ms * 1000 : 0;
    if (replay != NULL)
        rc = s_replay(&s, replay, deadline);
    else
        rc = s_run(&s, &follow, deadline);
    bool timed_out = deadline != 0 && !s.done && !cli_stop_requested() &&
                     evb_now_us() >= deadline;
    if (rc == CLI_EXIT_OK && timed_out && (s.matched == 0 || (count_set && !s.done)))
        rc = CLI_EXIT_PROBLEMS;
    if (replay == NULL && rc != CLI_EXIT_USAGE) s_summary(&s, cli.err_tty);
    if (s.record != NULL && fclose(s.record) != 0 && rc == CLI_EXIT_OK) {
        cli_error(&cli, "--record %s: %s", record, strerror(errno));
        rc = CLI_EXIT_RUNTIME;
    }
    s_free(&s);
    rc = cli_finish(&cli, rc);
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
    return rc;
}
