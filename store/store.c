/*
 * store.c: opening a log, appending, transactions, durability, consumer
 * key/values, checkpoints and snapshots.
 *
 * Key decisions (measured figures and reasons in store/FORMAT.md):
 *  - An append's WriteBatch holds the encoded events under their sequence and
 *    nothing else: the head is the last event key, found by one seek at open.
 *    Index entries are written behind by the indexer (indexer.c).
 *  - Expected versions come from an in-memory cache of stream versions. An
 *    entry may be evicted only once the indexer covers its last event, so a
 *    miss is always answered by the stream index. The cache is swept, not
 *    LRU-ordered: simple, and bounded by the indexer's lag.
 *  - Duplicate ids: an exact map of the ids the indexer may not have covered
 *    yet (swept the same way), then a Bloom filter of every id, then the id
 *    index only when the filter says "maybe". A new random id costs two hash
 *    probes and no LevelDB read.
 *  - Every append is a transaction with one append in it: one code path for
 *    plain appends and for consumers that commit effects with checkpoints.
 */
#include "store_int.h"
#include "codec_int.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

#ifdef EVB_CRASH_POINTS
void evb_crash_point(evb_store_t *st, const char *name)
{
    if (st->crash_point == NULL || strcmp(st->crash_point, name) != 0) return;
    if (atomic_fetch_add(&st->crash_hits, 1) + 1 == st->crash_after) raise(SIGKILL);
}
#endif

int st_ldb_err(evb_store_t *st, char *ldb_err, const char *what, evb_err *err)
{
    int code = EVB_EIO;
    if (strstr(ldb_err, "Corruption") != NULL) code = EVB_ECORRUPT;
    evb_err_set(err, code, "%s: %s: %s", st->dir, what, ldb_err);
    leveldb_free(ldb_err);
    return code;
}

int st_get(evb_store_t *st, const leveldb_readoptions_t *ro, const void *key, size_t klen,
           char **val, size_t *vlen, evb_err *err)
{
    *val = NULL;
    if (st->db == NULL)
        return evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)", st->dir);
    char *e = NULL;
    *val = leveldb_get(st->db, ro ? ro : st->ro, key, klen, vlen, &e);
    if (e != NULL) return st_ldb_err(st, e, "read", err);
    return EVB_OK;
}

bool st_peek_stream(const void *buf, size_t len, const char **stream, size_t *slen)
{
    /* [ver, id(bin16), service(str), log_id(bin16), seq, stream, ...]: the
     * fixed-shape prefix is short; read it with the bounded reader's rules. */
    const uint8_t *p = buf, *end = p + len;
    if (len < 3 || p[0] != 0xdc || p[1] != 0 || p[2] != 17) /* array16 of 17 */
        return false;
    p += 3;
    if (p >= end || p[0] != 0x01) return false;
    p++;
    if (end - p < 18 || p[0] != 0xc4 || p[1] != 16) return false;
    p += 18;
    size_t n;
    if (p >= end) return false;
    if ((p[0] & 0xe0) == 0xa0) {
        n = p[0] & 0x1f;
        p += 1;
    } else if (p[0] == 0xd9 && end - p >= 2) {
        n = p[1];
        p += 2;
    } else {
        return false;
    }
    if ((size_t)(end - p) < n + 18) return false;
    p += n;
    if (p[0] != 0xc4 || p[1] != 16) return false;
    p += 18;
    if (p >= end) return false;
    if (p[0] <= 0x7f)
        p += 1;
    else if (p[0] >= 0xcc && p[0] <= 0xcf)
        p += 1 + (1u << (p[0] - 0xcc));
    else
        return false;
    if (p >= end) return false;
    if ((p[0] & 0xe0) == 0xa0) {
        n = p[0] & 0x1f;
        p += 1;
    } else if (p[0] == 0xd9 && end - p >= 2) {
        n = p[1];
        p += 2;
    } else {
        return false;
    }
    if ((size_t)(end - p) < n) return false;
    *stream = (const char *)p;
    *slen = n;
    return true;
}

/* ---- Bloom filter ---- */

static uint64_t s_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* A blocked Bloom filter: the k bits of an id sit in one 512-bit block (one
 * cache line), so adding or testing an id costs one cache miss, not k. With
 * 12 bits per id and k = 6 the false-positive rate stays near 0.5%. */
#define BLOOM_K 6

static void s_bloom_hashes(const evb_id *id, uint64_t *h1, uint64_t *h2)
{
    uint64_t a, b;
    memcpy(&a, id->b, 8);
    memcpy(&b, id->b + 8, 8);
    *h1 = s_mix(a ^ s_mix(b));
    *h2 = s_mix(b + 0x9e3779b97f4a7c15ull);
}

static void s_bloom_add(bloom *bf, const evb_id *id)
{
    if (bf->bits == NULL) return;
    uint64_t h1, h2;
    s_bloom_hashes(id, &h1, &h2);
    uint64_t *blk = bf->bits + ((h1 & (bf->nbits / 512 - 1)) * 8);
    for (int i = 0; i < BLOOM_K; i++) {
        unsigned bit = (unsigned)(h2 >> (9 * i)) & 511u;
        blk[bit >> 6] |= 1ull << (bit & 63);
    }
}

static bool s_bloom_maybe(const bloom *bf, const evb_id *id)
{
    if (bf->bits == NULL) return true;
    uint64_t h1, h2;
    s_bloom_hashes(id, &h1, &h2);
    const uint64_t *blk = bf->bits + ((h1 & (bf->nbits / 512 - 1)) * 8);
    for (int i = 0; i < BLOOM_K; i++) {
        unsigned bit = (unsigned)(h2 >> (9 * i)) & 511u;
        if (!(blk[bit >> 6] & (1ull << (bit & 63)))) return false;
    }
    return true;
}

/* ---- in-memory state ---- */

static bool s_keep_unindexed(const hent *e, void *ctx)
{
    return e->b > *(const uint64_t *)ctx;
}

/* Drop cached entries the indexes now cover, when the maps grew large. */
static void s_sweep(evb_store_t *st)
{
    uint64_t ix = atomic_load(&st->indexed);
    if (st->streams.len > st->stream_cache_max)
        (void)hmap_filter(&st->streams, s_keep_unindexed, &ix);
}

/* Record that stream reached version at seq, adding count events to its
 * category. */
static int s_note_stream(evb_store_t *st, const char *stream, uint64_t version,
                         uint64_t seq, const char *cat, uint64_t count)
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

/* Record an event the log holds (the unindexed tail, at open). */
static int s_note_event(evb_store_t *st, const evb_id *id, const char *stream,
                        uint64_t version, uint64_t seq, const char *cat)
{
    if (idset_put(&st->tail_ids, id, seq, atomic_load(&st->indexed)) != 0)
        return EVB_ENOMEM;
    s_bloom_add(&st->ids, id);
    return s_note_stream(st, stream, version, seq, cat, 1);
}

