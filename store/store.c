/*
 * store.c: opening, reopening and closing a log, its metadata and head, and
 * the helpers every file of the store uses. The rest of the store:
 * state.c (in-memory stream versions, id filter), txn.c (transactions,
 * appends), durability.c (sync, group fsync), consumer.c (key/values,
 * checkpoints, snapshots), indexer.c, read.c and verify.c.
 *
 * Key decisions (measured figures and reasons in store/FORMAT.md):
 *  - Nothing records the head: it is the last event key, found by one seek at
 *    open, so an append's batch holds its events and nothing else.
 *  - Opening rebuilds the in-memory state from the log: every stored id into
 *    the Bloom filter, the category stats, then the unindexed tail (events
 *    past the indexer's position) into the exact maps.
 *  - A directory that is not a log is refused, except what a creation killed
 *    half-way leaves (LevelDB's first files, or no format record in an empty
 *    database), which open with create takes over.
 *  - A reopen (after a failed write) reads the position, the head and the
 *    maps from the log again: whatever the failed write left, the log is the
 *    truth. One whose LevelDB open fails leaves the store closed: reads,
 *    transactions and sync then say EVB_ECLOSED.
 */
#include "store_int.h"
#include "codec_int.h"
#include "bgenv.h"
#include "roenv.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
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

int st_get(evb_store_t *st, leveldb_t *db, const leveldb_readoptions_t *ro,
           const void *key, size_t klen, char **val, size_t *vlen, evb_err *err)
{
    *val = NULL;
    if (db == NULL)
        return evb_err_set(err, EVB_ECLOSED, "%s: the log is closed (a reopen failed)",
                           st->dir);
    char *e = NULL;
    *val = leveldb_get(db, ro ? ro : st->ro, key, klen, vlen, &e);
    if (e != NULL) return st_ldb_err(st, e, "read", err);
    return EVB_OK;
}

const char *st_seek_last(leveldb_iterator_t *it, const void *prefix, size_t plen,
                         const void *bound, size_t blen, size_t *klen)
{
    leveldb_iter_seek(it, bound, blen);
    if (leveldb_iter_valid(it))
        leveldb_iter_prev(it);
    else
        leveldb_iter_seek_to_last(it);
    if (!leveldb_iter_valid(it)) return NULL;
    const char *k = leveldb_iter_key(it, klen);
    if (*klen < plen || memcmp(k, prefix, plen) != 0) return NULL;
    return k;
}

bool st_seek_last_version(leveldb_iterator_t *it, char prefix, const char *name,
                          size_t nlen, uint64_t *version)
{
    uint8_t key[KEY_MAX];
    size_t klen = key_name_num(key, prefix, name, nlen, UINT64_MAX), kl;
    const char *k = st_seek_last(it, key, 2 + nlen, key, klen, &kl);
    if (k == NULL || kl != klen) return false;
    *version = be64_get(k + 2 + nlen);
    return true;
}

bool st_run_decode(char kind, const char *k, size_t kl, size_t nlen, const char *v,
                   size_t vl, ix_run *r)
{
    if (kl != nlen + 10 || k[0] != kind || k[1 + nlen] != 0) return false;
    r->first = be64_get(k + 2 + nlen);
    if (kind == K_STREAM) {
        if (vl != 8 && vl != 16) return false;
        r->seq = be64_get(v);
        r->count = vl == 16 ? be64_get(v + 8) : 1;
    } else {
        if (vl != 0 && vl != 8) return false;
        r->seq = r->first;
        r->count = vl == 8 ? be64_get(v) : 1;
    }
    /* Versions and seqs start at 1; a run may not wrap. */
    return r->first > 0 && r->seq > 0 && r->count > 0 &&
           r->count <= UINT64_MAX - r->first && r->count <= UINT64_MAX - r->seq;
}

int st_seek_run(leveldb_iterator_t *it, char kind, const char *name, size_t nlen,
                uint64_t n, ix_run *r)
{
    uint8_t key[KEY_MAX];
    size_t klen = key_name_num(key, kind, name, nlen, n), kl, vl;
    leveldb_iter_seek(it, (const char *)key, klen);
    bool found = leveldb_iter_valid(it);
    if (found) { /* an entry that starts at n */
        const char *k = leveldb_iter_key(it, &kl);
        if (kl == klen && memcmp(k, key, klen) == 0) {
            const char *v = leveldb_iter_value(it, &vl);
            return st_run_decode(kind, k, kl, nlen, v, vl, r) ? 1 : -1;
        }
        leveldb_iter_prev(it);
    } else {
        leveldb_iter_seek_to_last(it);
    }
    if (leveldb_iter_valid(it)) { /* a run that starts before n */
        const char *k = leveldb_iter_key(it, &kl);
        if (kl == klen && memcmp(k, key, klen - 8) == 0) {
            const char *v = leveldb_iter_value(it, &vl);
            if (!st_run_decode(kind, k, kl, nlen, v, vl, r)) return -1;
            if (n - r->first < r->count) return 1;
        }
    }
    leveldb_iter_seek(it, (const char *)key, klen);
    return 0;
}

int st_stream_last(leveldb_iterator_t *it, const char *stream, size_t nlen,
                   uint64_t *version, uint64_t *seq)
{
    uint64_t first;
    if (!st_seek_last_version(it, K_STREAM, stream, nlen, &first)) return 0;
    size_t kl, vl;
    const char *k = leveldb_iter_key(it, &kl);
    const char *v = leveldb_iter_value(it, &vl);
    ix_run r;
    if (!st_run_decode(K_STREAM, k, kl, nlen, v, vl, &r)) return -1;
    *version = r.first + r.count - 1;
    *seq = r.seq + r.count - 1;
    return 1;
}

bool st_peek_stream(const void *buf, size_t len, uint64_t *seq, const char **stream,
                    size_t *slen)
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
    uint64_t v = 0;
    if (p[0] <= 0x7f) {
        v = p[0];
        p += 1;
    } else if (p[0] >= 0xcc && p[0] <= 0xcf) {
        size_t w = (size_t)1 << (p[0] - 0xcc);
        if ((size_t)(end - p) < 1 + w) return false;
        for (size_t i = 1; i <= w; i++)
            v = (v << 8) | p[i];
        p += 1 + w;
    } else {
        return false;
    }
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
    if (seq != NULL) *seq = v;
    *stream = (const char *)p;
    *slen = n;
    return true;
}

