/*
 * indexer.c: derives the stream, category and id indexes from the log.
 *
 * The indexer reads events after its position and writes, in one WriteBatch,
 * their index entries, the per-category statistics and its new position. So
 * a crash at any instant leaves either the old position with none of the
 * batch's entries or the new one with all of them: the indexes are never
 * ahead of or out of step with the position, and indexing again from the
 * position is all a restart needs. Index entries are small (no copy of the
 * event): an id entry per event whose id is not sealed (format 4,
 * idseal.c), and (from format 3) one stream entry and one
 * category entry per run of events of one stream or category that follow
 * each other in the log; every extra byte the indexer writes competes with
 * appends for LevelDB and the CPU (FORMAT.md, "Index runs", has the
 * figures).
 *
 * One step at a time runs (ix_mu): the background thread's and the owner's
 * (evb_store_index_step, reindex) never interleave.
 *
 * The feed: a committed transaction hands the indexer its events' ids, and
 * its streams and versions as runs (ix_feed_push), so that the indexer need
 * not read them back from LevelDB and decode them, which was about 40% of
 * its own time. The feed is only a shortcut: it holds at most
 * IX_FEED_MAX_BYTES, is empty after an open or a reopen, and whatever it
 * does not hold is read back from the log, which stays the truth (a test
 * checks that both give the same entries). From format 3 on.
 */
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define IX_STEP_EVENTS 16384 /* a whole EVB_MAX_BATCH transaction from the feed */
#define IX_DEFER_LAG 16384
#define IX_IDLE_MS 2

typedef struct cat_delta {
    hmap m; /* category -> a = head, b = count added in this step */
} cat_delta;

/* A stream or category run being gathered (format 3): count events from
 * seq on, one after another in the log, of one stream with versions from
 * first on (first == seq for a category). */
typedef struct run_acc {
    char name[EVB_MAX_STREAM_LEN + 1];
    size_t len;
    uint64_t first, seq, count;
} run_acc;

/* Write the run's entry (a run of one keeps the format 2 shape). */
static void s_run_put(leveldb_writebatch_t *wb, run_acc *r, char kind)
{
    if (r->count == 0) return;
    uint8_t key[KEY_MAX], val[16];
    size_t kl = key_name_num(key, kind, r->name, r->len, r->first), vl;
    if (kind == K_STREAM) {
        be64_put(val, r->seq);
        be64_put(val + 8, r->count);
        vl = r->count > 1 ? 16 : 8;
    } else {
        be64_put(val, r->count);
        vl = r->count > 1 ? 8 : 0;
    }
    leveldb_writebatch_put(wb, (const char *)key, kl, (const char *)val, vl);
    r->count = 0;
}

/* count events from seq on, numbered n on of name (versions, or seqs for a
 * category): extend the run, or write it and start another. */
static void s_run_add(leveldb_writebatch_t *wb, run_acc *r, char kind, const char *name,
                      size_t len, uint64_t n, uint64_t seq, uint64_t count)
{
    if (r->count > 0 && r->len == len && n == r->first + r->count &&
        seq == r->seq + r->count && memcmp(r->name, name, len) == 0) {
        r->count += count;
        return;
    }
    s_run_put(wb, r, kind);
    memcpy(r->name, name, len);
    r->len = len;
    r->first = n;
    r->seq = seq;
    r->count = count;
}

/* ---- the index feed ---- */

/* What the feed may hold: about 1 Mi events of 1000-event appends (16 bytes
 * an id). Past it chunks are dropped and their events read back. */
#define IX_FEED_MAX_BYTES (32u << 20)