/* Current version and last seq of stream from memory or the stream index. */
static int s_stream_lookup(evb_store_t *st, const char *stream, uint64_t *version,
                           uint64_t *last_seq, evb_err *err)
{
    size_t n = strlen(stream);
    hent *e = hmap_get(&st->streams, stream, n);
    if (e != NULL) {
        *version = e->a;
        *last_seq = e->b;
        return EVB_OK;
    }
    /* Not cached: every event of this stream is indexed (see s_sweep). */
    uint8_t key[KEY_MAX];
    size_t klen = key_name_num(key, K_STREAM, stream, n, UINT64_MAX);
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    leveldb_iter_seek(it, (const char *)key, klen);
    if (leveldb_iter_valid(it))
        leveldb_iter_prev(it);
    else
        leveldb_iter_seek_to_last(it);
    *version = 0;
    *last_seq = 0;
    if (leveldb_iter_valid(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        const char *v = leveldb_iter_value(it, &vl);
        if (kl == klen && memcmp(k, key, 2 + n) == 0 && vl == 8) {
            *version = be64_get(k + 2 + n);
            *last_seq = be64_get(v);
        }
    }
    char *ie = NULL;
    leveldb_iter_get_error(it, &ie);
    leveldb_iter_destroy(it);
    if (ie != NULL) return st_ldb_err(st, ie, "stream index", err);
    if (*version > 0 && hmap_put(&st->streams, stream, n, *version, *last_seq) == NULL)
        return evb_err_set(err, EVB_ENOMEM, "out of memory caching stream versions");
    s_sweep(st);
    return EVB_OK;
}

/* Position of an id: 0 when not stored. */
static int s_id_lookup(evb_store_t *st, const evb_id *id, uint64_t *seq, evb_err *err)
{
    *seq = 0;
    if ((*seq = idset_get(&st->tail_ids, id)) != 0) return EVB_OK;
    if (!s_bloom_maybe(&st->ids, id)) return EVB_OK;
    uint8_t key[1 + EVB_ID_LEN];
    char *v;
    size_t vl;
    int rc = st_get(st, NULL, key, key_id(key, id), &v, &vl, err);
    if (rc != EVB_OK) return rc;
    if (v != NULL) {
        if (vl == 8) *seq = be64_get(v);
        leveldb_free(v);
        if (*seq == 0)
            return evb_err_set(err, EVB_ECORRUPT, "%s: id index entry is not 8 bytes",
                               st->dir);
    }
    return EVB_OK;
}

/* ---- open ---- */

static int s_dir_state(const char *dir, bool *exists, bool *empty, bool *has_current,
                       evb_err *err)
{
    struct stat sb;
    *exists = *empty = *has_current = false;
    if (stat(dir, &sb) != 0) {
        if (errno == ENOENT) return EVB_OK;
        return evb_err_set(err, EVB_EIO, "%s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return evb_err_set(err, EVB_EFORMAT, "%s: not a directory, so not an evbus log",
                           dir);
    *exists = true;
    DIR *d = opendir(dir);
    if (d == NULL) return evb_err_set(err, EVB_EIO, "%s: %s", dir, strerror(errno));
    *empty = true;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (strcmp(de->d_name, "CURRENT") == 0) *has_current = true;
        /* Files LevelDB makes before CURRENT exists: a creation that was
         * killed half-way leaves only these, and is not someone else's data. */
        const char *n = de->d_name;
        size_t digits = strspn(n, "0123456789");
        bool numbered =
            digits == 6 && (strcmp(n + 6, ".log") == 0 || strcmp(n + 6, ".dbtmp") == 0);
        bool leveldb_start = strcmp(n, "LOCK") == 0 || strcmp(n, "LOG") == 0 ||
                             strcmp(n, "LOG.old") == 0 || numbered ||
                             (strncmp(n, "MANIFEST-", 9) == 0 &&
                              strspn(n + 9, "0123456789") == strlen(n + 9));
        if (!leveldb_start) *empty = false;
    }
    closedir(d);
    return EVB_OK;
}

static int s_open_db(evb_store_t *st, bool create, evb_err *err)
{
    char *e = NULL;
    leveldb_options_set_create_if_missing(st->options, create);
    st->db = leveldb_open(st->options, st->dir, &e);
    if (e == NULL) return EVB_OK;
    int rc;
    if (strstr(e, "lock") != NULL || strstr(e, "LOCK") != NULL)
        rc = evb_err_set(err, EVB_ELOCKED,
                         "log is in use by another process: %s (LevelDB: %s); stop the "
                         "service that owns it, or read it through the bus",
                         st->dir, e);
    else if (strstr(e, "Corruption") != NULL)
        rc = evb_err_set(err, EVB_ECORRUPT, "%s: LevelDB reports corruption: %s", st->dir,
                         e);
    else
        rc = evb_err_set(err, EVB_EIO, "%s: cannot open LevelDB: %s", st->dir, e);
    leveldb_free(e);
    return rc;
}

/* Write the metadata of a new log: format, log id, service, indexer at 0. */
static int s_init_meta(evb_store_t *st, const char *service, evb_err *err)
{
    int rc = evb_id_random(&st->log_id, err);
    if (rc != EVB_OK) return rc;
    uint8_t fmt[4] = {0, 0, 0, EVB_STORE_FORMAT};
    uint8_t zero[8] = {0};
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_writebatch_put(wb, META_FORMAT, strlen(META_FORMAT), (const char *)fmt, 4);
    leveldb_writebatch_put(wb, META_LOGID, strlen(META_LOGID), (const char *)st->log_id.b,
                           EVB_ID_LEN);
    leveldb_writebatch_put(wb, META_SERVICE, strlen(META_SERVICE), service,
                           strlen(service));
    leveldb_writebatch_put(wb, META_IXPOS, strlen(META_IXPOS), (const char *)zero, 8);
    leveldb_writebatch_put(wb, META_NSTREAMS, strlen(META_NSTREAMS), (const char *)zero,
                           8);
    char *e = NULL;
    leveldb_write(st->db, st->wo_sync, wb, &e);
    leveldb_writebatch_destroy(wb);
    if (e != NULL) return st_ldb_err(st, e, "writing the new log's metadata", err);
    st->format = EVB_STORE_FORMAT;
    snprintf(st->service, sizeof st->service, "%s", service);
    return EVB_OK;
}

static int s_meta_u64(evb_store_t *st, const char *name, uint64_t *out, evb_err *err)
{
    char *v;
    size_t vl;
    int rc = st_get(st, NULL, name, strlen(name), &v, &vl, err);
    if (rc != EVB_OK) return rc;
    *out = 0;
    if (v == NULL) return EVB_OK;
    bool ok = (vl == 8);
    if (ok) *out = be64_get(v);
    leveldb_free(v);
    if (!ok)
        return evb_err_set(err, EVB_ECORRUPT, "%s: metadata %s is not 8 bytes", st->dir,
                           name + 1);
    return EVB_OK;
}

static bool s_db_is_empty(evb_store_t *st)
{
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    leveldb_iter_seek_to_first(it);
    bool empty = !leveldb_iter_valid(it);
    leveldb_iter_destroy(it);
    return empty;
}

static int s_load_meta(evb_store_t *st, evb_err *err)
{
    char *v;
    size_t vl;
    int rc = st_get(st, NULL, META_FORMAT, strlen(META_FORMAT), &v, &vl, err);
    if (rc != EVB_OK) return rc;
    if (v == NULL) {
        if (s_db_is_empty(st))
            return EVB_ENOTFOUND; /* a creation killed before its metadata */
        return evb_err_set(
            err, EVB_EFORMAT,
            "%s: a LevelDB database but not an evbus log (no format record)", st->dir);
    }
    if (vl != 4) {
        leveldb_free(v);
        return evb_err_set(err, EVB_ECORRUPT, "%s: format record is %zu bytes, not 4",
                           st->dir, vl);
    }
    st->format =
        (uint32_t)(be64_get((const char[8]){0, 0, 0, 0, v[0], v[1], v[2], v[3]}));
    leveldb_free(v);
    if (st->format > EVB_STORE_FORMAT)
        return evb_err_set(err, EVB_EFORMAT,
                           "%s: log format %u is newer than this evbus supports (%u); "
                           "use a newer evbus",
                           st->dir, st->format, EVB_STORE_FORMAT);
    if (st->format == 0)
        return evb_err_set(err, EVB_ECORRUPT, "%s: format record says 0", st->dir);
    if ((rc = st_get(st, NULL, META_LOGID, strlen(META_LOGID), &v, &vl, err)) != EVB_OK)
        return rc;
    if (v == NULL || vl != EVB_ID_LEN) {
        if (v) leveldb_free(v);
        return evb_err_set(err, EVB_ECORRUPT, "%s: log id record missing or not 16 bytes",
                           st->dir);
    }
    memcpy(st->log_id.b, v, EVB_ID_LEN);
    leveldb_free(v);
    if ((rc = st_get(st, NULL, META_SERVICE, strlen(META_SERVICE), &v, &vl, err)) !=
        EVB_OK)
        return rc;
    if (v == NULL || vl == 0 || vl > EVB_MAX_SERVICE_LEN) {
        if (v) leveldb_free(v);
        return evb_err_set(err, EVB_ECORRUPT, "%s: service name record missing or bad",
                           st->dir);
    }
    memcpy(st->service, v, vl);
    st->service[vl] = '\0';
    leveldb_free(v);
    uint64_t u;
    if ((rc = s_meta_u64(st, META_IXPOS, &u, err)) != EVB_OK) return rc;
    atomic_store(&st->indexed, u);
    if ((rc = s_meta_u64(st, META_NSTREAMS, &u, err)) != EVB_OK) return rc;
    atomic_store(&st->nstreams, u);
    return EVB_OK;
}

/* The head is the last event key. */
static int s_find_head(evb_store_t *st, evb_err *err)
{
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    const char after = K_EVENT + 1;
    leveldb_iter_seek(it, &after, 1);
    if (leveldb_iter_valid(it))
        leveldb_iter_prev(it);
    else
        leveldb_iter_seek_to_last(it);
    uint64_t head = 0;
    if (leveldb_iter_valid(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl == 9 && k[0] == K_EVENT) head = be64_get(k + 1);
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    leveldb_iter_destroy(it);
    if (e != NULL) return st_ldb_err(st, e, "finding the head", err);
    atomic_store(&st->head, head);
    return EVB_OK;
}

/* Bring the unindexed tail into memory, and every stored id into the Bloom
 * filter (the id index, then the tail). */
static int s_load_tail(evb_store_t *st, evb_err *err)
{
    uint64_t ix = atomic_load(&st->indexed), head = atomic_load(&st->head);
    if (ix > head) {
        if (!st->read_only)
            return evb_err_set(
                err, EVB_ECORRUPT,
                "%s: indexer position %llu is beyond the head %llu (events "
                "lost?); run evbus log verify",
                st->dir, (unsigned long long)ix, (unsigned long long)head);
        /* Tools open anyway so that verify can report it. */
        evb_log(EVB_LOG_WARN, "%s: indexer position %llu is beyond the head %llu",
                st->dir, (unsigned long long)ix, (unsigned long long)head);
        atomic_store(&st->indexed, head);
        ix = head;
    }
    if (!st->read_only) {
        uint64_t want = head * 12 > (1ull << 23) ? head * 12 : (1ull << 23);
        uint64_t nbits = 1ull << 23;
        while (nbits < want && nbits < (1ull << 29))
            nbits <<= 1;
        st->ids.bits = calloc(nbits / 64, sizeof(uint64_t));
        if (st->ids.bits == NULL)
            return evb_err_set(err, EVB_ENOMEM, "out of memory for the id filter");
        st->ids.nbits = nbits;
        leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
        const char pfx = K_ID;
        for (leveldb_iter_seek(it, &pfx, 1); leveldb_iter_valid(it);
             leveldb_iter_next(it)) {
            size_t kl;
            const char *k = leveldb_iter_key(it, &kl);
            if (kl == 0 || k[0] != K_ID) break;
            if (kl == 1 + EVB_ID_LEN) {
                evb_id id;
                memcpy(id.b, k + 1, EVB_ID_LEN);
                s_bloom_add(&st->ids, &id);
            }
        }
        leveldb_iter_destroy(it);
    }
    /* Category heads and counts: the indexer's stats, then the tail. */
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    const char cpfx = K_CATSTAT;
    for (leveldb_iter_seek(it, &cpfx, 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        const char *v = leveldb_iter_value(it, &vl);
        if (kl == 0 || k[0] != K_CATSTAT) break;
        if (vl == 16 && kl > 1 &&
            hmap_put(&st->cats, k + 1, kl - 1, be64_get(v), be64_get(v + 8)) == NULL) {
            leveldb_iter_destroy(it);
            return evb_err_set(err, EVB_ENOMEM, "out of memory loading categories");
        }
    }
    leveldb_iter_destroy(it);
    if (ix == head) return EVB_OK;
    it = leveldb_create_iterator(st->db, st->ro);
    uint8_t key[9];
    leveldb_iter_seek(it, (const char *)key, key_event(key, ix + 1));
    evb_event_t ev = {0};
    int rc = EVB_OK;
    for (; leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl != 9 || k[0] != K_EVENT) break;
        uint64_t seq = be64_get(k + 1);
        const char *v = leveldb_iter_value(it, &vl);
        evb_err derr;
        if (evb_event_decode_into(v, vl, &ev, &derr) != EVB_OK) {
            if (st->read_only) {
                evb_log(EVB_LOG_WARN, "%s: event %llu does not decode: %s", st->dir,
                        (unsigned long long)seq, derr.msg);
                continue;
            }
            rc = evb_err_set(err, EVB_ECORRUPT,
                             "%s: event %llu does not decode: %s (run evbus log verify)",
                             st->dir, (unsigned long long)seq, derr.msg);
            break;
        }
        if (s_note_event(st, &ev.id, ev.stream, ev.version, seq, ev.category) != EVB_OK) {
            rc = evb_err_set(err, EVB_ENOMEM, "out of memory loading the log's tail");
            break;
        }
    }
    evb_event_clear(&ev);
    leveldb_iter_destroy(it);
    return rc;
}

static void *s_flusher(void *arg);
static void s_txn_free(evb_txn_t *tx);
static int s_start_threads(evb_store_t *st, evb_err *err);

evb_store_t *evb_store_open(const evb_store_opts *opts, evb_err *err)
{
    if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0') {
        evb_err_set(err, EVB_EINVAL, "store: no directory given");
        return NULL;
    }
    if (opts->create && evb_check_service(opts->service, err) != EVB_OK) {
        if (err)
            snprintf(err->msg, sizeof err->msg,
                     "%s: creating a log needs a valid service "
                     "name ([a-z0-9_.-], 1..%u bytes)",
                     opts->dir, EVB_MAX_SERVICE_LEN);
        return NULL;
    }
    if (opts->sync > EVB_SYNC_GROUP || opts->index_mode > EVB_INDEX_MANUAL) {
        evb_err_set(err, EVB_EINVAL, "%s: unknown sync policy or index mode", opts->dir);
        return NULL;
    }
    bool exists, empty, has_current;
    if (s_dir_state(opts->dir, &exists, &empty, &has_current, err) != EVB_OK) return NULL;
    if (!has_current) {
        if (exists && !empty) {
            evb_err_set(
                err, EVB_EFORMAT,
                "%s: holds files but no LevelDB database (no CURRENT file): not an "
                "evbus log",
                opts->dir);
            return NULL;
        }
        if (!opts->create) {
            evb_err_set(err, EVB_ENOTFOUND, "%s: no evbus log here", opts->dir);
            return NULL;
        }
        if (!exists && mkdir(opts->dir, 0755) != 0) {
            evb_err_set(err, EVB_EIO, "%s: cannot create directory: %s", opts->dir,
                        strerror(errno));
            return NULL;
        }
    }
    evb_store_t *st = calloc(1, sizeof *st);
    if (st == NULL || (st->dir = strdup(opts->dir)) == NULL) {
        free(st);
        evb_err_set(err, EVB_ENOMEM, "out of memory opening %s", opts->dir);
        return NULL;
    }
    st->sync = opts->sync;
    st->group_ms = opts->group_interval_ms ? opts->group_interval_ms : 2;
    st->index_mode = opts->read_only_intent ? EVB_INDEX_MANUAL : opts->index_mode;
    st->read_only = opts->read_only_intent;
    st->stream_cache_max =
        opts->stream_cache_entries ? opts->stream_cache_entries : 100000;
    if (idset_init(&st->tail_ids, 2 * 65536) != 0) {
        free(st->dir);
        free(st);
        evb_err_set(err, EVB_ENOMEM, "out of memory opening %s", opts->dir);
        return NULL;
    }
    st->enc.max_cap = (size_t)EVB_MAX_EVENT_BYTES;
    pthread_mutex_init(&st->ix_mu, NULL);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv_work, NULL);
    pthread_cond_init(&st->cv_done, NULL);
    pthread_cond_init(&st->cv_flush, NULL);
#ifdef EVB_CRASH_POINTS
    st->crash_point = getenv("EVB_CRASH_POINT");
    const char *after = getenv("EVB_CRASH_AFTER");
    st->crash_after = after ? atol(after) : 1;
#endif
    st->options = leveldb_options_create();
    leveldb_options_set_write_buffer_size(
        st->options, opts->write_buffer_bytes ? opts->write_buffer_bytes : 32u << 20);
    st->ro = leveldb_readoptions_create();
    st->wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(st->wo, opts->sync == EVB_SYNC_EVERY);
    st->wo_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(st->wo_sync, 1);

    if (s_open_db(st, !has_current, err) != EVB_OK) goto fail;
    if (!has_current) {
        if (s_init_meta(st, opts->service, err) != EVB_OK) goto fail;
    } else {
        int mrc = s_load_meta(st, err);
        if (mrc == EVB_ENOTFOUND && opts->create) {
            if (s_init_meta(st, opts->service, err) != EVB_OK) goto fail;
        } else if (mrc == EVB_ENOTFOUND) {
            evb_err_set(err, EVB_ENOTFOUND,
                        "%s: an empty database, no evbus log (its "
                        "creation was interrupted?)",
                        st->dir);
            goto fail;
        } else if (mrc != EVB_OK) {
            goto fail;
        }
    }
    if (s_find_head(st, err) != EVB_OK || s_load_tail(st, err) != EVB_OK) goto fail;
    atomic_store(&st->synced, atomic_load(&st->head));
    if (s_start_threads(st, err) != EVB_OK) goto fail;
    if (st->sync == EVB_SYNC_NONE && !st->read_only)
        evb_log(EVB_LOG_INFO,
                "%s: sync policy none: a power loss may take back events already "
                "published",
                st->dir);
    return st;
fail:
    evb_store_destroy(&st);
    return NULL;
}

