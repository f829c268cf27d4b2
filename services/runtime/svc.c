/*
 * svc.c: the service runtime (evbus_svc.h). One zloop runs the publisher,
 * the command socket, the consumer, the projection and the timers; each
 * operation is one store transaction; an aggregate cache follows what the
 * transactions really wrote (the store's end hooks tell it).
 */
#include "evbus_svc.h"
#include "evbus_http.h"
#include "evbus_notify.h"

#include "hmap.h"
#include "svc_int.h"

#include <czmq.h>
#include <errno.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <ftw.h>
#include <limits.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE_MAX 100000u /* aggregates kept in memory before a flush, whatever their size */
#define MAX_COMMANDS 30u  /* the bus allows 32; status is one */
#define SVC_STREAM_CACHE 16384u        /* stream versions per store (the store's default: 100 k) */
#define SVC_VIEWS_BUFFER (4u << 20) /* the views store's write buffer (the store's: 32 MiB) */
#define SVC_LOG_BUFFER (8u << 20)   /* the log's (its index: half of it) */
#define SVC_BLOCK_CACHE (4u << 20)  /* per store, its log and index together */
#define SVC_OPEN_TABLES 64u         /* per database, with their index blocks (LevelDB's least) */
#define SVC_EVENT_BLOCK (16u << 10) /* the log's table blocks: index blocks a quarter */
#define CMD_KEY_PFX "cmd/"
#define SVC_TRIM_MS 10000u /* hand freed heap back to the system this often */

typedef struct cache_ent {
    const evb_agg_def *def;
    uint64_t version;
    bool touched; /* changed by the open transaction */
    bool stale;   /* the log moved past it (a version conflict): drop at the end */
    size_t bytes; /* what it holds, as last measured (s_ent_size) */
    uint64_t used; /* svc->use_clock at its last load: the eviction order */
    char *stream;
    max_align_t state[]; /* def->state_size bytes */
} cache_ent;

/* Upper bounds of the command duration histogram's buckets, in seconds
 * (the last, +Inf, is implied). */
static const double s_cmd_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                       0.05,   0.1,   0.25,   0.5,   1,    2.5};
#define NBUCKETS (sizeof s_cmd_buckets / sizeof s_cmd_buckets[0])

typedef struct cmd_entry {
    evb_svc_t *svc;
    char name[33];
    evb_svc_cmd_fn fn;
    void *ctx;
    uint64_t hist[NBUCKETS + 1]; /* durations, per bucket (not cumulative) */
    double sum_s;
} cmd_entry;

typedef struct tick_entry {
    evb_svc_t *svc;
    evb_svc_tick_fn fn;
    void *ctx;
} tick_entry;

typedef struct follower {
    evb_svc_t *svc;
    evb_sub_t *sub;
    evb_svc_event_fn fn;
    void *ctx;
    bool view; /* effects in the view store */
    evb_txn_t *cur_tx; /* the subscriber's open transaction we hooked */
} follower;

struct evb_svc_ctx {
    evb_svc_t *svc;
    evb_txn_t *tx;
    const evb_event_t *ev;
    const char *cmd_id;
    bool view;  /* a projection: tx belongs to the view store */
    bool dirty; /* something was staged */
};

struct evb_svc {
    const evb_svc_def *def;
    uint64_t trims, trim_us_max; /* heap trims (s_trim) and the longest */
    svc_config cfg;
    evb_store_t *store, *views;
    evb_pub_t *pub;
    evb_cmd_t *cmd;
    zloop_t *loop;
    follower consumer, projector;
    cmd_entry cmds[MAX_COMMANDS];
    size_t ncmds;
    tick_entry ticks[8];
    size_t nticks;
    hmap cache;
    size_t cache_bytes;    /* the entries' bytes (cache_ent.bytes summed) */
    uint64_t cache_evictions; /* times a bound made the cache evict */
    uint64_t cache_evicted; /* entries evicted by the bound */
    uint64_t use_clock;    /* counts loads: cache_ent.used */
    cache_ent **touched;
    size_t ntouched, cap_touched;
    int fatal; /* exit code after a fatal error */
    uint64_t commands, rejected, replayed, failed; /* failed: neither done nor rejected */
    svc_disc *disc; /* beacons (--announce, --follow-service); NULL without */
    evb_http_t *http; /* --http: /metrics, /status.json; NULL without */
    int64_t started_ms; /* s_mono_ms at evb_svc_new: the status's uptime */
};

static volatile sig_atomic_t s_stop;

/* A monotonic clock in ms: an uptime that a wall clock set back or forward
 * does not change. */
static int64_t s_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

/* ---- the aggregate cache ---- */

/* The memory an entry holds: itself, its stream name, what its state owns
 * (the aggregate's heap_size) and a map slot. */
static size_t s_ent_size(const cache_ent *e)
{
    return sizeof *e + e->def->state_size + strlen(e->stream) + 1 + sizeof(hent) +
           (e->def->heap_size ? e->def->heap_size(e->state) : 0);
}

static void s_ent_free(cache_ent *e)
{
    if (e == NULL) return;
    if (e->def->release) e->def->release(e->state);
    free(e->stream);
    free(e);
}

/* Keep what the transaction that just ended left true: entries it did not
 * touch, and after a commit those it touched (unless they went stale). */
static bool s_keep_written(const hent *h, void *ctx)
{
    bool committed = *(const bool *)ctx;
    cache_ent *e = (cache_ent *)(uintptr_t)h->a;
    if (!e->touched) return true;
    if (committed && !e->stale) {
        e->touched = false;
        return true;
    }
    s_ent_free(e);
    return false;
}

/* Free every entry and the map itself. Walks the slots rather than using
 * hmap_filter, which needs memory for a new table and could leave the
 * entries behind when it has none. */
static void s_cache_clear(evb_svc_t *svc)
{
    hmap *m = &svc->cache;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].hash != 0) s_ent_free((cache_ent *)(uintptr_t)m->slots[i].a);
    hmap_free(m);
    svc->cache_bytes = 0;
}

/* Eviction: entries last used at or before `upto` go. */
typedef struct evict_acc {
    uint64_t upto, n;
} evict_acc;

static bool s_keep_recent(const hent *h, void *ctx)
{
    evict_acc *a = ctx;
    cache_ent *e = (cache_ent *)(uintptr_t)h->a;
    if (e->used > a->upto) return true;
    s_ent_free(e);
    a->n++;
    return false;
}

typedef struct use_mark {
    uint64_t used;
    size_t bytes;
} use_mark;

static int s_cmp_used(const void *a, const void *b)
{
    uint64_t x = ((const use_mark *)a)->used, y = ((const use_mark *)b)->used;
    return x < y ? -1 : x > y;
}

static size_t s_cache_bytes(const hmap *m);

/* Over the bound: the least recently loaded entries go until the cache is
 * under 3/4 of it, so that the next transaction does not evict again. The
 * order comes from a sorted copy of the entries' stamps (one per load, so
 * unique); without memory for it, the cache is emptied. */