void ix_feed_push(evb_store_t *st, const evb_txn_t *tx)
{
    /* The feed assumes the ids are events first_seq.. one after another, as
     * a transaction that may commit stages them. */
    size_t n = tx->nids, nruns = 0, names = 0;
    if (n == 0 || tx->next_seq - tx->ids[0].seq != n) return;
    for (size_t i = 0; i < n; i++) {
        const txn_id *t = &tx->ids[i];
        if (i == 0 || t->stream_ix != t[-1].stream_ix || t->version != t[-1].version + 1) {
            nruns++;
            names += strlen(tx->streams[t->stream_ix].stream) + 1;
        }
    }
    size_t bytes = sizeof(ix_chunk) + nruns * sizeof(ix_feed_run) + n * sizeof(evb_id) +
                   names;
    pthread_mutex_lock(&st->feed_mu);
    bool room = st->feed_bytes + bytes <= IX_FEED_MAX_BYTES;
    pthread_mutex_unlock(&st->feed_mu);
    if (!room) return;
    ix_chunk *c = malloc(bytes);
    if (c == NULL) return; /* read back instead */
    c->next = NULL;
    c->first_seq = tx->ids[0].seq;
    c->n = n;
    c->nruns = 0;
    c->bytes = bytes;
    c->runs = (ix_feed_run *)(c + 1);
    c->ids = (evb_id *)(c->runs + nruns);
    c->names = (char *)(c->ids + n);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const txn_id *t = &tx->ids[i];
        if (t->sealed) /* no id entry (idseal.c) */
            memset(&c->ids[i], 0, sizeof c->ids[i]);
        else
            c->ids[i] = t->id;
        if (i > 0 && t->stream_ix == t[-1].stream_ix && t->version == t[-1].version + 1) {
            c->runs[c->nruns - 1].count++;
            continue;
        }
        const char *name = tx->streams[t->stream_ix].stream;
        size_t len = strlen(name);
        memcpy(c->names + off, name, len + 1);
        c->runs[c->nruns++] = (ix_feed_run){t->version, 1, (uint32_t)off, (uint32_t)len};
        off += len + 1;
    }
    pthread_mutex_lock(&st->feed_mu);
    if (st->feed_tail != NULL)
        st->feed_tail->next = c;
    else
        st->feed_head = c;
    st->feed_tail = c;
    st->feed_bytes += bytes;
    pthread_mutex_unlock(&st->feed_mu);
}

static void s_free_chunks(ix_chunk *c)
{
    while (c != NULL) {
        ix_chunk *next = c->next;
        free(c);
        c = next;
    }
}

void ix_feed_clear(evb_store_t *st)
{
    pthread_mutex_lock(&st->feed_mu);
    s_free_chunks(st->feed_head);
    st->feed_head = st->feed_tail = NULL;
    st->feed_bytes = 0;
    pthread_mutex_unlock(&st->feed_mu);
}

/* Take the feed's chunks that start at from, up to max events and none
 * past head; *to becomes the last event taken. NULL when the feed does not
 * hold event from, or its chunk is over max: those events are read back,
 * and *to is cut before the feed's next chunk. */
static ix_chunk *s_feed_take(evb_store_t *st, uint64_t from, uint64_t head, size_t max,
                             uint64_t *to)
{
    pthread_mutex_lock(&st->feed_mu);
    ix_chunk *c, *took = NULL, **link = &took;
    while ((c = st->feed_head) != NULL && c->first_seq < from) { /* indexed */
        st->feed_head = c->next;
        st->feed_bytes -= c->bytes;
        free(c);
    }
    uint64_t next = from;
    if (c != NULL && c->first_seq > from && c->first_seq - 1 < *to) *to = c->first_seq - 1;
    while ((c = st->feed_head) != NULL && c->first_seq == next &&
           c->first_seq + c->n - 1 <= head && next - from + c->n <= max) {
        st->feed_head = c->next;
        st->feed_bytes -= c->bytes;
        c->next = NULL;
        *link = c;
        link = &c->next;
        next += c->n;
    }
    if (st->feed_head == NULL) st->feed_tail = NULL;
    pthread_mutex_unlock(&st->feed_mu);
    if (took != NULL) *to = next - 1;
    return took;
}

/* A step's id entries (id_acc, store_int.h) go into a batch in key order. */

/* Room for more entries in a; false (a unchanged) when out of memory. */
static bool s_ids_reserve(id_acc *a, size_t more)
{
    if (a->n + more <= a->cap) return true;
    size_t cap = a->cap ? 2 * a->cap : 1024;
    while (cap < a->n + more)
        cap *= 2;
    id_ent *v = realloc(a->v, cap * sizeof *v);
    if (v == NULL) return false;
    a->v = v;
    a->cap = cap;
    return true;
}

static uint32_t s_id_epoch(const evb_store_t *st, uint64_t seq)
{
    return st_ids_apart(st) ? ids_epoch(st->idb_bits, seq) : st_ix_apart(st) ? id_epoch(seq) : 0;
}

static void s_ids_add(const evb_store_t *st, id_acc *a, const evb_id *id, uint64_t seq)
{
    if (!s_ids_reserve(a, 1)) {
        a->oom = true;
        return;
    }
    a->v[a->n++] = (id_ent){s_id_epoch(st, seq), *id, seq};
}

