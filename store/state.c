/*
 * state.c: the store's in-memory state, which lets an append check expected
 * versions and duplicate ids without reading LevelDB.
 *
 * Key decisions (measured figures and reasons in store/FORMAT.md):
 *  - Expected versions come from an in-memory cache of stream versions. An
 *    entry may be evicted only once the indexer covers its last event, so a
 *    miss is always answered by the stream index. The cache is swept, not
 *    LRU-ordered: simple, and bounded by the indexer's lag.
 *  - Duplicate ids: ids the store makes are sealed (idseal.c): a lookup
 *    deciphers the id and reads that one event. Other ids: a Bloom filter
 *    of every caller-given id, and only when it says "maybe" an exact map
 *    of those the indexer may not have covered yet (swept the same way),
 *    then the id index. A new random id costs one filter probe and no
 *    LevelDB read.
 *  - The owner thread alone reads and writes this state (the indexer only
 *    moves st->indexed forward), so none of it takes a lock.
 */
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- Bloom filter ---- */

/* A blocked Bloom filter: the k bits of an id sit in one 512-bit block (one
 * cache line), so adding or testing an id costs one cache miss a layer, not
 * k. 16 bits per id, k = 8, layers growing 4x: 0.22% false "maybe" at 10 M
 * ids in 3 layers (FORMAT.md, "Append path"). */
#define BLOOM_K 8

static void s_bloom_hashes(const evb_id *id, uint64_t *h1, uint64_t *h2)
{
    uint64_t a, b;
    memcpy(&a, id->b, 8);
    memcpy(&b, id->b + 8, 8);
    *h1 = st_mix64(a ^ st_mix64(b));
    *h2 = st_mix64(b + 0x9e3779b97f4a7c15ull);
}

#define BLOOM_BITS_PER_ID 16

/* The bit in the block of the i-th probe: 9 bits of h2 for the first seven,
 * then of h1's upper half (its low bits chose the block). */
static inline unsigned s_probe(uint64_t h1, uint64_t h2, int i)
{
    return (unsigned)(i < 7 ? h2 >> (9 * i) : h1 >> (32 + 9 * (i - 7))) & 511u;
}
#define BLOOM_MIN_BITS (1ull << 23)
#define BLOOM_MAX_BITS (1ull << 29) /* 64 MiB a layer */

static int s_bloom_layer(bloom *bf, uint64_t nbits)
{
    uint64_t *bits = calloc(nbits / 64, sizeof(uint64_t));
    if (bits == NULL) return -1;
    bf->bits[bf->nlayers] = bits;
    bf->nbits[bf->nlayers] = nbits;
    bf->nlayers++;
    bf->added = 0;
    return 0;
}

int st_bloom_init(bloom *bf, uint64_t n)
{
    memset(bf, 0, sizeof *bf);
    uint64_t want = n * BLOOM_BITS_PER_ID, nbits = BLOOM_MIN_BITS;
    while (nbits < want && nbits < BLOOM_MAX_BITS)
        nbits <<= 1;
    return s_bloom_layer(bf, nbits);
}

void st_bloom_free(bloom *bf)
{
    for (unsigned i = 0; i < bf->nlayers; i++)
        free(bf->bits[i]);
    memset(bf, 0, sizeof *bf);
}

void st_bloom_add(bloom *bf, const evb_id *id)
{
    if (bf->nlayers == 0) return;
    unsigned top = bf->nlayers - 1;
    if (bf->added >= bf->nbits[top] / BLOOM_BITS_PER_ID &&
        bf->nlayers < ST_BLOOM_LAYERS) {
        uint64_t nbits =
            bf->nbits[top] < BLOOM_MAX_BITS / 4 ? bf->nbits[top] * 4 : BLOOM_MAX_BITS;
        /* Out of memory: the full layer takes more ids (more false
         * positives, each one index lookup), never a wrong answer. */
        if (s_bloom_layer(bf, nbits) == 0) top++;
    }
    uint64_t h1, h2;
    s_bloom_hashes(id, &h1, &h2);
    uint64_t *blk = bf->bits[top] + ((h1 & (bf->nbits[top] / 512 - 1)) * 8);
    for (int i = 0; i < BLOOM_K; i++) {
        unsigned bit = s_probe(h1, h2, i);
        blk[bit >> 6] |= 1ull << (bit & 63);
    }
    bf->added++;
}