/* Stop the indexer and flusher threads (the store's own LevelDB users). */
static void s_stop_threads(evb_store_t *st)
{
    pthread_mutex_lock(&st->mu);
    st->stop = true;
    pthread_cond_broadcast(&st->cv_work);
    pthread_cond_broadcast(&st->cv_flush);
    pthread_mutex_unlock(&st->mu);
    if (st->fl_running) pthread_join(st->fl_thread, NULL);
    st->fl_running = false;
    ix_stop(st);
}

static int s_start_threads(evb_store_t *st, evb_err *err)
{
    st->stop = false;
    if (!st->read_only && st->index_mode == EVB_INDEX_THREAD && ix_start(st, err) != EVB_OK)
        return err ? err->code : EVB_ENOMEM;
    if (!st->read_only && st->sync == EVB_SYNC_GROUP) {
        if (pthread_create(&st->fl_thread, NULL, s_flusher, st) != 0)
            return evb_err_set(err, EVB_ENOMEM, "%s: cannot start the fsync thread", st->dir);
        st->fl_running = true;
    }
    return EVB_OK;
}

/* Reopening needs room for LevelDB's new log and manifest: with less free
 * space than this, refuse and keep the open (readable) database. */
#define REOPEN_MIN_FREE (2u << 20)

int evb_store_reopen(evb_store_t *st, evb_err *err)
{
    if (st->open_txn != NULL)
        return evb_err_set(err, EVB_EBUSY, "%s: a transaction is open", st->dir);
    struct statvfs fs;
    if (statvfs(st->dir, &fs) == 0) {
        uint64_t avail = (uint64_t)fs.f_bavail * fs.f_frsize;
        if (avail < REOPEN_MIN_FREE)
            return evb_err_set(err, EVB_EUNWRITABLE,
                               "%s: %llu KiB free on its file system; the log takes "
                               "writes again once space is freed",
                               st->dir, (unsigned long long)(avail >> 10));
    }
    s_stop_threads(st);
    leveldb_close(st->db);
    st->db = NULL;
    int rc = s_open_db(st, false, err);
    if (rc != EVB_OK) return rc; /* the store stays closed: destroy it */
    /* Whatever the failed write left, the log is the truth: the position,
     * the head and the in-memory maps are read again from it. */
    hmap_free(&st->streams);
    hmap_free(&st->cats);
    idset_free(&st->tail_ids);
    free(st->ids.bits);
    st->ids.bits = NULL;
    if (idset_init(&st->tail_ids, 2 * 65536) != 0)
        return evb_err_set(err, EVB_ENOMEM, "out of memory reopening %s", st->dir);
    if ((rc = s_load_meta(st, err)) != EVB_OK || (rc = s_find_head(st, err)) != EVB_OK ||
        (rc = s_load_tail(st, err)) != EVB_OK)
        return rc;
    atomic_store(&st->synced, atomic_load(&st->head));
    st->ix_error[0] = '\0';
    if ((rc = s_start_threads(st, err)) != EVB_OK) return rc;
    atomic_store(&st->unwritable, false);
    evb_log(EVB_LOG_INFO, "%s: reopened at head %llu; writes accepted again", st->dir,
            (unsigned long long)atomic_load(&st->head));
    return EVB_OK;
}