int ix_acc_add(evb_store_t *st, const evb_id *id, uint64_t seq)
{
    if (seq <= st->acc_upto || seq <= atomic_load(&st->id_sealed)) return EVB_OK;
    s_ids_add(st, &st->ix_acc, id, seq);
    if (st->ix_acc.oom) return EVB_ENOMEM;
    st->acc_upto = seq;
    return EVB_OK;
}

static int s_cmp_ent(const void *x, const void *y)
{
    const id_ent *a = x, *b = y;
    if (a->epoch != b->epoch) return a->epoch < b->epoch ? -1 : 1;
    return memcmp(a->id.b, b->id.b, EVB_ID_LEN);
}

/* Byte pass of the sort key (s_sort_ents): 0..7 the id's bytes 7..0, 8..9
 * the epoch's (above lo) low bytes. */
static inline unsigned s_digit(const id_ent *e, int pass, uint32_t lo)
{
    if (pass < 8) return e->id.b[7 - pass];
    return ((e->epoch - lo) >> (8 * (pass - 8))) & 0xffu;
}

/* Sort a step's entries by key: a radix sort on the epoch and the id's first
 * 8 bytes (qsort's comparisons were a third of the indexer's samples), then
 * qsort within runs that tie on those (ids that share their first 8 bytes;
 * at worst all of them, as before). Falls back to qsort when out of memory
 * or when the epochs span more than 64 Ki. */
static void s_sort_ents(id_ent *v, size_t n)
{
    if (n < 2) return; /* v may be NULL then */
    if (n < 64) {
        qsort(v, n, sizeof *v, s_cmp_ent);
        return;
    }
    uint32_t lo = v[0].epoch, hi = v[0].epoch;
    for (size_t i = 1; i < n; i++) {
        if (v[i].epoch < lo) lo = v[i].epoch;
        if (v[i].epoch > hi) hi = v[i].epoch;
    }
    id_ent *tmp = hi - lo < 65536 ? malloc(n * sizeof *tmp) : NULL;
    if (tmp == NULL) {
        qsort(v, n, sizeof *v, s_cmp_ent);
        return;
    }
    /* Least significant digit first: the eight bytes of the id's first 8,
     * then the two low bytes of the epoch (its range is under 64 Ki); each
     * pass stable, and skipped when every entry has the same digit there. */
    id_ent *src = v, *dst = tmp;
    for (int pass = 0; pass < 10; pass++) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++)
            count[s_digit(&src[i], pass, lo) + 1]++;
        if (count[s_digit(&src[0], pass, lo) + 1] == n) continue;
        for (size_t d = 0; d < 256; d++)
            count[d + 1] += count[d];
        for (size_t i = 0; i < n; i++)
            dst[count[s_digit(&src[i], pass, lo)]++] = src[i];
        id_ent *t = src;
        src = dst;
        dst = t;
    }
    if (src != v) memcpy(v, src, n * sizeof *v);
    free(tmp);
    for (size_t i = 0, j; i < n; i = j) { /* runs that tie on the first 8 bytes */
        uint64_t k = be64_get(v[i].id.b);
        for (j = i + 1; j < n && v[j].epoch == v[i].epoch && be64_get(v[j].id.b) == k; j++)
            ;
        if (j - i > 1) qsort(v + i, j - i, sizeof *v, s_cmp_ent);
    }
}

/* Format 6 (FORMAT.md, "Id database"): the step's caller ids join the
 * epoch being gathered (st->ix_acc); an epoch that is over goes to the id
 * database whole, in key order, with the new seal in the same batch. With
 * nothing gathered the seal moves to the step's end. The id database is
 * written before the index (read-only opens take its view first). */
