/*
 * metrics.c: the Prometheus families of a store, a publisher and a
 * subscriber (evbus_http.h), rendered by the thread that owns them.
 *
 * Names follow Prometheus' conventions: an evbus_ prefix, counters end in
 * _total, units in the name (_seconds, _bytes), sequences and counts of
 * events as plain numbers. Labels are bounded: a log is named by its
 * service, a feed by its publisher's endpoints and its category.
 */
#include "evbus_http.h"

#include <dirent.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


/* One family with one sample. */
static int s_one(evb_buf *b, const char *name, const char *type, const char *help,
                 const char *const *labels, double v, evb_err *err)
{
    int rc = evb_prom_family(b, name, type, help, err);
    return rc == EVB_OK ? evb_prom_sample(b, name, labels, v, err) : rc;
}

/* Bytes of the regular files in dir and, one level down, its directories
 * (a log's index/). */
static uint64_t s_dir_bytes(const char *dir, int depth)
{
    DIR *dp = opendir(dir);
    if (dp == NULL) return 0;
    uint64_t n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.') continue;
        struct stat sb;
        if (fstatat(dirfd(dp), de->d_name, &sb, 0) != 0) continue;
        if (S_ISREG(sb.st_mode)) {
            n += (uint64_t)sb.st_size;
        } else if (S_ISDIR(sb.st_mode) && depth > 0) {
            char sub[PATH_MAX];
            if (snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name) < (int)sizeof sub)
                n += s_dir_bytes(sub, depth - 1);
        }
    }
    closedir(dp);
    return n;
}

int evb_metrics_store(evb_buf *b, evb_store_t *st, evb_err *err)
{
    evb_store_info in;
    evb_store_get_info(st, &in);
    const char *l[] = {"service", in.service, NULL};
    int rc = s_one(b, "evbus_log_head", "gauge", "Sequence of the log's last event.", l,
                   (double)in.head, err);
    if (rc == EVB_OK)
        rc = s_one(b, "evbus_log_synced", "gauge",
                   "Last sequence durable under the log's sync policy.", l,
                   (double)in.synced, err);
    if (rc == EVB_OK)
        rc = s_one(b, "evbus_log_indexed", "gauge",
                   "Indexer position: events up to it are in the stream, category and id "
                   "indexes.",
                   l, (double)in.indexed, err);
    if (rc == EVB_OK)
        rc = s_one(b, "evbus_index_lag_events", "gauge",
                   "Events appended but not indexed yet (head - indexed).", l,
                   (double)(in.head > in.indexed ? in.head - in.indexed : 0), err);
    if (rc == EVB_OK)
        rc = s_one(b, "evbus_index_lag_max_events", "gauge",
                   "Largest indexer lag seen since the log was opened.", l,
                   (double)in.max_index_lag, err);
    if (rc == EVB_OK)
        rc = s_one(b, "evbus_log_streams", "gauge", "Streams in the indexed part of the log.",
                   l, (double)in.streams, err);
    if (rc == EVB_OK)
        rc = s_one(b, "evbus_store_bytes", "gauge",
                   "Size of the log's files on disk (events, index, LevelDB's own).", l,
                   (double)s_dir_bytes(evb_store_dir(st), 1), err);
    return rc;
}