static bool s_bloom_maybe(const bloom *bf, const evb_id *id)
{
    if (bf->nlayers == 0) return true;
    uint64_t h1, h2;
    s_bloom_hashes(id, &h1, &h2);
    for (unsigned l = 0; l < bf->nlayers; l++) {
        const uint64_t *blk = bf->bits[l] + ((h1 & (bf->nbits[l] / 512 - 1)) * 8);
        bool all = true;
        for (int i = 0; all && i < BLOOM_K; i++) {
            unsigned bit = s_probe(h1, h2, i);
            all = (blk[bit >> 6] & (1ull << (bit & 63))) != 0;
        }
        if (all) return true;
    }
    return false;
}

void st_id_prefetch(const evb_store_t *st, const evb_id *id, bool add)
{
    const bloom *bf = &st->ids;
    if (bf->nlayers == 0) return;
    uint64_t h1, h2;
    s_bloom_hashes(id, &h1, &h2);
    for (unsigned l = add ? bf->nlayers - 1 : 0; l < bf->nlayers; l++)
        __builtin_prefetch(bf->bits[l] + ((h1 & (bf->nbits[l] / 512 - 1)) * 8));
    if (add) idset_prefetch(&st->tail_ids, id);
}

/* ---- in-memory state ---- */

static bool s_keep_unindexed(const hent *e, void *ctx)
{
    return e->b > *(const uint64_t *)ctx;
}

/* Drop cached entries the indexes now cover, when the maps grew large. */
void st_sweep(evb_store_t *st)
{
    if (st->streams.len <= st->stream_cache_max || st->streams.len <= st->sweep_at) return;
    uint64_t ix = atomic_load(&st->indexed);
    (void)hmap_filter(&st->streams, s_keep_unindexed, &ix);
    /* What is left is unindexed: sweeping again before the map has grown
     * well past it would rebuild the table on every append to keep the same
     * entries (a long indexer lag, a restart's unindexed tail). */
    st->sweep_at = 2 * st->streams.len;
}

/* Record that stream reached version at seq, adding count events to its
 * category. */
int st_note_stream(evb_store_t *st, const char *stream, uint64_t version, uint64_t seq,
                   const char *cat, uint64_t count)
{
    if (hmap_put(&st->streams, stream, strlen(stream), version, seq) == NULL)
        return EVB_ENOMEM;
    size_t cat_len = strlen(cat);
    hent *c = hmap_get(&st->cats, cat, cat_len);
    if (c == NULL) c = hmap_put(&st->cats, cat, cat_len, 0, 0);
    if (c == NULL) return EVB_ENOMEM;
    if (seq > c->a) c->a = seq;
    c->b += count;
    return EVB_OK;
}

int st_note_tail_id(evb_store_t *st, const evb_id *id, uint64_t seq)
{
    if (st_id_sealed_at(st, id, seq)) return EVB_OK;
    if (idset_put(&st->tail_ids, id, seq, st_id_floor(st)) != 0) return EVB_ENOMEM;
    st_bloom_add(&st->ids, id);
    st_note_caller_id(st, id);
    return EVB_OK;
}

/* Record an event the log holds (the unindexed tail, at open). */
int st_note_event(evb_store_t *st, const evb_id *id, const char *stream, uint64_t version,
                  uint64_t seq, const char *cat)
{
    int rc = st_note_tail_id(st, id, seq);
    return rc != EVB_OK ? rc : st_note_stream(st, stream, version, seq, cat, 1);
}