static int s_ids_seal(evb_store_t *st, id_acc *step, uint64_t to, evb_err *err)
{
    id_acc *acc = &st->ix_acc;
    uint64_t sealed = atomic_load(&st->id_sealed);
    if (!s_ids_reserve(acc, step->n))
        return evb_err_set(err, EVB_ENOMEM, "indexer: out of memory for %zu ids",
                           acc->n + step->n);
    for (size_t i = 0; i < step->n; i++)
        if (step->v[i].seq > sealed && step->v[i].seq > st->acc_upto)
            acc->v[acc->n++] = step->v[i];
    if (to > st->acc_upto) st->acc_upto = to;
    step->n = 0;
    uint64_t end = ((to + 1) >> st->idb_bits) << st->idb_bits; /* to + 1's epoch */
    uint64_t seal = sealed;
    size_t k = 0;
    if (end > 0 && end - 1 > sealed) { /* epochs are over: their ids go */
        seal = end - 1;
        s_sort_ents(acc->v, acc->n); /* by epoch first: theirs come first */
        while (k < acc->n && acc->v[k].seq <= seal)
            k++;
    }
    if (k == acc->n && to > seal) seal = to; /* nothing waits */
    if (seal == sealed) return EVB_OK;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    uint8_t key[ID_EPOCH_KEY_LEN], val[8];
    for (size_t i = 0; i < k; i++) {
        be64_put(val, acc->v[i].seq);
        leveldb_writebatch_put(wb, (const char *)key,
                               st_key_idb(st, key, &acc->v[i].id, acc->v[i].seq),
                               (const char *)val, 8);
    }
    be64_put(val, seal);
    leveldb_writebatch_put(wb, META_IDSEAL, strlen(META_IDSEAL), (const char *)val, 8);
    if (k > 0) CRASH_POINT(st, "ids.before_seal");
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    char *e = NULL;
    leveldb_write(st->idb, wo, wb, &e);
    leveldb_writeoptions_destroy(wo);
    leveldb_writebatch_destroy(wb);
    if (e != NULL) {
        atomic_store(&st->unwritable, true); /* as for the index (s_step_locked) */
        return st_ldb_err(st, e, "id database write", err);
    }
    if (k > 0) CRASH_POINT(st, "ids.after_seal");
    if (k > 0) { /* acc->v may be NULL when nothing was gathered */
        memmove(acc->v, acc->v + k, (acc->n - k) * sizeof *acc->v);
        acc->n -= k;
    }
    atomic_store(&st->id_sealed, seal);
    return EVB_OK;
}

static int s_ids_put(evb_store_t *st, leveldb_writebatch_t *wb, id_acc *a, uint64_t to,
                     evb_err *err)
{
    if (a->oom) return evb_err_set(err, EVB_ENOMEM, "indexer: out of memory");
    if (st_ids_apart(st)) return s_ids_seal(st, a, to, err);
    s_sort_ents(a->v, a->n);
    uint8_t key[ID_EPOCH_KEY_LEN], val[8];
    for (size_t i = 0; i < a->n; i++) {
        be64_put(val, a->v[i].seq);
        leveldb_writebatch_put(wb, (const char *)key,
                               st_key_id(st, key, &a->v[i].id, a->v[i].seq),
                               (const char *)val, 8);
    }
    a->n = 0;
    return EVB_OK;
}

/* The entries of the chunks' events (format 3 runs). */
static int s_gather_feed(const evb_store_t *st, leveldb_writebatch_t *wb, const ix_chunk *c,
                         run_acc *sr, run_acc *cr, cat_delta *cd, id_acc *ids,
                         uint64_t *new_streams, evb_err *err)
{
    for (; c != NULL; c = c->next) {
        uint64_t seq = c->first_seq;
        for (size_t i = 0; i < c->nruns; i++) {
            const ix_feed_run *r = &c->runs[i];
            const char *name = c->names + r->name_off;
            char cat[EVB_MAX_CATEGORY_LEN + 1];
            if (evb_stream_category(name, cat, err) != EVB_OK) return EVB_EINVAL;
            size_t cn = strlen(cat);
            s_run_add(wb, sr, K_STREAM, name, r->name_len, r->first_version, seq, r->count);
            s_run_add(wb, cr, K_CAT, cat, cn, seq, seq, r->count);
            if (r->first_version == 1) (*new_streams)++;
            hent *h = hmap_get(&cd->m, cat, cn);
            if (h == NULL && (h = hmap_put(&cd->m, cat, cn, 0, 0)) == NULL)
                return evb_err_set(err, EVB_ENOMEM, "indexer: out of memory");
            h->a = seq + r->count - 1;
            h->b += r->count;
            seq += r->count;
        }
        for (size_t i = 0; i < c->n; i++)
            if (!evb_id_is_zero(&c->ids[i])) /* zero: sealed, no entry */
                s_ids_add(st, ids, &c->ids[i], c->first_seq + i);
    }
    return EVB_OK;
}

