/*
 * salvage.c: copy what a damaged log can still read into a new log that a
 * service can go on with (store/FORMAT.md, "Salvage").
 *
 * The copy is the same log, less what was lost: the same log id, service
 * and key of sealed ids, and every readable event at its own sequence with
 * its id, stream version, type, time, ids, payload and metadata. Each
 * sequence that could not be read holds a marker event instead (stream
 * "evbus.hole-FROM", type "Unreadable", payload {from, to}), so sequences
 * stay contiguous, a subscriber's checkpoints in this log stay valid, and
 * the holes are written down in the log itself. The streams that lost
 * events skip those versions. Consumer keys, checkpoints and snapshots are
 * copied as they are (those in damaged blocks are counted, not copied).
 *
 * The source is read through a read-only open (nothing in it changes); the
 * copy is written through the store's own transactions, so its indexes are
 * built as for any log.
 *
 * A log that does not open is salvaged from a copy RepairDB rebuilt
 * (evb_store_repair_copy); the tables RepairDB could not read at all (a
 * damaged footer or index block) are read block by block without their
 * index (rawtable.c), and what they hold goes back into the copy first.
 */
#include "store_int.h"
#include "rawtable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define SALVAGE_BATCH 1000 /* events per transaction */
#define SALVAGE_KEY_BATCH (4u << 20) /* bytes of keys per write */

/* The copy takes the source's identity before its first event. */
static int s_take_identity(evb_store_t *src, evb_store_t *dst, evb_err *err)
{
    char *seal = NULL;
    size_t sl = 0;
    int rc = st_get(src, src->db, NULL, META_SEALKEY, strlen(META_SEALKEY), &seal, &sl, err);
    if (rc != EVB_OK) return rc;
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_writebatch_put(wb, META_LOGID, strlen(META_LOGID), (const char *)src->log_id.b,
                           EVB_ID_LEN);
    if (seal != NULL && sl == EVB_ID_LEN) /* format 4: the source's sealed ids stay so */
        leveldb_writebatch_put(wb, META_SEALKEY, strlen(META_SEALKEY), seal, sl);
    char *e = NULL;
    leveldb_write(dst->db, dst->wo_sync, wb, &e);
    leveldb_writebatch_destroy(wb);
    if (e == NULL && st_ix_apart(dst)) {
        leveldb_put(dst->ix, dst->wo_sync, META_LOGID, strlen(META_LOGID),
                    (const char *)src->log_id.b, EVB_ID_LEN, &e);
    }
    if (e != NULL) {
        if (seal != NULL) leveldb_free(seal);
        return st_ldb_err(dst, e, "writing the salvaged log's identity", err);
    }
    dst->log_id = src->log_id;
    if (seal != NULL && sl == EVB_ID_LEN) rc = st_seal_init(dst, (uint8_t *)seal, err);
    if (seal != NULL) leveldb_free(seal);
    return rc;
}

typedef struct salvage {
    evb_store_t *src, *dst;
    const evb_salvage_cbs *cb;
    evb_salvage_info info;
    evb_txn_t *tx;
    size_t staged;
    evb_buf payload;
} salvage;

static int s_commit(salvage *s, evb_err *err)
{
    if (s->tx == NULL) return EVB_OK;
    int rc = evb_txn_commit(&s->tx, err);
    evb_txn_destroy(&s->tx);
    s->staged = 0;
    return rc;
}

/* Stage one event, at the sequence it must have in the copy. */
static int s_stage(salvage *s, const char *stream, uint64_t version, evb_event_t *ev,
                   uint64_t want_seq, evb_err *err)
{
    if (s->tx == NULL && (s->tx = evb_txn_begin(s->dst, err)) == NULL)
        return err ? err->code : EVB_EBUSY;
    evb_append_result r;
    int rc = st_txn_append(s->tx, stream, EVB_EXPECT_ANY, version, ev, 1, &r, err);
    if (rc == EVB_OK && r.first_seq != want_seq)
        rc = evb_err_set(err, EVB_EINVAL,
                         "salvage: event %llu would be %llu in the copy (is %s a new log?)",
                         (unsigned long long)want_seq, (unsigned long long)r.first_seq,
                         s->dst->dir);
    if (rc != EVB_OK) return rc;
    return ++s->staged >= SALVAGE_BATCH ? s_commit(s, err) : EVB_OK;
}

