/*
 * cmd_sniff.c: `evbus sniff`: a store-less tap on the bus. It follows one or
 * more publishers (a SUB socket for live events and heartbeats, a DEALER for
 * catch-up fetches, per publisher), prints what goes by as aligned columns or
 * JSON lines, and writes nothing anywhere unless asked to record.
 *
 * Key decisions:
 *  - It speaks the wire protocol of bus/PROTOCOL.md directly with the helpers
 *    of <evbus/evbus_wire.h> instead of evb_sub_t, which needs a store for its
 *    checkpoints. Positions live in memory only: a sniffer is restarted from
 *    wherever its flags say.
 *  - One feed per (publisher, category), keyed implicitly by the
 *    publisher's log id (a changed log id resets the publisher's feeds). A
 *    feed's `applied` means every event of the category up to it was
 *    handled (printed or filtered out), so duplicates are recognised by
 *    sequence and a live event whose `prev` is beyond `applied` is a gap,
 *    filled by a fetch (PROTOCOL.md "Subscriber", steps 2-4).
 *  - History (--from, --from-start, --since) without --category is fetched
 *    with the "all categories" fetch (category nil), so it prints in log
 *    order; live events that arrive meanwhile are buffered, bounded, and
 *    gone through once the history is complete (the Clone pattern).
 *  - Live only (the default): a feed takes its position from the first
 *    event (its prev) or heartbeat (the category head) it sees, so nothing
 *    before the start counts as a gap.
 *  - Filters (--type, --stream, --where, --since, --from) only decide what is
 *    printed, counted by --count and recorded; every event still moves its
 *    feed, so gap detection does not depend on them.
 *  - Bounded: a finite SUB high-water mark (--rcvhwm: a slow sniffer loses
 *    only its own copies, counted as gaps), a bounded live buffer per feed
 *    while catching up (beyond it events are dropped and fetched again), one
 *    fetch outstanding per feed, at most S_MAX_FEEDS feeds per publisher.
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

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include <evbus/evbus_bus.h>
#include <evbus/evbus_wire.h>

#define S_PAGE_EVENTS 1000u              /* events asked per catch-up page */
#define S_FETCH_TIMEOUT_US 3000000       /* re-ask an unanswered fetch */
#define S_RETRY_SOON_US 50000            /* re-ask a request no peer took */
#define S_DEAD_AFTER_US 5000000          /* silent publisher: hello again */
#define S_LIVE_MAX_EVENTS 10000u         /* buffered per feed while catching up */
#define S_LIVE_MAX_BYTES (64u << 20)     /* ... and bytes */
#define S_MAX_FEEDS 4096u                /* categories per publisher */
#define S_MSGS_PER_TURN 2000u            /* per socket, so none starves */
#define S_DEFAULT_RCVHWM 100000u
#define S_MAX_LINE (8u * 1024u * 1024u) /* a --replay line (base64 of an event) */
#define S_PUB_CAP (2 * EVB_BUS_MAX_ENDPOINT + 2)

typedef enum { F_INIT, F_CATCHUP, F_LIVE } fstate;

/* A live event kept while its feed catches up: the envelope copied. */
typedef struct live_ev {
    uint64_t seq, prev;
    int64_t rx_us;
    char cat[EVB_MAX_CATEGORY_LEN + 1];
    size_t len;
    uint8_t *data;
} live_ev;

struct conn;

typedef struct feed {
    struct conn *c;
    char category[EVB_MAX_CATEGORY_LEN + 1]; /* "" = the all-categories history */
    fstate state;
    uint64_t applied;
    bool probing; /* catching up after a silence, not after a known gap */
    uint64_t fetch_req;
    int64_t fetch_at; /* (re)send the fetch at this time; 0 = not pending */
    live_ev *buf;
    size_t nbuf, capbuf, buf_bytes;
    /* counters */
    uint64_t events, gaps, dups, dropped, pages;
    uint64_t unreadable; /* events the publisher's log could not read (holes) */
    uint64_t rate_mark;  /* events at the last stats tick */
    uint64_t rate;       /* events in the last second */
} feed;

typedef struct conn {
    char name[S_PUB_CAP]; /* "PUB_EP,CATCHUP_EP" */
    char pub_ep[EVB_BUS_MAX_ENDPOINT], cu_ep[EVB_BUS_MAX_ENDPOINT];
    void *sub, *dealer;
    bool have_log_id;
    evb_id log_id;
    char service[EVB_MAX_SERVICE_LEN + 1];
    uint64_t head;
    uint64_t hello_req;
    int64_t hello_at;
    unsigned hello_wait_ms;
    int64_t started_us, last_hb_us, last_seen_us;
    bool warned_silent;
    bool announced; /* the "live on" line was printed */
    bool hello_after_silence; /* the pending hello follows a silence */
    feed *all; /* history of every category (all-mode with history only) */
    feed **feeds;
    size_t nfeeds;
    uint64_t bad_frames, bad_unlogged, ignored_cats;
    int64_t last_bad_log_us;
    char server_key[EVB_CURVE_Z85]; /* CURVE: the publisher's key ("": plain) */
    evb_curve_link link[2];         /* handshakes of sub [0] and dealer [1] */
} conn;

typedef struct where_t {
    const char *field;
    const char *value;
} where_t;