/* The entries of events from .. to, read back from the log. */
static int s_gather_read(evb_store_t *st, leveldb_writebatch_t *wb, uint64_t from,
                         uint64_t to, run_acc *sr, run_acc *cr, cat_delta *cd,
                         id_acc *ids, uint64_t *new_streams, evb_err *err)
{
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    evb_event_t ev = {0};
    uint64_t expect = from;
    int rc = EVB_OK;
    uint8_t key[KEY_MAX], val[8];
    leveldb_iter_seek(it, (const char *)key, key_event(key, from));
    for (; expect <= to; leveldb_iter_next(it), expect++) {
        size_t kl, vl;
        if (!leveldb_iter_valid(it)) {
            rc = evb_err_set(err, EVB_ECORRUPT, "%s: indexer: event %llu is missing",
                             st->dir, (unsigned long long)expect);
            break;
        }
        const char *k = leveldb_iter_key(it, &kl);
        if (kl != 9 || k[0] != K_EVENT || be64_get(k + 1) != expect) {
            rc = evb_err_set(err, EVB_ECORRUPT, "%s: indexer: event %llu is missing",
                             st->dir, (unsigned long long)expect);
            break;
        }
        const char *v = leveldb_iter_value(it, &vl);
        if (evb_event_decode_into(v, vl, &ev, err) != EVB_OK) {
            rc = evb_err_set(err, EVB_ECORRUPT, "%s: indexer: event %llu: %.400s",
                             st->dir, (unsigned long long)expect, err ? err->msg : "");
            break;
        }
        size_t sn = strlen(ev.stream), cn = strlen(ev.category);
        be64_put(val, expect);
        if (st->ix_runs) {
            s_run_add(wb, sr, K_STREAM, ev.stream, sn, ev.version, expect, 1);
            s_run_add(wb, cr, K_CAT, ev.category, cn, expect, expect, 1);
        } else { /* format 1 and 2: an entry per event */
            leveldb_writebatch_put(wb, (const char *)key,
                                   key_name_num(key, K_STREAM, ev.stream, sn, ev.version),
                                   (const char *)val, 8);
            leveldb_writebatch_put(wb, (const char *)key,
                                   key_name_num(key, K_CAT, ev.category, cn, expect), "",
                                   0);
        }
        if (!st_id_sealed_at(st, &ev.id, expect)) s_ids_add(st, ids, &ev.id, expect);
        if (ev.version == 1) (*new_streams)++;
        hent *c = hmap_get(&cd->m, ev.category, cn);
        if (c == NULL && (c = hmap_put(&cd->m, ev.category, cn, 0, 0)) == NULL) {
            rc = evb_err_set(err, EVB_ENOMEM, "indexer: out of memory");
            break;
        }
        c->a = expect;
        c->b++;
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    leveldb_iter_destroy(it);
    if (e != NULL && rc == EVB_OK)
        rc = st_ldb_err(st, e, "indexer read", err);
    else if (e != NULL)
        leveldb_free(e);
    evb_event_clear(&ev);
    return rc;
}

/* One indexing step; caller holds ix_mu. */
static int s_step_locked(evb_store_t *st, size_t max_events, size_t *done, evb_err *err)
{
    *done = 0;
    uint64_t from = atomic_load(&st->indexed) + 1;
    uint64_t head = atomic_load(&st->head);
    if (from > head || max_events == 0) return EVB_OK;
    uint64_t to = head;
    if (to - from + 1 > max_events) to = from + max_events - 1;

    if (st->ix_wb == NULL)
        st->ix_wb = leveldb_writebatch_create(); /* reused: keeps its capacity */
    leveldb_writebatch_t *wb = st->ix_wb;
    cat_delta cd = {{0}};
    run_acc sr = {0}, cr = {0};
    uint64_t new_streams = 0;
    uint8_t key[KEY_MAX], val[8];
    ix_chunk *fed = s_feed_take(st, from, head, max_events, &to);
    id_acc ids = {0};
    int rc = fed != NULL
                 ? s_gather_feed(st, wb, fed, &sr, &cr, &cd, &ids, &new_streams, err)
                 : s_gather_read(st, wb, from, to, &sr, &cr, &cd, &ids, &new_streams, err);
    s_free_chunks(fed);
    if (rc == EVB_OK) rc = s_ids_put(st, wb, &ids, to, err);
    free(ids.v);
    s_run_put(wb, &sr, K_STREAM);
    s_run_put(wb, &cr, K_CAT);

    /* Per-category statistics: stored value + this step's delta. */
    for (size_t i = 0; rc == EVB_OK && i < cd.m.cap; i++) {
        hent *c = &cd.m.slots[i];
        if (c->hash == 0) continue;
        key[0] = K_CATSTAT;
        memcpy(key + 1, hent_key(c), c->klen);
        char *old;
        size_t ol;
        if ((rc = st_get(st, st->ix, NULL, key, 1 + c->klen, &old, &ol, err)) != EVB_OK)
            break;
        uint8_t stat[16];
        uint64_t count = c->b;
        if (old != NULL) {
            if (ol == 16) count += be64_get(old + 8);
            leveldb_free(old);
        }
        be64_put(stat, c->a);
        be64_put(stat + 8, count);
        leveldb_writebatch_put(wb, (const char *)key, 1 + c->klen, (const char *)stat,
                               16);
    }
    hmap_free(&cd.m);
    if (rc == EVB_OK) {
        uint64_t nstreams = atomic_load(&st->nstreams) + new_streams;
        be64_put(val, to);
        leveldb_writebatch_put(wb, META_IXPOS, strlen(META_IXPOS), (const char *)val, 8);
        be64_put(val, nstreams);
        leveldb_writebatch_put(wb, META_NSTREAMS, strlen(META_NSTREAMS),
                               (const char *)val, 8);
        CRASH_POINT(st, "index.before_write");
        /* Index entries need no fsync: they are derived, and LevelDB keeps
         * writes in order, so a lost index batch can only lose a suffix. */
        leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
        char *e = NULL;
        leveldb_write(st->ix, wo, wb, &e);
        leveldb_writeoptions_destroy(wo);
        if (e != NULL) {
            /* LevelDB refuses every later write to that database: the store
             * refuses appends too until it is reopened (disk full), as it
             * did when the indexes shared the events' database. */
            atomic_store(&st->unwritable, true);
            rc = st_ldb_err(st, e, "indexer write", err);
        } else {
            CRASH_POINT(st, "index.after_write");
            atomic_store(&st->nstreams, nstreams);
            atomic_store(&st->indexed, to);
            *done = (size_t)(to - from + 1);
        }
    }
    leveldb_writebatch_clear(wb);
    return rc;
}

int ix_step(evb_store_t *st, size_t max_events, size_t *done, evb_err *err)
{
    pthread_mutex_lock(&st->ix_mu);
    int rc = s_step_locked(st, max_events, done, err);
    pthread_mutex_unlock(&st->ix_mu);
    return rc;
}

/* The indexer yields to appends. Its thread runs at a lower priority (Linux
 * nice values are per thread), and while appends keep coming it waits until
 * IX_DEFER_LAG events are pending, so a burst is not slowed by indexing that
 * can be done after it; a quiet log is indexed within IX_IDLE_MS. Appends wait
 * for the indexer only past EVB_STORE_MAX_INDEX_LAG; evb_store_index_wait
 * asks for indexing now. */
static bool s_should_index(evb_store_t *st)
{
    uint64_t lag = atomic_load(&st->head) - atomic_load(&st->indexed);
    if (lag == 0) return false;
    if (lag >= IX_DEFER_LAG || st->ix_urgent) return true;
    return evb_now_us() - atomic_load(&st->last_append_us) >= IX_IDLE_MS * 1000;
}

static void *s_indexer(void *arg)
{
    evb_store_t *st = arg;
    bool failing = false;
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&st->mu);
    while (!st->stop) {
        if (failing || !s_should_index(st)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            if (failing) { /* retry a failed step once a second, not in a spin */
                ts.tv_sec += 1;
            } else {
                ts.tv_nsec += IX_IDLE_MS * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
            }
            pthread_cond_timedwait(&st->cv_work, &st->mu, &ts);
            failing = false;
            continue;
        }
        pthread_mutex_unlock(&st->mu);
        size_t done;
        evb_err e;
        int rc = ix_step(st, IX_STEP_EVENTS, &done, &e);
        pthread_mutex_lock(&st->mu);
        if (rc == EVB_OK) {
            st->ix_error[0] = '\0'; /* a passing failure must not fail waiters */
        } else {
            if (strcmp(st->ix_error, e.msg) != 0) {
                evb_log(EVB_LOG_ERROR, "%s", e.msg);
                snprintf(st->ix_error, sizeof st->ix_error, "%s", e.msg);
            }
            failing = true;
        }
        pthread_cond_broadcast(&st->cv_done);
    }
    pthread_cond_broadcast(&st->cv_done);
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

int ix_start(evb_store_t *st, evb_err *err)
{
    if (pthread_create(&st->ix_thread, NULL, s_indexer, st) != 0)
        return evb_err_set(err, EVB_ENOMEM, "%s: cannot start the indexer thread",
                           st->dir);
    st->ix_running = true;
    return EVB_OK;
}

void ix_stop(evb_store_t *st)
{
    if (!st->ix_running) return;
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_broadcast(&st->cv_work);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->ix_thread, NULL);
    st->ix_running = false;
}