/* A marker event for each sequence of [from, to]. */
static int s_markers(salvage *s, uint64_t from, uint64_t to, evb_err *err)
{
    char stream[64];
    snprintf(stream, sizeof stream, "evbus.hole-%llu", (unsigned long long)from);
    s->payload.len = 0; /* {"from": from, "to": to} */
    uint8_t m[1 + 5 + 9 + 3 + 9];
    size_t n = 0;
    m[n++] = 0x82;
    m[n++] = 0xa4;
    memcpy(m + n, "from", 4);
    n += 4;
    m[n++] = 0xcf;
    be64_put(m + n, from);
    n += 8;
    m[n++] = 0xa2;
    memcpy(m + n, "to", 2);
    n += 2;
    m[n++] = 0xcf;
    be64_put(m + n, to);
    n += 8;
    int rc = evb_buf_append(&s->payload, m, n, err);
    for (uint64_t seq = from; rc == EVB_OK && seq <= to; seq++) {
        evb_event_t ev = {0};
        ev.type = "Unreadable";
        ev.payload = s->payload.data;
        ev.payload_len = s->payload.len;
        rc = s_stage(s, stream, 0, &ev, seq, err);
    }
    return rc;
}

/* Every readable event at its sequence, markers in the holes. */
static int s_events(salvage *s, evb_err *err)
{
    uint64_t head = atomic_load(&s->src->head);
    evb_iter_t *it = evb_store_read_range(s->src, 1, head, NULL, err);
    if (it == NULL) return err ? err->code : EVB_EIO;
    const evb_event_t *ev;
    uint64_t next = 1;
    int rc = EVB_OK;
    for (;;) {
        while (rc == EVB_OK && evb_iter_next(it, &ev, err)) {
            evb_event_t copy = *ev; /* lent strings; the copy's block is not ours */
            copy.priv.block = NULL;
            copy.priv.cap = 0;
            rc = s_stage(s, ev->stream, ev->version, &copy, ev->seq, err);
            s->info.events++;
            next = ev->seq + 1;
            if (s->cb != NULL && s->cb->progress != NULL && (ev->seq & 0xffff) == 0)
                s->cb->progress(s->cb->ctx, ev->seq, head);
        }
        uint64_t from, to;
        if (rc != EVB_OK || (err && err->code != EVB_ECORRUPT) ||
            !evb_iter_hole(it, &from, &to))
            break;
        if (s->cb != NULL && s->cb->hole != NULL) s->cb->hole(s->cb->ctx, from, to, err->msg);
        evb_err_clear(err);
        s->info.holes++;
        s->info.unreadable += to - from + 1;
        if ((rc = s_markers(s, from, to, err)) != EVB_OK) break;
        next = to + 1;
        if (!evb_iter_resume(it)) break;
    }
    if (rc == EVB_OK && err && err->code != EVB_OK) rc = err->code;
    evb_iter_destroy(&it);
    if (rc == EVB_OK && next <= head) { /* nothing readable after a hole at the end */
        if (s->cb != NULL && s->cb->hole != NULL)
            s->cb->hole(s->cb->ctx, next, head, "the last events cannot be read");
        s->info.holes++;
        s->info.unreadable += head - next + 1;
        rc = s_markers(s, next, head, err);
    }
    if (rc == EVB_OK) rc = s_commit(s, err);
    s->info.head = head;
    return rc;
}