int evb_metrics_pub(evb_buf *b, evb_pub_t *pub, const char *service, evb_err *err)
{
    evb_pub_stats ps;
    evb_pub_get_stats(pub, &ps);
    const char *l[] = {"service", service, NULL};
    static const struct {
        const char *name, *help;
        size_t off;
    } c[] = {
        {"evbus_published_events_total", "Events sent live on the PUB socket.",
         offsetof(evb_pub_stats, events_sent)},
        {"evbus_heartbeats_total", "Heartbeats sent.", offsetof(evb_pub_stats, heartbeats)},
        {"evbus_catchup_requests_total", "Catch-up requests answered.",
         offsetof(evb_pub_stats, fetches)},
        {"evbus_catchup_pages_total", "Catch-up pages sent.",
         offsetof(evb_pub_stats, pages_sent)},
        {"evbus_catchup_bad_requests_total",
         "Catch-up requests refused as malformed or unknown.",
         offsetof(evb_pub_stats, bad_requests)},
        {"evbus_catchup_unroutable_total",
         "Catch-up replies the ROUTER could not deliver (the peer left or is full).",
         offsetof(evb_pub_stats, unroutable)},
        {"evbus_catchup_holes_total",
         "Reads that met events the log cannot read (a damaged log).",
         offsetof(evb_pub_stats, holes)},
    };
    int rc = s_one(b, "evbus_published_seq", "gauge", "Last sequence sent live.", l,
                   (double)ps.published, err);
    for (size_t i = 0; rc == EVB_OK && i < sizeof c / sizeof c[0]; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&ps + c[i].off, sizeof v);
        rc = s_one(b, c[i].name, "counter", c[i].help, l, (double)v, err);
    }
    return rc;
}

/* ---- subscriber: one sample per feed in each family ---- */

typedef struct feed_row {
    char publisher[EVB_BUS_MAX_ENDPOINT * 2 + 2];
    char category[EVB_MAX_CATEGORY_LEN + 2];
    evb_feed_state state;
    uint64_t applied, head, lag, applied_events, duplicates, gaps, pages, bad_frames,
        refusals, handshake_refusals;
    int64_t hb_age_ms;
    double lag_seconds, hb_age_s;
} feed_row;

typedef struct feed_rows {
    feed_row *r;
    size_t n, cap;
    bool oom;
} feed_rows;

static int s_row(const evb_feed_status *fs, void *ctx)
{
    feed_rows *a = ctx;
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 8;
        feed_row *p = realloc(a->r, nc * sizeof *p);
        if (p == NULL) {
            a->oom = true;
            return 1;
        }
        a->r = p;
        a->cap = nc;
    }
    feed_row *r = &a->r[a->n++];
    snprintf(r->publisher, sizeof r->publisher, "%s", fs->publisher);
    snprintf(r->category, sizeof r->category, "%s", fs->category);
    r->state = fs->state;
    r->applied = fs->applied;
    r->head = fs->head;
    r->lag = fs->lag;
    r->applied_events = fs->applied_events;
    r->duplicates = fs->duplicates;
    r->gaps = fs->gaps;
    r->pages = fs->pages;
    r->bad_frames = fs->bad_frames;
    r->refusals = fs->refusals;
    r->handshake_refusals = fs->handshake_refusals;
    r->hb_age_ms = fs->heartbeat_age_ms;
    r->lag_seconds = fs->lag_seconds;
    r->hb_age_s = fs->heartbeat_age_ms < 0 ? 0.0 / 0.0 : (double)fs->heartbeat_age_ms / 1e3;
    return 0;
}