bool evb_store_unwritable(const evb_store_t *st)
{
    return atomic_load(&((evb_store_t *)st)->unwritable);
}

void evb_store_destroy(evb_store_t **stp)
{
    if (stp == NULL || *stp == NULL) return;
    evb_store_t *st = *stp;
    if (st->open_txn != NULL) evb_txn_destroy(&st->open_txn);
    s_stop_threads(st);
    if (st->db != NULL && !st->read_only && st->sync != EVB_SYNC_NONE &&
        atomic_load(&st->synced) < atomic_load(&st->head))
        (void)evb_store_sync(st, NULL);
    if (st->db != NULL) leveldb_close(st->db);
    if (st->options) leveldb_options_destroy(st->options);
    if (st->ro) leveldb_readoptions_destroy(st->ro);
    if (st->wo) leveldb_writeoptions_destroy(st->wo);
    if (st->wo_sync) leveldb_writeoptions_destroy(st->wo_sync);
    s_txn_free(&st->txn);
    if (st->ix_wb) leveldb_writebatch_destroy(st->ix_wb);
    hmap_free(&st->streams);
    idset_free(&st->tail_ids);
    hmap_free(&st->cats);
    free(st->ids.bits);
    evb_buf_free(&st->enc);
    pthread_mutex_destroy(&st->ix_mu);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv_work);
    pthread_cond_destroy(&st->cv_done);
    pthread_cond_destroy(&st->cv_flush);
    free(st->dir);
    free(st);
    *stp = NULL;
}

void evb_store_get_info(const evb_store_t *st, evb_store_info *info)
{
    memset(info, 0, sizeof *info);
    info->log_id = st->log_id;
    info->format = st->format;
    snprintf(info->service, sizeof info->service, "%s", st->service);
    info->head = atomic_load(&((evb_store_t *)st)->head);
    info->indexed = atomic_load(&((evb_store_t *)st)->indexed);
    info->synced = atomic_load(&((evb_store_t *)st)->synced);
    info->streams = atomic_load(&((evb_store_t *)st)->nstreams);
    info->max_index_lag = atomic_load(&((evb_store_t *)st)->max_lag);
    info->sync = st->sync;
}

uint64_t evb_store_head(const evb_store_t *st)
{
    return atomic_load(&((evb_store_t *)st)->head);
}

const char *evb_store_dir(const evb_store_t *st)
{
    return st->dir;
}

int evb_store_disk_size(const evb_store_t *st, uint64_t *bytes, evb_err *err)
{
    *bytes = 0;
    DIR *d = opendir(st->dir);
    if (d == NULL) return evb_err_set(err, EVB_EIO, "%s: %s", st->dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, 0) == 0 && S_ISREG(sb.st_mode))
            *bytes += (uint64_t)sb.st_size;
    }
    closedir(d);
    return EVB_OK;
}

/* ---- durability ---- */

static int s_sync_write(evb_store_t *st, evb_err *err)
{
    uint64_t h = atomic_load(&st->head);
    uint8_t v[8];
    be64_put(v, h);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_writebatch_put(wb, META_SYNCED, strlen(META_SYNCED), (const char *)v, 8);
    CRASH_POINT(st, "sync.before");
    char *e = NULL;
    leveldb_write(st->db, st->wo_sync, wb, &e);
    leveldb_writebatch_destroy(wb);
    if (e != NULL) return st_ldb_err(st, e, "fsync", err);
    CRASH_POINT(st, "sync.after");
    /* Everything up to h was written before this synced write: durable. */
    uint64_t cur = atomic_load(&st->synced);
    while (cur < h && !atomic_compare_exchange_weak(&st->synced, &cur, h))
        ;
    return EVB_OK;
}

int evb_store_sync(evb_store_t *st, evb_err *err)
{
    if (st->read_only) return EVB_OK;
    if (st->db == NULL)
        return evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)", st->dir);

    return s_sync_write(st, err);
}