/* Consumer keys, checkpoints and snapshots, as they are. */
static int s_keys(salvage *s, evb_err *err)
{
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_fill_cache(ro, 0);
    leveldb_readoptions_set_verify_checksums(ro, 1);
    leveldb_iterator_t *li = leveldb_create_iterator(s->src->db, ro);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    size_t bytes = 0;
    char *e = NULL;
    static const char kinds[] = {K_CKPT, K_SNAP, K_USER};
    for (size_t i = 0; i < sizeof kinds && e == NULL; i++) {
        for (leveldb_iter_seek(li, &kinds[i], 1); leveldb_iter_valid(li) && e == NULL;
             leveldb_iter_next(li)) {
            size_t kl, vl;
            const char *k = leveldb_iter_key(li, &kl);
            if (kl == 0 || k[0] != kinds[i]) break;
            const char *v = leveldb_iter_value(li, &vl);
            leveldb_writebatch_put(wb, k, kl, v, vl);
            s->info.keys++;
            bytes += kl + vl;
            if (bytes >= SALVAGE_KEY_BATCH) {
                leveldb_write(s->dst->db, s->dst->wo, wb, &e);
                leveldb_writebatch_clear(wb);
                bytes = 0;
            }
        }
    }
    if (e == NULL) leveldb_write(s->dst->db, s->dst->wo_sync, wb, &e);
    char *ie = NULL;
    leveldb_iter_get_error(li, &ie);
    if (ie != NULL) { /* a damaged block of them: skipped by the iterator */
        s->info.keys_damaged = true;
        leveldb_free(ie);
    }
    leveldb_writebatch_destroy(wb);
    leveldb_iter_destroy(li);
    leveldb_readoptions_destroy(ro);
    return e != NULL ? st_ldb_err(s->dst, e, "writing consumer keys", err) : EVB_OK;
}

int evb_store_salvage(evb_store_t *src, const char *dest, const evb_salvage_cbs *cb,
                      evb_salvage_info *out, evb_err *err)
{
    if (out != NULL) memset(out, 0, sizeof *out);
    if (src == NULL || dest == NULL || !src->read_only)
        return evb_err_set(err, EVB_EINVAL,
                           "salvage: open the log with read_only_intent to salvage it");
    struct stat sb;
    if (stat(dest, &sb) == 0)
        return evb_err_set(err, EVB_EINVAL,
                           "%s: already exists (a salvage writes a new directory)", dest);
    if (mkdir(dest, 0755) != 0)
        return evb_err_set(err, EVB_EIO, "%s: cannot create: %s", dest, strerror(errno));
    evb_store_opts o = {0};
    o.dir = dest;
    o.service = src->service;
    o.create = true;
    o.sync = EVB_SYNC_NONE; /* fsynced once at the end (the key write, the close) */
    o.index_mode = EVB_INDEX_THREAD;
    evb_store_t *dst = evb_store_open(&o, err);
    if (dst == NULL) return err ? err->code : EVB_EIO;
    salvage s = {.src = src, .dst = dst, .cb = cb};
    int rc = s_take_identity(src, dst, err);
    if (rc == EVB_OK) rc = s_events(&s, err);
    if (rc == EVB_OK) rc = s_keys(&s, err);
    if (s.tx != NULL) evb_txn_destroy(&s.tx);
    evb_buf_free(&s.payload);
    evb_store_destroy(&dst); /* the indexer finishes at the next open */
    if (out != NULL) *out = s.info;
    return rc;
}

/* Copy the regular files of dir (not LOCK, not LevelDB's info logs) into the
 * new directory copy. */