void st_bgenv_call(void (*fn)(void *), void *arg)
{
    fn(arg);
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

/* Open the LevelDB at path into *out, naming what went wrong. A read-only
 * store reads through a view of its own (*env, roenv.h): nothing on disk
 * changes, the owner's lock is not needed, read permission is enough. */
static int s_ldb_open(evb_store_t *st, leveldb_options_t *o, const char *path,
                      bool create, leveldb_t **out, leveldb_env_t **env, evb_err *err)
{
    char *e = NULL;
    if (st->read_only && *env == NULL) {
        char why[PATH_MAX + 128];
        if ((*env = st_roenv_new(path, why, sizeof why)) == NULL)
            return evb_err_set(err, EVB_EIO, "cannot read %s", why);
    }
    /* Options of a read-only store are used only here, each time with the
     * view of that open (a NULL env would be LevelDB's "no env" crash). */
    if (*env != NULL) leveldb_options_set_env(o, *env);
    leveldb_options_set_create_if_missing(o, create);
    *out = leveldb_open(o, path, &e);
    st_roenv_seal(*env);
    if (e == NULL) return EVB_OK;
    *out = NULL;
    st_roenv_destroy(*env);
    *env = NULL;
    int rc;
    if (strstr(e, "lock") != NULL || strstr(e, "LOCK") != NULL)
        rc = evb_err_set(err, EVB_ELOCKED,
                         "log is in use by another process: %s (LevelDB: %s); stop the "
                         "service that owns it, or read it through the bus",
                         st->dir, e);
    else if (strstr(e, "Corruption") != NULL)
        rc =
            evb_err_set(err, EVB_ECORRUPT, "%s: LevelDB reports corruption: %s", path, e);
    else if (strstr(e, "No space left") != NULL || strstr(e, "File too large") != NULL ||
             strstr(e, "Disk quota exceeded") != NULL)
        /* Opening writes (recovery flushes the old log into a table, and a
         * new log and manifest are made): short of space it fails, and
         * succeeds again once there is room. */
        rc = evb_err_set(err, EVB_EUNWRITABLE,
                         "%s: cannot open LevelDB for want of space: %s; it opens again "
                         "once space is freed",
                         path, e);
    else
        rc = evb_err_set(err, EVB_EIO, "%s: cannot open LevelDB: %s", path, e);
    leveldb_free(e);
    return rc;
}

static int s_open_db(evb_store_t *st, bool create, evb_err *err)
{
    /* Writable: table blocks checked in hardware where the CPU can
     * (bgenv.cc); LevelDB's own background thread. */
    if (!st->read_only && st->db_bg == NULL) {
        if ((st->db_bg = st_bgenv_new(false)) == NULL)
            return evb_err_set(err, EVB_ENOMEM, "%s: out of memory opening the log",
                               st->dir);
        leveldb_options_set_env(st->options, st->db_bg);
    }
    /* Without that Env (read-only) every read checks block checksums:
     * a block read unchecked would also go into the block cache, where the
     * checked reads after it find it (a read-only open once loaded a damaged
     * block of the unindexed events unchecked, and cat, verify, salvage and
     * serve then gave its garbled events as good). */
    leveldb_readoptions_set_verify_checksums(st->ro, st_ldb_checks(st));
    return s_ldb_open(st, st->options, st->dir, create, &st->db, &st->db_env, err);
}

/* The index database. Format 1 keeps the indexes with the events; from
 * format 2 they are DIR/index, made when missing (they are derived: removing
 * the directory makes the indexer build them again from the log). */
static int s_reset_ix(evb_store_t *st, evb_err *err);
static int s_open_ix(evb_store_t *st, evb_err *err);
static void s_close_idb(evb_store_t *st);
static int s_open_idb(evb_store_t *st, evb_err *err);
static int s_meta_u64_in(evb_store_t *st, leveldb_t *db, const char *name, uint64_t *out,
                         evb_err *err);

/* The index is derived: a damaged one (it does not open, or a read of its
 * metadata fails) is read without by a tool and made again by a writer,
 * never a reason to refuse the log. */
static int s_ix_damaged(evb_store_t *st, const char *why, evb_err *err)
{
    if (st->read_only) {
        evb_log(EVB_LOG_WARN,
                "%s/index is damaged (%s); reading the log without it (it is derived: the "
                "next writable open builds it again)",
                st->dir, why);
        s_close_idb(st);
        if (st->ix != NULL && st->ix != st->db) leveldb_close(st->ix);
        st_roenv_destroy(st->ix_env);
        st->ix_env = NULL;
        st->ix = st->db; /* no index entries there: reads scan the events */
        st->ix_broken = true;
        atomic_store(&st->indexed, 0);
        atomic_store(&st->nstreams, 0);
        return EVB_OK;
    }
    evb_log(EVB_LOG_WARN, "%s/index is damaged (%s); building it again (it is derived)",
            st->dir, why);
    return s_reset_ix(st, err); /* also when it did not open: removes what is there */
}

/* Close the id database (and its view); nothing sealed is known then. */
static void s_close_idb(evb_store_t *st)
{
    if (st->idb != NULL) leveldb_close(st->idb);
    st->idb = NULL;
    st_roenv_destroy(st->idb_env);
    st->idb_env = NULL;
    atomic_store(&st->id_sealed, 0);
}

/* The id database's epoch size at creation: IDS_EPOCH_BITS, or in test
 * builds EVB_TEST_ID_EPOCH_BITS (small epochs, so that tests seal many). */
static unsigned s_idb_bits_new(void)
{
#ifdef EVB_CRASH_POINTS
    const char *e = getenv("EVB_TEST_ID_EPOCH_BITS");
    if (e != NULL && atoi(e) >= 1 && atoi(e) <= 24) return (unsigned)atoi(e);
#endif
    return IDS_EPOCH_BITS;
}

/* The id database (format 6): DIR/index/ids, made when missing as the index
 * is (both are derived, and reset together). A read-only open that finds
 * none reads without it: the tail it loads then holds every caller id. */
static int s_open_idb(evb_store_t *st, evb_err *err)
{
    atomic_store(&st->id_sealed, 0);
    st->idb_bits = IDS_EPOCH_BITS;
    st->idb_fresh = false;
    if (!st_ids_apart(st)) return EVB_OK;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/index/ids", st->dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return evb_err_set(err, EVB_EINVAL, "%s: path too long", st->dir);
    if (st->read_only && st->idb_env == NULL) return EVB_OK; /* none (s_open) */
    if (!st->read_only && st->idb_bg == NULL) {
        /* A background thread of its own too: its flushes then never
         * wait behind the index's compactions. */
        if ((st->idb_bg = st_bgenv_new(true)) == NULL)
            return evb_err_set(err, EVB_ENOMEM, "%s: out of memory opening the id database",
                               st->dir);
        leveldb_options_set_env(st->idb_options, st->idb_bg);
    }
    evb_err ierr = {0};
    int rc = s_ldb_open(st, st->idb_options, path, true, &st->idb, &st->idb_env, &ierr);
    if (rc == EVB_ECORRUPT) return s_ix_damaged(st, ierr.msg, err);
    if (rc != EVB_OK) return evb_err_set(err, rc, "%s", ierr.msg);
    char *v;
    size_t vl;
    rc = st_get(st, st->idb, NULL, META_IDBITS, strlen(META_IDBITS), &v, &vl, &ierr);
    if (rc == EVB_ECORRUPT) return s_ix_damaged(st, ierr.msg, err);
    if (rc != EVB_OK) return evb_err_set(err, rc, "%s", ierr.msg);
    if (v != NULL) {
        bool ok = vl == 1 && v[0] >= 1 && v[0] <= 40;
        if (ok) st->idb_bits = (unsigned)v[0];
        leveldb_free(v);
        if (!ok) return s_ix_damaged(st, "its metadata idbits is not one byte 1..40", err);
    } else if (!st->read_only) { /* new */
        st->idb_bits = s_idb_bits_new();
        /* Upgraded by this open: the ids up to the indexer's position are in
         * the index, as before; the id database takes those after it. Its
         * seal is written with its creation, so that no id database is ever
         * sealed short of them. */
        uint64_t seal = 0;
        if (st->upgraded &&
            (rc = s_meta_u64_in(st, st->ix, META_IXPOS, &seal, &ierr)) != EVB_OK)
            return rc == EVB_ECORRUPT ? s_ix_damaged(st, ierr.msg, err)
                                      : evb_err_set(err, rc, "%s", ierr.msg);
        uint8_t val[8], bits = (uint8_t)st->idb_bits;
        be64_put(val, seal);
        leveldb_writebatch_t *wb = leveldb_writebatch_create();
        leveldb_writebatch_put(wb, META_IDBITS, strlen(META_IDBITS), (const char *)&bits,
                               1);
        leveldb_writebatch_put(wb, META_IDSEAL, strlen(META_IDSEAL), (const char *)val,
                               8);
        char *e = NULL;
        leveldb_write(st->idb, st->wo, wb, &e);
        leveldb_writebatch_destroy(wb);
        if (e != NULL) return st_ldb_err(st, e, "writing the id database's metadata", err);
        st->idb_fresh = true; /* s_load_meta: sealed up to where? */
    }
    uint64_t sealed = 0;
    rc = s_meta_u64_in(st, st->idb, META_IDSEAL, &sealed, &ierr);
    if (rc == EVB_ECORRUPT) return s_ix_damaged(st, ierr.msg, err);
    if (rc != EVB_OK) return evb_err_set(err, rc, "%s", ierr.msg);
    atomic_store(&st->id_sealed, sealed);
    return EVB_OK;
}

static int s_open_ix(evb_store_t *st, evb_err *err)
{
    if (st->format < 2) {
        st->ix = st->db;
        return EVB_OK;
    }
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/index", st->dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return evb_err_set(err, EVB_EINVAL, "%s: path too long", st->dir);
    evb_err ierr = {0};
    /* A background thread of its own (bgenv.cc): the index's compactions
     * then never hold up the flushes of the events' memtables. */
    if (!st->read_only && st->ix_bg == NULL) {
        if ((st->ix_bg = st_bgenv_new(true)) == NULL)
            return evb_err_set(err, EVB_ENOMEM, "%s: out of memory opening the index",
                               st->dir);
        leveldb_options_set_env(st->ix_options, st->ix_bg);
    }
    int rc = s_ldb_open(st, st->ix_options, path, true, &st->ix, &st->ix_env, &ierr);
    if (rc == EVB_ECORRUPT) return s_ix_damaged(st, ierr.msg, err);
    if (rc != EVB_OK) return evb_err_set(err, rc, "%s", ierr.msg);
    /* The index names the log it indexes: an index/ left behind by another
     * log (a directory put in its place) is stale, whatever its position. */
    char *v;
    size_t vl;
    if ((rc = st_get(st, st->ix, NULL, META_LOGID, strlen(META_LOGID), &v, &vl, &ierr)) ==
        EVB_ECORRUPT)
        return s_ix_damaged(st, ierr.msg, err);
    if (rc != EVB_OK) return evb_err_set(err, rc, "%s", ierr.msg);
    st->ix_foreign = v != NULL && (vl != EVB_ID_LEN || memcmp(v, st->log_id.b, vl) != 0);
    if (v != NULL) leveldb_free(v);
    if (v == NULL && !st->read_only) {
        char *e = NULL;
        leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
        leveldb_put(st->ix, wo, META_LOGID, strlen(META_LOGID), (const char *)st->log_id.b,
                    EVB_ID_LEN, &e);
        leveldb_writeoptions_destroy(wo);
        if (e != NULL) return st_ldb_err(st, e, "writing the index's log id", err);
    }
    return s_open_idb(st, err);
}

int evb_store_backup(evb_store_t *st, const char *dest, evb_backup_info *out, evb_err *err)
{
    if (st == NULL || dest == NULL || !st->read_only || st->db_env == NULL)
        return evb_err_set(err, EVB_EINVAL,
                           "backup: open the log with read_only_intent to back it up");
    evb_backup_info bi = {.head = atomic_load(&st->head)};
    char why[PATH_MAX + 128];
    if (st_roenv_copy(st->db_env, dest, &bi.bytes_copied, &bi.files_linked, why,
                      sizeof why) != 0)
        return evb_err_set(err, EVB_EIO, "backup of %s: %s", st->dir, why);
    if (st->ix != st->db && st->ix_env != NULL) {
        char ixdir[PATH_MAX];
        int n = snprintf(ixdir, sizeof ixdir, "%s/index", dest);
        if (n < 0 || (size_t)n >= sizeof ixdir)
            return evb_err_set(err, EVB_EINVAL, "backup: %s: path too long", dest);
        if (st_roenv_copy(st->ix_env, ixdir, &bi.bytes_copied, &bi.files_linked, why,
                          sizeof why) != 0)
            return evb_err_set(err, EVB_EIO, "backup of %s/index: %s", st->dir, why);
        if (st->idb != NULL && st->idb_env != NULL) {
            n = snprintf(ixdir, sizeof ixdir, "%s/index/ids", dest);
            if (n < 0 || (size_t)n >= sizeof ixdir)
                return evb_err_set(err, EVB_EINVAL, "backup: %s: path too long", dest);
            if (st_roenv_copy(st->idb_env, ixdir, &bi.bytes_copied, &bi.files_linked, why,
                              sizeof why) != 0)
                return evb_err_set(err, EVB_EIO, "backup of %s/index/ids: %s", st->dir,
                                   why);
        }
    }
    if (out != NULL) *out = bi;
    return EVB_OK;
}

size_t evb_store_tail_damage(const evb_store_t *st, char *msg, size_t cap)
{
    if (cap > 0) snprintf(msg, cap, "%s", st->tail_damage ? st->tail_damage_msg : "");
    return st->tail_damage;
}

/* A read-only open reads past damage in the unindexed events: noted for
 * evb_store_tail_damage and logged. */
__attribute__((format(printf, 2, 3))) static void s_tail_damage(evb_store_t *st, const char *fmt,
                                                             ...)
{
    char m[sizeof st->tail_damage_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    if (st->tail_damage++ == 0) memcpy(st->tail_damage_msg, m, sizeof m);
    evb_log(EVB_LOG_WARN, "%s: %s", st->dir, m);
}

size_t evb_store_wal_damage(const evb_store_t *st, char *msg, size_t cap)
{
    if (cap > 0) msg[0] = '\0';
    return st->db_env != NULL ? st_roenv_drops(st->db_env, msg, cap) : 0;
}

/* The first sequence gap of the events in db: true with [*lo, *hi]. */
static bool s_first_gap(leveldb_t *db, uint64_t *lo, uint64_t *hi)
{
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_fill_cache(ro, 0);
    leveldb_readoptions_set_verify_checksums(ro, 1); /* a read-only view */
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    const char pfx = K_EVENT;
    uint64_t expect = 1;
    bool found = false;
    for (leveldb_iter_seek(it, &pfx, 1); !found && leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl == 0 || k[0] != K_EVENT) break;
        if (kl != 9) continue;
        uint64_t seq = be64_get(k + 1);
        if (seq > expect) {
            *lo = expect;
            *hi = seq - 1;
            found = true;
        }
        expect = seq + 1;
    }
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    return found;
}

/* Before a writable open. LevelDB's recovery skips the damaged records of
 * its write-ahead log and then deletes the log: events after the damage
 * stay, those in it are lost for good, and the next append goes on after a
 * hole. So the recovery is first made in a read-only view (roenv.h); when it
 * dropped bytes and a sequence gap follows, the open is refused with
 * nothing changed. Dropped bytes at the very end (a record torn by a crash)
 * leave no gap: the open goes on as LevelDB would. */
static int s_check_wal(evb_store_t *st, evb_err *err)
{
    char why[PATH_MAX + 128];
    leveldb_env_t *env = st_roenv_new(st->dir, why, sizeof why);
    if (env == NULL) return EVB_OK; /* the open itself names the problem */
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_env(o, env);
    char *e = NULL;
    leveldb_t *db = leveldb_open(o, st->dir, &e);
    st_roenv_seal(env);
    char first[400];
    uint64_t lo = 0, hi = 0;
    int rc = EVB_OK;
    if (db != NULL && st_roenv_drops(env, first, sizeof first) > 0 &&
        s_first_gap(db, &lo, &hi))
        rc = evb_err_set(err, EVB_ECORRUPT,
                         "%s: events %llu..%llu are missing: the write-ahead log is damaged "
                         "(LevelDB: %.200s); refusing to append after a hole. Nothing was "
                         "changed: `evbus log verify` lists the damage, `evbus log salvage` "
                         "copies every readable event into a log that takes appends",
                         st->dir, (unsigned long long)lo, (unsigned long long)hi, first);
    if (db != NULL) leveldb_close(db);
    leveldb_free(e);
    leveldb_options_destroy(o);
    st_roenv_destroy(env);
    return rc;
}

/* Close both databases (the index first: it may be the same as db). */
static void s_close_dbs(evb_store_t *st)
{
    s_close_idb(st);
    if (st->ix != NULL && st->ix != st->db) leveldb_close(st->ix);
    st->ix = NULL;
    if (st->db != NULL) leveldb_close(st->db);
    st->db = NULL;
    st_roenv_destroy(st->ix_env);
    st_roenv_destroy(st->db_env);
    st->ix_env = st->db_env = NULL;
    st_bgenv_destroy(st->ix_bg); /* its thread is idle: the index is closed */
    st_bgenv_destroy(st->idb_bg);
    st->idb_bg = NULL;
    st_bgenv_destroy(st->db_bg);
    st->ix_bg = st->db_bg = NULL;
}

/* Start the index database again from nothing (format >= 2) when it is
 * stale: its position is past the head, so it indexed events the log no
 * longer holds (a power loss took back a suffix that was never fsynced; the
 * index is not fsynced either, and the two databases are written apart), or
 * it is another log's. */
static int s_reset_ix(evb_store_t *st, evb_err *err)
{
    char path[PATH_MAX];
    s_close_idb(st);
    if (st->ix != NULL && st->ix != st->db) leveldb_close(st->ix);
    st->ix = NULL;
    char *e = NULL;
    snprintf(path, sizeof path, "%s/index/ids", st->dir);
    leveldb_destroy_db(st->idb_options, path, &e);
    if (e != NULL) return st_ldb_err(st, e, "removing the id database to rebuild it", err);
    snprintf(path, sizeof path, "%s/index", st->dir);
    leveldb_destroy_db(st->ix_options, path, &e);
    if (e != NULL) return st_ldb_err(st, e, "removing the index to rebuild it", err);
    atomic_store(&st->indexed, 0);
    atomic_store(&st->nstreams, 0);
    st->ix_acc.n = 0;
    st->acc_upto = 0;
    st->ix_old_b = st->ix_old_ids = false;
    return s_open_ix(st, err); /* a new one, with this log's id */
}

/* Write the metadata of a new log: format, log id, service, indexer at 0. */
static int s_init_meta(evb_store_t *st, const char *service, evb_err *err)
{
    int rc = evb_id_random(&st->log_id, err);
    evb_id seal;
    if (rc != EVB_OK || (rc = evb_id_random(&seal, err)) != EVB_OK) return rc;
    uint8_t fmt[4] = {0, 0, 0, EVB_STORE_FORMAT};
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    leveldb_writebatch_put(wb, META_SEALKEY, strlen(META_SEALKEY), (const char *)seal.b,
                           EVB_ID_LEN);
    leveldb_writebatch_put(wb, META_FORMAT, strlen(META_FORMAT), (const char *)fmt, 4);
    leveldb_writebatch_put(wb, META_LOGID, strlen(META_LOGID), (const char *)st->log_id.b,
                           EVB_ID_LEN);
    leveldb_writebatch_put(wb, META_SERVICE, strlen(META_SERVICE), service,
                           strlen(service));
    char *e = NULL;
    leveldb_write(st->db, st->wo_sync, wb, &e);
    leveldb_writebatch_destroy(wb);
    if (e != NULL) return st_ldb_err(st, e, "writing the new log's metadata", err);
    /* A table of its own for these keys: sharing one with the first events
     * would give it a key range [E 1, M ...] that every later event falls
     * into, and LevelDB would merge each new table of events with it
     * instead of moving it down untouched (FORMAT.md, "Two databases"). */
    leveldb_compact_range(st->db, NULL, 0, NULL, 0);
    st->format = EVB_STORE_FORMAT;
    st->ix_runs = true;
    if ((rc = st_seal_init(st, seal.b, err)) != EVB_OK) return rc;
    snprintf(st->service, sizeof st->service, "%s", service);
    return s_open_ix(st, err);
}

/* Formats 3 and 4 differ from 2 only in the index (FORMAT.md, "Index runs",
 * "Sealed ids"), whose older entries they read as they are: the number
 * changes before the indexer writes a run or leaves out a sealed id's entry,
 * so an older build refuses the log instead of misreading it. Format 4 adds
 * the key of sealed ids, written with the number. */
static int s_upgrade(evb_store_t *st, evb_err *err)
{
    evb_id seal;
    bool new_key = st->format < 4; /* format 4 has its key: only the number changes */
    int rc = new_key ? evb_id_random(&seal, err) : EVB_OK;
    if (rc != EVB_OK) return rc;
    uint8_t fmt[4] = {0, 0, 0, EVB_STORE_FORMAT};
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    if (new_key)
        leveldb_writebatch_put(wb, META_SEALKEY, strlen(META_SEALKEY), (const char *)seal.b,
                               EVB_ID_LEN);
    leveldb_writebatch_put(wb, META_FORMAT, strlen(META_FORMAT), (const char *)fmt, 4);
    char *e = NULL;
    leveldb_write(st->db, st->wo_sync, wb, &e);
    leveldb_writebatch_destroy(wb);
    if (e != NULL) return st_ldb_err(st, e, "writing the format number", err);
    /* The keys in a table of their own, beside the other metadata (see
     * s_init_meta); the range is the M keys only. */
    leveldb_compact_range(st->db, "M", 1, "N", 1);
    evb_log(EVB_LOG_INFO, "%s: log format %u -> %u (%s%scaller ids in index/ids)",
            st->dir, st->format, EVB_STORE_FORMAT, st->format < 3 ? "index runs, " : "",
            new_key ? "store-made ids sealed, " : "");
    st->format = EVB_STORE_FORMAT;
    st->upgraded = true;
    return new_key ? st_seal_init(st, seal.b, err) : EVB_OK;
}

static int s_meta_u64_in(evb_store_t *st, leveldb_t *db, const char *name, uint64_t *out,
                         evb_err *err)
{
    char *v;
    size_t vl;
    int rc = st_get(st, db, NULL, name, strlen(name), &v, &vl, err);
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
    int rc = st_get(st, st->db, NULL, META_FORMAT, strlen(META_FORMAT), &v, &vl, err);
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
    if ((rc = st_get(st, st->db, NULL, META_LOGID, strlen(META_LOGID), &v, &vl, err)) !=
        EVB_OK)
        return rc;
    if (v == NULL || vl != EVB_ID_LEN) {
        if (v) leveldb_free(v);
        return evb_err_set(err, EVB_ECORRUPT, "%s: log id record missing or not 16 bytes",
                           st->dir);
    }
    memcpy(st->log_id.b, v, EVB_ID_LEN);
    leveldb_free(v);
    if ((rc = st_get(st, st->db, NULL, META_SERVICE, strlen(META_SERVICE), &v, &vl,
                     err)) != EVB_OK)
        return rc;
    if (v == NULL || vl == 0 || vl > EVB_MAX_SERVICE_LEN) {
        if (v) leveldb_free(v);
        return evb_err_set(err, EVB_ECORRUPT, "%s: service name record missing or bad",
                           st->dir);
    }
    memcpy(st->service, v, vl);
    st->service[vl] = '\0';
    leveldb_free(v);
    if (st->format >= 4) {
        if ((rc = st_get(st, st->db, NULL, META_SEALKEY, strlen(META_SEALKEY), &v, &vl,
                         err)) != EVB_OK)
            return rc;
        if (v == NULL || vl != EVB_ID_LEN) {
            if (v) leveldb_free(v);
            return evb_err_set(err, EVB_ECORRUPT,
                               "%s: key of sealed ids (metadata sealkey) missing or not "
                               "16 bytes",
                               st->dir);
        }
        rc = st_seal_init(st, (const uint8_t *)v, err);
        leveldb_free(v);
        if (rc != EVB_OK) return rc;
    }
    /* Formats 2 to 4 become the current one before the indexer writes an
     * entry of it; a build that knows only the old format then refuses the
     * log rather than miss what is new (FORMAT.md, top). */
    if (st->format >= 2 && st->format < EVB_STORE_FORMAT && !st->read_only &&
        (rc = s_upgrade(st, err)) != EVB_OK)
        return rc;
    st->ix_runs = st->format >= 3;
    if ((rc = s_open_ix(st, err)) != EVB_OK) return rc;
    uint64_t u = 0, ns = 0;
    evb_err ierr = {0};
    if ((rc = s_meta_u64_in(st, st->ix, META_IXPOS, &u, &ierr)) == EVB_OK)
        rc = s_meta_u64_in(st, st->ix, META_NSTREAMS, &ns, &ierr);
    if (rc == EVB_ECORRUPT && st_ix_apart(st)) return s_ix_damaged(st, ierr.msg, err);
    if (rc != EVB_OK) return evb_err_set(err, rc, "%s", ierr.msg);
    atomic_store(&st->indexed, u);
    atomic_store(&st->nstreams, ns);
    bool lost = st->idb_fresh && u > 0 && !st->upgraded;
    st->idb_fresh = st->upgraded = false;
    if (lost) { /* a format 6 index that lost index/ids (s_open_idb) */
        evb_log(EVB_LOG_WARN, "%s/index/ids is missing; building the index again",
                st->dir);
        return s_reset_ix(st, err);
    }
    return EVB_OK;
}

/* The head is the last event key. */
static int s_find_head(evb_store_t *st, evb_err *err)
{
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    const char pfx = K_EVENT, after = K_EVENT + 1;
    uint64_t head = 0;
    size_t kl;
    const char *k = st_seek_last(it, &pfx, 1, &after, 1, &kl);
    if (k != NULL && kl == 9) head = be64_get(k + 1);
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    leveldb_iter_destroy(it);
    if (e != NULL) return st_ldb_err(st, e, "finding the head", err);
    atomic_store(&st->head, head);
    return EVB_OK;
}

/* The indexer's per-category heads and counts into st->cats. */
static int s_load_cat_stats(evb_store_t *st, evb_err *err)
{
    leveldb_iterator_t *it = leveldb_create_iterator(st->ix, st->ro);
    const char cpfx = K_CATSTAT;
    int rc = EVB_OK;
    for (leveldb_iter_seek(it, &cpfx, 1); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        const char *v = leveldb_iter_value(it, &vl);
        if (kl == 0 || k[0] != K_CATSTAT) break;
        if (vl == 16 && kl > 1 &&
            hmap_put(&st->cats, k + 1, kl - 1, be64_get(v), be64_get(v + 8)) == NULL) {
            rc = evb_err_set(err, EVB_ENOMEM, "out of memory loading categories");
            break;
        }
    }
    leveldb_iter_destroy(it);
    return rc;
}

/* Bring the unindexed tail into memory, and every stored id into the Bloom
 * filter (the id index, then the tail). */
static int s_load_tail(evb_store_t *st, evb_err *err)
{
    uint64_t ix = atomic_load(&st->indexed), head = atomic_load(&st->head);
    uint64_t sealed = atomic_load(&st->id_sealed);
    st->ix_ignored = st->ix_broken;
    if (st_ix_apart(st) && (ix > head || sealed > head || st->ix_foreign)) {
        char why[160];
        if (st->ix_foreign)
            snprintf(why, sizeof why, "it belongs to another log");
        else
            snprintf(why, sizeof why,
                     "it covers events up to %llu but the log ends at %llu (a power "
                     "loss took back events never fsynced)",
                     (unsigned long long)(ix > sealed ? ix : sealed),
                     (unsigned long long)head);
        if (st->read_only) {
            /* A tool changes nothing: it reads the log without the index. */
            evb_log(EVB_LOG_WARN,
                    "%s/index is stale: %s; reading the log without it (the next "
                    "writable open builds it again)",
                    st->dir, why);
            st->ix_ignored = true;
            s_close_idb(st);
            atomic_store(&st->indexed, 0);
            atomic_store(&st->nstreams, 0);
            ix = 0;
        } else {
            evb_log(EVB_LOG_WARN, "%s/index is stale: %s; building it again", st->dir,
                    why);
            int rc = s_reset_ix(st, err);
            if (rc != EVB_OK) return rc;
            ix = 0;
        }
    }
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
    st->caller_ms_max = 0; /* from the id entries and the tail, below */
    /* An index apart written before id epochs keeps its I entries, one
     * written before the id database (format 6) its B entries: lookups ask
     * them too. */
    if (st_ix_apart(st) && !st->ix_ignored) {
        leveldb_iterator_t *it = leveldb_create_iterator(st->ix, st->ro);
        const char pfx[2] = {K_ID, K_IDE};
        for (int p = 0; p < 2; p++) {
            size_t kl = 0;
            leveldb_iter_seek(it, &pfx[p], 1);
            const char *k = leveldb_iter_valid(it) ? leveldb_iter_key(it, &kl) : NULL;
            bool has = k != NULL && kl > 0 && k[0] == pfx[p];
            if (p == 0)
                st->ix_old_ids = has;
            else
                st->ix_old_b = has && st_ids_apart(st);
        }
        leveldb_iter_destroy(it);
    }
    /* Caller ids after the id database's seal are in no index: the tail
     * loaded below starts there when that is before the indexer's position
     * (at most an epoch and the indexer's lag; FORMAT.md, "Id database"). */
    uint64_t from = st_ids_apart(st) && sealed < ix ? sealed : ix;
    if (!st->read_only) {
        /* Sized for the id entries (sealed ids have none: a format 4 log of
         * made ids has next to none), from their bytes on disk. */
        const char *lo[2] = {"B", "I"}, *hi[2] = {"C", "J"};
        size_t lol[2] = {1, 1}, hil[2] = {1, 1};
        uint64_t bytes[2] = {0, 0}, idbytes = 0, nid = head - from;
        leveldb_approximate_sizes(st->ix, 2, lo, lol, hi, hil, bytes);
        if (st->idb != NULL)
            leveldb_approximate_sizes(st->idb, 1, lo, lol, hi, hil, &idbytes);
        idbytes += bytes[0] + bytes[1];
        nid += idbytes / 16 < head ? idbytes / 16 : head;
        if (st_bloom_init(&st->ids, nid) != 0)
            return evb_err_set(err, EVB_ENOMEM, "out of memory for the id filter");
        /* Every layout: the id database's epochs, the index's epochs (B)
         * and entries from before them (I). */
        const char pfx[3] = {K_IDE, K_IDE, K_ID};
        char *ie = NULL;
        for (int p = 0; p < 3 && ie == NULL; p++) {
            leveldb_t *db = p == 0 ? st->idb : st->ix;
            if (db == NULL) continue;
            leveldb_iterator_t *it = leveldb_create_iterator(db, st->ro);
            size_t want = p < 2 ? ID_EPOCH_KEY_LEN : 1 + EVB_ID_LEN;
            for (leveldb_iter_seek(it, &pfx[p], 1); leveldb_iter_valid(it);
                 leveldb_iter_next(it)) {
                size_t kl;
                const char *k = leveldb_iter_key(it, &kl);
                if (kl == 0 || k[0] != pfx[p]) break;
                if (kl != want) continue;
                evb_id id;
                memcpy(id.b, k + kl - EVB_ID_LEN, EVB_ID_LEN);
                st_bloom_add(&st->ids, &id);
                st_note_caller_id(st, &id);
            }
            leveldb_iter_get_error(it, &ie);
            leveldb_iter_destroy(it);
        }
        /* A scan cut short would leave ids out of the filter: duplicates
         * accepted. The index is derived: removing it rebuilds it. */
        if (ie != NULL) {
            char what[PATH_MAX + 96];
            snprintf(what, sizeof what,
                     "reading the id index at open (it is derived: remove %s/index to "
                     "rebuild it)",
                     st->dir);
            return st_ldb_err(st, ie, what, err);
        }
    }
    /* Category heads and counts: the indexer's stats, then the tail. */
    int crc;
    if (!st->ix_ignored && (crc = s_load_cat_stats(st, err)) != EVB_OK) return crc;
    if (from == head) return EVB_OK;
    leveldb_iterator_t *it = leveldb_create_iterator(st->db, st->ro);
    uint8_t key[9];
    leveldb_iter_seek(it, (const char *)key, key_event(key, from + 1));
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
                s_tail_damage(st, "event %llu does not decode: %s", (unsigned long long)seq,
                              derr.msg);
                continue;
            }
            rc = evb_err_set(err, EVB_ECORRUPT,
                             "%s: event %llu does not decode: %s (run evbus log verify)",
                             st->dir, (unsigned long long)seq, derr.msg);
            break;
        }
        /* Up to the indexer's position only the ids: into the tail set, and
         * the indexer's next epoch (what it had gathered before the close). */
        int nrc = seq > ix ? st_note_event(st, &ev.id, ev.stream, ev.version, seq,
                                           ev.category)
                           : st_note_tail_id(st, &ev.id, seq);
        if (nrc == EVB_OK && seq <= ix && st->idb != NULL && !st->read_only &&
            !st_id_sealed_at(st, &ev.id, seq))
            nrc = ix_acc_add(st, &ev.id, seq);
        if (nrc != EVB_OK) {
            rc = evb_err_set(err, EVB_ENOMEM, "out of memory loading the log's tail");
            break;
        }
    }
    evb_event_clear(&ev);
    char *ie = NULL;
    leveldb_iter_get_error(it, &ie);
    leveldb_iter_destroy(it);
    if (ie != NULL && rc == EVB_OK && !st->read_only) {
        char what[PATH_MAX + 200];
        snprintf(what, sizeof what,
                 "reading the log's unindexed events at open (the log is damaged: "
                 "`evbus log verify %s` names the events lost, `evbus log salvage` "
                 "copies the others into a log that takes appends)",
                 st->dir);
        return st_ldb_err(st, ie, what, err);
    }
    if (ie != NULL) {
        if (st->read_only) s_tail_damage(st, "reading the log's unindexed events: %s", ie);
        leveldb_free(ie);
    }
    return rc;
}

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
    pthread_mutex_init(&st->feed_mu, NULL);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv_work, NULL);
    pthread_cond_init(&st->cv_done, NULL);
    pthread_cond_init(&st->cv_flush, NULL);