uint64_t evb_store_synced(const evb_store_t *st)
{
    return atomic_load(&((evb_store_t *)st)->synced);
}

/* Group fsync: one synced write every group_ms while appends arrive. The head
 * is read from another thread, so only atomics are shared. */
static void *s_flusher(void *arg)
{
    evb_store_t *st = arg;
    pthread_mutex_lock(&st->mu);
    while (!st->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)st->group_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&st->cv_flush, &st->mu, &ts);
        if (st->stop) break;
        if (atomic_load(&st->synced) >= atomic_load(&st->head)) continue;
        pthread_mutex_unlock(&st->mu);
        evb_err e;
        if (s_sync_write(st, &e) != EVB_OK) {
            /* A failed fsync (disk full, I/O error): the log refuses writes
             * until reopened, and this thread stops instead of failing every
             * few milliseconds; a reopen starts a new one. */
            atomic_store(&st->unwritable, true);
            evb_log(EVB_LOG_ERROR, "%s; the log refuses writes until it is reopened", e.msg);
            return NULL;
        }
        pthread_mutex_lock(&st->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* ---- transactions ---- */

evb_txn_t *evb_txn_begin(evb_store_t *st, evb_err *err)
{
    if (st->db == NULL) {
        evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)", st->dir);
        return NULL;
    }
    if (st->read_only) {
        evb_err_set(err, EVB_EINVAL, "%s: opened read-only", st->dir);
        return NULL;
    }
    if (atomic_load(&st->unwritable)) {
        evb_err_set(err, EVB_EUNWRITABLE,
                    "%s: an earlier write failed; the log refuses writes until reopened",
                    st->dir);
        return NULL;
    }
    if (st->open_txn != NULL) {
        evb_err_set(err, EVB_EBUSY, "%s: another transaction is open", st->dir);
        return NULL;
    }
    /* One transaction object per store, reused: its WriteBatch and arrays keep
     * their capacity, so a steady stream of appends allocates nothing (a
     * fresh 300 KB batch per append cost page faults on every call). */
    evb_txn_t *tx = &st->txn;
    if (tx->wb == NULL) tx->wb = leveldb_writebatch_create();
    tx->st = st;
    tx->next_seq = atomic_load(&st->head) + 1;
    tx->nstreams = tx->nids = 0;
    tx->failed = tx->plain = false;
    tx->nhooks = 0;
    st->open_txn = tx;
    return tx;
}

/* Run the end hooks once, in the order they were added. */
static void s_txn_end(evb_txn_t *tx, bool committed)
{
    size_t n = tx->nhooks;
    tx->nhooks = 0;
    for (size_t i = 0; i < n; i++) tx->hooks[i].fn(tx->hooks[i].ctx, committed);
}

int evb_txn_on_end(evb_txn_t *tx, evb_txn_end_fn fn, void *ctx, evb_err *err)
{
    if (fn == NULL || tx->nhooks >= EVB_TXN_MAX_HOOKS)
        return evb_err_set(err, EVB_EINVAL, "%s: more than %u end hooks on a transaction",
                           tx->st->dir, EVB_TXN_MAX_HOOKS);
    tx->hooks[tx->nhooks].fn = fn;
    tx->hooks[tx->nhooks].ctx = ctx;
    tx->nhooks++;
    return EVB_OK;
}

void evb_txn_destroy(evb_txn_t **txp)
{
    if (txp == NULL || *txp == NULL) return;
    evb_txn_t *tx = *txp;
    if (tx->st->open_txn == tx) tx->st->open_txn = NULL;
    s_txn_end(tx, false);
    leveldb_writebatch_clear(tx->wb);
    /* Do not keep a huge batch's memory for ever. */
    if (tx->cap_ids > 2 * EVB_MAX_BATCH) {
        free(tx->ids);
        tx->ids = NULL;
        tx->cap_ids = 0;
    }
    *txp = NULL;
}

/* Free the reusable transaction's memory (store destroy). */
static void s_txn_free(evb_txn_t *tx)
{
    if (tx->wb) leveldb_writebatch_destroy(tx->wb);
    free(tx->streams);
    free(tx->ids);
    memset(tx, 0, sizeof *tx);
}

int evb_txn_put(evb_txn_t *tx, const void *key, size_t klen, const void *val, size_t vlen,
                evb_err *err)
{
    if (klen == 0 || klen > EVB_MAX_KEY_LEN)
        return evb_err_set(err, EVB_EINVAL, "key length %zu not in 1..%u", klen,
                           EVB_MAX_KEY_LEN);
    if (vlen > EVB_MAX_VALUE_BYTES)
        return evb_err_set(err, EVB_ETOOBIG, "value of %zu bytes, more than %u", vlen,
                           EVB_MAX_VALUE_BYTES);
    uint8_t k[1 + EVB_MAX_KEY_LEN];
    k[0] = K_USER;
    memcpy(k + 1, key, klen);
    leveldb_writebatch_put(tx->wb, (const char *)k, klen + 1, val, vlen);
    return EVB_OK;
}

int evb_txn_delete(evb_txn_t *tx, const void *key, size_t klen, evb_err *err)
{
    if (klen == 0 || klen > EVB_MAX_KEY_LEN)
        return evb_err_set(err, EVB_EINVAL, "key length %zu not in 1..%u", klen,
                           EVB_MAX_KEY_LEN);
    uint8_t k[1 + EVB_MAX_KEY_LEN];
    k[0] = K_USER;
    memcpy(k + 1, key, klen);
    leveldb_writebatch_delete(tx->wb, (const char *)k, klen + 1);
    return EVB_OK;
}

/* P consumer \0 log_id(16) category */
static int s_ckpt_key(uint8_t *k, size_t *klen, const char *consumer, const evb_id *log,
                      const char *category, evb_err *err)
{
    size_t cn = consumer ? strlen(consumer) : 0;
    if (cn == 0 || cn > EVB_MAX_CONSUMER_LEN || memchr(consumer, '\0', cn) != NULL)
        return evb_err_set(err, EVB_EINVAL, "consumer name must be 1..%u bytes",
                           EVB_MAX_CONSUMER_LEN);
    int rc = evb_check_category(category, err);
    if (rc != EVB_OK) return rc;
    size_t catn = strlen(category);
    k[0] = K_CKPT;
    memcpy(k + 1, consumer, cn);
    k[1 + cn] = 0;
    memcpy(k + 2 + cn, log->b, EVB_ID_LEN);
    memcpy(k + 2 + cn + EVB_ID_LEN, category, catn);
    *klen = 2 + cn + EVB_ID_LEN + catn;
    return EVB_OK;
}

int evb_txn_checkpoint(evb_txn_t *tx, const char *consumer, const evb_id *source_log,
                       const char *category, uint64_t seq, evb_err *err)
{
    uint8_t k[KEY_MAX];
    size_t klen;
    int rc = s_ckpt_key(k, &klen, consumer, source_log, category, err);
    if (rc != EVB_OK) return rc;
    uint8_t v[8];
    be64_put(v, seq);
    leveldb_writebatch_put(tx->wb, (const char *)k, klen, (const char *)v, 8);
    return EVB_OK;
}

static int s_snap_put(leveldb_writebatch_t *wb, const char *stream, uint64_t version,
                      const void *state, size_t len, evb_err *err)
{
    int rc = evb_check_stream(stream, err);
    if (rc != EVB_OK) return rc;
    if (len > EVB_MAX_VALUE_BYTES)
        return evb_err_set(err, EVB_ETOOBIG, "snapshot of %zu bytes, more than %u", len,
                           EVB_MAX_VALUE_BYTES);
    if (version == 0)
        return evb_err_set(err, EVB_EINVAL, "snapshot of %s at version 0", stream);
    /* One record per (stream, version): loading takes the highest, so saving
     * an older state never hides a newer one, and older ones stay for reads
     * "as of" a version. */
    uint8_t k[KEY_MAX];
    size_t klen = key_name_num(k, K_SNAP, stream, strlen(stream), version);
    leveldb_writebatch_put(wb, (const char *)k, klen, state, len);
    return EVB_OK;
}

int evb_txn_snapshot(evb_txn_t *tx, const char *stream, uint64_t version,
                     const void *state, size_t len, evb_err *err)
{
    return s_snap_put(tx->wb, stream, version, state, len, err);
}