static int s_copy_files(const char *dir, const char *copy, evb_err *err)
{
    DIR *dp = opendir(dir);
    if (dp == NULL) return evb_err_set(err, EVB_EIO, "%s: %s", dir, strerror(errno));
    int rc = EVB_OK;
    char buf[1 << 16];
    struct dirent *de;
    while (rc == EVB_OK && (de = readdir(dp)) != NULL) {
        const char *n = de->d_name;
        struct stat sb;
        if (fstatat(dirfd(dp), n, &sb, 0) != 0 || !S_ISREG(sb.st_mode) ||
            strcmp(n, "LOCK") == 0 || strncmp(n, "LOG", 3) == 0)
            continue;
        int in = openat(dirfd(dp), n, O_RDONLY | O_CLOEXEC);
        char path[PATH_MAX];
        int pn = snprintf(path, sizeof path, "%s/%s", copy, n);
        int out = (pn > 0 && (size_t)pn < sizeof path)
                      ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)
                      : -1;
        ssize_t r = 0;
        while (in >= 0 && out >= 0 && (r = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)r) != r) r = -1;
        if (in < 0 || out < 0 || r < 0)
            rc = evb_err_set(err, EVB_EIO, "copying %s/%s to %s: %s", dir, n, copy,
                             strerror(errno));
        if (in >= 0) close(in);
        if (out >= 0) close(out);
    }
    closedir(dp);
    return rc;
}

/* ---- Tables RepairDB could not read (copy/lost/) ----
 * RepairDB moves a table whose footer or index block is damaged to lost/
 * whole, though its data blocks may all be good: rawtable.c finds them by
 * their checksums. Their events go back into the copy where the copy has no
 * such key; so do consumer keys, checkpoints, snapshots and the log's
 * identity, the newest of each key in the lost tables, unless a table the
 * copy kept has a newer entry for it (a later value, or a deletion that
 * hides it) or the copy has the key at all. */

typedef struct lost_kv {
    uint8_t *k, *v;
    size_t kl, vl;
    uint64_t seq;
    unsigned type;
    bool drop;
} lost_kv;

typedef struct lost {
    leveldb_t *db; /* the copy, open in the second pass only */
    leveldb_readoptions_t *ro;
    leveldb_writebatch_t *wb;
    size_t batched; /* bytes in wb */
    char *e;        /* the first LevelDB error */
    bool oom;
    uint64_t events, keys; /* put back */
    lost_kv *kv;           /* the other kinds (first pass) */
    size_t nkv, cap;
} lost;

/* The log's identity keys (FORMAT.md's table: DIR's M keys). */
static bool s_identity_key(const uint8_t *k, size_t kl)
{
    static const char *const names[] = {META_FORMAT, META_LOGID, META_SERVICE, META_SEALKEY};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (kl == strlen(names[i]) && memcmp(k, names[i], kl) == 0) return true;
    return false;
}

static bool s_lost_kind(const uint8_t *k, size_t kl)
{
    return kl > 0 && (k[0] == K_USER || k[0] == K_CKPT || k[0] == K_SNAP ||
                      (k[0] == K_META && s_identity_key(k, kl)));
}

static void s_lost_flush(lost *l)
{
    if (l->batched == 0 || l->e != NULL) return;
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_write(l->db, wo, l->wb, &l->e);
    leveldb_writeoptions_destroy(wo);
    leveldb_writebatch_clear(l->wb);
    l->batched = 0;
}

static bool s_lost_absent(lost *l, const uint8_t *k, size_t kl)
{
    size_t vl;
    char *e = NULL;
    char *v = leveldb_get(l->db, l->ro, (const char *)k, kl, &vl, &e);
    if (v != NULL) leveldb_free(v);
    if (e != NULL) {
        if (l->e == NULL)
            l->e = e;
        else
            leveldb_free(e);
    }
    return v == NULL && e == NULL;
}

static void s_lost_put(lost *l, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
    leveldb_writebatch_put(l->wb, (const char *)k, kl, (const char *)v, vl);
    l->batched += kl + vl;
    if (l->batched >= SALVAGE_KEY_BATCH) s_lost_flush(l);
}