bool evb_store_indexing(evb_store_t *st)
{
    if (!st->ix_running) return false;
    pthread_mutex_lock(&st->mu);
    bool ok = st->ix_error[0] == '\0';
    pthread_mutex_unlock(&st->mu);
    return ok;
}

void ix_kick(evb_store_t *st)
{
    atomic_store(&st->last_append_us, evb_now_us());
    if (!st->ix_running ||
        atomic_load(&st->head) - atomic_load(&st->indexed) < IX_DEFER_LAG)
        return;
    pthread_mutex_lock(&st->mu);
    pthread_cond_signal(&st->cv_work);
    pthread_mutex_unlock(&st->mu);
}

int evb_store_index_step(evb_store_t *st, size_t max_events, size_t *done, evb_err *err)
{
    size_t d = 0;
    if (st->read_only) {
        if (done) *done = 0;
        return evb_err_set(err, EVB_EINVAL, "%s: opened read-only; not indexing",
                           st->dir);
    }
    int rc = ix_step(st, max_events, &d, err);
    if (done) *done = d;
    return rc;
}

int evb_store_index_wait(evb_store_t *st, evb_err *err)
{
    if (st->read_only)
        return evb_err_set(err, EVB_EINVAL, "%s: opened read-only; not indexing",
                           st->dir);
    if (!st->ix_running) {
        while (atomic_load(&st->indexed) < atomic_load(&st->head)) {
            size_t done;
            int rc = ix_step(st, IX_STEP_EVENTS, &done, err);
            if (rc != EVB_OK) return rc;
        }
        return EVB_OK;
    }
    pthread_mutex_lock(&st->mu);
    st->ix_urgent = true;
    while (!st->stop && atomic_load(&st->indexed) < atomic_load(&st->head) &&
           st->ix_error[0] == '\0') {
        pthread_cond_signal(&st->cv_work);
        pthread_cond_wait(&st->cv_done, &st->mu);
    }
    st->ix_urgent = false;
    int rc = EVB_OK;
    if (atomic_load(&st->indexed) < atomic_load(&st->head))
        rc = evb_err_set(err, st->ix_error[0] ? EVB_ECORRUPT : EVB_ECLOSED,
                         "%s: indexer stopped at %llu: %s", st->dir,
                         (unsigned long long)atomic_load(&st->indexed),
                         st->ix_error[0] ? st->ix_error : "store closing");
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* Delete every key of db that starts with prefix. */
static int s_drop_prefix(evb_store_t *st, leveldb_t *db, char prefix, evb_err *err)
{
    leveldb_iterator_t *it = leveldb_create_iterator(db, st->ro);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    size_t n = 0;
    int rc = EVB_OK;
    char *e = NULL;
    for (leveldb_iter_seek(it, &prefix, 1); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl == 0 || k[0] != prefix) break;
        leveldb_writebatch_delete(wb, k, kl);
        if (++n % 10000 == 0) {
            leveldb_write(db, wo, wb, &e);
            leveldb_writebatch_clear(wb);
            if (e != NULL) break;
        }
    }
    if (e == NULL) leveldb_write(db, wo, wb, &e);
    if (e != NULL) rc = st_ldb_err(st, e, "dropping the indexes", err);
    leveldb_writeoptions_destroy(wo);
    leveldb_writebatch_destroy(wb);
    leveldb_iter_destroy(it);
    return rc;
}