static txn_stream *s_txn_stream(evb_txn_t *tx, const char *stream)
{
    for (size_t i = 0; i < tx->nstreams; i++)
        if (strcmp(tx->streams[i].stream, stream) == 0) return &tx->streams[i];
    return NULL;
}

static txn_id *s_txn_id(evb_txn_t *tx, const evb_id *id)
{
    for (size_t i = 0; i < tx->nids; i++)
        if (memcmp(tx->ids[i].id.b, id->b, EVB_ID_LEN) == 0) return &tx->ids[i];
    return NULL;
}

static int s_cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, EVB_ID_LEN);
}

/* Give every event without an id a random one: one getrandom call for the
 * batch, not one per event (a syscall per event cost ~10% of an append). */
static int s_fill_ids(evb_event_t *events, size_t n, evb_err *err)
{
    size_t missing = 0;
    for (size_t i = 0; i < n; i++)
        missing += evb_id_is_zero(&events[i].id);
    if (missing == 0) return EVB_OK;
    uint8_t *rnd = malloc(missing * EVB_ID_LEN);
    if (rnd == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory making ids");
    size_t got = 0, want = missing * EVB_ID_LEN;
    while (got < want) {
        ssize_t r = getrandom(rnd + got, want - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            free(rnd);
            return evb_err_set(err, EVB_EIO, "getrandom: %s", strerror(errno));
        }
        got += (size_t)r;
    }
    for (size_t i = 0, j = 0; i < n; i++) {
        if (!evb_id_is_zero(&events[i].id)) continue;
        memcpy(events[i].id.b, rnd + EVB_ID_LEN * j++, EVB_ID_LEN);
        if (evb_id_is_zero(&events[i].id)) events[i].id.b[0] = 1; /* zero means "none" */
    }
    free(rnd);
    return EVB_OK;
}

/* Checks that the events an append was given are well-formed and that no id
 * appears twice; fills zero ids. */
static int s_check_batch(evb_store_t *st, const char *stream, evb_event_t *events,
                         size_t n, evb_err *err)
{
    int rc = evb_check_stream(stream, err);
    if (rc != EVB_OK) return rc;
    if (n == 0 || n > EVB_MAX_BATCH)
        return evb_err_set(err, EVB_EINVAL, "append to %s: %zu events (want 1..%u)",
                           stream, n, EVB_MAX_BATCH);
    if (events == NULL)
        return evb_err_set(err, EVB_EINVAL, "append to %s: no events", stream);
    for (size_t i = 0; i < n; i++) {
        evb_event_t *ev = &events[i];
        if ((rc = evb_check_type(ev->type, err)) != EVB_OK) {
            evb_err_set(err, rc, "append to %s, event %zu: %.400s", stream, i, err->msg);
            return rc;
        }
        if (ev->payload != NULL && (rc = evb_check_map(ev->payload, ev->payload_len,
                                                       "payload", err)) != EVB_OK) {
            evb_err_set(err, rc, "append to %s, event %zu: %.400s", stream, i, err->msg);
            return rc;
        }
        if (ev->metadata != NULL && (rc = evb_check_map(ev->metadata, ev->metadata_len,
                                                        "metadata", err)) != EVB_OK) {
            evb_err_set(err, rc, "append to %s, event %zu: %.400s", stream, i, err->msg);
            return rc;
        }
        if (ev->metadata != NULL && ev->payload != NULL &&
            ev->payload_len + ev->metadata_len > EVB_MAX_PAYLOAD_BYTES)
            return evb_err_set(
                err, EVB_ETOOBIG,
                "append to %s, event %zu: payload + metadata over %u bytes", stream, i,
                EVB_MAX_PAYLOAD_BYTES);
        if ((ev->origin_seq != 0) == evb_id_is_zero(&ev->origin_log_id))
            return evb_err_set(
                err, EVB_EINVAL,
                "append to %s, event %zu: set origin_log_id and origin_seq "
                "both (a copy) or neither",
                stream, i);
    }
    /* Only ids the caller chose can repeat inside the batch; fresh random ids
     * cannot (2^-128), so they skip the sort. */
    evb_id *ids = NULL;
    size_t given = 0;
    for (size_t i = 0; i < n; i++)
        given += !evb_id_is_zero(&events[i].id);
    if (given > 1) {
        ids = malloc(given * sizeof *ids);
        if (ids == NULL)
            return evb_err_set(err, EVB_ENOMEM, "out of memory checking ids");
        for (size_t i = 0, j = 0; i < n; i++)
            if (!evb_id_is_zero(&events[i].id)) ids[j++] = events[i].id;
    }
    if ((rc = s_fill_ids(events, n, err)) != EVB_OK) {
        free(ids);
        return rc;
    }
    if (given > 1) {
        n = given;
        qsort(ids, n, sizeof *ids, s_cmp_id);
        for (size_t i = 1; i < n; i++) {
            if (memcmp(&ids[i - 1], &ids[i], sizeof ids[i]) == 0) {
                char hex[EVB_ID_HEX_LEN + 1];
                evb_id_to_hex(&ids[i], hex);
                free(ids);
                return evb_err_set(err, EVB_EINVAL,
                                   "append to %s: id %s twice in one batch", stream, hex);
            }
        }
        free(ids);
    }
    (void)st;
    return EVB_OK;
}

/* A retry whose ids are all stored: check they are this stream's events, in
 * order, and report their positions. */
static int s_retry_result(evb_txn_t *tx, const char *stream, evb_event_t *events,
                          size_t n, const uint64_t *seqs, evb_append_result *res,
                          evb_err *err)
{
    evb_store_t *st = tx->st;
    for (size_t i = 1; i < n; i++)
        if (seqs[i] != seqs[0] + i)
            return evb_err_set(err, EVB_EINVAL,
                               "append to %s: ids already stored, but not as this batch "
                               "(positions %llu and %llu)",
                               stream, (unsigned long long)seqs[0],
                               (unsigned long long)seqs[i]);
    uint64_t vfirst = 0, vlast = 0;
    for (size_t end = 0; end < 2; end++) {
        uint64_t seq = end ? seqs[n - 1] : seqs[0];
        txn_id *ti = NULL;
        for (size_t i = 0; i < tx->nids && ti == NULL; i++)
            if (tx->ids[i].seq == seq) ti = &tx->ids[i];
        uint64_t version;
        if (ti != NULL) { /* staged in this transaction */
            const txn_stream *ts = &tx->streams[ti->stream_ix];
            if (strcmp(ts->stream, stream) != 0)
                return evb_err_set(err, EVB_EINVAL,
                                   "append to %s: ids already staged for stream %s",
                                   stream, ts->stream);
            version = ts->version - (ts->last_seq - seq);
        } else {
            uint8_t key[9];
            char *v;
            size_t vl;
            int rc = st_get(st, NULL, key, key_event(key, seq), &v, &vl, err);
            if (rc != EVB_OK) return rc;
            if (v == NULL)
                return evb_err_set(err, EVB_ECORRUPT,
                                   "%s: id points at missing event %llu", st->dir,
                                   (unsigned long long)seq);
            evb_event_t ev = {0};
            rc = evb_event_decode_into(v, vl, &ev, err);
            leveldb_free(v);
            if (rc != EVB_OK) {
                evb_err_set(err, EVB_ECORRUPT, "%s: event %llu: %.400s", st->dir,
                            (unsigned long long)seq, err ? err->msg : "");
                return EVB_ECORRUPT;
            }
            bool same = strcmp(ev.stream, stream) == 0;
            char other[EVB_MAX_STREAM_LEN + 1];
            snprintf(other, sizeof other, "%s", ev.stream);
            version = ev.version;
            evb_event_clear(&ev);
            if (!same)
                return evb_err_set(err, EVB_EINVAL,
                                   "append to %s: ids already stored in stream %s",
                                   stream, other);
        }
        if (end)
            vlast = version;
        else
            vfirst = version;
    }
    if (vlast - vfirst != n - 1)
        return evb_err_set(err, EVB_EINVAL,
                           "append to %s: ids already stored, but not as this batch",
                           stream);
    for (size_t i = 0; i < n; i++) {
        events[i].seq = seqs[i];
        events[i].version = vfirst + i;
        events[i].log_id = st->log_id;
        events[i].service = st->service;
    }
    if (res) {
        res->first_seq = seqs[0];
        res->last_seq = seqs[n - 1];
        res->first_version = vfirst;
        res->last_version = vlast;
        res->duplicate = true;
    }
    return EVB_OK;
}

static int s_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 8;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, nc * elem);
    if (p == NULL) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