/* First pass: the kinds other than events, kept in memory. */
static int s_lost_collect(void *ctx, const rt_entry *e)
{
    lost *l = ctx;
    if (!s_lost_kind(e->key, e->klen)) return 0;
    if (l->nkv == l->cap) {
        size_t c = l->cap ? 2 * l->cap : 64;
        lost_kv *a = realloc(l->kv, c * sizeof *a);
        if (a == NULL) goto oom;
        l->kv = a;
        l->cap = c;
    }
    lost_kv *x = &l->kv[l->nkv];
    memset(x, 0, sizeof *x);
    x->k = malloc(e->klen + e->vlen + 1);
    if (x->k == NULL) goto oom;
    memcpy(x->k, e->key, e->klen);
    x->v = x->k + e->klen;
    if (e->vlen > 0) memcpy(x->v, e->val, e->vlen);
    x->kl = e->klen;
    x->vl = e->vlen;
    x->seq = e->seq;
    x->type = e->type;
    l->nkv++;
    return 0;
oom:
    l->oom = true;
    return 1;
}

static int s_kv_keycmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c != 0 ? c : (al > bl) - (al < bl);
}

static int s_kv_cmp(const void *pa, const void *pb) /* key, then newest first */
{
    const lost_kv *a = pa, *b = pb;
    int c = s_kv_keycmp(a->k, a->kl, b->k, b->kl);
    return c != 0 ? c : (a->seq < b->seq) - (a->seq > b->seq);
}