typedef struct sniff {
    cli_t *cli;
    /* options */
    const cli_list *types, *streams, *cats;
    where_t where[CLI_MAX_LIST];
    size_t nwhere;
    bool json, stats, history;
    uint64_t from;    /* first sequence printed (1 = all) */
    int64_t since_us; /* INT64_MIN = no filter */
    uint64_t count;   /* 0 = no limit */
    int rcvhwm;
    FILE *record;
    const char *record_path;
    bool record_failed;
    /* sockets */
    void *zctx;
    conn **conns;
    size_t nconns;
    zmq_pollitem_t *items;
    uint64_t next_req;
    /* scratch */
    evb_buf msg, line, payload, tmp;
    evb_event_t ev;
    evb_wire_view *views;
    evb_wire_reply reply;
    /* output */
    uint64_t printed, matched;
    bool done; /* --count reached */
    int wseq, wstream, wtype, wver, wpub;
    int64_t last_progress_us, last_gap_log_us;
    unsigned stats_lines; /* lines of the last table drawn on a terminal */
    evb_err fatal;
    /* CURVE (README.md, "Security"): our keys, each --follow's server key */
    evb_curve_keys keys;
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

/* A payload field equals VALUE: as a string, a number or a JSON literal. */
static bool s_where_one(sniff_t *s, const evb_event_t *ev, const where_t *w)
{
    const void *val;
    size_t vlen;
    if (evb_map_find(ev->payload, ev->payload_len, w->field, &val, &vlen, NULL) != EVB_OK)
        return false;
    s->tmp.len = 0;
    if (evb_msgpack_to_json(val, vlen, &s->tmp, NULL) != EVB_OK) return false;
    const char *j = s->tmp.data;
    size_t jl = s->tmp.len;
    if (jl > 0 && j[0] == '"') {
        size_t at = s->tmp.len;
        if (cli_json_str(&s->tmp, w->value, NULL) != EVB_OK) return false;
        j = s->tmp.data; /* may have moved */
        return s->tmp.len - at == at && memcmp(j, j + at, at) == 0;
    }
    if (strlen(w->value) == jl && memcmp(j, w->value, jl) == 0) return true;
    /* numbers: 3 == 3.0 (a field that renders as an object, e.g. a
     * {"$int":...} beyond 2^53, never compares as a number) */
    char *end1, *end2;
    char num[64];
    if (jl == 0 || jl >= sizeof num || j[0] == '{') return false;
    memcpy(num, j, jl);
    num[jl] = '\0';
    double a = strtod(num, &end1);
    double b = strtod(w->value, &end2);
    return *end1 == '\0' && *end2 == '\0' && end2 != w->value && isfinite(a) &&
           isfinite(b) && a == b;
}

static bool s_match(sniff_t *s, const evb_event_t *ev)
{
    if (ev->seq < s->from && s->history) return false;
    if (ev->ts_us < s->since_us) return false;
    if (s->types->n > 0) {
        bool ok = false;
        for (size_t i = 0; i < s->types->n && !ok; i++)
            ok = strcmp(ev->type, s->types->v[i]) == 0;
        if (!ok) return false;
    }
    if (s->streams->n > 0) {
        bool ok = false;
        for (size_t i = 0; i < s->streams->n && !ok; i++)
            ok = fnmatch(s->streams->v[i], ev->stream, 0) == 0;
        if (!ok) return false;
    }
    for (size_t i = 0; i < s->nwhere; i++)
        if (!s_where_one(s, ev, &s->where[i])) return false;
    return true;
}

/* ---- output ---- */

static void s_fmt_time(int64_t ts_us, char out[32])
{
    time_t t = (time_t)(ts_us / 1000000);
    if (ts_us < 0 && ts_us % 1000000 != 0) t--;
    struct tm tm;
    gmtime_r(&t, &tm);
    int ms = (int)(((ts_us % 1000000) + 1000000) % 1000000 / 1000);
    snprintf(out, 32, "%02d-%02d %02d:%02d:%02d.%03d", tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

static void s_header(sniff_t *s)
{
    if (s->json || s->stats) return;
    cli_printf(s->cli, "%s%-18s  %-*s  %*s  %-*s  %*s  %-*s  %s%s\n", cli_bold(s->cli),
               "TIME (UTC)", s->wpub, "PUBLISHER", s->wseq, "SEQ", s->wstream, "STREAM",
               s->wver, "VER", s->wtype, "TYPE", "PAYLOAD", cli_reset(s->cli));
}

/* Grow a column to fit v (never shrinks, so columns stay aligned). */
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
    s_fmt_time(ev->ts_us, tm);
    s_fit(&s->wseq, (size_t)cli_digits(ev->seq), 20);
    s_fit(&s->wver, (size_t)cli_digits(ev->version), 20);
    s_fit(&s->wstream, strlen(ev->stream), 32);
    s_fit(&s->wtype, strlen(ev->type), 32);
    const char *dim = s_col(s, "\033[2m"), *cyan = s_col(s, "\033[36m"),
               *bold = s_col(s, "\033[1m"), *rst = s_col(s, "\033[0m");
    l->len = 0;
    int rc = evb_buf_printf(l, err,
                            "%s%s%s  %s%-*.*s%s  %*" PRIu64 "  %s%-*s%s  %*" PRIu64
                            "  %s%-*s%s  ",
                            dim, tm, rst, cyan, s->wpub, s->wpub, pubname, rst, s->wseq,
                            ev->seq, bold, s->wstream, ev->stream, rst, s->wver,
                            ev->version, s_type_color(s, ev->type), s->wtype, ev->type,
                            rst);
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

/* ---- feeds ---- */

static void s_bad_frame(sniff_t *s, conn *c, const char *why)
{
    (void)s;
    c->bad_frames++;
    int64_t now = evb_now_us();
    if (now - c->last_bad_log_us < 1000000) {
        c->bad_unlogged++;
        return;
    }
    evb_log(EVB_LOG_WARN, "bad frame from %s: %s (%" PRIu64 " more not logged)", c->name,
            why, c->bad_unlogged);
    c->last_bad_log_us = now;
    c->bad_unlogged = 0;
}

static void s_drop_buffer(feed *f, size_t from)
{
    for (size_t i = from; i < f->nbuf; i++) {
        f->buf_bytes -= f->buf[i].len;
        free(f->buf[i].data);
    }
    if (from < f->nbuf) f->nbuf = from;
}

static void s_feed_free(feed *f)
{
    if (f == NULL) return;
    s_drop_buffer(f, 0);
    free(f->buf);
    free(f);
}

static feed *s_feed_new(conn *c, const char *cat, fstate st, uint64_t applied)
{
    feed *f = calloc(1, sizeof *f);
    if (f == NULL) return NULL;
    f->c = c;
    snprintf(f->category, sizeof f->category, "%s", cat);
    f->state = st;
    f->applied = applied;
    return f;
}

static feed *s_find(conn *c, const char *cat)
{
    for (size_t i = 0; i < c->nfeeds; i++)
        if (strcmp(c->feeds[i]->category, cat) == 0) return c->feeds[i];
    return NULL;
}

static bool s_wanted(const sniff_t *s, const char *cat)
{
    if (s->cats->n == 0) return true;
    for (size_t i = 0; i < s->cats->n; i++)
        if (strcmp(s->cats->v[i], cat) == 0) return true;
    return false;
}

/* The feed of cat, made on first sight: it starts where the all-categories
 * history is (its end moves it on), or, live only, at the first thing seen. */
static feed *s_feed_for(sniff_t *s, conn *c, const char *cat)
{
    feed *f = s_find(c, cat);
    if (f != NULL || !s_wanted(s, cat)) return f;
    if (c->nfeeds >= S_MAX_FEEDS) {
        c->ignored_cats++;
        return NULL;
    }
    feed **nf = realloc(c->feeds, (c->nfeeds + 1) * sizeof *nf);
    if (nf == NULL) return NULL;
    c->feeds = nf;
    f = c->all != NULL ? s_feed_new(c, cat, F_LIVE, c->all->applied)
                       : s_feed_new(c, cat, F_INIT, 0);
    if (f != NULL) c->feeds[c->nfeeds++] = f;
    return f;
}

/* Drop every feed of c and make the initial ones again (start, or the
 * publisher's log was recreated). History of one category is fetched by
 * category; of several or all by the all-categories fetch, so it comes in
 * log order (other categories are skipped). */
static int s_conn_reset(sniff_t *s, conn *c)
{
    for (size_t i = 0; i < c->nfeeds; i++)
        s_feed_free(c->feeds[i]);
    c->nfeeds = 0;
    s_feed_free(c->all);
    c->all = NULL;
    uint64_t start = s->from > 0 ? s->from - 1 : 0;
    if (s->history && s->cats->n != 1) {
        c->all = s_feed_new(c, "", F_CATCHUP, start);
        return c->all != NULL ? EVB_OK : EVB_ENOMEM;
    }
    feed **nf = realloc(c->feeds, (s->cats->n + 1) * sizeof *nf);
    if (nf == NULL) return EVB_ENOMEM;
    c->feeds = nf;
    for (size_t i = 0; i < s->cats->n; i++) {
        c->feeds[i] = s_feed_new(c, s->cats->v[i], s->history ? F_CATCHUP : F_INIT, start);
        if (c->feeds[i] == NULL) return EVB_ENOMEM;
        c->nfeeds++;
    }
    return EVB_OK;
}

static bool s_send(conn *c, const evb_buf *b)
{
    return zmq_send(c->dealer, b->data, b->len, ZMQ_DONTWAIT) >= 0;
}

static void s_fetch(sniff_t *s, feed *f)
{
    conn *c = f->c;
    int64_t now = evb_now_us();
    if (!c->have_log_id) { /* after the introduction */
        f->fetch_req = 0;
        f->fetch_at = 0;
        return;
    }
    s->msg.len = 0;
    f->fetch_req = ++s->next_req;
    bool sent = evb_wire_fetch(&s->msg, f->fetch_req, f->category, f->applied,
                               S_PAGE_EVENTS, NULL) == EVB_OK &&
                s_send(c, &s->msg);
    /* ZMQ_IMMEDIATE: with no connection up the request is refused, not
     * queued; ask again soon rather than after the full timeout. */
    f->fetch_at = now + (sent ? S_FETCH_TIMEOUT_US : S_RETRY_SOON_US);
}

static void s_hello(sniff_t *s, conn *c)
{
    s->msg.len = 0;
    c->hello_req = ++s->next_req;
    c->hello_wait_ms = c->hello_wait_ms ? c->hello_wait_ms * 2 : 20;
    if (c->hello_wait_ms > 1000) c->hello_wait_ms = 1000;
    c->hello_at = evb_now_us() + (int64_t)c->hello_wait_ms * 1000;
    if (evb_wire_hello(&s->msg, c->hello_req, NULL) == EVB_OK) (void)s_send(c, &s->msg);
}

/* Count a gap and say so (at most once a second). */
static void s_gap_note(sniff_t *s, feed *f, uint64_t seen)
{
    f->gaps++;
    int64_t now = evb_now_us();
    if (now - s->last_gap_log_us >= 1000000) {
        s->last_gap_log_us = now;
        evb_log(EVB_LOG_WARN,
                "%s: gap in category %s after seq %" PRIu64 " (publisher at %" PRIu64
                "): fetching the missing events",
                f->c->name, f->category, f->applied, seen);
    }
}

/* Events were lost: count it and fetch them. */
static void s_gap(sniff_t *s, feed *f, uint64_t seen)
{
    s_gap_note(s, f, seen);
    f->state = F_CATCHUP;
    s_fetch(s, f);
}

/* Learn (or check) the publisher's log id. Returns 0 when known or just
 * learnt, 1 when the log changed and the feeds were reset (a page being
 * handled belonged to a feed that is gone), -1 out of memory. */
static int s_introduce(sniff_t *s, conn *c, const evb_id *log_id, const char *service)
{
    if (service != NULL && service[0] != '\0')
        snprintf(c->service, sizeof c->service, "%s", service);
    if (c->have_log_id && memcmp(c->log_id.b, log_id->b, EVB_ID_LEN) == 0) return 0;
    bool changed = c->have_log_id;
    if (changed) {
        char a[EVB_ID_HEX_LEN + 1], b[EVB_ID_HEX_LEN + 1];
        evb_id_to_hex(&c->log_id, a);
        evb_id_to_hex(log_id, b);
        evb_log(EVB_LOG_WARN, "%s: the log id changed from %s to %s (log recreated?); "
                              "starting over",
                c->name, a, b);
        if (s_conn_reset(s, c) != EVB_OK) {
            evb_err_set(&s->fatal, EVB_ENOMEM, "out of memory");
            return -1;
        }
        c->head = 0;
    }
    c->have_log_id = true;
    c->log_id = *log_id;
    if (c->all != NULL && c->all->state == F_CATCHUP && c->all->fetch_req == 0)
        s_fetch(s, c->all);
    for (size_t i = 0; i < c->nfeeds; i++)
        if (c->feeds[i]->state == F_CATCHUP && c->feeds[i]->fetch_req == 0)
            s_fetch(s, c->feeds[i]);
    return changed ? 1 : 0;
}

/* Decode env and hand it to the output; false when it does not decode or
 * belongs to another log (counted as a bad frame). */
static bool s_emit(sniff_t *s, conn *c, feed *f, const void *env, size_t len,
                   int64_t rx_us)
{
    evb_err perr;
    if (evb_event_decode_into(env, len, &s->ev, &perr) != EVB_OK) {
        s_bad_frame(s, c, perr.msg);
        return false;
    }
    if (memcmp(s->ev.log_id.b, c->log_id.b, EVB_ID_LEN) != 0) {
        s_bad_frame(s, c, "an event of another log");
        return false;
    }
    /* Counted by category (--stats), also what the all-categories history
     * brings. */
    feed *cf = f == c->all ? s_feed_for(s, c, s->ev.category) : f;
    if (cf != NULL) cf->events++;
    if (s->fatal.code == EVB_OK)
        s_output(s, &s->ev, env, len, rx_us, c->name,
                 c->service[0] != '\0' ? c->service : s->ev.service);
    return true;
}

static bool s_buffer(feed *f, const char *cat, uint64_t seq, uint64_t prev, int64_t rx_us,
                     const void *env, size_t len)
{
    if (f->nbuf >= S_LIVE_MAX_EVENTS || f->buf_bytes + len > S_LIVE_MAX_BYTES) {
        f->dropped++; /* the catch-up gets it */
        return false;
    }
    if (f->nbuf == f->capbuf) {
        size_t nc = f->capbuf ? f->capbuf * 2 : 64;
        live_ev *nb = realloc(f->buf, nc * sizeof *nb);
        if (nb == NULL) return false;
        f->buf = nb;
        f->capbuf = nc;
    }
    uint8_t *copy = malloc(len);
    if (copy == NULL) return false;
    memcpy(copy, env, len);
    live_ev *le = &f->buf[f->nbuf++];
    *le = (live_ev){seq, prev, rx_us, "", len, copy};
    snprintf(le->cat, sizeof le->cat, "%s", cat);
    f->buf_bytes += len;
    return true;
}

static void s_drain(sniff_t *s, feed *f);

/* A live event (checked: it decodes, its category and seq agree with its
 * frame, it is of this publisher's log). */
static void s_on_event(sniff_t *s, conn *c, const char *cat, uint64_t seq, uint64_t prev,
                       int64_t rx_us, const void *env, size_t len)
{
    if (seq > c->head) c->head = seq;
    if (c->all != NULL && c->all->state != F_LIVE) {
        s_buffer(c->all, cat, seq, prev, rx_us, env, len);
        return;
    }
    feed *f = s_feed_for(s, c, cat);
    if (f == NULL) return;
    if (f->state == F_INIT) { /* live only: start here */
        f->applied = prev;
        f->state = F_LIVE;
    }
    if (seq <= f->applied) {
        f->dups++;
        return;
    }
    if (f->state == F_LIVE) {
        if (prev <= f->applied) {
            if (s_emit(s, c, f, env, len, rx_us)) f->applied = seq;
            return;
        }
        s_gap(s, f, seq);
    }
    s_buffer(f, cat, seq, prev, rx_us, env, len);
}

/* A catch-up ended: go through the live events kept meanwhile, in arrival
 * order; at the first that does not follow on, fetch again. */
static void s_drain(sniff_t *s, feed *f)
{
    conn *c = f->c;
    f->state = F_LIVE;
    if (f == c->all) {
        /* Every category is complete up to applied: the kept events go the
         * way of live ones, into per-category feeds that start there. */
        for (size_t i = 0; i < c->nfeeds; i++) {
            if (c->feeds[i]->applied < f->applied) c->feeds[i]->applied = f->applied;
            c->feeds[i]->state = F_LIVE;
        }
        for (size_t i = 0; i < f->nbuf; i++) {
            live_ev *le = &f->buf[i];
            s_on_event(s, c, le->cat, le->seq, le->prev, le->rx_us, le->data, le->len);
        }
        s_drop_buffer(f, 0);
        return;
    }
    size_t i = 0;
    for (; i < f->nbuf; i++) {
        live_ev *le = &f->buf[i];
        if (le->seq <= f->applied) {
            f->dups++;
        } else if (le->prev <= f->applied) {
            if (s_emit(s, c, f, le->data, le->len, le->rx_us)) f->applied = le->seq;
        } else {
            break;
        }
    }
    /* keep what is left, at the front */
    for (size_t k = 0; k < i; k++) {
        f->buf_bytes -= f->buf[k].len;
        free(f->buf[k].data);
    }
    if (i > 0 && i < f->nbuf) memmove(f->buf, f->buf + i, (f->nbuf - i) * sizeof *f->buf);
    f->nbuf -= i;
    if (f->nbuf > 0) s_gap(s, f, f->buf[0].seq);
}

/* ---- receiving ---- */

static void s_on_heartbeat(sniff_t *s, conn *c, const void *body, size_t len)
{
    evb_wire_reply *rp = &s->reply;
    evb_err perr;
    evb_err_clear(&perr);
    size_t used;
    if (evb_wire_parse_reply(body, len, rp, &used, &perr) != EVB_OK ||
        rp->kind != EVB_WIRE_HB) {
        s_bad_frame(s, c, perr.msg[0] ? perr.msg : "heartbeat topic, other message");
        return;
    }
    c->last_hb_us = c->last_seen_us = evb_now_us();
    if (s_introduce(s, c, &rp->log_id, rp->service) < 0) return;
    if (rp->head > c->head) c->head = rp->head;
    if (!c->announced) {
        /* The first heartbeat proves the subscription reached the publisher:
         * from here on nothing it publishes goes unseen (scripts wait for
         * this line before they publish). */
        c->announced = true;
        char id[EVB_ID_HEX_LEN + 1];
        evb_id_to_hex(&rp->log_id, id);
        cli_progress_end(s->cli);
        fprintf(stderr, "%s: live on %s (service %s, log %s, head %" PRIu64 ")\n",
                s->cli->name, c->name, rp->service, id, rp->head);
    }
    if (c->all != NULL && c->all->state != F_LIVE) return; /* the history covers it */
    for (size_t i = 0; i < rp->nheads; i++) {
        feed *f = s_feed_for(s, c, rp->heads[i].name);
        if (f == NULL) continue;
        uint64_t h = rp->heads[i].head;
        if (f->state == F_INIT) {
            f->applied = h;
            f->state = F_LIVE;
        } else if (f->state == F_LIVE && h > f->applied) {
            /* The heartbeat follows the events it counts on this socket:
             * the category's last event(s) were lost. */
            s_gap(s, f, h);
        }
    }
}

static void s_on_live(sniff_t *s, conn *c, const char *cat, const uint8_t *body,
                      size_t blen, int64_t rx_us)
{
    uint64_t prev;
    size_t hlen;
    evb_err perr;
    evb_err_clear(&perr);
    if (evb_wire_parse_live_header(body, blen, &prev, &hlen, &perr) != EVB_OK) {
        s_bad_frame(s, c, perr.msg);
        return;
    }
    const uint8_t *env = body + hlen;
    size_t elen = blen - hlen;
    if (evb_event_decode_into(env, elen, &s->ev, &perr) != EVB_OK) {
        s_bad_frame(s, c, perr.msg);
        return;
    }
    if (strcmp(s->ev.category, cat) != 0 || prev >= s->ev.seq) {
        s_bad_frame(s, c, "live event: topic or prev disagrees with the envelope");
        return;
    }
    c->last_seen_us = rx_us;
    /* The envelope names its log: a live-only sniffer needs no hello. */
    if (s_introduce(s, c, &s->ev.log_id, NULL) < 0) return;
    if (c->service[0] == '\0')
        snprintf(c->service, sizeof c->service, "%s", s->ev.service);
    s_on_event(s, c, cat, s->ev.seq, prev, rx_us, env, elen);
}

static void s_read_sub(sniff_t *s, conn *c)
{
    for (size_t n = 0; n < S_MSGS_PER_TURN && s->fatal.code == EVB_OK && !s->done; n++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        int64_t rx = evb_now_us();
        char cat[EVB_MAX_CATEGORY_LEN + 1];
        const uint8_t *body = NULL;
        size_t blen = 0;
        const char *why = NULL;
        if (evb_wire_drain(c->sub, zmq_msg_more(&m)) != 0) {
            s_bad_frame(s, c, "a multipart message on the live socket");
        } else {
            switch (evb_wire_live_topic(zmq_msg_data(&m), zmq_msg_size(&m), cat, &body,
                                        &blen, &why)) {
            case EVB_WIRE_LIVE_HB:
                s_on_heartbeat(s, c, body, blen);
                break;
            case EVB_WIRE_LIVE_EVENT:
                s_on_live(s, c, cat, body, blen, rx);
                break;
            case EVB_WIRE_LIVE_BAD:
                s_bad_frame(s, c, why);
                break;
            }
        }
        zmq_msg_close(&m);
    }
}

static void s_on_page(sniff_t *s, conn *c, feed *f, const uint8_t *msg, size_t mlen,
                      size_t used)
{
    evb_wire_reply *rp = &s->reply;
    size_t count;
    if (evb_wire_split(msg + used, mlen - used, s->views, rp->count, &count, NULL) !=
            EVB_OK ||
        count != rp->count || (rp->more && count == 0)) {
        s_bad_frame(s, c, "page: its events disagree with its header");
        f->fetch_at = evb_now_us() + S_FETCH_TIMEOUT_US;
        return;
    }
    if (s_introduce(s, c, &rp->log_id, NULL) != 0) return; /* f may be gone */
    if (rp->head > c->head) c->head = rp->head;
    f->pages++;
    int64_t rx = evb_now_us();
    uint64_t before = f->applied;
    for (size_t i = 0; i < count && s->fatal.code == EVB_OK; i++) {
        evb_err perr;
        if (evb_event_decode_into(s->views[i].p, s->views[i].len, &s->ev, &perr) !=
            EVB_OK) {
            s_bad_frame(s, c, perr.msg);
            continue;
        }
        uint64_t seq = s->ev.seq;
        if (f->category[0] != '\0' && strcmp(s->ev.category, f->category) != 0) {
            s_bad_frame(s, c, "page: an event of another category");
            continue;
        }
        if (seq <= f->applied) {
            f->dups++;
            continue;
        }
        if (f == c->all && !s_wanted(s, s->ev.category)) {
            f->applied = seq; /* the all-categories fetch brings them too */
            continue;
        }
        if (s_emit(s, c, f, s->views[i].p, s->views[i].len, rx)) f->applied = seq;
    }
    /* A probe after a silence that brings events: they were lost live. */
    if (f->probing && f->applied > before) s_gap_note(s, f, f->applied);
    f->probing = false;
    if (!rp->more && rp->position > f->applied) f->applied = rp->position;
    if (rp->more)
        s_fetch(s, f);
    else
        s_drain(s, f);
}

static void s_on_reply(sniff_t *s, conn *c, const uint8_t *msg, size_t mlen)
{
    evb_wire_reply *rp = &s->reply;
    evb_err perr;
    evb_err_clear(&perr);
    size_t used;
    if (evb_wire_parse_reply(msg, mlen, rp, &used, &perr) != EVB_OK ||
        rp->kind == EVB_WIRE_HB) {
        s_bad_frame(s, c, perr.msg[0] ? perr.msg : "a heartbeat on the catch-up socket");
        return;
    }
    c->last_seen_us = evb_now_us();
    if (rp->kind == EVB_WIRE_HELLO) {
        if (rp->req_id != c->hello_req) return; /* an answer to an older hello */
        c->hello_req = 0;
        c->hello_wait_ms = 0;
        bool silence = c->hello_after_silence;
        c->hello_after_silence = false;
        if (s_introduce(s, c, &rp->log_id, rp->service) != 0) return;
        if (rp->head > c->head) c->head = rp->head;
        /* After a silence (a restart, a broken connection): live feeds
         * check the publisher's log for what they missed meanwhile (a fetch
         * that finds nothing costs one page). */
        if (silence)
            for (size_t i = 0; i < c->nfeeds; i++)
                if (c->feeds[i]->state == F_LIVE && c->feeds[i]->applied < rp->head) {
                    c->feeds[i]->state = F_CATCHUP;
                    c->feeds[i]->probing = true;
                    s_fetch(s, c->feeds[i]);
                }
        return;
    }
    feed *f = NULL;
    if (c->all != NULL && c->all->fetch_req != 0 && c->all->fetch_req == rp->req_id)
        f = c->all;
    for (size_t i = 0; i < c->nfeeds && f == NULL; i++)
        if (c->feeds[i]->fetch_req != 0 && c->feeds[i]->fetch_req == rp->req_id)
            f = c->feeds[i];
    if (f == NULL) return; /* a reply to a fetch given up on */
    f->fetch_req = 0;
    f->fetch_at = 0;
    if (rp->kind == EVB_WIRE_HOLE) { /* say so and go on after it */
        if (s_introduce(s, c, &rp->log_id, NULL) != 0) return; /* f may be gone */
        if (rp->head > c->head) c->head = rp->head;
        if (rp->hole_to > f->applied) {
            uint64_t from = rp->hole_from > f->applied ? rp->hole_from : f->applied + 1;
            f->unreadable += rp->hole_to - from + 1;
            evb_log(EVB_LOG_WARN,
                    "%s: events %" PRIu64 "..%" PRIu64 " of its log cannot be read (the "
                    "log is damaged): going on after them",
                    c->name, from, rp->hole_to);
            f->applied = rp->hole_to;
        }
        s_fetch(s, f);
        return;
    }
    if (rp->kind == EVB_WIRE_ERROR) {
        evb_log(EVB_LOG_WARN, "%s refused a fetch of %s after %" PRIu64 ": %s %s",
                c->name, f->category[0] ? f->category : "(all)", f->applied, rp->code,
                rp->message);
        f->fetch_req = 0;
        f->fetch_at = evb_now_us() + S_FETCH_TIMEOUT_US; /* ask again later */
        return;
    }
    s_on_page(s, c, f, msg, mlen, used);
}

static void s_read_dealer(sniff_t *s, conn *c)
{
    for (size_t n = 0; n < 16 && s->fatal.code == EVB_OK && !s->done; n++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (evb_wire_drain(c->dealer, zmq_msg_more(&m)) != 0)
            s_bad_frame(s, c, "a multipart message on the catch-up socket");
        else
            s_on_reply(s, c, zmq_msg_data(&m), zmq_msg_size(&m));
        zmq_msg_close(&m);
    }
}

/* Timers: hello until introduced (and after a silence), fetches that were
 * refused or not answered. */
static void s_timers(sniff_t *s, conn *c, int64_t now)
{
    if (c->hello_req != 0 && now >= c->hello_at) s_hello(s, c);
    if (c->hello_req == 0 && now - c->last_seen_us > S_DEAD_AFTER_US) {
        c->last_seen_us = now; /* one hello per silence period */
        c->hello_after_silence = true;
        evb_wire_sub_redial(c->sub, c->pub_ep); /* no ZMTP heartbeats on SUB */
        s_hello(s, c);
    }
    for (size_t i = 0; i <= c->nfeeds; i++) {
        feed *f = i < c->nfeeds ? c->feeds[i] : c->all;
        if (f != NULL && f->state == F_CATCHUP && c->have_log_id &&
            (f->fetch_at == 0 ? f->fetch_req == 0 : now >= f->fetch_at))
            s_fetch(s, f);
    }
    if (!c->warned_silent && c->last_hb_us == 0 && !c->have_log_id &&
        now - c->started_us > S_DEAD_AFTER_US) {
        c->warned_silent = true;
        evb_log(EVB_LOG_WARN, "no answer from %s after %d s (is the publisher running?)",
                c->name, (int)(S_DEAD_AFTER_US / 1000000));
    }
}

/* ---- connecting ---- */

/* Make a publisher's sockets and connect them. Errors name the endpoint. */
static int s_conn_open(sniff_t *s, conn *c, evb_err *err)
{
    c->sub = zmq_socket(s->zctx, ZMQ_SUB);
    c->dealer = zmq_socket(s->zctx, ZMQ_DEALER);
    if (c->sub == NULL || c->dealer == NULL)
        return evb_err_set(err, EVB_EIO, "socket: %s", zmq_strerror(errno));
    evb_wire_sub_sockopts(c->sub, c->dealer, s->rcvhwm);
    void *socks[2] = {c->sub, c->dealer};
    if (s->cats->n == 0) {
        zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, "E", 1);
    } else {
        for (size_t i = 0; i < s->cats->n; i++) {
            char topic[EVB_WIRE_TOPIC_MAX];
            size_t tl = evb_wire_topic_event(topic, s->cats->v[i]);
            if (tl == 0) /* --category values were checked: our bug */
                return evb_err_set(err, EVB_EINVAL, "category '%s' is not one",
                                   s->cats->v[i]);
            zmq_setsockopt(c->sub, ZMQ_SUBSCRIBE, topic, tl);
        }
    }
    for (int i = 0; i < 2; i++) {
        int rc = c->server_key[0]
                     ? evb_curve_make_client(socks[i], &s->keys, c->server_key, err)
                     : EVB_OK;
        if (rc == EVB_OK)
            rc = evb_curve_link_open(&c->link[i], s->zctx, socks[i],
                                     i == 0 ? c->pub_ep : c->cu_ep,
                                     c->server_key[0] ? &s->keys : NULL, err);
        if (rc != EVB_OK) return rc;
    }
    return evb_wire_sub_connect(c->sub, c->dealer, c->pub_ep, c->cu_ep, err);
}

static void s_conn_free(conn *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i < c->nfeeds; i++)
        s_feed_free(c->feeds[i]);
    free(c->feeds);
    s_feed_free(c->all);
    evb_curve_link_close(&c->link[0]);
    evb_curve_link_close(&c->link[1]);
    if (c->sub) zmq_close(c->sub);
    if (c->dealer) zmq_close(c->dealer);
    free(c);
}

/* A refused handshake is said on stderr (again when the reason changes), and
 * that it got in once a handshake passes; the link connects again after a
 * back-off, so a key added to the publisher's allow-list is picked up. */
static void s_watch_links(sniff_t *s, conn *c, int64_t now)
{
    for (int i = 0; i < 2; i++) {
        evb_curve_ev ev = evb_curve_link_check(&c->link[i], now);
        if (ev == EVB_CURVE_EV_OK && !c->link[0].bad && !c->link[1].bad)
            cli_error(s->cli, "%s: handshake accepted now", c->name);
        else if (ev == EVB_CURVE_EV_REFUSED || ev == EVB_CURVE_EV_FAILED)
            cli_error(s->cli, "%s", c->link[i].why);
    }
}

/* ---- progress, stats, summary ---- */

typedef struct totals {
    uint64_t events, gaps, dups, dropped, bad, catching;
} totals;

static void s_feed_add(totals *t, const feed *f)
{
    t->events += f->events;
    t->gaps += f->gaps;
    t->dups += f->dups;
    t->dropped += f->dropped;
    if (f->state == F_CATCHUP) t->catching++;
}

static totals s_totals(const sniff_t *s)
{
    totals t = {0};
    for (size_t i = 0; i < s->nconns; i++) {
        const conn *c = s->conns[i];
        t.bad += c->bad_frames;
        if (c->all != NULL) s_feed_add(&t, c->all);
        for (size_t j = 0; j < c->nfeeds; j++)
            s_feed_add(&t, c->feeds[j]);
    }
    return t;
}

static void s_progress(sniff_t *s, int64_t now)
{
    if (!s->cli->err_tty || s->stats || now - s->last_progress_us < 100000) return;
    s->last_progress_us = now;
    for (size_t i = 0; i < s->nconns; i++) {
        conn *c = s->conns[i];
        feed *f = c->all != NULL && c->all->state == F_CATCHUP ? c->all : NULL;
        for (size_t j = 0; f == NULL && j < c->nfeeds; j++)
            if (c->feeds[j]->state == F_CATCHUP) f = c->feeds[j];
        if (f == NULL) continue;
        if (!c->have_log_id)
            cli_progress(s->cli, "%s: waiting for %s", s->cli->name, c->name);
        else
            cli_progress(s->cli,
                         "%s: catching up %s%s%s: seq %" PRIu64 " / head %" PRIu64,
                         s->cli->name, c->service[0] ? c->service : c->name,
                         f->category[0] ? "/" : "", f->category, f->applied, c->head);
        return;
    }
    cli_progress_end(s->cli);
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
    bool first = true;
    for (size_t i = 0; rc == EVB_OK && i < s->nconns; i++) {
        conn *c = s->conns[i];
        int64_t age = c->last_hb_us ? (now - c->last_hb_us) / 1000 : -1;
        for (size_t j = 0; rc == EVB_OK && j < c->nfeeds; j++) {
            feed *f = c->feeds[j];
            rc = evb_buf_append(b, first ? "{\"publisher\":" : ",{\"publisher\":",
                                first ? 13 : 14, &err);
            first = false;
            if (rc == EVB_OK) rc = cli_json_str(b, c->name, &err);
            if (rc == EVB_OK) rc = evb_buf_append(b, ",\"service\":", 11, &err);
            if (rc == EVB_OK) rc = cli_json_str(b, c->service, &err);
            if (rc == EVB_OK)
                rc = evb_buf_printf(
                    b, &err,
                    ",\"category\":\"%s\",\"state\":\"%s\",\"applied\":%" PRIu64
                    ",\"rate\":%" PRIu64 ",\"events\":%" PRIu64 ",\"gaps\":%" PRIu64
                    ",\"duplicates\":%" PRIu64 ",\"dropped\":%" PRIu64
                    ",\"bad_frames\":%" PRIu64 ",\"unreadable\":%" PRIu64
                    ",\"heartbeat_age_ms\":%" PRId64 "}",
                    f->category,
                    f->state == F_LIVE ? "live" : f->state == F_CATCHUP ? "catching-up"
                                                                       : "waiting",
                    f->applied, f->rate, f->events, f->gaps, f->dups, f->dropped,
                    c->bad_frames, f->unreadable, age);
        }
    }
    if (rc == EVB_OK) rc = evb_buf_append(b, "]}\n", 3, &err);
    if (rc != EVB_OK) return rc;
    return cli_write(s->cli, b->data, b->len) == 0 ? EVB_OK : EVB_EIO;
}

/* One stats tick: rates over the last second, then a table (terminal,
 * redrawn in place), a line (pipe) or a JSON object (--json). */
static void s_stats(sniff_t *s, int64_t now)
{
    for (size_t i = 0; i < s->nconns; i++)
        for (size_t j = 0; j < s->conns[i]->nfeeds; j++) {
            feed *f = s->conns[i]->feeds[j];
            f->rate = f->events - f->rate_mark;
            f->rate_mark = f->events;
        }
    if (s->json) {
        if (s_stats_json(s, now) != EVB_OK) evb_err_set(&s->fatal, EVB_EIO, "stdout");
        fflush(stdout);
        return;
    }
    totals t = s_totals(s);
    char ts[32];
    s_fmt_time(now, ts);
    if (!s->cli->out_tty) {
        uint64_t rate = 0;
        for (size_t i = 0; i < s->nconns; i++)
            for (size_t j = 0; j < s->conns[i]->nfeeds; j++)
                rate += s->conns[i]->feeds[j]->rate;
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
    for (size_t i = 0; i < s->nconns; i++) {
        conn *c = s->conns[i];
        char age[32];
        if (c->last_hb_us)
            snprintf(age, sizeof age, "%.1fs", (double)(now - c->last_hb_us) / 1e6);
        else
            snprintf(age, sizeof age, "-");
        const char *pname = c->service[0] ? c->service : c->name;
        if (c->nfeeds == 0) {
            cli_printf(s->cli, "\r\033[K%-24.24s %-16s %-11s %8s %10s %6s %6s %6s %6" PRIu64
                               " %7s\n",
                       pname, "-", c->have_log_id ? "live" : "connecting", "0", "0", "0",
                       "0", "0", c->bad_frames, age);
            n++;
        }
        for (size_t j = 0; j < c->nfeeds; j++) {
            feed *f = c->feeds[j];
            const char *st = f->state == F_LIVE      ? "live"
                             : f->state == F_CATCHUP ? "catching-up"
                                                     : "waiting";
            cli_printf(s->cli,
                       "\r\033[K%-24.24s %-16.16s %s%-11s%s %8" PRIu64 " %10" PRIu64
                       " %s%6" PRIu64 "%s %6" PRIu64 " %6" PRIu64 " %6" PRIu64 " %7s\n",
                       pname, f->category, f->state == F_LIVE ? cli_green(s->cli) : "", st,
                       cli_reset(s->cli), f->rate, f->events,
                       f->gaps > 0 ? cli_red(s->cli) : "", f->gaps, cli_reset(s->cli),
                       f->dups, f->dropped, c->bad_frames, age);
            n++;
        }
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
    fprintf(stderr,
            "%s: %" PRIu64 " events %s; %" PRIu64 " gaps found (fetched again), %" PRIu64
            " duplicates, %" PRIu64 " dropped while catching up, %" PRIu64
            " bad frames%s\n",
            s->cli->name, s->matched, s->stats ? "matched" : "printed", t.gaps, t.dups, t.dropped, t.bad,
            t.catching > 0 ? "; some feeds were still catching up" : "");
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

static int s_run(sniff_t *s, const cli_list *follow, int64_t deadline)
{
    s->zctx = zmq_ctx_new();
    s->views = calloc(EVB_BUS_MAX_PAGE_EVENTS, sizeof *s->views);
    s->conns = calloc(follow->n, sizeof *s->conns);
    s->items = calloc(2 * follow->n, sizeof *s->items);
    if (s->zctx == NULL || s->views == NULL || s->conns == NULL || s->items == NULL) {
        cli_error(s->cli, "out of memory (or zmq_ctx_new failed)");
        return CLI_EXIT_RUNTIME;
    }
    int64_t now = evb_now_us();
    for (size_t i = 0; i < follow->n; i++) {
        conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            cli_error(s->cli, "out of memory");
            return CLI_EXIT_RUNTIME;
        }
        s->conns[s->nconns++] = c;
        cli_split_follow(follow->v[i], c->pub_ep, c->cu_ep); /* checked before */
        evb_err kerr = {0};
        if (s->server_keys[i] != NULL &&
            evb_curve_server_key(s->server_keys[i], c->server_key, &kerr) != EVB_OK) {
            cli_error(s->cli, "--follow %s: %s", follow->v[i], kerr.msg);
            return CLI_EXIT_USAGE;
        }
        snprintf(c->name, sizeof c->name, "%s,%s", c->pub_ep, c->cu_ep);
        c->started_us = c->last_seen_us = now;
        evb_err err;
        if (s_conn_reset(s, c) != EVB_OK) {
            cli_error(s->cli, "out of memory");
            return CLI_EXIT_RUNTIME;
        }
        if (s_conn_open(s, c, &err) != EVB_OK) {
            cli_error(s->cli, "--follow %s: %s", follow->v[i], err.msg);
            return err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
        }
        s->items[2 * i] = (zmq_pollitem_t){c->sub, 0, ZMQ_POLLIN, 0};
        s->items[2 * i + 1] = (zmq_pollitem_t){c->dealer, 0, ZMQ_POLLIN, 0};
        s_hello(s, c); /* subscribed first, then hello (PROTOCOL.md) */
    }
    s_header(s);
    int64_t next_stats = now + 1000000;
    int rc = CLI_EXIT_OK;
    while (!cli_stop_requested() && !s->done && s->fatal.code == EVB_OK) {
        now = evb_now_us();
        int64_t wait = 100000;
        if (deadline != 0 && deadline - now < wait) wait = deadline - now;
        if (s->stats && next_stats - now < wait) wait = next_stats - now;
        if (wait < 0) wait = 0;
        int n = zmq_poll(s->items, (int)(2 * s->nconns), (long)(wait / 1000));
        if (n < 0 && errno != EINTR) {
            cli_error(s->cli, "zmq_poll: %s", zmq_strerror(errno));
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        for (size_t i = 0; i < s->nconns && n > 0; i++) {
            if (s->items[2 * i].revents & ZMQ_POLLIN) s_read_sub(s, s->conns[i]);
            if (s->items[2 * i + 1].revents & ZMQ_POLLIN) s_read_dealer(s, s->conns[i]);
        }
        s_flush_stdout(s);
        now = evb_now_us();
        for (size_t i = 0; i < s->nconns; i++)
            s_timers(s, s->conns[i], now);
        for (size_t i = 0; i < s->nconns; i++)
            s_watch_links(s, s->conns[i], now);
        if (s->record != NULL && !s->record_failed && fflush(s->record) != 0) {
            cli_error(s->cli, "--record %s: %s", s->record_path, strerror(errno));
            s->record_failed = true;
        }
        if (s->record_failed) {
            rc = CLI_EXIT_RUNTIME;
            break;
        }
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
    for (size_t i = 0; i < s->nconns; i++)
        s_conn_free(s->conns[i]);
    free(s->conns);
    free(s->items);
    free(s->views);
    if (s->zctx) zmq_ctx_term(s->zctx);
    evb_curve_keys_wipe(&s->keys);
    evb_buf_free(&s->msg);
    evb_buf_free(&s->line);
    evb_buf_free(&s->payload);
    evb_buf_free(&s->tmp);
    evb_event_clear(&s->ev);
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
    const char *cert = NULL; /* CURVE: our certificate (README.md, "Security") */
    bool json = false, stats = false, from_start = false, from_set = false;
    bool count_set = false, timeout_set = false, hwm_set = false;
    uint64_t from = 0, count = 0, timeout_s = 0, rcvhwm = S_DEFAULT_RCVHWM;
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
        {"type", CLI_LIST, &types, NULL, "T", "only events of type T (may repeat: any of them)"},
        {"stream", CLI_LIST, &streams, NULL, "GLOB",
         "only streams matching GLOB (fnmatch; may repeat)"},
        {"where", CLI_LIST, &wheres, NULL, "FIELD=VALUE",
         "only if the payload's FIELD equals VALUE (may repeat)"},
        {"json", CLI_FLAG, &json, NULL, NULL,
         "JSON lines, as `evbus log cat --json` + \"publisher\""},
        {"color", CLI_STR, &color, NULL, "WHEN", "auto (default), always or never"},
        {"count", CLI_U64, &count, &count_set, "N", "exit after N events printed"},
        {"timeout", CLI_U64, &timeout_s, &timeout_set, "S", "exit after S seconds"},
        {"from", CLI_U64, &from, &from_set, "SEQ",
         "history from sequence SEQ on, then live"},
        {"from-start", CLI_FLAG, &from_start, NULL, NULL, "same as --from 1"},
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
        {0},
    };
    const cli_usage usage = {
        "--follow PUB_EP,CATCHUP_EP... [--category C]... [--type T]...\n"
        "       [--stream GLOB]... [--where FIELD=VALUE]... [--json] [--color WHEN]\n"
        "       [--count N] [--timeout S] [--from SEQ | --from-start | --since TIME]\n"
        "       [--stats] [--rcvhwm N] [--record FILE] [--cert FILE]\n"
        "   or: evbus sniff --replay FILE [filters and output options]",
        "Watch the events that go over the bus, without a store: follow one or\n"
        "more publishers (evbus serve, evbus mirror, a service) and print each\n"
        "event as it is published: time (UTC), publisher's service, seq, stream,\n"
        "version, type and payload (JSON, cut to the terminal's width), in\n"
        "colour on a terminal. Nothing is written anywhere, except with --record.\n"
        "Live by default; --from, --from-start and --since first print the\n"
        "history through the catch-up protocol, then switch to live without gaps\n"
        "or duplicates. Gaps seen live (lost messages) are counted and filled by\n"
        "a fetch; a slow sniffer only loses its own copies (see --rcvhwm).",
        "Filters: --type and --stream match any of their values; every --where\n"
        "must match: the payload's top-level FIELD equals VALUE as a string, a\n"
        "number (3 = 3.0) or a JSON literal (true, false, null). Without\n"
        "--category every category is followed. --since fetches from the start\n"
        "and prints events whose time is at or after TIME.\n"
        "Output: columns, or with --json one object per line, the same as\n"
        "`evbus log cat --json` plus \"publisher\": \"PUB_EP,CATCHUP_EP\" (jq-ready).\n"
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
        "--replay, or when --timeout passes with at least one event printed (N\n"
        "with --count); 1 when --timeout passes with none (fewer than N), or\n"
        "--replay met bad lines; 2 for a bad flag or endpoint; 4 when stdout,\n"
        "--record or --replay fails.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;

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
        return cli_usage_error(&cli, "--follow PUB_EP,CATCHUP_EP is required");
    if (replay != NULL && (follow.n > 0 || cats.n > 0))
        return cli_usage_error(&cli, "--replay excludes --follow and --category");
    if (replay != NULL && record != NULL)
        return cli_usage_error(&cli, "--replay excludes --record");
    if ((from_set ? 1 : 0) + (from_start ? 1 : 0) + (since != NULL ? 1 : 0) > 1)
        return cli_usage_error(&cli, "--from, --from-start and --since exclude each other");
    if (from_set && from == 0)
        return cli_usage_error(&cli, "--from: sequences count from 1");
    if (count_set && count == 0) return cli_usage_error(&cli, "--count: at least 1");
    if (timeout_set && (timeout_s == 0 || timeout_s > 31536000))
        return cli_usage_error(&cli, "--timeout: expected 1..31536000 seconds");
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
    for (size_t i = 0; i < types.n; i++)
        if (evb_check_type(types.v[i], &err) != EVB_OK)
            return cli_usage_error(&cli, "--type '%s': %s", types.v[i], err.msg);
    sniff_t s = {0};
    for (size_t i = 0; i < wheres.n; i++) {
        const char *eq = strchr(wheres.v[i], '=');
        if (eq == NULL || eq == wheres.v[i])
            return cli_usage_error(&cli, "--where '%s': expected FIELD=VALUE", wheres.v[i]);
        /* FIELD is cut out of argv in place: the value follows the '='. */
        ((char *)wheres.v[i])[eq - wheres.v[i]] = '\0';
        s.where[s.nwhere++] = (where_t){wheres.v[i], eq + 1};
    }
    s.since_us = INT64_MIN;
    if (since != NULL && evb_ts_parse(since, &s.since_us, &err) != EVB_OK)
        return cli_usage_error(&cli, "--since '%s': %s (want e.g. 2026-11-24T23:40:12Z)",
                               since, err.msg);
    rc = cli_follow_keys(&cli, &follow, cert != NULL, s.server_keys);
    if (rc >= 0) return rc;
    if (cert != NULL && evb_curve_keys_load(cert, &s.keys, &err) != EVB_OK)
        return cli_usage_error(&cli, "--cert: %s", err.msg);
    rc = cli_follow_split(&cli, &follow, NULL);
    if (rc >= 0) return rc;

    s.cli = &cli;
    s.types = &types;
    s.streams = &streams;
    s.cats = &cats;
    s.json = json;
    s.stats = stats;
    s.history = from_set || from_start || since != NULL;
    s.from = from_set ? from : 1;
    s.count = count;
    s.rcvhwm = (int)rcvhwm;
    s.wseq = 4;
    s.wver = 3;
    s.wstream = 12;
    s.wtype = 12;
    s.wpub = 12;
    s.record_path = record;

    cli_install_log_sink(&cli);
    cli_catch_stop_signals();
    if (record != NULL && (s.record = fopen(record, "w")) == NULL) {
        cli_error(&cli, "--record %s: %s", record, strerror(errno));
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return CLI_EXIT_RUNTIME;
    }
    int64_t deadline = timeout_set ? evb_now_us() + (int64_t)timeout_s * 1000000 : 0;
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