static void s_cache_evict(evb_svc_t *svc, size_t max_bytes, size_t max_entries)
{
    hmap *m = &svc->cache;
    use_mark *u = malloc((m->len ? m->len : 1) * sizeof *u);
    evict_acc a = {0, 0};
    if (u != NULL) {
        size_t n = 0;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].hash != 0) {
                const cache_ent *e = (cache_ent *)(uintptr_t)m->slots[i].a;
                u[n++] = (use_mark){e->used, e->bytes};
            }
        qsort(u, n, sizeof *u, s_cmp_used);
        size_t left = svc->cache_bytes, target = max_bytes / 4 * 3;
        size_t kept = n, target_n = max_entries / 4 * 3;
        for (size_t i = 0; i < n && (left > target || kept > target_n); i++) {
            a.upto = u[i].used;
            left -= u[i].bytes;
            kept--;
        }
        free(u);
    }
    if (u == NULL || hmap_filter(m, s_keep_recent, &a) != 0) {
        svc->cache_evicted += m->len;
        s_cache_clear(svc);
        return;
    }
    svc->cache_evicted += a.n;
    svc->cache_bytes = s_cache_bytes(m);
}

/* The total of the entries' bytes (after a filter dropped some). */
static size_t s_cache_bytes(const hmap *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].hash != 0) n += ((const cache_ent *)(uintptr_t)m->slots[i].a)->bytes;
    return n;
}

/* The store's end hook for transactions of the service's own store. */
static void s_tx_end(void *ctx, bool committed)
{
    evb_svc_t *svc = ctx;
    if (svc->ntouched > 0) {
        bool stale = false;
        for (size_t i = 0; i < svc->ntouched; i++) stale |= svc->touched[i]->stale;
        if (committed && !stale) {
            for (size_t i = 0; i < svc->ntouched; i++) {
                cache_ent *e = svc->touched[i];
                e->touched = false;
                size_t b = s_ent_size(e); /* its state changed */
                svc->cache_bytes += b - e->bytes;
                e->bytes = b;
            }
        } else if (hmap_filter(&svc->cache, s_keep_written, &committed) != 0) {
            /* Out of memory rebuilding the map: drop it all rather than keep
             * states that were never written. */
            s_cache_clear(svc);
        } else {
            svc->cache_bytes = s_cache_bytes(&svc->cache);
        }
        svc->ntouched = 0;
    }
    /* No handler runs now, so no state pointer lent by evb_svc_load is live.
     * Over the byte bound the least recently loaded aggregates go (each
     * used again costs one reload: its snapshot and the events after it),
     * and so they do past CACHE_MAX entries, whatever their size (the cache
     * used to start again empty there: a saw-tooth of some 30 MB in a
     * booking service's RssAnon). Both down to three quarters. */
    size_t max_bytes = (size_t)svc->cfg.aggregate_cache_mb << 20;
    if (svc->cache.len > CACHE_MAX || svc->cache_bytes > max_bytes) {
        svc->cache_evictions++;
        s_cache_evict(svc, max_bytes, CACHE_MAX);
    }
    if (svc->consumer.cur_tx) svc->consumer.cur_tx = NULL;
}

static void s_view_tx_end(void *ctx, bool committed)
{
    (void)committed;
    ((follower *)ctx)->cur_tx = NULL;
}