/* A table the copy kept: an entry newer than a lost one hides it. */
static int s_lost_kept(void *ctx, const rt_entry *e)
{
    lost *l = ctx;
    size_t lo = 0, hi = l->nkv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = s_kv_keycmp(l->kv[mid].k, l->kv[mid].kl, e->key, e->klen);
        if (c == 0) {
            if (e->seq > l->kv[mid].seq) l->kv[mid].drop = true;
            break;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Second pass: events the copy lacks go back. */
static int s_lost_events(void *ctx, const rt_entry *e)
{
    lost *l = ctx;
    if (e->klen == 9 && e->key[0] == K_EVENT && e->type == 1 && s_lost_absent(l, e->key, 9)) {
        s_lost_put(l, e->key, 9, e->val, e->vlen);
        l->events++;
    }
    return l->e != NULL ? 1 : 0;
}

static bool s_is_table(const char *n)
{
    size_t len = strlen(n);
    return len > 4 &&
           (strcmp(n + len - 4, ".ldb") == 0 || strcmp(n + len - 4, ".sst") == 0);
}

/* Scan each table in dir with fn. */
static int s_scan_tables(const char *dir, rt_entry_fn fn, lost *l, bool tell, evb_err *err)
{
    DIR *dp = opendir(dir);
    if (dp == NULL) return evb_err_set(err, EVB_EIO, "%s: %s", dir, strerror(errno));
    int rc = EVB_OK;
    struct dirent *de;
    while (rc == EVB_OK && (de = readdir(dp)) != NULL) {
        if (!s_is_table(de->d_name)) continue;
        char path[PATH_MAX];
        int pn = snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (pn < 0 || (size_t)pn >= sizeof path) continue;
        rt_stats st;
        uint64_t ev = l->events;
        int r = rt_scan_file(path, fn, l, &st);
        if (r == -1 && !l->oom && l->e == NULL)
            rc = evb_err_set(err, EVB_EIO, "reading %s: %s", path, strerror(errno));
        else if (l->oom)
            rc = evb_err_set(err, EVB_ENOMEM, "out of memory reading %s", path);
        else if (l->e != NULL)
            rc = evb_err_set(err, EVB_EIO, "putting back the events of %s: %s", path, l->e);
        else if (tell)
            evb_log(EVB_LOG_INFO,
                    "%s: a table RepairDB could not read: %llu blocks read from its bytes "
                    "(%llu entries, %llu bytes in no block), %llu events put back",
                    path, (unsigned long long)st.blocks, (unsigned long long)st.entries,
                    (unsigned long long)st.skipped, (unsigned long long)(l->events - ev));
    }
    closedir(dp);
    return rc;
}

static int s_recover_lost(const char *copy, evb_err *err)
{
    char lostdir[PATH_MAX];
    int pn = snprintf(lostdir, sizeof lostdir, "%s/lost", copy);
    if (pn < 0 || (size_t)pn >= sizeof lostdir)
        return evb_err_set(err, EVB_EINVAL, "%s: path too long", copy);
    struct stat sb;
    if (stat(lostdir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return EVB_OK; /* nothing lost */
    lost l = {0};
    /* First pass, the copy closed: the other kinds, the newest of each key,
     * and whether a kept table has a newer entry (before any open: a
     * compaction could drop a deletion that hides a lost value). */
    int rc = s_scan_tables(lostdir, s_lost_collect, &l, false, err);
    if (rc == EVB_OK && l.nkv > 0) {
        qsort(l.kv, l.nkv, sizeof *l.kv, s_kv_cmp);
        size_t w = 0;
        for (size_t i = 0; i < l.nkv; i++) {
            if (w > 0 && s_kv_keycmp(l.kv[w - 1].k, l.kv[w - 1].kl, l.kv[i].k, l.kv[i].kl) == 0) {
                free(l.kv[i].k); /* an older version */
                continue;
            }
            l.kv[w++] = l.kv[i];
        }
        l.nkv = w;
        rc = s_scan_tables(copy, s_lost_kept, &l, false, err);
    }
    /* Second pass, the copy open: events, then the other kinds. */
    leveldb_options_t *o = leveldb_options_create();
    if (rc == EVB_OK) {
        char *e = NULL;
        l.db = leveldb_open(o, copy, &e);
        if (l.db == NULL) {
            rc = evb_err_set(err, EVB_ECORRUPT, "opening the repaired copy %s: %s", copy,
                             e ? e : "?");
            leveldb_free(e);
        }
    }
    if (rc == EVB_OK) {
        l.ro = leveldb_readoptions_create();
        l.wb = leveldb_writebatch_create();
        rc = s_scan_tables(lostdir, s_lost_events, &l, true, err);
        for (size_t i = 0; rc == EVB_OK && i < l.nkv && l.e == NULL; i++) {
            lost_kv *x = &l.kv[i];
            if (x->type != 1 || x->drop || !s_lost_absent(&l, x->k, x->kl)) continue;
            s_lost_put(&l, x->k, x->kl, x->v, x->vl);
            l.keys++;
        }
        s_lost_flush(&l);
        if (rc == EVB_OK && l.e != NULL)
            rc = evb_err_set(err, EVB_EIO, "writing to the repaired copy %s: %s", copy, l.e);
        if (rc == EVB_OK && (l.events > 0 || l.keys > 0))
            evb_log(EVB_LOG_INFO,
                    "%s: %llu events and %llu consumer keys, checkpoints, snapshots or identity "
                    "keys put back from tables RepairDB could not read",
                    copy, (unsigned long long)l.events, (unsigned long long)l.keys);
        leveldb_writebatch_destroy(l.wb);
        leveldb_readoptions_destroy(l.ro);
        leveldb_close(l.db);
    }
    leveldb_options_destroy(o);
    if (l.e != NULL) leveldb_free(l.e);
    for (size_t i = 0; i < l.nkv; i++)
        free(l.kv[i].k);
    free(l.kv);
    return rc;
}

int evb_store_repair_copy(const char *dir, const char *copy, evb_err *err)
{
    struct stat sb;
    if (stat(copy, &sb) == 0)
        return evb_err_set(err, EVB_EINVAL, "%s: already exists", copy);
    if (mkdir(copy, 0700) != 0)
        return evb_err_set(err, EVB_EIO, "%s: cannot create: %s", copy, strerror(errno));
    int rc = s_copy_files(dir, copy, err);
    if (rc != EVB_OK) return rc;
    leveldb_options_t *o = leveldb_options_create();
    char *e = NULL;
    leveldb_repair_db(o, copy, &e);
    leveldb_options_destroy(o);
    if (e != NULL) {
        rc = evb_err_set(err, EVB_ECORRUPT, "repairing a copy of %s in %s: %s", dir, copy, e);
        leveldb_free(e);
    }
    if (rc == EVB_OK) rc = s_recover_lost(copy, err);
    return rc;
}