int evb_store_reindex(evb_store_t *st, evb_err *err)
{
    if (st->read_only)
        return evb_err_set(err, EVB_EINVAL, "%s: opened read-only; not indexing",
                           st->dir);
    pthread_mutex_lock(&st->ix_mu);
    /* The position goes to 0 first: a crash half-way leaves a log that indexes
     * again from the start (entries rewritten are identical). */
    uint8_t zero[8] = {0};
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_writebatch_put(wb, META_IXPOS, strlen(META_IXPOS), (const char *)zero, 8);
    leveldb_writebatch_put(wb, META_NSTREAMS, strlen(META_NSTREAMS), (const char *)zero,
                           8);
    char *e = NULL;
    leveldb_write(st->ix, st->wo_sync, wb, &e);
    leveldb_writebatch_destroy(wb);
    int rc = EVB_OK;
    if (e != NULL) rc = st_ldb_err(st, e, "reindex", err);
    if (rc == EVB_OK) {
        atomic_store(&st->indexed, 0);
        atomic_store(&st->nstreams, 0);
    }
    /* The id database's seal too (its entries are dropped next): what the
     * steps below gather is sealed again from the start. */
    if (rc == EVB_OK && st->idb != NULL) {
        leveldb_put(st->idb, st->wo_sync, META_IDSEAL, strlen(META_IDSEAL),
                    (const char *)zero, 8, &e);
        if (e != NULL) {
            rc = st_ldb_err(st, e, "reindex", err);
        } else {
            atomic_store(&st->id_sealed, 0);
            st->ix_acc.n = 0;
            st->acc_upto = 0;
        }
    }
    if (rc == EVB_OK && st->idb != NULL) rc = s_drop_prefix(st, st->idb, K_IDE, err);
    const char prefixes[] = {K_STREAM, K_CAT, K_ID, K_IDE, K_CATSTAT};
    for (size_t i = 0; rc == EVB_OK && i < sizeof prefixes; i++)
        rc = s_drop_prefix(st, st->ix, prefixes[i], err);
    if (rc == EVB_OK) st->ix_old_ids = st->ix_old_b = false;
    /* Build again before returning: the owner's caches assume that whatever
     * they evicted is indexed, and the owner is here, not appending. */
    while (rc == EVB_OK && atomic_load(&st->indexed) < atomic_load(&st->head)) {
        size_t done;
        rc = s_step_locked(st, IX_STEP_EVENTS, &done, err);
    }
    /* The ids the steps gathered and did not seal may be ids the tail set
     * no longer held (they were in the index, or sealed further than now,
     * as an upgrade's seal in the middle of an epoch is): it takes them
     * again. */
    for (size_t i = 0; rc == EVB_OK && i < st->ix_acc.n; i++)
        if (idset_put(&st->tail_ids, &st->ix_acc.v[i].id, st->ix_acc.v[i].seq,
                      st_id_floor(st)) != 0)
            rc = evb_err_set(err, EVB_ENOMEM, "%s: reindex: out of memory", st->dir);
    /* Half done, lookups could miss ids: no appends until a reopen, which
     * reads the log again from the position the failure left. */
    if (rc != EVB_OK) atomic_store(&st->unwritable, true);
    pthread_mutex_unlock(&st->ix_mu);
    return rc;
}

