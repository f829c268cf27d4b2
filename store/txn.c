/*
 * txn.c: transactions and the append path (evb_txn_*, evb_store_append).
 *
 * Key decisions (measured figures and reasons in store/FORMAT.md):
 *  - Every append is a transaction with one append in it: one code path for
 *    plain appends and for consumers that commit effects with checkpoints.
 *  - An append's WriteBatch holds the encoded events under their sequence and
 *    nothing else: the head is the last event key, found by one seek at open.
 *    Index entries are written behind by the indexer (indexer.c).
 *  - Ids are checked before the expected version, so the retry of an append
 *    that succeeded succeeds (as a duplicate) although the stream moved on.
 *    Ids the store makes are new by construction and skip that lookup;
 *    they are made once each event has its seq, and sealed (idseal.c).
 *  - The in-memory state (state.c) learns of staged events only once the
 *    batch is written; a transaction that ends otherwise leaves no trace.
 *  - One transaction object per store, reused, so steady appends allocate
 *    nothing.
 */
#include "store_int.h"

#include "codec_int.h"

#include <stdio.h>
#include <stdlib.h>

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
    tx->failed = tx->plain = tx->sealed_ahead = false;
    tx->nhooks = 0;
    st->open_txn = tx;
    return tx;
}

/* Run the end hooks once, in the order they were added. */
static void s_txn_end(evb_txn_t *tx, bool committed)
{
    size_t n = tx->nhooks;
    tx->nhooks = 0;
    for (size_t i = 0; i < n; i++)
        tx->hooks[i].fn(tx->hooks[i].ctx, committed);
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
void st_txn_free(evb_txn_t *tx)
{
    if (tx->wb) leveldb_writebatch_destroy(tx->wb);
    free(tx->streams);
    free(tx->ids);
    memset(tx, 0, sizeof *tx);
}

static txn_stream *s_txn_stream(evb_txn_t *tx, const char *stream)
{
    for (size_t i = 0; i < tx->nstreams; i++)
        if (strcmp(tx->streams[i].stream, stream) == 0) return &tx->streams[i];
    return NULL;
}

/* How far ahead a loop over a batch's ids prefetches (st_id_prefetch). */
#define ID_AHEAD 8

static txn_id *s_txn_id(evb_txn_t *tx, const evb_id *id)
{
    for (size_t i = 0; i < tx->nids; i++)
        if (memcmp(tx->ids[i].id.b, id->b, EVB_ID_LEN) == 0) return &tx->ids[i];
    return NULL;
}

/* The id of an event appended without one: its sealed id (idseal.c), or a
 * random UUIDv7 (RFC 9562: 48-bit Unix time in ms, then 74 random bits)
 * where it cannot be sealed: a format 1 log, a seq this open store sealed
 * before (in a transaction that did not commit), or a sealed id that is
 * stored or staged as a caller's (then the caller chose it knowing the
 * log's key, or kept it from a transaction that did not commit). *sealed
 * says which; id is written only on success. */
static int s_make_id(evb_txn_t *tx, uint64_t seq, uint64_t ms, evb_id *id, bool *sealed,
                     evb_err *err)
{
    evb_store_t *st = tx->st;
    evb_id cand;
    *sealed = false;
    if (seq > st->sealed_upto && st_id_seal(st, seq, ms, &cand)) {
        st->sealed_upto = seq;
        /* A stored id can be this one only if it is not sealed and has its
         * time: none has, in a log of made ids or of ids from the past (an
         * upgraded log's, a mirror's), and the filter is not asked. */
        bool fresh = true;
        int rc = st_id_ms(&cand) > st->caller_ms_max ? EVB_OK
                                                     : st_id_fresh(st, &cand, &fresh, err);
        if (rc != EVB_OK) return rc;
        if (fresh && (!tx->sealed_ahead || s_txn_id(tx, &cand) == NULL)) {
            *id = cand;
            *sealed = true;
            return EVB_OK;
        }
    }
    return st_id_random_v7(st, ms, id, err);
}

/* Checks that the events an append was given are well-formed and that no id
 * appears twice (zero ids are made later, once each event has its seq). */
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
        evb_err e = {0}; /* the check's own message, then prefixed into err */
        if ((rc = evb_check_type(ev->type, &e)) == EVB_OK && ev->payload != NULL)
            rc = evb_check_content_size(ev->payload_len,
                                        ev->metadata != NULL ? ev->metadata_len : 0, &e);
        if (rc == EVB_OK && ev->payload != NULL)
            rc = evb_check_map(ev->payload, ev->payload_len, "payload", &e);
        if (rc == EVB_OK && ev->metadata != NULL)
            rc = evb_check_map(ev->metadata, ev->metadata_len, "metadata", &e);
        if (rc != EVB_OK)
            return evb_err_set(err, rc, "append to %s, event %zu: %.400s", stream, i, e.msg);
        if ((ev->origin_seq != 0) == evb_id_is_zero(&ev->origin_log_id))
            return evb_err_set(
                err, EVB_EINVAL,
                "append to %s, event %zu: set origin_log_id and origin_seq "
                "both (a copy) or neither",
                stream, i);
    }
    /* Only ids the caller chose can repeat inside the batch (made ids come
     * later). An open-addressed table of their positions finds a repeat in
     * one probe an id; sorting them cost an eighth of an append of 1,000
     * caller ids (FORMAT.md, "Id epochs"). */
    size_t given = 0;
    for (size_t i = 0; i < n; i++)
        given += !evb_id_is_zero(&events[i].id);
    if (given > 1) {
        size_t cap = 64;
        while (cap < 2 * given)
            cap <<= 1;
        uint32_t *pos = calloc(cap, sizeof *pos); /* event index + 1; 0 = empty */
        if (pos == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory checking ids");
        for (size_t i = 0; i < n; i++) {
            const evb_id *id = &events[i].id;
            if (evb_id_is_zero(id)) continue;
            uint64_t a, b;
            memcpy(&a, id->b, 8);
            memcpy(&b, id->b + 8, 8);
            size_t h = (size_t)st_mix64(a ^ st_mix64(b)) & (cap - 1);
            for (; pos[h] != 0; h = (h + 1) & (cap - 1)) {
                if (memcmp(events[pos[h] - 1].id.b, id->b, EVB_ID_LEN) != 0) continue;
                char hex[EVB_ID_HEX_LEN + 1];
                evb_id_to_hex(id, hex);
                size_t first = pos[h] - 1;
                free(pos);
                return evb_err_set(err, EVB_EINVAL,
                                   "append to %s: id %s twice in one batch (events %zu and "
                                   "%zu)",
                                   stream, hex, first, i);
            }
            pos[h] = (uint32_t)i + 1;
        }
        free(pos);
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
            int rc = st_get(st, st->db, NULL, key, key_event(key, seq), &v, &vl, err);
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
    return st_txn_append(tx, stream, expected_version, 0, events, n, res, err);
}

int st_txn_append(evb_txn_t *tx, const char *stream, int64_t expected_version,
                  uint64_t first_version, evb_event_t *events, size_t n,
                  evb_append_result *res, evb_err *err)
{
    evb_store_t *st = tx->st;
    if (res) memset(res, 0, sizeof *res);
    if (expected_version < EVB_EXPECT_ANY)
        return evb_err_set(err, EVB_EINVAL, "append to %s: expected version %lld invalid",
                           stream, (long long)expected_version);
    if (n > EVB_MAX_BATCH || events == NULL)
        return s_check_batch(st, stream, events, n, err); /* names the problem */
    /* Ids the store makes are new by construction (idseal.c): they skip the
     * duplicate lookup, which is most of an append's cost in memory misses,
     * the tail id set and the filter (state.c). */
    uint64_t *seqs = calloc(n ? n : 1, sizeof *seqs + sizeof(bool));
    if (seqs == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
    bool *made = (bool *)(seqs + (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        made[i] = evb_id_is_zero(&events[i].id);
    int rc = s_check_batch(st, stream, events, n, err);
    if (rc != EVB_OK) goto out;

    /* 1. ids already stored (checked before the version, so a retry of a
     * successful append succeeds although the version moved on). */
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + ID_AHEAD < n && !made[i + ID_AHEAD])
            st_id_prefetch(st, &events[i + ID_AHEAD].id, false);
        if (made[i]) continue;
        txn_id *ti = s_txn_id(tx, &events[i].id);
        if (ti != NULL)
            seqs[i] = ti->seq;
        else if ((rc = st_id_lookup(st, &events[i].id, &seqs[i], err)) != EVB_OK)
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
    } else if ((rc = st_stream_lookup(st, stream, &cur, &last_seq, err)) != EVB_OK) {
        goto out;
    }
    if (expected_version != EVB_EXPECT_ANY && (uint64_t)expected_version != cur) {
        rc = evb_err_set(err, EVB_ECONFLICT,
                         "append to %s: expected version %lld, but the stream is at %llu",
                         stream, (long long)expected_version, (unsigned long long)cur);
        goto out;
    }

    /* Versions from first_version on (a salvage): those between are lost. */
    uint64_t base = cur;
    if (first_version != 0) {
        if (first_version <= cur) {
            rc = evb_err_set(err, EVB_ECONFLICT,
                             "append to %s: version %llu is not after the stream's %llu",
                             stream, (unsigned long long)first_version,
                             (unsigned long long)cur);
            goto out;
        }
        base = first_version - 1;
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
    uint64_t ms = (uint64_t)now / 1000u, first_seq = tx->next_seq;
#ifdef EVB_CRASH_POINTS
    if (st->test_id_ms != 0) ms = st->test_id_ms;
#endif
    for (size_t i = 0; i < n; i++) {
        evb_event_t *ev = &events[i];
        ev->service = st->service;
        ev->log_id = st->log_id;
        ev->seq = tx->next_seq + i;
        ev->stream = stream;
        ev->version = base + 1 + i;
        if (ev->schema == 0) ev->schema = 1;
        if (ev->ts_us == 0) ev->ts_us = now;
        /* A caller's id may be the sealed id of its seq too (one it was
         * given back from a transaction that did not commit): the index
         * treats every id the same way, whoever made it. */
        bool sealed = false;
        if (!made[i]) {
            uint64_t at = st_id_unseal(st, &ev->id);
            sealed = at == ev->seq;
            /* made later in this transaction? (a random id: odds 2^-24) */
            tx->sealed_ahead |= at > ev->seq && at - ev->seq <= (1u << 24);
        } else if ((rc = s_make_id(tx, ev->seq, ms, &ev->id, &sealed, err)) != EVB_OK) {
            tx->failed |= i > 0;
            goto out;
        }
        if (ev->payload == NULL) {
            ev->payload = evb_empty_map;
            ev->payload_len = sizeof evb_empty_map;
        }
        st->enc.len = 0;
        if ((rc = evb__event_encode_checked(ev, &st->enc, err)) != EVB_OK) {
            /* Other staged steps stay; this append added nothing yet, but the
             * batch may hold some of its events: refuse the commit. */
            tx->failed |= i > 0; /* an earlier half-done step stays failed */
            goto out;
        }
        uint8_t key[9];
        leveldb_writebatch_put(tx->wb, (const char *)key, key_event(key, ev->seq),
                               st->enc.data, st->enc.len);
        tx->ids[tx->nids++] =
            (txn_id){ev->id, ev->seq, ev->version, (uint32_t)(ts - tx->streams), sealed};
    }
    tx->next_seq += n;
    ts->version = base + n;
    ts->last_seq = tx->next_seq - 1;
    ts->count += n;
    if (res) {
        res->first_seq = first_seq;
        res->last_seq = tx->next_seq - 1;
        res->first_version = base + 1;
        res->last_version = base + n;
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
        uint64_t ix = st_id_floor(st);
        for (size_t i = 0; i < tx->nids; i++) {
            const txn_id *ti = &tx->ids[i];
            if (i + ID_AHEAD < tx->nids && !tx->ids[i + ID_AHEAD].sealed)
                st_id_prefetch(st, &tx->ids[i + ID_AHEAD].id, true);
            if (ti->sealed) continue; /* found by deciphering it (idseal.c) */
            /* An id the set could not take: a lookup waits for the indexer
             * to cover it. */
            if (idset_put(&st->tail_ids, &ti->id, ti->seq, ix) != 0) {
                oom = true;
                st->lost_upto = ti->seq;
            }
            st_bloom_add(&st->ids, &ti->id);
            st_note_caller_id(st, &ti->id);
        }
        for (size_t i = 0; i < tx->nstreams; i++) {
            const txn_stream *ts = &tx->streams[i];
            if (ts->count == 0) continue;
            char cat[EVB_MAX_CATEGORY_LEN + 1];
            evb_stream_category(ts->stream, cat, NULL);
            oom |= st_note_stream(st, ts->stream, ts->version, ts->last_seq, cat,
                                  ts->count) != EVB_OK;
        }
        if (oom) /* the caches are an optimisation only where they can miss */
            evb_log(EVB_LOG_WARN, "%s: out of memory caching appended events", st->dir);
        uint64_t head = tx->next_seq - 1;
        if (st->ix_runs) ix_feed_push(st, tx);
        atomic_store(&st->head, head);
        if (st->sync != EVB_SYNC_GROUP) atomic_store(&st->synced, head);
        uint64_t lag = head - atomic_load(&st->indexed);
        if (lag > atomic_load(&st->max_lag)) atomic_store(&st->max_lag, lag);
        st_sweep(st);
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