static int s_touch(evb_svc_t *svc, cache_ent *e, evb_err *err)
{
    if (e->touched) return EVB_OK;
    if (svc->ntouched == svc->cap_touched) {
        size_t cap = svc->cap_touched ? 2 * svc->cap_touched : 16;
        cache_ent **t = realloc(svc->touched, cap * sizeof *t);
        if (t == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
        svc->touched = t;
        svc->cap_touched = cap;
    }
    svc->touched[svc->ntouched++] = e;
    e->touched = true;
    return EVB_OK;
}

int evb_svc_load(evb_svc_ctx *c, const evb_agg_def *def, const char *stream,
                 void **state, uint64_t *version, evb_err *err)
{
    evb_svc_t *svc = c->svc;
    if (c->view)
        return evb_err_set(err, EVB_EINVAL,
                           "evb_svc_load: projections read their own view store");
    size_t sl = strlen(stream);
    hent *h = hmap_get(&svc->cache, stream, sl);
    if (h != NULL) {
        cache_ent *e = (cache_ent *)(uintptr_t)h->a;
        if (e->def != def)
            return evb_err_set(err, EVB_EINVAL, "stream %s loaded as two aggregate kinds",
                               stream);
        e->used = ++svc->use_clock;
        *state = e->state;
        *version = e->version;
        return EVB_OK;
    }
    int rc = evb_check_stream(stream, err);
    if (rc != EVB_OK) return rc;
    cache_ent *e = calloc(1, sizeof *e + def->state_size);
    if (e == NULL || (e->stream = strdup(stream)) == NULL) {
        free(e);
        return evb_err_set(err, EVB_ENOMEM, "out of memory loading %s", stream);
    }
    e->def = def;
    if (def->init) def->init(e->state);
    if (def->load && def->save) {
        evb_buf snap = {0};
        rc = evb_store_snapshot_load(svc->store, stream, &e->version, &snap, err);
        if (rc == EVB_OK && e->version > 0) rc = def->load(e->state, snap.data, snap.len, err);
        evb_buf_free(&snap);
        if (rc != EVB_OK) goto fail;
    }
    evb_iter_t *it = evb_store_read_stream(svc->store, stream, e->version + 1, 0, NULL, err);
    if (it == NULL) {
        rc = err ? err->code : EVB_EIO;
        goto fail;
    }
    const evb_event_t *ev;
    evb_err ierr = {0};
    while (evb_iter_next(it, &ev, &ierr)) {
        if ((rc = def->apply(e->state, ev, err)) != EVB_OK) break;
        e->version = ev->version;
    }
    evb_iter_destroy(&it);
    if (rc == EVB_OK && ierr.code != EVB_OK) {
        if (err) *err = ierr;
        rc = ierr.code;
    }
    if (rc != EVB_OK) goto fail;
    if (hmap_put(&svc->cache, stream, sl, (uintptr_t)e, 0) == NULL) {
        rc = evb_err_set(err, EVB_ENOMEM, "out of memory caching %s", stream);
        goto fail;
    }
    e->bytes = s_ent_size(e);
    e->used = ++svc->use_clock;
    svc->cache_bytes += e->bytes;
    *state = e->state;
    *version = e->version;
    return EVB_OK;
fail:
    s_ent_free(e);
    return rc;
}

/* A version conflict on e: the cached state may be behind the log (something
 * appended outside the cache). Drop it when the transaction ends, even after
 * a commit, so that the retry loads it again instead of failing the same way
 * for ever. It cannot be freed now: the handler may hold its state. */
static void s_conflict(evb_svc_t *svc, cache_ent *e)
{
    e->stale = true;
    (void)s_touch(svc, e, NULL); /* out of memory: it stays, as it used to */
}

int evb_svc_emit(evb_svc_ctx *c, const evb_agg_def *def, const char *stream,
                 uint64_t expected_version, evb_event_t *events, size_t n, evb_err *err)
{
    if (c->view || c->tx == NULL)
        return evb_err_set(err, EVB_EINVAL, "evb_svc_emit: only commands, consumers and "
                                            "timers append (not queries or projections)");
    void *state;
    uint64_t version;
    int rc = evb_svc_load(c, def, stream, &state, &version, err);
    if (rc != EVB_OK) return rc;
    hent *h = hmap_get(&c->svc->cache, stream, strlen(stream));
    cache_ent *e = (cache_ent *)(uintptr_t)h->a;
    if (version != expected_version) {
        s_conflict(c->svc, e);
        return evb_err_set(err, EVB_ECONFLICT, "%s is at version %llu, expected %llu",
                           stream, (unsigned long long)version,
                           (unsigned long long)expected_version);
    }
    evb_id corr = {{0}};
    evb_id cause = {{0}};
    if (c->ev != NULL) {
        cause = c->ev->id;
        corr = evb_id_is_zero(&c->ev->correlation_id) ? c->ev->id : c->ev->correlation_id;
    } else if (c->cmd_id != NULL && strlen(c->cmd_id) == EVB_ID_HEX_LEN) {
        evb_id_from_hex(c->cmd_id, &corr, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        if (evb_id_is_zero(&events[i].correlation_id)) events[i].correlation_id = corr;
        if (evb_id_is_zero(&events[i].causation_id)) events[i].causation_id = cause;
    }
    evb_append_result res;
    rc = evb_txn_append(c->tx, stream, (int64_t)expected_version, events, n, &res, err);
    if (rc == EVB_ECONFLICT) s_conflict(c->svc, e);
    if (rc != EVB_OK) return rc;
    c->dirty = true;
    if ((rc = s_touch(c->svc, e, err)) != EVB_OK) return rc;
    for (size_t i = 0; i < n; i++) {
        if (events[i].category == NULL) events[i].category = def->category;
        if ((rc = def->apply(e->state, &events[i], err)) != EVB_OK) return rc;
        e->version = events[i].version;
    }
    unsigned every = def->snapshot_every;
    if (def->save && every > 0 && expected_version / every != e->version / every) {
        /* A snapshot only saves loading time: one that cannot be made (too
         * big for a value, out of memory) must not refuse the events, or the
         * stream could never pass this version. */
        evb_buf snap = {0};
        evb_err serr = {0};
        int src = def->save(e->state, &snap, &serr);
        if (src == EVB_OK)
            src = evb_txn_snapshot(c->tx, stream, e->version, snap.data, snap.len, &serr);
        evb_buf_free(&snap);
        if (src != EVB_OK)
            evb_log(EVB_LOG_WARN, "%s: no snapshot at version %llu: %s", stream,
                    (unsigned long long)e->version, serr.msg);
    }
    return EVB_OK;
}

evb_txn_t *evb_svc_txn(evb_svc_ctx *c)
{
    c->dirty = true;
    return c->tx;
}

const evb_event_t *evb_svc_event(const evb_svc_ctx *c) { return c->ev; }
evb_svc_t *evb_svc_of(evb_svc_ctx *c) { return c->svc; }
const char *evb_svc_cmd_id(const evb_svc_ctx *c) { return c->cmd_id ? c->cmd_id : ""; }

static int s_feed_live(const evb_feed_status *fs, void *ctx)
{
    if (fs->state != EVB_FEED_LIVE || fs->lag > 0) *(bool *)ctx = false;
    return 0;
}

bool evb_svc_consumers_live(evb_svc_t *svc)
{
    bool live = true;
    if (svc->consumer.sub != NULL &&
        evb_sub_status(svc->consumer.sub, s_feed_live, &live, NULL) != EVB_OK)
        return false;
    return live;
}
evb_store_t *evb_svc_store(evb_svc_t *svc) { return svc->store; }
evb_store_t *evb_svc_view_store(evb_svc_t *svc) { return svc->views; }
const char *evb_svc_name(const evb_svc_t *svc) { return svc->def->name; }

int evb_svc_pack_write(void *data, const char *buf, size_t len)
{
    return evb_buf_append(data, buf, len, NULL) == EVB_OK ? 0 : -1;
}

/* A transaction of the service's store with the cache's end hook. After a
 * failed write (disk full) the store refuses writes until it is reopened:
 * try that first, as evbus serve does (it refuses while space is short). */
static int s_reopen(evb_svc_t *svc, evb_err *err)
{
    if (!evb_store_unwritable(svc->store)) return EVB_OK;
    int rc = evb_store_reopen(svc->store, err);
    if (rc != EVB_OK && rc != EVB_EUNWRITABLE && rc != EVB_EBUSY) {
        /* LevelDB could not open the directory again: the store is closed
         * and must not be read. Stop the service (exit 4); a supervisor
         * restarts it once the directory is usable. */
        evb_log(EVB_LOG_ERROR, "cannot reopen the log after a failed write: %s; stopping",
                err ? err->msg : svc->cfg.store);
        svc->fatal = 4;
        s_stop = 1;
    }
    return rc;
}

/* EVB_OK once the store takes writes (reopened if a write failed before). */
static int s_writable(evb_svc_t *svc, evb_err *err)
{
    if (!svc->fatal && s_reopen(svc, err) == EVB_OK) return EVB_OK;
    if (svc->fatal)
        return evb_err_set(err, EVB_EIO, "%s: the log is closed", svc->cfg.store);
    return err ? err->code : EVB_EUNWRITABLE;
}

static evb_txn_t *s_begin(evb_svc_t *svc, evb_err *err)
{
    if (s_writable(svc, err) != EVB_OK) return NULL;
    evb_txn_t *tx = evb_txn_begin(svc->store, err);
    if (tx != NULL && evb_txn_on_end(tx, s_tx_end, svc, err) != EVB_OK)
        evb_txn_destroy(&tx);
    return tx;
}

/* ---- commands with ids ---- */

/* Stored outcome: [command, ts_us, code name, body map | message]. */
static int s_outcome_put(evb_txn_t *tx, const char *cmd_id, const char *command, int code,
                         const void *body, size_t blen, const char *msg, evb_err *err)
{
    evb_buf v = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &v, evb_svc_pack_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_str_with_body(&pk, command, strlen(command));
    msgpack_pack_int64(&pk, evb_now_us());
    const char *cn = evb_code_name(code);
    msgpack_pack_str_with_body(&pk, cn, strlen(cn));
    if (code == EVB_OK) {
        if (blen == 0) msgpack_pack_map(&pk, 0);
        else evb_buf_append(&v, body, blen, NULL);
    } else {
        msgpack_pack_str_with_body(&pk, msg, strlen(msg));
    }
    char key[sizeof CMD_KEY_PFX + EVB_SVC_MAX_CMD_ID];
    int kl = snprintf(key, sizeof key, CMD_KEY_PFX "%s", cmd_id);
    int rc = v.data == NULL ? evb_err_set(err, EVB_ENOMEM, "out of memory")
                            : evb_txn_put(tx, key, (size_t)kl, v.data, v.len, err);
    evb_buf_free(&v);
    return rc;
}

/* A remembered outcome of cmd_id: 1 found (reply set, *code), 0 none. */
static int s_outcome_get(evb_svc_t *svc, const char *cmd_id, const char *command,
                         evb_buf *out, int *code, evb_err *err)
{
    char key[sizeof CMD_KEY_PFX + EVB_SVC_MAX_CMD_ID];
    int kl = snprintf(key, sizeof key, CMD_KEY_PFX "%s", cmd_id);
    evb_buf v = {0};
    evb_err gerr = {0};
    int rc = evb_store_get(svc->store, key, (size_t)kl, &v, &gerr);
    if (rc == EVB_ENOTFOUND) return 0;
    if (rc != EVB_OK) {
        if (err) *err = gerr;
        return -1;
    }
    int found = 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, v.data, v.len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 4) {
        msgpack_object *a = u.data.via.array.ptr;
        int64_t ts = a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)a[1].via.u64 : 0;
        bool fresh = evb_now_us() - ts < (int64_t)svc->cfg.command_ttl_s * 1000000;
        if (fresh && a[0].type == MSGPACK_OBJECT_STR && a[2].type == MSGPACK_OBJECT_STR) {
            char cn[40];
            snprintf(cn, sizeof cn, "%.*s", (int)a[2].via.str.size, a[2].via.str.ptr);
            if (a[0].via.str.size != strlen(command) ||
                memcmp(a[0].via.str.ptr, command, a[0].via.str.size) != 0) {
                *code = evb_err_set(err, EVB_EINVAL,
                                    "cmd_id %s was already used for command %.*s", cmd_id,
                                    (int)a[0].via.str.size, a[0].via.str.ptr);
            } else if (strcmp(cn, "ok") == 0 || strcmp(cn, "EVB_OK") == 0) {
                msgpack_sbuffer sb;
                msgpack_sbuffer_init(&sb);
                msgpack_packer pk;
                msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
                msgpack_pack_object(&pk, a[3]);
                out->len = 0;
                evb_buf_append(out, sb.data, sb.size, NULL);
                msgpack_sbuffer_destroy(&sb);
                *code = EVB_OK;
            } else {
                *code = evb_code_from_name(cn);
                if (*code == EVB_OK) *code = EVB_EREJECTED;
                bool str = a[3].type == MSGPACK_OBJECT_STR;
                evb_err_set(err, *code, "%.*s", str ? (int)a[3].via.str.size : 0,
                            str ? a[3].via.str.ptr : "");
            }
            found = 1;
        }
    }
    msgpack_unpacked_destroy(&u);
    evb_buf_free(&v);
    return found;
}

