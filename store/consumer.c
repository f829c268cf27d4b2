/*
 * consumer.c: what consumers keep in the log beside the events: key/values,
 * checkpoints and snapshots, written in a transaction (evb_txn_put,
 * evb_txn_checkpoint, evb_txn_snapshot) and read back (evb_store_get, ...).
 *
 * Key decisions (key layout in store/FORMAT.md):
 *  - Each kind has its own key prefix (U, P, N), so none can collide with the
 *    events or indexes, and writes go into the transaction's WriteBatch: a
 *    consumer's effects and its checkpoint commit atomically with its appends.
 *  - A checkpoint is keyed by consumer, source log id and category, so one
 *    consumer can follow several logs and categories.
 *  - One snapshot record per (stream, version); loading takes the highest.
 *  - Scans read one LevelDB snapshot, so a callback sees a consistent set.
 */
#include "store_int.h"

/* ---- consumer key/values ---- */

/* U key: a consumer's key under its prefix byte (k holds 1 + EVB_MAX_KEY_LEN). */
static int s_user_key(uint8_t *k, const void *key, size_t klen, evb_err *err)
{
    if (klen == 0 || klen > EVB_MAX_KEY_LEN)
        return evb_err_set(err, EVB_EINVAL, "key length %zu not in 1..%u", klen,
                           EVB_MAX_KEY_LEN);
    k[0] = K_USER;
    memcpy(k + 1, key, klen);
    return EVB_OK;
}

int evb_txn_put(evb_txn_t *tx, const void *key, size_t klen, const void *val, size_t vlen,
                evb_err *err)
{
    uint8_t k[1 + EVB_MAX_KEY_LEN];
    int rc = s_user_key(k, key, klen, err);
    if (rc != EVB_OK) return rc;
    if (vlen > EVB_MAX_VALUE_BYTES)
        return evb_err_set(err, EVB_ETOOBIG, "value of %zu bytes, more than %u", vlen,
                           EVB_MAX_VALUE_BYTES);
    leveldb_writebatch_put(tx->wb, (const char *)k, klen + 1, val, vlen);
    return EVB_OK;
}

int evb_txn_delete(evb_txn_t *tx, const void *key, size_t klen, evb_err *err)
{
    uint8_t k[1 + EVB_MAX_KEY_LEN];
    int rc = s_user_key(k, key, klen, err);
    if (rc != EVB_OK) return rc;
    leveldb_writebatch_delete(tx->wb, (const char *)k, klen + 1);
    return EVB_OK;
}

int evb_store_get(evb_store_t *st, const void *key, size_t klen, evb_buf *out,
                  evb_err *err)
{
    uint8_t k[1 + EVB_MAX_KEY_LEN];
    int rc = s_user_key(k, key, klen, err);
    if (rc != EVB_OK) return rc;
    char *v;
    size_t vl;
    rc = st_get(st, st->db, NULL, k, klen + 1, &v, &vl, err);
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
    return evb_store_scan_from(st, prefix, plen, NULL, 0, fn, ctx, err);
}

int evb_store_scan_from(evb_store_t *st, const void *prefix, size_t plen, const void *start,
                        size_t slen, evb_kv_fn fn, void *ctx, evb_err *err)
{
    if (st->db == NULL)
        return evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)",
                           st->dir);

    if (plen > EVB_MAX_KEY_LEN || (start != NULL && slen > EVB_MAX_KEY_LEN + 1))
        return evb_err_set(err, EVB_EINVAL, "prefix length %zu or start length %zu over %u",
                           plen, slen, EVB_MAX_KEY_LEN);
    uint8_t k[1 + EVB_MAX_KEY_LEN], s0[2 + EVB_MAX_KEY_LEN];
    k[0] = K_USER;
    if (plen > 0) memcpy(k + 1, prefix, plen);
    const uint8_t *seek = k;
    size_t seeklen = plen + 1;
    if (start != NULL && (slen < plen || memcmp(start, prefix, plen) < 0)) start = NULL;
    if (start != NULL) { /* never before the prefix */
        s0[0] = K_USER;
        memcpy(s0 + 1, start, slen);
        seek = s0;
        seeklen = slen + 1;
    }
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(ro, st_ldb_checks(st));
    const leveldb_snapshot_t *snap = leveldb_create_snapshot(st->db);
    leveldb_readoptions_set_snapshot(ro, snap);
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, ro);
    int rc = EVB_OK;
    for (leveldb_iter_seek(it, (const char *)seek, seeklen); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *key = leveldb_iter_key(it, &kl);
        if (kl < plen + 1 || memcmp(key, k, plen + 1) != 0) break;
        const char *v = leveldb_iter_value(it, &vl);
        if ((rc = fn(key + 1, kl - 1, v, vl, ctx)) != 0) break;
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    if (e != NULL && rc == EVB_OK)
        rc = st_ldb_err(st, e, "scan", err);
    else if (e != NULL)
        leveldb_free(e);
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_release_snapshot(st->db, snap);
    return rc;
}

/* ---- checkpoints ---- */

/* P consumer \0 log_id(16) category */
static int s_ckpt_key(uint8_t *k, size_t *klen, const char *consumer, const evb_id *log,
                      const char *category, evb_err *err)
{
    *klen = 0; /* on every path: GCC cannot tell that the error returns are not 0 */
    size_t cn = consumer ? strlen(consumer) : 0;
    if (cn == 0 || cn > EVB_MAX_CONSUMER_LEN || memchr(consumer, '\0', cn) != NULL)
        return evb_err_set(err, EVB_EINVAL, "consumer name must be 1..%u bytes",
                           EVB_MAX_CONSUMER_LEN);
    int rc = category != NULL && strcmp(category, EVB_ALL_CATEGORIES) == 0
                 ? EVB_OK
                 : evb_check_category(category, err);
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
    if ((rc = st_get(st, st->db, NULL, k, klen, &v, &vl, err)) != EVB_OK) return rc;
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
        return evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)",
                           st->dir);

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

/* ---- snapshots ---- */

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
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    if (st_seek_last_version(it, K_SNAP, stream, strlen(stream), version)) {
        size_t vl;
        const char *v = leveldb_iter_value(it, &vl);
        rc = evb_buf_append(out, v, vl, err);
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    leveldb_iter_destroy(it);
    if (e != NULL) return st_ldb_err(st, e, "snapshot read", err);
    return rc;
}