int evb_metrics_sub(evb_buf *b, evb_sub_t *sub, unsigned up_within_ms, evb_err *err)
{
    feed_rows a = {0};
    evb_sub_status(sub, s_row, &a, NULL);
    if (a.oom) {
        free(a.r);
        return evb_err_set(err, EVB_ENOMEM, "out of memory rendering the feeds");
    }
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } f[] = {
        {"evbus_feed_applied_seq", "gauge",
         "Every event of the category up to this sequence of the publisher's log is "
         "applied.",
         offsetof(feed_row, applied)},
        {"evbus_feed_head_seq", "gauge", "The publisher's head, as last heard.",
         offsetof(feed_row, head)},
        {"evbus_feed_lag_events", "gauge",
         "Events of the publisher's log after applied, while the category has events "
         "not applied (0 when caught up).",
         offsetof(feed_row, lag)},
        {"evbus_feed_applied_events_total", "counter", "Events applied since the start.",
         offsetof(feed_row, applied_events)},
        {"evbus_feed_duplicates_total", "counter", "Events dropped as already applied.",
         offsetof(feed_row, duplicates)},
        {"evbus_feed_gaps_total", "counter", "Gaps seen live (then fetched).",
         offsetof(feed_row, gaps)},
        {"evbus_feed_pages_total", "counter", "Catch-up pages received.",
         offsetof(feed_row, pages)},
        {"evbus_feed_refusals_total", "counter", "Events the handler refused.",
         offsetof(feed_row, refusals)},
        {"evbus_feed_bad_frames_total", "counter",
         "Malformed frames from the publisher (dropped).", offsetof(feed_row, bad_frames)},
        {"evbus_curve_refusals_total", "counter",
         "Handshakes the publisher refused (CURVE keys).",
         offsetof(feed_row, handshake_refusals)},
    };
    int rc = EVB_OK;
    for (size_t k = 0; rc == EVB_OK && k < sizeof f / sizeof f[0]; k++) {
        rc = evb_prom_family(b, f[k].name, f[k].type, f[k].help, err);
        for (size_t i = 0; rc == EVB_OK && i < a.n; i++) {
            const char *l[] = {"publisher", a.r[i].publisher, "category", a.r[i].category,
                               NULL};
            uint64_t v;
            memcpy(&v, (const char *)&a.r[i] + f[k].off, sizeof v);
            rc = evb_prom_sample(b, f[k].name, l, (double)v, err);
        }
    }
    static const evb_feed_state states[] = {EVB_FEED_CATCHING_UP, EVB_FEED_LIVE,
                                            EVB_FEED_STALLED, EVB_FEED_STOPPED};
    if (rc == EVB_OK)
        rc = evb_prom_family(b, "evbus_feed_state", "gauge",
                             "1 for the feed's state, 0 for the others.", err);
    for (size_t i = 0; rc == EVB_OK && i < a.n; i++)
        for (size_t s = 0; rc == EVB_OK && s < 4; s++) {
            const char *l[] = {"publisher", a.r[i].publisher, "category", a.r[i].category,
                               "state", evb_feed_state_name(states[s]), NULL};
            rc = evb_prom_sample(b, "evbus_feed_state", l, a.r[i].state == states[s], err);
        }
    static const struct {
        const char *name, *help;
        size_t off;
    } d[] = {
        {"evbus_feed_lag_seconds",
         "Age of the oldest event of the category not applied yet: 0 when caught up, NaN "
         "while that event was not received yet.",
         offsetof(feed_row, lag_seconds)},
        {"evbus_feed_heartbeat_age_seconds",
         "Time since the publisher's last heartbeat (NaN: none yet).",
         offsetof(feed_row, hb_age_s)},
    };
    for (size_t k = 0; rc == EVB_OK && k < sizeof d / sizeof d[0]; k++) {
        rc = evb_prom_family(b, d[k].name, "gauge", d[k].help, err);
        for (size_t i = 0; rc == EVB_OK && i < a.n; i++) {
            const char *l[] = {"publisher", a.r[i].publisher, "category", a.r[i].category,
                               NULL};
            double v;
            memcpy(&v, (const char *)&a.r[i] + d[k].off, sizeof v);
            rc = evb_prom_sample(b, d[k].name, l, v, err);
        }
    }
    /* Up per publisher (feeds of one publisher share its heartbeats). */
    if (rc == EVB_OK)
        rc = evb_prom_family(b, "evbus_publisher_up", "gauge",
                             "1 when a heartbeat came from the publisher lately, else 0.",
                             err);
    for (size_t i = 0; rc == EVB_OK && i < a.n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(a.r[j].publisher, a.r[i].publisher) == 0;
        if (seen) continue;
        const char *l[] = {"publisher", a.r[i].publisher, NULL};
        bool up = a.r[i].hb_age_ms >= 0 && a.r[i].hb_age_ms <= (int64_t)up_within_ms;
        rc = evb_prom_sample(b, "evbus_publisher_up", l, up, err);
    }
    free(a.r);
    return rc;
}