static int s_cmd_run(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err);

/* A command or query that started at t0 is done: into its histogram
 * (evbus_command_duration_seconds). */
static void s_timed(cmd_entry *ce, int64_t t0)
{
    double d = (double)(evb_now_us() - t0) / 1e6;
    size_t b = 0;
    while (b < NBUCKETS && d > s_cmd_buckets[b])
        b++;
    ce->hist[b]++;
    ce->sum_s += d;
}

static int s_cmd_entry(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err)
{
    int64_t t0 = evb_now_us();
    int rc = s_cmd_run(args, len, out, ctx, err);
    s_timed(ctx, t0);
    return rc;
}

static int s_cmd_run(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err)
{
    cmd_entry *ce = ctx;
    evb_svc_t *svc = ce->svc;
    char cmd_id[EVB_SVC_MAX_CMD_ID + 1];
    evb_err ferr = {0};
    int rc = evb_map_str(args, len, "cmd_id", cmd_id, sizeof cmd_id, &ferr);
    if (rc == EVB_ENOTFOUND)
        return evb_err_set(err, EVB_EINVAL,
                           "cmd_id: missing (every command carries a client-chosen id, "
                           "1..%u bytes)", EVB_SVC_MAX_CMD_ID);
    if (rc != EVB_OK || cmd_id[0] == '\0')
        return evb_err_set(err, EVB_EINVAL, "cmd_id: must be a string of 1..%u bytes",
                           EVB_SVC_MAX_CMD_ID);
    /* A command writes: reopen first if a write failed, before the outcome
     * lookup reads (a reopen short of space leaves the store closed). A
     * store that is readable but not writable still answers a retry. */
    evb_err werr = {0};
    int wrc = s_writable(svc, &werr);
    int code;
    int found = s_outcome_get(svc, cmd_id, ce->name, out, &code, err);
    if (found < 0 && wrc != EVB_OK) {
        if (err) *err = werr;
        return wrc;
    }
    if (found < 0) return err ? err->code : EVB_EIO;
    if (found) {
        svc->replayed++;
        evb_log(EVB_LOG_DEBUG, "%s %s: retry answered with the first outcome", ce->name,
                cmd_id);
        return code;
    }
    svc->commands++;
    for (int attempt = 0;; attempt++) {
        out->len = 0;
        evb_txn_t *tx = s_begin(svc, err);
        if (tx == NULL) return err ? err->code : EVB_EBUSY;
        evb_svc_ctx c = {.svc = svc, .tx = tx, .cmd_id = cmd_id};
        rc = ce->fn(&c, args, len, out, ce->ctx, err);
        if (rc == EVB_OK) {
            rc = s_outcome_put(tx, cmd_id, ce->name, EVB_OK, out->data, out->len, NULL, err);
            if (rc == EVB_OK) rc = evb_txn_commit(&tx, err);
            evb_txn_destroy(&tx);
            if (rc == EVB_OK && svc->pub) evb_pub_poll(svc->pub, 0, NULL);
            if (rc != EVB_OK) svc->failed++;
            return rc;
        }
        evb_txn_destroy(&tx);
        if (rc == EVB_ECONFLICT && attempt < 3) continue;
        if (rc != EVB_EREJECTED) {
            svc->failed++;
            return rc;
        }
        svc->rejected++;
        evb_err perr = {0};
        tx = s_begin(svc, &perr);
        int prc = tx ? s_outcome_put(tx, cmd_id, ce->name, rc, NULL, 0, err->msg, &perr)
                     : perr.code;
        if (prc == EVB_OK) prc = evb_txn_commit(&tx, &perr);
        evb_txn_destroy(&tx);
        if (prc != EVB_OK)
            evb_log(EVB_LOG_WARN, "%s %s: cannot remember the refusal: %s", ce->name,
                    cmd_id, perr.msg);
        return rc;
    }
}

int evb_svc_command(evb_svc_t *svc, const char *name, evb_svc_cmd_fn fn, void *ctx,
                    evb_err *err)
{
    if (svc->ncmds == MAX_COMMANDS || strlen(name) >= sizeof svc->cmds[0].name)
        return evb_err_set(err, EVB_EINVAL, "command %s: too many commands or too long",
                           name);
    cmd_entry *ce = &svc->cmds[svc->ncmds];
    ce->svc = svc;
    snprintf(ce->name, sizeof ce->name, "%s", name);
    ce->fn = fn;
    ce->ctx = ctx;
    int rc = evb_cmd_on(svc->cmd, name, s_cmd_entry, ce, err);
    if (rc == EVB_OK) svc->ncmds++;
    return rc;
}

static int s_query_entry(const void *args, size_t len, evb_buf *out, void *ctx,
                         evb_err *err)
{
    cmd_entry *ce = ctx;
    evb_svc_ctx c = {.svc = ce->svc};
    int64_t t0 = evb_now_us();
    int rc = ce->fn(&c, args, len, out, ce->ctx, err);
    s_timed(ce, t0);
    return rc;
}