int evb_txn_append(evb_txn_t *tx, const char *stream, int64_t expected_version,
                   evb_event_t *events, size_t n, evb_append_result *res, evb_err *err)
{
    evb_store_t *st = tx->st;
    if (res) memset(res, 0, sizeof *res);
    if (expected_version < EVB_EXPECT_ANY)
        return evb_err_set(err, EVB_EINVAL, "append to %s: expected version %lld invalid",
                           stream, (long long)expected_version);
    if (n > EVB_MAX_BATCH || events == NULL)
        return s_check_batch(st, stream, events, n, err); /* names the problem */
    /* Ids the store makes now are new by construction (128 random bits):
     * they skip the duplicate lookup, which is most of an append's cost in
     * memory misses. FRESH marks them until the lookup loop. */
    const uint64_t FRESH = UINT64_MAX;
    uint64_t *seqs = calloc(n ? n : 1, sizeof *seqs);
    if (seqs == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        seqs[i] = evb_id_is_zero(&events[i].id) ? FRESH : 0;
    int rc = s_check_batch(st, stream, events, n, err);
    if (rc != EVB_OK) goto out;

    /* 1. ids already stored (checked before the version, so a retry of a
     * successful append succeeds although the version moved on). */
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        if (seqs[i] == FRESH) {
            seqs[i] = 0;
            continue;
        }
        txn_id *ti = s_txn_id(tx, &events[i].id);
        if (ti != NULL)
            seqs[i] = ti->seq;
        else if ((rc = s_id_lookup(st, &events[i].id, &seqs[i], err)) != EVB_OK)
            goto out;
        found += seqs[i] != 0;
    }
    if (found == n) {
        rc = s_retry_result(tx, stream, events, n, seqs, res, err);
        goto out;
    }
    if (found > 0) {
        char list[400] = "";
        size_t shown = 0;
        for (size_t i = 0; i < n && shown < 4; i++) {
            if (seqs[i] == 0) continue;
            char hex[EVB_ID_HEX_LEN + 1];
            evb_id_to_hex(&events[i].id, hex);
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s (seq %llu)", shown ? ", " : "", hex,
                     (unsigned long long)seqs[i]);
            shown++;
        }
        rc = evb_err_set(err, EVB_EPARTIAL,
                         "append to %s: %zu of %zu event ids are already stored: %s%s",
                         stream, found, n, list, found > shown ? ", ..." : "");
        goto out;
    }

    /* 2. expected version. */
    uint64_t cur, last_seq;
    txn_stream *ts = s_txn_stream(tx, stream);
    if (ts != NULL) {
        cur = ts->version;
    } else if ((rc = s_stream_lookup(st, stream, &cur, &last_seq, err)) != EVB_OK) {
        goto out;
    }
    if (expected_version != EVB_EXPECT_ANY && (uint64_t)expected_version != cur) {
        rc = evb_err_set(err, EVB_ECONFLICT,
                         "append to %s: expected version %lld, but the stream is at %llu",
                         stream, (long long)expected_version, (unsigned long long)cur);
        goto out;
    }

    /* 3. stage: encode each event under its sequence. */
    if (ts == NULL) {
        if (s_grow((void **)&tx->streams, &tx->cap_streams, tx->nstreams + 1,
                   sizeof *tx->streams) != 0) {
            rc = evb_err_set(err, EVB_ENOMEM, "out of memory");
            goto out;
        }
        ts = &tx->streams[tx->nstreams++];
        memset(ts, 0, sizeof *ts);
        memcpy(ts->stream, stream, strlen(stream) + 1); /* checked: <= max length */
        ts->version = cur;
    }
    if (s_grow((void **)&tx->ids, &tx->cap_ids, tx->nids + n, sizeof *tx->ids) != 0) {
        rc = evb_err_set(err, EVB_ENOMEM, "out of memory");
        goto out;
    }
    int64_t now = evb_now_us();
    uint64_t first_seq = tx->next_seq;
    for (size_t i = 0; i < n; i++) {
        evb_event_t *ev = &events[i];
        ev->service = st->service;
        ev->log_id = st->log_id;
        ev->seq = tx->next_seq + i;
        ev->stream = stream;
        ev->version = cur + 1 + i;
        if (ev->schema == 0) ev->schema = 1;
        if (ev->ts_us == 0) ev->ts_us = now;
        if (ev->payload == NULL) {
            ev->payload = evb_empty_map;
            ev->payload_len = sizeof evb_empty_map;
        }
        st->enc.len = 0;
        if ((rc = evb__event_encode_checked(ev, &st->enc, err)) != EVB_OK) {
            /* Other staged steps stay; this append added nothing yet, but the
             * batch may hold some of its events: refuse the commit. */
            tx->failed = i > 0;
            goto out;
        }
        uint8_t key[9];
        leveldb_writebatch_put(tx->wb, (const char *)key, key_event(key, ev->seq),
                               st->enc.data, st->enc.len);
        tx->ids[tx->nids++] = (txn_id){ev->id, ev->seq, (uint32_t)(ts - tx->streams)};
    }
    tx->next_seq += n;
    ts->version = cur + n;
    ts->last_seq = tx->next_seq - 1;
    ts->count += n;
    if (res) {
        res->first_seq = first_seq;
        res->last_seq = tx->next_seq - 1;
        res->first_version = cur + 1;
        res->last_version = cur + n;
    }
    rc = EVB_OK;
out:
    free(seqs);
    return rc;
}

int evb_txn_commit(evb_txn_t **txp, evb_err *err)
{
    evb_txn_t *tx = *txp;
    evb_store_t *st = tx->st;
    int rc = EVB_OK;
    if (tx->failed) {
        rc = evb_err_set(
            err, EVB_EINVAL,
            "%s: a step of this transaction failed half-way; nothing written", st->dir);
        goto done;
    }
    /* Back-pressure: the indexer may fall only so far behind. */
    if (st->index_mode == EVB_INDEX_THREAD && tx->nids > 0) {
        pthread_mutex_lock(&st->mu);
        while (!st->stop && st->ix_error[0] == '\0' &&
               atomic_load(&st->head) - atomic_load(&st->indexed) >
                   EVB_STORE_MAX_INDEX_LAG) {
            pthread_cond_signal(&st->cv_work);
            pthread_cond_wait(&st->cv_done, &st->mu);
        }
        pthread_mutex_unlock(&st->mu);
    }
    CRASH_POINT(st, tx->plain ? "append.before_write" : "txn.before_write");
    char *e = NULL;
    leveldb_write(st->db, st->wo, tx->wb, &e);
    if (e != NULL) {
        atomic_store(&st->unwritable, true);
        rc = st_ldb_err(st, e, "append", err);
        evb_log(EVB_LOG_ERROR, "%s; the log refuses writes until it is reopened",
                err ? err->msg : st->dir);
        goto done;
    }
    CRASH_POINT(st, tx->plain ? "append.after_write" : "txn.after_write");
    if (tx->nids > 0) {
        bool oom = false;
        uint64_t ix = atomic_load(&st->indexed);
        for (size_t i = 0; i < tx->nids; i++) {
            const txn_id *ti = &tx->ids[i];
            oom |= idset_put(&st->tail_ids, &ti->id, ti->seq, ix) != 0;
            s_bloom_add(&st->ids, &ti->id);
        }
        for (size_t i = 0; i < tx->nstreams; i++) {
            const txn_stream *ts = &tx->streams[i];
            if (ts->count == 0) continue;
            char cat[EVB_MAX_CATEGORY_LEN + 1];
            evb_stream_category(ts->stream, cat, NULL);
            oom |= s_note_stream(st, ts->stream, ts->version, ts->last_seq, cat,
                                 ts->count) != EVB_OK;
        }
        if (oom) /* the caches are an optimisation only where they can miss */
            evb_log(EVB_LOG_WARN, "%s: out of memory caching appended events", st->dir);
        uint64_t head = tx->next_seq - 1;
        atomic_store(&st->head, head);
        if (st->sync != EVB_SYNC_GROUP) atomic_store(&st->synced, head);
        uint64_t lag = head - atomic_load(&st->indexed);
        if (lag > atomic_load(&st->max_lag)) atomic_store(&st->max_lag, lag);
        s_sweep(st);
        ix_kick(st);
    }
    s_txn_end(tx, true);
done:
    evb_txn_destroy(txp);
    return rc;
}