#ifdef EVB_CRASH_POINTS
    st->crash_point = getenv("EVB_CRASH_POINT");
    const char *after = getenv("EVB_CRASH_AFTER");
    st->crash_after = after ? atol(after) : 1;
    const char *id_ms = getenv("EVB_TEST_ID_MS");
    st->test_id_ms = id_ms ? strtoull(id_ms, NULL, 10) : 0;
#endif
    st->options = leveldb_options_create();
    leveldb_options_set_write_buffer_size(
        st->options, opts->write_buffer_bytes ? opts->write_buffer_bytes : 32u << 20);
    /* The index database takes small entries (about 70 bytes an event, and
     * 29 more for an id a caller chose). Half the write buffer (16 MiB by
     * default): with an eighth, the flushes of randomly keyed ids came so
     * often that the index's compactions stalled its writes ("Too many L0
     * files"), the indexer fell 1 Mi events behind and appends waited for it
     * (append_b1000_ids at 10 M: 0.31-0.33 with 4 MiB, 0.38-0.43 with 16, as
     * much with 32; made ids the same either way; FORMAT.md, "Id epochs").
     * Its memtables (two at most) are memory every store holds. Its tables
     * carry Bloom filters (10 bits a key): an id looked up in each epoch
     * (state.c) is absent from all but one, and a filter answers that
     * without reading a block. */
    st->ix_options = leveldb_options_create();
    leveldb_options_set_write_buffer_size(
        st->ix_options,
        (opts->write_buffer_bytes ? opts->write_buffer_bytes : 32u << 20) / 2);
    st->ix_filter = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(st->ix_options, st->ix_filter);
    /* The id database takes each finished epoch's caller ids in one batch
     * in key order (up to 256 Ki x 29 bytes), above every key it holds: its
     * tables never overlap, so LevelDB moves them down without merging. Its
     * tables carry the same filters. */
    st->idb_options = leveldb_options_create();
    leveldb_options_set_write_buffer_size(st->idb_options, 16u << 20);
    leveldb_options_set_filter_policy(st->idb_options, st->ix_filter);
    /* Memory that grows with the data read, or with the tables: bounded
     * when the caller says so (a service does, services/README.md). */
    if (opts->block_cache_bytes) {
        st->block_cache = leveldb_cache_create_lru(opts->block_cache_bytes);
        leveldb_options_set_cache(st->options, st->block_cache);
        leveldb_options_set_cache(st->ix_options, st->block_cache);
        leveldb_options_set_cache(st->idb_options, st->block_cache);
    }
    if (opts->event_block_bytes) {
        size_t bb = opts->event_block_bytes < 1024       ? 1024
                    : opts->event_block_bytes > (4u << 20) ? (4u << 20)
                                                           : opts->event_block_bytes;
        leveldb_options_set_block_size(st->options, bb);
    }
    if (opts->max_open_tables) {
        /* LevelDB keeps 10 of max_open_files for other files */
        unsigned t = opts->max_open_tables < 64      ? 64
                     : opts->max_open_tables > 50000 ? 50000
                                                     : opts->max_open_tables;
        int n = (int)t + 10;
        leveldb_options_set_max_open_files(st->options, n);
        leveldb_options_set_max_open_files(st->ix_options, n);
        leveldb_options_set_max_open_files(st->idb_options, n);
    }
    st->ro = leveldb_readoptions_create();
    st->wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(st->wo, opts->sync == EVB_SYNC_EVERY);
    st->wo_sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(st->wo_sync, 1);

    if (st->read_only) {
        /* The index's view first: its snapshot is then never ahead of the
         * log's, which a running service's indexer follows. */
        char ixdir[PATH_MAX], why[PATH_MAX + 128];
        struct stat sb;
        /* The id database's before the index's (the indexer writes it
         * first in each step); none before format 6. */
        snprintf(ixdir, sizeof ixdir, "%s/index/ids", st->dir);
        if (stat(ixdir, &sb) == 0 &&
            (st->idb_env = st_roenv_new(ixdir, why, sizeof why)) == NULL) {
            evb_err_set(err, EVB_EIO, "cannot read %s", why);
            goto fail;
        }
        snprintf(ixdir, sizeof ixdir, "%s/index", st->dir);
        if ((st->ix_env = st_roenv_new(ixdir, why, sizeof why)) == NULL) {
            evb_err_set(err, EVB_EIO, "cannot read %s", why);
            goto fail;
        }
    }
    if (!st->read_only && has_current && s_check_wal(st, err) != EVB_OK) goto fail;
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
    if (!st->read_only && st->index_mode == EVB_INDEX_THREAD &&
        ix_start(st, err) != EVB_OK)
        return err ? err->code : EVB_ENOMEM;
    if (!st->read_only && st->sync == EVB_SYNC_GROUP) {
        if (pthread_create(&st->fl_thread, NULL, st_flusher, st) != 0)
            return evb_err_set(err, EVB_ENOMEM, "%s: cannot start the fsync thread",
                               st->dir);
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
    if (st->db != NULL) { /* NULL: an earlier reopen failed, try again */
        s_stop_threads(st);
        s_close_dbs(st);
    }
    st->ix_acc.n = 0; /* gathered again from the log (s_load_tail) */
    st->ix_acc.oom = false;
    st->acc_upto = 0;
    int rc = s_open_db(st, false, err);
    if (rc == EVB_OK && (rc = s_load_meta(st, err)) != EVB_OK) s_close_dbs(st);
    if (rc != EVB_OK) {
        /* The store stays closed and refuses writes; reopen again once the
         * cause is gone (EVB_EUNWRITABLE: space), or destroy it. */
        atomic_store(&st->unwritable, true);
        return rc;
    }
    /* Whatever the failed write left, the log is the truth: the position,
     * the head and the in-memory maps are read again from it. */
    hmap_free(&st->streams);
    hmap_free(&st->cats);
    ix_feed_clear(st);
    idset_free(&st->tail_ids);
    st->lost_upto = 0; /* the unindexed tail goes into tail_ids again */
    st_bloom_free(&st->ids);
    if (idset_init(&st->tail_ids, 2 * 65536) != 0)
        rc = evb_err_set(err, EVB_ENOMEM, "out of memory reopening %s", st->dir);
    if (rc == EVB_OK && (rc = s_find_head(st, err)) == EVB_OK) rc = s_load_tail(st, err);
    if (rc != EVB_OK) {
        s_close_dbs(st); /* closed, as when LevelDB refused to open */
        return rc;
    }
    atomic_store(&st->synced, atomic_load(&st->head));
    /* Writable before the threads start: a failure of their first write
     * must stay recorded. */
    st->ix_error[0] = '\0';
    atomic_store(&st->unwritable, false);
    if ((rc = s_start_threads(st, err)) != EVB_OK) {
        s_stop_threads(st);
        s_close_dbs(st);
        atomic_store(&st->unwritable, true);
        return rc;
    }
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
    s_close_dbs(st);
    if (st->options) leveldb_options_destroy(st->options);
    if (st->ix_options) leveldb_options_destroy(st->ix_options);
    if (st->idb_options) leveldb_options_destroy(st->idb_options);
    free(st->ix_acc.v);
    if (st->ix_filter) leveldb_filterpolicy_destroy(st->ix_filter);
    if (st->block_cache) leveldb_cache_destroy(st->block_cache);
    if (st->ro) leveldb_readoptions_destroy(st->ro);
    if (st->wo) leveldb_writeoptions_destroy(st->wo);
    if (st->wo_sync) leveldb_writeoptions_destroy(st->wo_sync);
    st_txn_free(&st->txn);
    if (st->ix_wb) leveldb_writebatch_destroy(st->ix_wb);
    ix_feed_clear(st);
    hmap_free(&st->streams);
    idset_free(&st->tail_ids);
    hmap_free(&st->cats);
    st_bloom_free(&st->ids);
    evb_buf_free(&st->enc);
    pthread_mutex_destroy(&st->ix_mu);
    pthread_mutex_destroy(&st->feed_mu);
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

/* Bytes of the regular files in dir, added to *bytes. */
static int s_dir_bytes(const char *dir, uint64_t *bytes, evb_err *err)
{
    DIR *d = opendir(dir);
    if (d == NULL) return evb_err_set(err, EVB_EIO, "%s: %s", dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        if (fstatat(dirfd(d), de->d_name, &sb, 0) == 0 && S_ISREG(sb.st_mode))
            *bytes += (uint64_t)sb.st_size;
    }
    closedir(d);
    return EVB_OK;
}

int evb_store_disk_size(const evb_store_t *st, uint64_t *bytes, evb_err *err)
{
    *bytes = 0;
    int rc = s_dir_bytes(st->dir, bytes, err);
    if (rc != EVB_OK || st->format < 2) return rc;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/index", st->dir);
    struct stat sb;
    /* A read-only open reads a log whose index (derived) is gone without it */
    if (st->read_only && stat(path, &sb) != 0 && errno == ENOENT) return EVB_OK;
    if ((rc = s_dir_bytes(path, bytes, err)) != EVB_OK) return rc;
    snprintf(path, sizeof path, "%s/index/ids", st->dir);
    if (stat(path, &sb) != 0 && errno == ENOENT) return EVB_OK; /* before format 6 */
    return s_dir_bytes(path, bytes, err);
}