int evb_svc_query(evb_svc_t *svc, const char *name, evb_svc_cmd_fn fn, void *ctx,
                  evb_err *err)
{
    if (svc->ncmds == MAX_COMMANDS || strlen(name) >= sizeof svc->cmds[0].name)
        return evb_err_set(err, EVB_EINVAL, "query %s: too many commands or too long", name);
    cmd_entry *ce = &svc->cmds[svc->ncmds];
    ce->svc = svc;
    snprintf(ce->name, sizeof ce->name, "%s", name);
    ce->fn = fn;
    ce->ctx = ctx;
    int rc = evb_cmd_on(svc->cmd, name, s_query_entry, ce, err);
    if (rc == EVB_OK) svc->ncmds++;
    return rc;
}

/* ---- followers ---- */

static int s_follow_handler(const evb_event_t *ev, evb_txn_t *tx, void *ctx, evb_err *err)
{
    follower *f = ctx;
    evb_svc_t *svc = f->svc;
    if (f->cur_tx != tx) {
        int rc = f->view ? evb_txn_on_end(tx, s_view_tx_end, f, err)
                         : evb_txn_on_end(tx, s_tx_end, svc, err);
        if (rc != EVB_OK) return rc;
        f->cur_tx = tx;
    }
    evb_svc_ctx c = {.svc = svc, .tx = tx, .ev = ev, .view = f->view};
    return f->fn(&c, ev, f->ctx, err);
}

/* A connectable form of a bound endpoint: tcp://\*:P and 0.0.0.0 -> 127.0.0.1. */
static void s_connect_form(const char *bound, char *out, size_t cap)
{
    const char *p;
    if (strncmp(bound, "tcp://", 6) == 0 &&
        ((p = strchr(bound + 6, ':')) != NULL) &&
        (strncmp(bound + 6, "*:", 2) == 0 || strncmp(bound + 6, "0.0.0.0:", 8) == 0))
        snprintf(out, cap, "tcp://127.0.0.1%s", p);
    else
        snprintf(out, cap, "%s", bound);
}

static int s_follower_start(evb_svc_t *svc, follower *f, evb_store_t *st,
                            const char *consumer, const char *const *categories, size_t n,
                            evb_svc_event_fn fn, void *ctx, evb_err *err)
{
    if (f->sub != NULL)
        return evb_err_set(err, EVB_EINVAL, "%s: already started", consumer);
    f->svc = svc;
    f->fn = fn;
    f->ctx = ctx;
    evb_sub_opts so = {.store = st, .consumer = consumer, .handler = s_follow_handler,
                       .ctx = f, .rcvhwm = svc->cfg.rcvhwm};
    /* CURVE: our certificate; our own publisher's key is our own public key,
     * read from the same certificate (README.md, "Security"). */
    const evb_curve curve = {.cert_file = svc->cfg.cert};
    if (svc->cfg.cert[0]) so.curve = &curve;
    f->sub = evb_sub_new(&so, err);
    if (f->sub == NULL) return err ? err->code : EVB_EIO;
    int rc = evb_sub_attach(f->sub, svc->loop, err);
    if (f->view) {
        char pe[EVB_BUS_MAX_ENDPOINT], ce[EVB_BUS_MAX_ENDPOINT];
        s_connect_form(svc->cfg.pub, pe, sizeof pe);
        s_connect_form(svc->cfg.catchup, ce, sizeof ce);
        evb_follow_opts fo = {.categories = categories,
                              .ncategories = n,
                              .server_key = svc->cfg.cert[0] ? svc->cfg.cert : NULL};
        if (rc == EVB_OK) rc = evb_sub_follow(f->sub, pe, ce, &fo, err);
    } else {
        for (size_t i = 0; rc == EVB_OK && i < svc->cfg.nfollow; i++) {
            evb_follow_opts fo = {.categories = categories,
                                  .ncategories = n,
                                  .server_key = svc->cfg.follow[i].key};
            rc = evb_sub_follow(f->sub, svc->cfg.follow[i].pub,
                                svc->cfg.follow[i].catchup, &fo, err);
        }
        if (rc == EVB_OK) rc = svc_disc_follow(svc->disc, f->sub, categories, n, err);
    }
    return rc;
}

int evb_svc_consume(evb_svc_t *svc, const char *const *categories, size_t n,
                    evb_svc_event_fn fn, void *ctx, evb_err *err)
{
    if (svc->cfg.nfollow == 0 && svc->cfg.disc.nfollow == 0)
        evb_log(EVB_LOG_WARN, "%s consumes other logs but no --follow was given",
                svc->def->name);
    return s_follower_start(svc, &svc->consumer, svc->store, svc->def->name, categories, n,
                            fn, ctx, err);
}

int evb_svc_project(evb_svc_t *svc, const char *const *categories, size_t n,
                    evb_svc_event_fn fn, void *ctx, evb_err *err)
{
    if (svc->views == NULL || svc->pub == NULL)
        return evb_err_set(err, EVB_EINVAL,
                           "%s: read models need a view store and --pub/--catchup",
                           svc->def->name);
    svc->projector.view = true;
    return s_follower_start(svc, &svc->projector, svc->views, "views", categories, n, fn,
                            ctx, err);
}

/* ---- timers ---- */

static int s_tick(zloop_t *loop, int id, void *arg)
{
    (void)loop;
    (void)id;
    tick_entry *t = arg;
    evb_svc_t *svc = t->svc;
    evb_err err = {0};
    evb_txn_t *tx = s_begin(svc, &err);
    if (tx == NULL) {
        evb_log(EVB_LOG_WARN, "timer: %s", err.msg);
        return 0;
    }
    evb_svc_ctx c = {.svc = svc, .tx = tx};
    int rc = t->fn(&c, t->ctx, &err);
    if (rc == EVB_OK && c.dirty) rc = evb_txn_commit(&tx, &err);
    evb_txn_destroy(&tx);
    if (rc != EVB_OK) {
        evb_log(EVB_LOG_WARN, "timer: %s", err.msg);
        s_reopen(svc, NULL);
    }
    return 0;
}

int evb_svc_every(evb_svc_t *svc, unsigned ms, evb_svc_tick_fn fn, void *ctx, evb_err *err)
{
    if (svc->nticks == sizeof svc->ticks / sizeof svc->ticks[0])
        return evb_err_set(err, EVB_EINVAL, "too many timers");
    tick_entry *t = &svc->ticks[svc->nticks];
    t->svc = svc;
    t->fn = fn;
    t->ctx = ctx;
    if (zloop_timer(svc->loop, ms ? ms : 1, 0, s_tick, t) < 0)
        return evb_err_set(err, EVB_ENOMEM, "cannot add a timer");
    svc->nticks++;
    return EVB_OK;
}

/* Forget outcomes of commands older than the retention (one page a minute). */
static int s_expire_tick(evb_svc_ctx *c, void *ctx, evb_err *err);

typedef struct expire_acc {
    evb_txn_t *tx;
    int64_t cutoff;
    size_t n;
    int rc;
    evb_err *err;
} expire_acc;