int evb_store_append(evb_store_t *st, const char *stream, int64_t expected_version,
                     evb_event_t *events, size_t n, evb_append_result *res, evb_err *err)
{
    evb_txn_t *tx = evb_txn_begin(st, err);
    if (tx == NULL) return err ? err->code : EVB_EBUSY;
    tx->plain = true;
    evb_append_result r;
    int rc = evb_txn_append(tx, stream, expected_version, events, n, &r, err);
    if (rc == EVB_OK && !r.duplicate) rc = evb_txn_commit(&tx, err);
    evb_txn_destroy(&tx);
    if (rc == EVB_OK && res) *res = r;
    return rc;
}

int evb_store_stream_version(evb_store_t *st, const char *stream, uint64_t *version,
                             evb_err *err)
{
    int rc = evb_check_stream(stream, err);
    if (rc != EVB_OK) return rc;
    uint64_t last;
    return s_stream_lookup(st, stream, version, &last, err);
}

int evb_store_find_id(evb_store_t *st, const evb_id *id, uint64_t *seq, evb_err *err)
{
    int rc = s_id_lookup(st, id, seq, err);
    if (rc == EVB_OK && *seq == 0) {
        char hex[EVB_ID_HEX_LEN + 1];
        evb_id_to_hex(id, hex);
        return evb_err_set(err, EVB_ENOTFOUND, "%s: no event with id %s", st->dir, hex);
    }
    return rc;
}

/* ---- consumer key/values, checkpoints, snapshots ---- */

int evb_store_get(evb_store_t *st, const void *key, size_t klen, evb_buf *out,
                  evb_err *err)
{
    if (klen == 0 || klen > EVB_MAX_KEY_LEN)
        return evb_err_set(err, EVB_EINVAL, "key length %zu not in 1..%u", klen,
                           EVB_MAX_KEY_LEN);
    uint8_t k[1 + EVB_MAX_KEY_LEN];
    k[0] = K_USER;
    memcpy(k + 1, key, klen);
    char *v;
    size_t vl;
    int rc = st_get(st, NULL, k, klen + 1, &v, &vl, err);
    if (rc != EVB_OK) return rc;
    if (v == NULL) return evb_err_set(err, EVB_ENOTFOUND, "%s: no such key", st->dir);
    out->len = 0;
    rc = evb_buf_append(out, v, vl, err);
    leveldb_free(v);
    return rc;
}

int evb_store_scan(evb_store_t *st, const void *prefix, size_t plen, evb_kv_fn fn,
                   void *ctx, evb_err *err)
{
    if (st->db == NULL)
        return evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)", st->dir);

    if (plen > EVB_MAX_KEY_LEN)
        return evb_err_set(err, EVB_EINVAL, "prefix length %zu over %u", plen,
                           EVB_MAX_KEY_LEN);
    uint8_t k[1 + EVB_MAX_KEY_LEN];
    k[0] = K_USER;
    if (plen > 0) memcpy(k + 1, prefix, plen);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    const leveldb_snapshot_t *snap = leveldb_create_snapshot(st->db);
    leveldb_readoptions_set_snapshot(ro, snap);
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, ro);
    int rc = EVB_OK;
    for (leveldb_iter_seek(it, (const char *)k, plen + 1); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *key = leveldb_iter_key(it, &kl);
        if (kl < plen + 1 || memcmp(key, k, plen + 1) != 0) break;
        const char *v = leveldb_iter_value(it, &vl);
        if ((rc = fn(key + 1, kl - 1, v, vl, ctx)) != 0) break;
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    if (e != NULL && rc == EVB_OK) rc = st_ldb_err(st, e, "scan", err);
    else if (e != NULL) leveldb_free(e);
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_release_snapshot(st->db, snap);
    return rc;
}

int evb_store_checkpoint_get(evb_store_t *st, const char *consumer,
                             const evb_id *source_log, const char *category,
                             uint64_t *seq, evb_err *err)
{
    uint8_t k[KEY_MAX];
    size_t klen;
    *seq = 0;
    int rc = s_ckpt_key(k, &klen, consumer, source_log, category, err);
    if (rc != EVB_OK) return rc;
    char *v;
    size_t vl;
    if ((rc = st_get(st, NULL, k, klen, &v, &vl, err)) != EVB_OK) return rc;
    if (v == NULL) return EVB_OK;
    bool ok = vl == 8;
    if (ok) *seq = be64_get(v);
    leveldb_free(v);
    return ok ? EVB_OK
              : evb_err_set(err, EVB_ECORRUPT, "%s: checkpoint of %s is not 8 bytes",
                            st->dir, consumer);
}

int evb_store_checkpoints(evb_store_t *st, evb_checkpoint_fn fn, void *ctx, evb_err *err)
{
    if (st->db == NULL)
        return evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)", st->dir);

    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    const char pfx = K_CKPT;
    int rc = EVB_OK;
    for (leveldb_iter_seek(it, &pfx, 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        const char *v = leveldb_iter_value(it, &vl);
        if (kl == 0 || k[0] != K_CKPT) break;
        const char *nul = memchr(k + 1, '\0', kl - 1);
        size_t cn = nul ? (size_t)(nul - k - 1) : 0;
        size_t catn = nul ? kl - 2 - cn - EVB_ID_LEN : 0;
        if (nul == NULL || kl < 2 + cn + EVB_ID_LEN + 1 || vl != 8 ||
            catn > EVB_MAX_CATEGORY_LEN) {
            rc = evb_err_set(err, EVB_ECORRUPT, "%s: malformed checkpoint record",
                             st->dir);
            break;
        }
        char consumer[EVB_MAX_CONSUMER_LEN + 1], cat[EVB_MAX_CATEGORY_LEN + 1];
        memcpy(consumer, k + 1, cn);
        consumer[cn] = '\0';
        evb_id log;
        memcpy(log.b, k + 2 + cn, EVB_ID_LEN);
        memcpy(cat, k + 2 + cn + EVB_ID_LEN, catn);
        cat[catn] = '\0';
        if ((rc = fn(consumer, &log, cat, be64_get(v), ctx)) != 0) break;
    }
    leveldb_iter_destroy(it);
    return rc;
}

int evb_store_snapshot_save(evb_store_t *st, const char *stream, uint64_t version,
                            const void *state, size_t len, evb_err *err)
{
    evb_txn_t *tx = evb_txn_begin(st, err);
    if (tx == NULL) return err ? err->code : EVB_EBUSY;
    int rc = evb_txn_snapshot(tx, stream, version, state, len, err);
    if (rc == EVB_OK) return evb_txn_commit(&tx, err);
    evb_txn_destroy(&tx);
    return rc;
}

int evb_store_snapshot_load(evb_store_t *st, const char *stream, uint64_t *version,
                            evb_buf *out, evb_err *err)
{
    *version = 0;
    out->len = 0;
    int rc = evb_check_stream(stream, err);
    if (rc != EVB_OK) return rc;
    size_t sn = strlen(stream);
    uint8_t k[KEY_MAX];
    size_t klen = key_name_num(k, K_SNAP, stream, sn, UINT64_MAX);
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    leveldb_iter_seek(it, (const char *)k, klen);
    if (leveldb_iter_valid(it))
        leveldb_iter_prev(it);
    else
        leveldb_iter_seek_to_last(it);
    if (leveldb_iter_valid(it)) {
        size_t kl, vl;
        const char *key = leveldb_iter_key(it, &kl);
        if (kl == klen && memcmp(key, k, 2 + sn) == 0) {
            const char *v = leveldb_iter_value(it, &vl);
            *version = be64_get(key + 2 + sn);
            rc = evb_buf_append(out, v, vl, err);
        }
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    leveldb_iter_destroy(it);
    if (e != NULL) return st_ldb_err(st, e, "snapshot read", err);
    return rc;
}