/* ---- categories ---- */

static int s_cmp_cat(const void *a, const void *b)
{
    const evb_category_info *x = a, *y = b;
    return strcmp(x->name, y->name);
}

int evb_store_categories(evb_store_t *st, evb_category_fn fn, void *ctx, evb_err *err)
{
    size_t n = st->cats.len, k = 0;
    if (n == 0) return EVB_OK;
    evb_category_info *arr = calloc(n, sizeof *arr);
    char(*names)[EVB_MAX_CATEGORY_LEN + 1] = calloc(n, sizeof *names);
    if (arr == NULL || names == NULL) {
        free(arr);
        free(names);
        return evb_err_set(err, EVB_ENOMEM, "out of memory listing categories");
    }
    for (size_t i = 0; i < st->cats.cap && k < n; i++) {
        const hent *c = &st->cats.slots[i];
        if (c->hash == 0) continue;
        size_t l = c->klen > EVB_MAX_CATEGORY_LEN ? EVB_MAX_CATEGORY_LEN : c->klen;
        memcpy(names[k], hent_key(c), l);
        names[k][l] = '\0';
        arr[k] = (evb_category_info){names[k], c->a, c->b};
        k++;
    }
    qsort(arr, k, sizeof *arr, s_cmp_cat);
    int rc = EVB_OK;
    for (size_t i = 0; i < k && rc == EVB_OK; i++)
        rc = fn(&arr[i], ctx);
    free(arr);
    free(names);
    return rc;
}

int evb_store_category_head(evb_store_t *st, const char *category, uint64_t *head,
                            evb_err *err)
{
    int rc = evb_check_category(category, err);
    if (rc != EVB_OK) return rc;
    const hent *c = hmap_get(&st->cats, category, strlen(category));
    *head = c ? c->a : 0;
    return EVB_OK;
}