static int s_expire_one(const void *key, size_t klen, const void *val, size_t vlen, void *ctx)
{
    expire_acc *a = ctx;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    bool old = true;
    if (msgpack_unpack_next(&u, val, vlen, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 4 &&
        u.data.via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        old = (int64_t)u.data.via.array.ptr[1].via.u64 < a->cutoff;
    msgpack_unpacked_destroy(&u);
    if (old) {
        if ((a->rc = evb_txn_delete(a->tx, key, klen, a->err)) != EVB_OK) return 1;
        a->n++;
    }
    return a->n >= 10000 ? 1 : 0;
}

static int s_expire_tick(evb_svc_ctx *c, void *ctx, evb_err *err)
{
    (void)ctx;
    evb_svc_t *svc = c->svc;
    expire_acc a = {.tx = c->tx,
                    .cutoff = evb_now_us() - (int64_t)svc->cfg.command_ttl_s * 1000000,
                    .err = err};
    int rc = evb_store_scan(svc->store, CMD_KEY_PFX, strlen(CMD_KEY_PFX), s_expire_one, &a,
                            err);
    if (rc < 0) return rc;
    if (a.rc != EVB_OK) return a.rc;
    if (a.n > 0) {
        c->dirty = true;
        evb_log(EVB_LOG_INFO, "forgot %zu command outcomes older than %u s", a.n,
                svc->cfg.command_ttl_s);
    }
    return EVB_OK;
}

/* ---- status ---- */

/* "status" (and /status.json): the service, its uptime, its log and
 * publisher, command counters, its feeds and views (evb_sub_status_pack, with their history)
 * and what its beacon listener found. */
static int s_status(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err)
{
    (void)args;
    (void)len;
    evb_svc_t *svc = ctx;
#define KS(k, v) \
    msgpack_pack_str_with_body(pk, k, strlen(k)); \
    msgpack_pack_str_with_body(pk, v, strlen(v))
#define KU(k, v) \
    msgpack_pack_str_with_body(pk, k, strlen(k)); \
    msgpack_pack_uint64(pk, v)
    msgpack_packer p;
    msgpack_packer *pk = &p;
    msgpack_packer_init(pk, out, evb_svc_pack_write);
    evb_store_info si;
    evb_store_get_info(svc->store, &si);
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&si.log_id, hex);
    evb_pub_stats ps = {0};
    if (svc->pub) evb_pub_get_stats(svc->pub, &ps);
    msgpack_pack_map(pk, 16);
    KS("program", "service");
    KS("service", svc->def->name);
    KU("uptime_ms", (uint64_t)(s_mono_ms() - svc->started_ms));
    KS("log_id", hex);
    KU("head", evb_store_head(svc->store));
    KU("synced", evb_store_synced(svc->store));
    KU("published", ps.published);
    KU("commands", svc->commands);
    KU("rejected", svc->rejected);
    KU("retries_answered", svc->replayed);
    KS("state", evb_store_unwritable(svc->store) ? "unwritable" : "serving");
    msgpack_pack_str_with_body(pk, "feeds", 5);
    int rc = evb_sub_status_pack(out, svc->consumer.sub, EVB_FEED_PACK_HISTORY, err);
    msgpack_pack_str_with_body(pk, "views", 5);
    if (rc == EVB_OK)
        rc = evb_sub_status_pack(out, svc->projector.sub, EVB_FEED_PACK_HISTORY, err);
    msgpack_pack_str_with_body(pk, "beacons", 7);
    svc_disc_pack(svc->disc, pk);
    msgpack_pack_str_with_body(pk, "aggregate_cache", 15);
    msgpack_pack_map(pk, 5);
    KU("entries", svc->cache.len);
    KU("bytes", svc->cache_bytes);
    KU("max_bytes", (uint64_t)svc->cfg.aggregate_cache_mb << 20);
    KU("evictions", svc->cache_evictions);
    KU("evicted", svc->cache_evicted);
    msgpack_pack_str_with_body(pk, "heap_trims", 10);
    msgpack_pack_map(pk, 2);
    KU("count", svc->trims);
    KU("us_max", svc->trim_us_max);
    return rc;
#undef KS
#undef KU
}

/* ---- life cycle ---- */

static int s_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Remove a view store so it is rebuilt from zero; refuses a directory that
 * is not a LevelDB directory. */
static int s_drop_views(const char *dir, evb_err *err)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) return EVB_OK; /* nothing to drop */
    char cur[PATH_MAX + 16];
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    if (access(cur, F_OK) != 0)
        return evb_err_set(err, EVB_EINVAL,
                           "--rebuild-views: %s is not a view store (no CURRENT file); "
                           "not removing it", dir);
    if (nftw(dir, s_rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return evb_err_set(err, EVB_EIO, "--rebuild-views: cannot remove %s: %s", dir,
                           strerror(errno));
    evb_log(EVB_LOG_INFO, "views in %s dropped; rebuilding them from the log", dir);
    return EVB_OK;
}

/* The HTTP documents: the log, the publisher, the consumer's feeds and the
 * commands; the status command's answer. A followed publisher is "up" with
 * a heartbeat in the last second (two of the default intervals). */
static int s_http_render(void *ctx, evb_buf *metrics, evb_buf *status, evb_err *err)
{
    evb_svc_t *svc = ctx;
    int rc = evb_metrics_store(metrics, svc->store, err);
    if (rc == EVB_OK && svc->pub)
        rc = evb_metrics_pub(metrics, svc->pub, svc->def->name, err);
    if (rc == EVB_OK && svc->consumer.sub)
        rc = evb_metrics_sub(metrics, svc->consumer.sub, 1000, err);
    const char *sl[] = {"service", svc->def->name, NULL};
    static const struct {
        const char *name, *type, *help;
    } cf[] = {
        {"evbus_aggregate_cache_entries", "gauge", "Aggregates kept in memory."},
        {"evbus_aggregate_cache_bytes", "gauge",
         "Memory the cached aggregates hold (bounded by --aggregate-cache-mb)."},
        {"evbus_aggregate_cache_evicted_total", "counter",
         "Aggregates the bound evicted from the cache (least recently used first)."},
    };
    double cv[] = {(double)svc->cache.len, (double)svc->cache_bytes,
                   (double)svc->cache_evicted};
    for (size_t i = 0; rc == EVB_OK && i < 3; i++) {
        rc = evb_prom_family(metrics, cf[i].name, cf[i].type, cf[i].help, err);
        if (rc == EVB_OK) rc = evb_prom_sample(metrics, cf[i].name, sl, cv[i], err);
    }
    if (rc == EVB_OK)
        rc = evb_prom_family(metrics, "evbus_commands_total", "counter",
                             "Commands handled, by outcome: ok, rejected by the domain, "
                             "failed (an error), replayed (a retry answered with the first "
                             "outcome).",
                             err);
    const char *outcome[] = {"ok", "rejected", "failed", "replayed"};
    uint64_t n[] = {svc->commands - svc->rejected - svc->failed, svc->rejected, svc->failed,
                    svc->replayed};
    for (int i = 0; rc == EVB_OK && i < 4; i++) {
        const char *l[] = {"service", svc->def->name, "outcome", outcome[i], NULL};
        rc = evb_prom_sample(metrics, "evbus_commands_total", l, (double)n[i], err);
    }
    if (rc == EVB_OK)
        rc = evb_prom_family(metrics, "evbus_command_duration_seconds", "histogram",
                             "Time to carry out a command or answer a query, by name.",
                             err);
    for (size_t i = 0; rc == EVB_OK && i < svc->ncmds; i++) {
        const cmd_entry *ce = &svc->cmds[i];
        uint64_t cum = 0;
        char le[32];
        for (size_t b = 0; rc == EVB_OK && b <= NBUCKETS; b++) {
            cum += ce->hist[b];
            if (b < NBUCKETS)
                snprintf(le, sizeof le, "%g", s_cmd_buckets[b]);
            else
                snprintf(le, sizeof le, "+Inf");
            const char *l[] = {"service", svc->def->name, "command", ce->name, "le", le, NULL};
            rc = evb_prom_sample(metrics, "evbus_command_duration_seconds_bucket", l,
                                 (double)cum, err);
        }
        const char *l[] = {"service", svc->def->name, "command", ce->name, NULL};
        if (rc == EVB_OK)
            rc = evb_prom_sample(metrics, "evbus_command_duration_seconds_sum", l, ce->sum_s,
                                 err);
        if (rc == EVB_OK)
            rc = evb_prom_sample(metrics, "evbus_command_duration_seconds_count", l,
                                 (double)cum, err);
    }
    if (rc == EVB_OK) rc = s_status(NULL, 0, status, svc, err);
    return rc;
}

static int s_http_timer(zloop_t *loop, int id, void *arg)
{
    (void)loop;
    (void)id;
    evb_svc_t *svc = arg;
    evb_err err;
    if (evb_http_tick(svc->http, 0, s_http_render, svc, &err) != EVB_OK)
        evb_log(EVB_LOG_WARN, "http: %s", err.msg);
    return 0;
}

evb_svc_t *evb_svc_new(const evb_svc_def *def, int argc, char **argv, int *exit_code)
{
    evb_svc_t *svc = calloc(1, sizeof *svc);
    if (svc == NULL) {
        fprintf(stderr, "%s: out of memory\n", def->name);
        *exit_code = 4;
        return NULL;
    }
    svc->started_ms = s_mono_ms();
    svc->def = def;
    int code = svc_config_parse(def, argc, argv, &svc->cfg);
    if (code >= 0) {
        *exit_code = code;
        free(svc);
        return NULL;
    }
    svc_log_start(def->name, &svc->cfg);
    /* From here a SIGTERM or SIGINT (say during a long start-up read of the
     * log) is noted and ends evb_svc_run cleanly, instead of killing the
     * process with the default action. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    evb_err err = {0};
    *exit_code = 3;
    /* Memory a service holds whatever its history (services/README.md,
     * "Memory"): stream versions cached per store at most SVC_STREAM_CACHE
     * (past it, the indexed ones are dropped and read back from the index
     * when needed), and LevelDB's write buffers at SVC_LOG_BUFFER and
     * SVC_VIEWS_BUFFER: a memtable and the one being flushed are both in
     * memory, and a service's small writes took minutes of load to fill the
     * store's default 32 MiB ones, so its memory kept growing long after its
     * start; and what LevelDB keeps of its tables, SVC_BLOCK_CACHE of blocks
     * read and the index blocks of SVC_OPEN_TABLES tables (by default four
     * 8 MiB caches a service, and index blocks that grew with the log). A
     * soaked booking service at 395,000 bookings held 1.9 MB of index blocks
     * in 68 tables (0.47 MB per 100,000 bookings, half the slope left): the
     * log's blocks of 16 KiB make its index blocks a quarter, and 64 open
     * tables a database bound them sooner. */
    evb_store_opts so = {.dir = svc->cfg.store, .service = def->name, .create = true,
                         .sync = svc->cfg.sync, .stream_cache_entries = SVC_STREAM_CACHE,
                         .write_buffer_bytes = SVC_LOG_BUFFER,
                         .block_cache_bytes = SVC_BLOCK_CACHE,
                         .max_open_tables = SVC_OPEN_TABLES,
                         .event_block_bytes = SVC_EVENT_BLOCK};
    svc->store = evb_store_open(&so, &err);
    if (svc->store == NULL) goto fail;
    if (def->views) {
        if (svc->cfg.rebuild_views && s_drop_views(svc->cfg.views, &err) != EVB_OK) goto fail;
        evb_store_opts vo = {.dir = svc->cfg.views, .service = def->name, .create = true,
                             .sync = EVB_SYNC_GROUP,
                             .stream_cache_entries = SVC_STREAM_CACHE,
                             .write_buffer_bytes = SVC_VIEWS_BUFFER,
                             .block_cache_bytes = SVC_BLOCK_CACHE,
                             .max_open_tables = SVC_OPEN_TABLES};
        svc->views = evb_store_open(&vo, &err);
        if (svc->views == NULL) goto fail;
    }
    *exit_code = 4;
    /* CURVE on every socket when --cert/--allow are given (README.md). */
    const evb_curve curve = {.cert_file = svc->cfg.cert, .allow_dir = svc->cfg.allow};
    svc->loop = zloop_new();
    if (svc->loop == NULL) {
        evb_err_set(&err, EVB_ENOMEM, "cannot make the event loop");
        goto fail;
    }
    if (svc->cfg.pub[0]) {
        evb_pub_opts po = {.store = svc->store, .pub_endpoint = svc->cfg.pub,
                           .catchup_endpoint = svc->cfg.catchup};
        if (svc->cfg.cert[0]) po.curve = &curve;
        svc->pub = evb_pub_new(&po, &err);
        if (svc->pub == NULL || evb_pub_attach(svc->pub, svc->loop, &err) != EVB_OK)
            goto fail;
    }
    svc->cmd = evb_cmd_new(&(evb_cmd_opts){.endpoint = svc->cfg.cmd,
                                           .curve = svc->cfg.cert[0] ? &curve : NULL},
                           &err);
    if (svc->cmd == NULL || evb_cmd_attach(svc->cmd, svc->loop, &err) != EVB_OK ||
        evb_cmd_on(svc->cmd, "status", s_status, svc, &err) != EVB_OK)
        goto fail;
    if (svc->cfg.http[0]) {
        if ((svc->http = evb_http_new(svc->cfg.http, &err)) == NULL) goto fail;
        if (svc->cfg.http_events) evb_http_show_events(svc->http, svc->store, 50);
        if (zloop_timer(svc->loop, 500, 0, s_http_timer, svc) < 0) {
            evb_err_set(&err, EVB_ENOMEM, "cannot add the HTTP timer");
            goto fail;
        }
        s_http_timer(svc->loop, 0, svc); /* documents from the start */
        evb_log(EVB_LOG_INFO, "http on %s (port %u): the bus page at /, /metrics, "
                "/status.json%s", svc->cfg.http, (unsigned)evb_http_port(svc->http),
                svc->cfg.http_events ? "; events shown (--http-events)" : "");
        if (svc->cfg.cert[0] && !evb_http_addr_is_loopback(svc->cfg.http))
            evb_log(EVB_LOG_WARN, "--http %s: metrics and status go out unencrypted to "
                                  "anyone who can reach that address (CURVE covers the "
                                  "bus only)",
                    svc->cfg.http);
    }
    evb_svc_tick_fn expire = s_expire_tick;
    if (evb_svc_every(svc, 60000, expire, NULL, &err) != EVB_OK) goto fail;
    evb_store_info dsi;
    evb_store_get_info(svc->store, &dsi);
    int drc = svc_disc_start(&svc->disc, &svc->cfg.disc, svc->loop, def->name, &dsi.log_id,
                             svc->cfg.pub, svc->cfg.catchup, svc->cfg.cmd, &err);
    if (drc != EVB_OK) {
        /* A beacon that cannot be (too big, a wildcard with no address, no such
         * interface) is a configuration problem. */
        *exit_code = drc == EVB_EIO || drc == EVB_ENOMEM ? 4 : 2;
        goto fail;
    }
    *exit_code = 0;
    return svc;
fail:
    evb_log(EVB_LOG_ERROR, "%s", err.msg);
    evb_svc_destroy(&svc);
    return NULL;
}

/* Freed heap back to the system. LevelDB's memtables are built of 4 KiB
 * blocks and freed whole after each flush; glibc keeps such freed memory in
 * its arenas, so a service's RssAnon kept climbing under a steady load
 * (soak, 10 minutes: booking 124.8 -> 132.0 MB over 270,000 bookings) while
 * what it held did not: malloc_trim on that process took it from 135 to
 * 96 MB. Trimming every SVC_TRIM_MS costs the loop the walk over the arenas
 * (trim_us_max in status). */
static int s_trim(zloop_t *loop, int id, void *arg)
{
    (void)loop;
    (void)id;
    evb_svc_t *svc = arg;
#if defined(__GLIBC__)
    int64_t t0 = evb_now_us();
    malloc_trim(0);
    uint64_t us = (uint64_t)(evb_now_us() - t0);
    if (us > svc->trim_us_max) svc->trim_us_max = us;
    svc->trims++;
#else
    (void)svc;
#endif
    return 0;
}

/* systemd's STATUS= line (evbus_notify.h): "head 1,234; feeds:
 * reservation/show live; views: booking/booking live". */
static void s_notify_line(evb_buf *line, void *ctx)
{
    evb_svc_t *svc = ctx;
    evb_notify_add_num(line, "head", evb_store_head(svc->store));
    if (evb_store_unwritable(svc->store))
        evb_notify_add(line, "store unwritable: waiting to reopen");
    evb_notify_add_feeds(line, "feeds", svc->consumer.sub);
    evb_notify_add_feeds(line, "views", svc->projector.sub);
}

static int s_notify_timer(zloop_t *loop, int id, void *arg)
{
    (void)loop;
    (void)id;
    evb_notify_tick(s_notify_line, arg);
    return 0;
}

static int s_stop_check(zloop_t *loop, int id, void *arg)
{
    (void)loop;
    (void)id;
    (void)arg;
    return s_stop ? -1 : 0;
}

int evb_svc_run(evb_svc_t *svc)
{
    zloop_timer(svc->loop, 50, 0, s_stop_check, NULL);
    zloop_timer(svc->loop, SVC_TRIM_MS, 0, s_trim, svc);
    evb_store_info si;
    evb_store_get_info(svc->store, &si);
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&si.log_id, hex);
    evb_log(EVB_LOG_INFO, "serving: store %s (log %s, head %llu), commands on %s%s%s%s%s",
            svc->cfg.store, hex, (unsigned long long)evb_store_head(svc->store),
            svc->cfg.cmd, svc->pub ? ", publishing on " : "", svc->pub ? svc->cfg.pub : "",
            svc->pub ? " and " : "", svc->pub ? svc->cfg.catchup : "");
    /* Sockets bound and store open since evb_svc_new: systemd may start
     * what depends on us. The watchdog is fed from the loop, so a loop
     * stuck in a handler stops feeding it. */
    evb_notify_ready(s_notify_line, svc);
    unsigned notify_ms = evb_notify_tick_ms();
    if (notify_ms > 0) zloop_timer(svc->loop, notify_ms, 0, s_notify_timer, svc);
    int rc = 0;
    bool waiting = false;
    while (!s_stop) {
        /* zloop_start returns 0 when a signal interrupts its poll, -1 when a
         * handler failed (the bus logged why). */
        if (zloop_start(svc->loop) == 0 || s_stop) continue;
        /* A consumer's or a projection's commit failed (disk full): their
         * store refuses writes until reopened, which it refuses while space
         * is short. Wait for it, then go on where the checkpoints are. */
        bool main_bad = evb_store_unwritable(svc->store);
        bool views_bad = svc->views && evb_store_unwritable(svc->views);
        if (!main_bad && !views_bad) {
            evb_log(EVB_LOG_ERROR, "stopping after a fatal error (see above)");
            rc = 4;
            break;
        }
        evb_err rerr = {0};
        int r1 = main_bad ? s_reopen(svc, &rerr) : EVB_OK;
        int r2 = views_bad && r1 == EVB_OK ? evb_store_reopen(svc->views, &rerr) : EVB_OK;
        if (svc->fatal || (r2 != EVB_OK && r2 != EVB_EUNWRITABLE)) {
            evb_log(EVB_LOG_ERROR, "cannot reopen after a failed write: %s", rerr.msg);
            rc = 4;
            break;
        }
        if (r1 != EVB_OK || r2 != EVB_OK) {
            if (!waiting)
                evb_log(EVB_LOG_WARN, "a write failed; waiting to reopen: %s", rerr.msg);
            waiting = true;
            evb_notify_tick(s_notify_line, svc); /* waiting is not hanging */
            zclock_sleep(500);
            continue;
        }
        waiting = false;
        evb_log(EVB_LOG_INFO, "reopened after a failed write; consumers go on from their "
                              "checkpoints");
    }
    if (svc->fatal) rc = svc->fatal;
    evb_notify_stopping(rc == 0 ? "stopping: final sync"
                                : "stopping after a fatal error");
    evb_err err = {0};
    if (svc->fatal) {
        /* the log is closed: nothing to sync */
    } else if (evb_store_sync(svc->store, &err) != EVB_OK) {
        evb_log(EVB_LOG_ERROR, "final sync: %s", err.msg);
        rc = 4;
    }
    if (rc == 0) evb_log(EVB_LOG_INFO, "stopped cleanly (head %llu)",
                         (unsigned long long)evb_store_head(svc->store));
    return rc;
}

void evb_svc_destroy(evb_svc_t **svcp)
{
    evb_svc_t *svc = *svcp;
    if (svc == NULL) return;
    svc_disc_destroy(&svc->disc); /* before the loop it is attached to */
    evb_http_destroy(&svc->http);
    zloop_destroy(&svc->loop);
    evb_sub_destroy(&svc->projector.sub);
    evb_sub_destroy(&svc->consumer.sub);
    evb_cmd_destroy(&svc->cmd);
    evb_pub_destroy(&svc->pub);
    s_cache_clear(svc);
    free(svc->touched);
    evb_store_destroy(&svc->views);
    evb_store_destroy(&svc->store);
    free(svc);
    *svcp = NULL;
}