/* Current version and last seq of stream from memory or the stream index. */
int st_stream_lookup(evb_store_t *st, const char *stream, uint64_t *version,
                     uint64_t *last_seq, evb_err *err)
{
    size_t n = strlen(stream);
    hent *e = hmap_get(&st->streams, stream, n);
    if (e != NULL) {
        *version = e->a;
        *last_seq = e->b;
        return EVB_OK;
    }
    /* Not cached: every event of this stream is indexed (see st_sweep). */
    leveldb_iterator_t *it = leveldb_create_iterator(st->ix, st->ro);
    *version = 0;
    *last_seq = 0;
    int got = st_stream_last(it, stream, n, version, last_seq);
    char *ie = NULL;
    leveldb_iter_get_error(it, &ie);
    leveldb_iter_destroy(it);
    if (ie != NULL) return st_ldb_err(st, ie, "stream index", err);
    if (got < 0) /* not version 0: appending would reuse versions */
        return evb_err_set(err, EVB_ECORRUPT,
                           "%s: the last stream index entry of %s is malformed", st->dir,
                           stream);
    if (*version > 0 && hmap_put(&st->streams, stream, n, *version, *last_seq) == NULL)
        return evb_err_set(err, EVB_ENOMEM, "out of memory caching stream versions");
    st_sweep(st);
    return EVB_OK;
}

/* The seq of the event whose sealed id this is, or 0 (idseal.c). */
static int s_sealed_lookup(evb_store_t *st, const evb_id *id, uint64_t *seq, evb_err *err)
{
    *seq = 0;
    uint64_t at = st_id_unseal(st, id);
    if (at == 0 || at > atomic_load(&st->head)) return EVB_OK;
    uint8_t key[9];
    char *v;
    size_t vl;
    int rc = st_get(st, st->db, NULL, key, key_event(key, at), &v, &vl, err);
    if (rc != EVB_OK || v == NULL) return rc; /* a hole: verify's business */
    /* An event that does not decode is not this id's (most ids that get here
     * are not sealed ids of this log): reads and verify report the damage. */
    evb_event_t ev = {0};
    evb_err derr;
    if (evb_event_decode_into(v, vl, &ev, &derr) == EVB_OK &&
        memcmp(ev.id.b, id->b, EVB_ID_LEN) == 0)
        *seq = at;
    leveldb_free(v);
    evb_event_clear(&ev);
    return EVB_OK;
}

/* The seq an id index entry in db gives, or 0 when there is none. */
static int s_id_get(evb_store_t *st, leveldb_t *db, const uint8_t *key, size_t kl,
                    uint64_t *seq, evb_err *err)
{
    char *v;
    size_t vl;
    *seq = 0;
    int rc = st_get(st, db, NULL, key, kl, &v, &vl, err);
    if (rc != EVB_OK || v == NULL) return rc;
    if (vl == 8) *seq = be64_get(v);
    leveldb_free(v);
    if (*seq == 0)
        return evb_err_set(err, EVB_ECORRUPT, "%s: id index entry is not 8 bytes", st->dir);
    return EVB_OK;
}

/* The seq of the event from..to (at most) with this id, or 0: read from the
 * log (only after the tail set ran out of memory). */
static int s_scan_for_id(evb_store_t *st, const evb_id *id, uint64_t from, uint64_t to,
                         uint64_t *seq, evb_err *err)
{
    *seq = 0;
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    uint8_t key[9];
    evb_event_t ev = {0};
    for (leveldb_iter_seek(it, (const char *)key, key_event(key, from));
         *seq == 0 && leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl != 9 || k[0] != K_EVENT || be64_get(k + 1) > to) break;
        const char *v = leveldb_iter_value(it, &vl);
        evb_err derr;
        if (evb_event_decode_into(v, vl, &ev, &derr) == EVB_OK &&
            memcmp(ev.id.b, id->b, EVB_ID_LEN) == 0)
            *seq = be64_get(k + 1);
    }
    evb_event_clear(&ev);
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    leveldb_iter_destroy(it);
    return e != NULL ? st_ldb_err(st, e, "looking up an id in the log", err) : EVB_OK;
}

/* Position of an id: 0 when not stored. */
int st_id_lookup(evb_store_t *st, const evb_id *id, uint64_t *seq, evb_err *err)
{
    *seq = 0;
    int rc = s_sealed_lookup(st, id, seq, err);
    if (rc != EVB_OK || *seq != 0) return rc;
    /* The filter holds every id of the tail set too: a new id costs it
     * alone (one cache miss). */
    if (!s_bloom_maybe(&st->ids, id)) return EVB_OK;
    if ((*seq = idset_get(&st->tail_ids, id)) != 0) return EVB_OK;
    /* An id the tail set had no memory for may be in no index yet: the
     * log's events after the id database's seal are read (that database
     * takes an epoch only once it is over), or the index must first cover
     * it. */
    if (st_ids_apart(st) && st->lost_upto > atomic_load(&st->id_sealed)) {
        rc = s_scan_for_id(st, id, atomic_load(&st->id_sealed) + 1, st->lost_upto, seq,
                           err);
        if (rc != EVB_OK || *seq != 0) return rc;
    } else if (st->lost_upto > atomic_load(&st->indexed)) {
        rc = evb_store_index_wait(st, err);
        if (rc != EVB_OK) {
            char hex[EVB_ID_HEX_LEN + 1], why[EVB_ERR_MSG_LEN];
            evb_id_to_hex(id, hex);
            snprintf(why, sizeof why, "%s", err ? err->msg : "");
            return evb_err_set(err, rc, "looking up id %s: %.400s", hex, why);
        }
    }
    uint8_t key[ID_EPOCH_KEY_LEN];
    /* The epoch is not known: ask each, the newest first (a retry is most
     * likely of a recent event). The filter sends few ids here (FORMAT.md,
     * "Id epochs", "Id database"). */
    uint64_t sealed = atomic_load(&st->id_sealed);
    if (st->idb != NULL && sealed > 0) {
        for (uint32_t e = ids_epoch(st->idb_bits, sealed);; e--) {
            if ((rc = s_id_get(st, st->idb, key, key_id_epoch(key, e, id), seq, err)) !=
                    EVB_OK ||
                *seq != 0)
                return rc;
            if (e == 0) break;
        }
    }
    if (!st_ix_apart(st) || st->ix_old_ids) { /* format 1, or entries from before epochs */
        if ((rc = s_id_get(st, st->ix, key, key_id(key, id), seq, err)) != EVB_OK ||
            *seq != 0)
            return rc;
        if (!st_ix_apart(st)) return EVB_OK;
    }
    if (st_ids_apart(st) && !st->ix_old_b) return EVB_OK;
    for (uint32_t e = id_epoch(atomic_load(&st->head));; e--) {
        if ((rc = s_id_get(st, st->ix, key, key_id_epoch(key, e, id), seq, err)) !=
                EVB_OK ||
            *seq != 0 || e == 0)
            return rc;
    }
}

/* Is a sealed id the store just made new? Only a caller can have stored it
 * before (see idseal.c): the filter of caller ids answers, and a "maybe"
 * looks it up. */
int st_id_fresh(evb_store_t *st, const evb_id *id, bool *fresh, evb_err *err)
{
    *fresh = true;
    if (st->ids.nlayers == 1 && st->ids.added == 0)
        return EVB_OK; /* the log holds no caller id: the filter is empty */
    if (!s_bloom_maybe(&st->ids, id)) return EVB_OK;
    uint64_t seq;
    int rc = st_id_lookup(st, id, &seq, err);
    *fresh = rc == EVB_OK && seq == 0;
    return rc;
}

int evb_store_stream_version(evb_store_t *st, const char *stream, uint64_t *version,
                             evb_err *err)
{
    int rc = evb_check_stream(stream, err);
    if (rc != EVB_OK) return rc;
    uint64_t last;
    return st_stream_lookup(st, stream, version, &last, err);
}

int evb_store_find_id(evb_store_t *st, const evb_id *id, uint64_t *seq, evb_err *err)
{
    int rc = st_id_lookup(st, id, seq, err);
    if (rc == EVB_OK && *seq == 0) {
        char hex[EVB_ID_HEX_LEN + 1];
        evb_id_to_hex(id, hex);
        return evb_err_set(err, EVB_ENOTFOUND, "%s: no event with id %s", st->dir, hex);
    }
    return rc;
}
