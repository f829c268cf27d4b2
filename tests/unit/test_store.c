/*
 * test_store.c: unit tests of the event log (store/evbus_store.h), through the
 * public header only.
 *
 * Every test gets a fresh temporary directory under $EVB_TEST_TMP (set by
 * ctest; /tmp otherwise) and removes it afterwards. The log lives in
 * "<tmp>/log", which does not exist until a test creates it. Stores are kept
 * in the fixture so that a failed assertion (cmocka longjmps out of the test)
 * still closes LevelDB before the directory is removed.
 *
 * Damage and foreign databases are made with the raw LevelDB C API on a closed
 * log. The keys used (store/FORMAT.md): "Mformat" -> 4-byte big-endian format
 * number; 'E' + 8-byte big-endian seq -> one encoded event.
 *
 * Read tests run against one scripted data set in several index states (see
 * ix_mode): nothing indexed, half indexed, fully indexed, half indexed and
 * reopened, and the background indexer racing the reads. Loop sizes scale with
 * EVB_TEST_SCALE (default 1).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <leveldb/c.h>
#include <msgpack.h>

#include <evbus/evbus_store.h>

#define SERVICE "seats"

/* ---------------------------------------------------------------- helpers */

static unsigned s_scale(void)
{
    const char *s = getenv("EVB_TEST_SCALE");
    if (s == NULL || *s == '\0') return 1;
    unsigned long v = strtoul(s, NULL, 10);
    if (v < 1) v = 1;
    if (v > 1000) v = 1000;
    return (unsigned)v;
}

typedef struct fx {
    char tmp[PATH_MAX];
    char dir[PATH_MAX]; /* tmp/log */
    evb_store_t *st;
    evb_store_t *st2;
} fx_t;

/* Iterators and transactions still open when an assertion fails (cmocka
 * longjmps out of the test) are closed by the teardown before their store:
 * LevelDB aborts when a store closes under a live iterator. */
#define TRACK_MAX 32
static evb_iter_t *g_iters[TRACK_MAX];
static evb_txn_t *g_txns[TRACK_MAX];

static void s_track_ptr(void **slots, void *p)
{
    if (p == NULL) return;
    for (int i = 0; i < TRACK_MAX; i++)
        if (slots[i] == NULL) {
            slots[i] = p;
            return;
        }
    fail_msg("too many open iterators/transactions in one test");
}

static void s_untrack_ptr(void **slots, const void *p)
{
    for (int i = 0; i < TRACK_MAX; i++)
        if (slots[i] == p && p != NULL) slots[i] = NULL;
}

static evb_iter_t *s_it(evb_iter_t *it)
{
    s_track_ptr((void **)g_iters, it);
    return it;
}

static void s_it_done(evb_iter_t **itp)
{
    s_untrack_ptr((void **)g_iters, *itp);
    evb_iter_destroy(itp);
}

static evb_txn_t *s_tx(evb_txn_t *tx)
{
    s_track_ptr((void **)g_txns, tx);
    return tx;
}

static void s_tx_done(evb_txn_t **txp)
{
    s_untrack_ptr((void **)g_txns, *txp);
    evb_txn_destroy(txp);
}

static int s_tx_commit(evb_txn_t **txp, evb_err *err)
{
    s_untrack_ptr((void **)g_txns, *txp);
    return evb_txn_commit(txp, err);
}

static int s_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (f == NULL) return -1;
    const char *base = getenv("EVB_TEST_TMP");
    if (base == NULL || *base == '\0') base = "/tmp";
    mkdir(base, 0755); /* ctest makes it; harmless if it exists */
    int n = snprintf(f->tmp, sizeof f->tmp, "%s/test_store.XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof f->tmp) goto fail;
    if (mkdtemp(f->tmp) == NULL) goto fail;
    n = snprintf(f->dir, sizeof f->dir, "%s/log", f->tmp);
    if (n < 0 || (size_t)n >= sizeof f->dir) goto fail;
    *state = f;
    return 0;
fail:
    free(f);
    return -1;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    for (int i = 0; i < TRACK_MAX; i++) {
        evb_iter_destroy(&g_iters[i]);
        evb_txn_destroy(&g_txns[i]);
    }
    evb_store_destroy(&f->st);
    evb_store_destroy(&f->st2);
    int rc = nftw(f->tmp, s_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc == 0 ? 0 : -1;
}

static evb_store_opts s_opts(const fx_t *f, evb_index_mode mode)
{
    evb_store_opts o;
    memset(&o, 0, sizeof o);
    o.dir = f->dir;
    o.service = SERVICE;
    o.create = true;
    o.sync = EVB_SYNC_NONE;
    o.index_mode = mode;
    o.write_buffer_bytes = 1u << 20; /* keep the tests light */
    return o;
}

static evb_store_t *s_open_o(const evb_store_opts *o)
{
    evb_err err;
    evb_err_clear(&err);
    evb_store_t *st = evb_store_open(o, &err);
    if (st == NULL) fail_msg("evb_store_open(%s): %d %s", o->dir, err.code, err.msg);
    return st;
}

/* Open f->st (create if needed). */
static void s_open(fx_t *f, evb_index_mode mode)
{
    evb_store_opts o = s_opts(f, mode);
    f->st = s_open_o(&o);
}

static void s_reopen(fx_t *f, evb_index_mode mode)
{
    evb_store_destroy(&f->st);
    assert_null(f->st);
    evb_store_opts o = s_opts(f, mode);
    o.create = false;
    o.service = NULL;
    f->st = s_open_o(&o);
}

/* Expect evb_store_open to fail with code; returns the error. */
static evb_err s_open_fails(const evb_store_opts *o, int code)
{
    evb_err err;
    evb_err_clear(&err);
    evb_store_t *st = evb_store_open(o, &err);
    if (st != NULL) {
        evb_store_destroy(&st);
        fail_msg("evb_store_open(%s) succeeded; expected %s", o->dir, evb_strerror(code));
    }
    if (err.code != code)
        fail_msg("evb_store_open(%s): got %d (%s), expected %d (%s)", o->dir, err.code,
                 err.msg, code, evb_strerror(code));
    return err;
}

/* True if msg contains the decimal number v as a whole token (not inside a
 * longer run of letters and digits). */
static bool s_has_number(const char *msg, uint64_t v)
{
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    size_t nl = strlen(num);
    for (const char *p = strstr(msg, num); p != NULL; p = strstr(p + 1, num)) {
        bool left_ok = p == msg || !isalnum((unsigned char)p[-1]);
        bool right_ok = !isalnum((unsigned char)p[nl]);
        if (left_ok && right_ok) return true;
    }
    return false;
}

static void s_mkdir_p(const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", dir, strerror(errno));
}

static void s_write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    if (fp == NULL) {
        fail_msg("fopen %s: %s", path, strerror(errno));
        return;
    }
    fputs(text, fp);
    fclose(fp);
}

/* ---- raw LevelDB on a closed log ---- */

static leveldb_t *s_raw_open(const char *dir, bool create)
{
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_create_if_missing(o, create);
    char *e = NULL;
    leveldb_t *db = leveldb_open(o, dir, &e);
    leveldb_options_destroy(o);
    if (db == NULL) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", e != NULL ? e : "?");
        leveldb_free(e);
        fail_msg("leveldb_open %s: %s", dir, msg);
    }
    return db;
}

static void s_raw_put(const char *dir, bool create, const void *k, size_t kl,
                      const void *v, size_t vl)
{
    leveldb_t *db = s_raw_open(dir, create);
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    char *e = NULL;
    leveldb_put(db, wo, k, kl, v, vl, &e);
    leveldb_writeoptions_destroy(wo);
    leveldb_close(db);
    if (e != NULL) {
        leveldb_free(e);
        fail_msg("leveldb_put failed");
    }
}

static void s_raw_delete(const char *dir, const void *k, size_t kl)
{
    leveldb_t *db = s_raw_open(dir, false);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    char *e = NULL;
    size_t vl = 0;
    char *v = leveldb_get(db, ro, k, kl, &vl, &e);
    leveldb_readoptions_destroy(ro);
    bool existed = v != NULL;
    leveldb_free(v);
    leveldb_free(e);
    e = NULL;
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_delete(db, wo, k, kl, &e);
    leveldb_writeoptions_destroy(wo);
    leveldb_close(db);
    if (e != NULL) {
        leveldb_free(e);
        fail_msg("leveldb_delete failed");
    }
    /* The damage must be real, or the verify test proves nothing. */
    assert_true(existed);
}

/* Keys of a LevelDB directory that start with prefix[0..len). */
static size_t s_raw_count_prefix(const char *dir, const uint8_t *prefix, size_t len)
{
    leveldb_t *db = s_raw_open(dir, false);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    size_t n = 0, kl;
    for (leveldb_iter_seek(it, (const char *)prefix, len); leveldb_iter_valid(it);
         leveldb_iter_next(it)) {
        const char *k = leveldb_iter_key(it, &kl);
        if (kl < len || memcmp(k, prefix, len) != 0) break;
        n++;
    }
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    return n;
}

static size_t s_raw_count(const char *dir, char prefix)
{
    const uint8_t p = (uint8_t)prefix;
    return s_raw_count_prefix(dir, &p, 1);
}

/* The id database's epochs in these tests (main sets it). */
#define S_EPOCH_BITS 3
#define S_EPOCH_BITS_STR "3"

/* Id entries of the log's id database (format 6: DIR/index/ids). */
static size_t s_idb_count(const char *log)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/index/ids", log);
    return s_raw_count(p, 'B');
}

static evb_id s_id(uint64_t k);

/* Give a log the id layout of the stores before the id database: its
 * events 1..n, whose ids are s_id(key0 + seq - 1), each get an entry in the
 * index, "I id" (formats 2 to 4) or "B epoch(4) id" with epochs of 2^20
 * events (format 5), and index/ids goes. Returns how many it wrote. */
static size_t s_raw_fake_old_ids(const char *log, uint64_t n, uint64_t key0, bool epochs)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/index/ids", log);
    leveldb_options_t *o = leveldb_options_create();
    char *e = NULL;
    leveldb_destroy_db(o, p, &e);
    leveldb_options_destroy(o);
    assert_null(e);
    snprintf(p, sizeof p, "%s/index", log);
    leveldb_t *db = s_raw_open(p, false);
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    for (uint64_t seq = 1; seq <= n; seq++) {
        evb_id id = s_id(key0 + seq - 1);
        uint8_t k[1 + 4 + 16], v[8];
        size_t kl = 0;
        k[kl++] = epochs ? 'B' : 'I';
        if (epochs)
            for (int i = 3; i >= 0; i--)
                k[kl++] = (uint8_t)((seq >> 20) >> (8 * i));
        memcpy(k + kl, id.b, 16);
        kl += 16;
        for (int i = 0; i < 8; i++)
            v[i] = (uint8_t)(seq >> (56 - 8 * i));
        leveldb_writebatch_put(wb, (const char *)k, kl, (const char *)v, 8);
    }
    leveldb_write(db, wo, wb, &e);
    assert_null(e);
    leveldb_writebatch_destroy(wb);
    leveldb_writeoptions_destroy(wo);
    leveldb_close(db);
    return (size_t)n;
}

static void s_event_key(uint64_t seq, uint8_t key[9])
{
    key[0] = 'E';
    for (int i = 0; i < 8; i++)
        key[1 + i] = (uint8_t)(seq >> (56 - 8 * i));
}

/* ---- payloads (msgpack maps) ---- */

typedef struct pl {
    uint8_t b[64];
    size_t len;
} pl_t;

static int s_pl_write(void *data, const char *buf, size_t len)
{
    pl_t *p = data;
    if (len > sizeof p->b - p->len) return -1;
    memcpy(p->b + p->len, buf, len);
    p->len += len;
    return 0;
}

/* {"n": n} */
static void s_pl_n(pl_t *p, int64_t n)
{
    msgpack_packer pk;
    p->len = 0;
    msgpack_packer_init(&pk, p, s_pl_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "n", 1);
    msgpack_pack_int64(&pk, n);
}

/* Find key in the payload map; returns false if absent or not a map. */
static bool s_map_find(const void *buf, size_t len, const char *key, msgpack_object *out,
                       msgpack_unpacked *u)
{
    size_t off = 0;
    msgpack_unpacked_init(u);
    if (msgpack_unpack_next(u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS) return false;
    if (u->data.type != MSGPACK_OBJECT_MAP) return false;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < u->data.via.map.size; i++) {
        const msgpack_object_kv *kv = &u->data.via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == kl &&
            memcmp(kv->key.via.str.ptr, key, kl) == 0) {
            *out = kv->val;
            return true;
        }
    }
    return false;
}

/* The "n" of a payload; fails the test when absent. */
static int64_t s_payload_n(const evb_event_t *ev)
{
    msgpack_unpacked u;
    msgpack_object o;
    if (!s_map_find(ev->payload, ev->payload_len, "n", &o, &u)) {
        msgpack_unpacked_destroy(&u);
        fail_msg("seq %llu: payload has no \"n\"", (unsigned long long)ev->seq);
    }
    int64_t n = 0;
    if (o.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        n = (int64_t)o.via.u64;
    else if (o.type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        n = o.via.i64;
    else {
        msgpack_unpacked_destroy(&u);
        fail_msg("seq %llu: \"n\" is not an integer", (unsigned long long)ev->seq);
    }
    msgpack_unpacked_destroy(&u);
    return n;
}

static bool s_payload_has(const evb_event_t *ev, const char *key)
{
    msgpack_unpacked u;
    msgpack_object o;
    bool r = s_map_find(ev->payload, ev->payload_len, key, &o, &u);
    msgpack_unpacked_destroy(&u);
    return r;
}

/* ---- ids ---- */

/* A recognisable non-zero id derived from a number. */
static evb_id s_id(uint64_t k)
{
    evb_id id;
    id.b[0] = 0xa5;
    for (int i = 0; i < 8; i++)
        id.b[1 + i] = (uint8_t)(k >> (56 - 8 * i));
    for (int i = 9; i < (int)EVB_ID_LEN; i++)
        id.b[i] = 0x5a;
    return id;
}

static bool s_id_eq(const evb_id *a, const evb_id *b)
{
    return memcmp(a->b, b->b, EVB_ID_LEN) == 0;
}

/* ---- batches ---- */

typedef struct batch {
    evb_event_t *ev;
    pl_t *pl;
    size_t n;
} batch_t;

/* n events of type, payload {"n": first_n + i}, ids zero. */
static void s_batch(batch_t *b, size_t n, const char *type, int64_t first_n)
{
    b->n = n;
    b->ev = calloc(n ? n : 1, sizeof *b->ev);
    b->pl = calloc(n ? n : 1, sizeof *b->pl);
    assert_non_null(b->ev);
    assert_non_null(b->pl);
    for (size_t i = 0; i < n; i++) {
        s_pl_n(&b->pl[i], first_n + (int64_t)i);
        b->ev[i].type = type;
        b->ev[i].payload = b->pl[i].b;
        b->ev[i].payload_len = b->pl[i].len;
    }
}

static void s_batch_ids(batch_t *b, uint64_t first_key)
{
    for (size_t i = 0; i < b->n; i++)
        b->ev[i].id = s_id(first_key + i);
}

static void s_batch_free(batch_t *b)
{
    free(b->ev);
    free(b->pl);
    memset(b, 0, sizeof *b);
}

/* Append n events to stream with payload n = first_n..; ids from id_key
 * (0: let the store make them). Returns the code. */
static int s_append(evb_store_t *st, const char *stream, int64_t expected, size_t n,
                    int64_t first_n, uint64_t id_key, evb_append_result *res,
                    evb_err *err)
{
    batch_t b;
    s_batch(&b, n, "seat.reserved", first_n);
    if (id_key != 0) s_batch_ids(&b, id_key);
    int rc = evb_store_append(st, stream, expected, b.ev, n, res, err);
    s_batch_free(&b);
    return rc;
}

/* Append that must succeed. */
static evb_append_result s_append_ok(evb_store_t *st, const char *stream,
                                     int64_t expected, size_t n, int64_t first_n,
                                     uint64_t id_key)
{
    evb_append_result res;
    evb_err err;
    memset(&res, 0, sizeof res);
    evb_err_clear(&err);
    int rc = s_append(st, stream, expected, n, first_n, id_key, &res, &err);
    if (rc != EVB_OK)
        fail_msg("append %s (expected %lld, n %zu): %d %s", stream, (long long)expected,
                 n, rc, err.msg);
    return res;
}

static uint64_t s_stream_version(evb_store_t *st, const char *stream)
{
    uint64_t v = 12345;
    evb_err err;
    evb_err_clear(&err);
    int rc = evb_store_stream_version(st, stream, &v, &err);
    if (rc != EVB_OK) fail_msg("stream_version %s: %d %s", stream, rc, err.msg);
    return v;
}

/* Drain an iterator into seqs (cap entries); fails on iterator errors. */
static size_t s_drain(evb_iter_t *it, uint64_t *seqs, size_t cap)
{
    size_t n = 0;
    const evb_event_t *ev = NULL;
    evb_err err;
    evb_err_clear(&err);
    while (evb_iter_next(it, &ev, &err)) {
        assert_non_null(ev);
        if (seqs != NULL && n < cap) seqs[n] = ev->seq;
        n++;
    }
    if (err.code != EVB_OK) fail_msg("iterator: %d %s", err.code, err.msg);
    return n;
}

static size_t s_count_iter(evb_iter_t *it)
{
    return s_drain(it, NULL, 0);
}

static evb_store_info s_info(const evb_store_t *st)
{
    evb_store_info info;
    memset(&info, 0xee, sizeof info);
    evb_store_get_info(st, &info);
    return info;
}

static void s_index_all(evb_store_t *st)
{
    evb_err err;
    evb_err_clear(&err);
    int rc = evb_store_index_wait(st, &err);
    if (rc != EVB_OK) fail_msg("index_wait: %d %s", rc, err.msg);
    assert_int_equal(s_info(st).indexed, evb_store_head(st));
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ================================================================ open */

static void test_create_then_reopen_keeps_log_id_and_service(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_store_info a = s_info(f->st);
    assert_false(evb_id_is_zero(&a.log_id));
    assert_string_equal(a.service, SERVICE);
    assert_int_equal(a.format, EVB_STORE_FORMAT);
    assert_int_equal(a.head, 0);
    assert_string_equal(evb_store_dir(f->st), f->dir);

    s_reopen(f, EVB_INDEX_THREAD);
    evb_store_info b = s_info(f->st);
    assert_true(s_id_eq(&a.log_id, &b.log_id));
    assert_string_equal(b.service, SERVICE);
    assert_int_equal(b.format, EVB_STORE_FORMAT);
}

/* A reopen that LevelDB refuses leaves the store closed: every way in says
 * so (EVB_ECLOSED) instead of reading through a closed database. */
static void test_failed_reopen_leaves_store_closed(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    char cur[PATH_MAX + 16], moved[PATH_MAX + 16];
    snprintf(cur, sizeof cur, "%s/CURRENT", f->dir);
    snprintf(moved, sizeof moved, "%s/CURRENT.away", f->dir);
    assert_int_equal(rename(cur, moved), 0); /* LevelDB cannot open it now */
    evb_err err;
    evb_err_clear(&err);
    assert_int_not_equal(evb_store_reopen(f->st, &err), EVB_OK);
    evb_err_clear(&err);
    assert_null(evb_txn_begin(f->st, &err));
    assert_int_equal(err.code, EVB_ECLOSED);
    evb_err_clear(&err);
    assert_null(evb_store_read_range(f->st, 1, 0, NULL, &err));
    assert_int_equal(err.code, EVB_ECLOSED);
    evb_buf out = {0};
    assert_int_equal(evb_store_get(f->st, "k", 1, &out, &err), EVB_ECLOSED);
    uint64_t seq;
    assert_int_equal(
        evb_store_checkpoint_get(f->st, "c", &(evb_id){{0}}, "cat", &seq, &err),
        EVB_ECLOSED);
    assert_int_equal(evb_store_sync(f->st, &err), EVB_ECLOSED);
    uint64_t problems;
    assert_int_equal(evb_store_verify(f->st, NULL, NULL, NULL, &problems, &err),
                     EVB_ECLOSED);
    evb_buf_free(&out);
    evb_store_destroy(&f->st); /* and it can still be destroyed */
    assert_int_equal(rename(moved, cur), 0);
}

/* A reopen short of space (here RLIMIT_FSIZE: LevelDB's recovery cannot
 * write the old log into a table) says EVB_EUNWRITABLE, leaves the store
 * closed, and a later reopen, once there is room, opens it with every event
 * (the services wait and retry on exactly this; before, the store could not
 * be reopened again and the service stopped). A closed store that LevelDB
 * refused for another reason opens again too once the cause is gone. */
static void test_reopen_short_of_space_retries(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "seat-1", EVB_EXPECT_ANY, 5, 1, 0);
    struct rlimit rl, low;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
    low = rl;
    low.rlim_cur = 1;
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN); /* over the limit: EFBIG, not death */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &low), 0);
    evb_err err;
    evb_err_clear(&err);
    int rc = evb_store_reopen(f->st, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
    signal(SIGXFSZ, old);
    if (rc != EVB_EUNWRITABLE) fail_msg("reopen over RLIMIT_FSIZE: %d %s", rc, err.msg);
    assert_non_null(strstr(err.msg, f->dir));
    assert_true(evb_store_unwritable(f->st));
    evb_err_clear(&err);
    assert_null(evb_store_read_range(f->st, 1, 0, NULL, &err));
    assert_int_equal(err.code, EVB_ECLOSED);

    evb_err_clear(&err);
    rc = evb_store_reopen(f->st, &err);
    if (rc != EVB_OK) fail_msg("reopen with room again: %d %s", rc, err.msg);
    assert_false(evb_store_unwritable(f->st));
    assert_int_equal(evb_store_head(f->st), 5);
    evb_iter_t *it = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    assert_int_equal(s_drain(it, NULL, 0), 5);
    s_it_done(&it);
    assert_int_equal(s_append_ok(f->st, "seat-1", 5, 1, 6, 0).last_seq, 6);

    /* not a matter of space: closed, then open again once it can be read */
    char cur[PATH_MAX + 16], moved[PATH_MAX + 16];
    snprintf(cur, sizeof cur, "%s/CURRENT", f->dir);
    snprintf(moved, sizeof moved, "%s/CURRENT.away", f->dir);
    assert_int_equal(rename(cur, moved), 0);
    evb_err_clear(&err);
    rc = evb_store_reopen(f->st, &err);
    assert_true(rc != EVB_OK && rc != EVB_EUNWRITABLE);
    assert_int_equal(rename(moved, cur), 0);
    evb_err_clear(&err);
    rc = evb_store_reopen(f->st, &err);
    if (rc != EVB_OK) fail_msg("reopen once CURRENT is back: %d %s", rc, err.msg);
    assert_int_equal(evb_store_head(f->st), 6);
}

static void test_reopen_with_create_does_not_recreate(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_store_info a = s_info(f->st);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 2, 1, 0);
    evb_store_destroy(&f->st);

    s_open(f, EVB_INDEX_THREAD); /* create = true again */
    evb_store_info b = s_info(f->st);
    assert_true(s_id_eq(&a.log_id, &b.log_id));
    assert_int_equal(b.head, 2);
}

static void test_two_logs_get_different_log_ids(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    char other[PATH_MAX + 8];
    snprintf(other, sizeof other, "%s/log2", f->tmp);
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.dir = other;
    f->st2 = s_open_o(&o);
    evb_store_info a = s_info(f->st), b = s_info(f->st2);
    assert_false(s_id_eq(&a.log_id, &b.log_id));
}

static void test_open_missing_dir_without_create_is_enotfound(void **state)
{
    fx_t *f = *state;
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.create = false;
    s_open_fails(&o, EVB_ENOTFOUND);
    /* Nothing was created as a side effect. */
    struct stat sb;
    assert_int_not_equal(stat(f->dir, &sb), 0);
}

static void test_open_empty_dir_without_create_is_enotfound(void **state)
{
    fx_t *f = *state;
    s_mkdir_p(f->dir);
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.create = false;
    s_open_fails(&o, EVB_ENOTFOUND);
}

static void test_open_dir_with_unrelated_files_is_eformat(void **state)
{
    fx_t *f = *state;
    s_mkdir_p(f->dir);
    s_write_file(f->dir, "notes.txt", "not a log\n");
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.create = false;
    evb_err err = s_open_fails(&o, EVB_EFORMAT);
    assert_non_null(strstr(err.msg, f->dir));
}

static void test_create_in_dir_with_unrelated_files_is_eformat(void **state)
{
    fx_t *f = *state;
    s_mkdir_p(f->dir);
    s_write_file(f->dir, "notes.txt", "not a log\n");
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    evb_err err = s_open_fails(&o, EVB_EFORMAT);
    assert_non_null(strstr(err.msg, f->dir));
}

static void test_open_foreign_leveldb_is_eformat(void **state)
{
    fx_t *f = *state;
    s_raw_put(f->dir, true, "hello", 5, "world", 5);
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.create = false;
    evb_err err = s_open_fails(&o, EVB_EFORMAT);
    assert_non_null(strstr(err.msg, f->dir));
}

static void test_create_on_foreign_leveldb_is_eformat(void **state)
{
    fx_t *f = *state;
    s_raw_put(f->dir, true, "hello", 5, "world", 5);
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    s_open_fails(&o, EVB_EFORMAT);
}

static void test_open_newer_format_is_eformat(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 1, 1, 0);
    evb_store_destroy(&f->st);

    const uint8_t v99[4] = {0, 0, 0, 99};
    s_raw_put(f->dir, false, "Mformat", 7, v99, sizeof v99);
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.create = false;
    evb_err err = s_open_fails(&o, EVB_EFORMAT);
    assert_true(s_has_number(err.msg, 99));
    /* Same with create = true: it must not overwrite the newer log. */
    o.create = true;
    s_open_fails(&o, EVB_EFORMAT);
}

static void test_open_bad_format_record_is_rejected(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_store_destroy(&f->st);
    const uint8_t bad[3] = {0, 0, 1}; /* wrong length */
    s_raw_put(f->dir, false, "Mformat", 7, bad, sizeof bad);
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.create = false;
    evb_err err;
    evb_err_clear(&err);
    evb_store_t *st = evb_store_open(&o, &err);
    bool opened = st != NULL;
    evb_store_destroy(&st);
    assert_false(opened);
    assert_true(err.code == EVB_EFORMAT || err.code == EVB_ECORRUPT);
}

static void test_open_twice_is_elocked(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    evb_err err = s_open_fails(&o, EVB_ELOCKED);
    assert_non_null(strstr(err.msg, "in use by another process"));
    assert_non_null(strstr(err.msg, f->dir));
}

static void test_lock_is_released_on_destroy(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 1, 1, 0);
    evb_store_destroy(&f->st);
    s_open(f, EVB_INDEX_THREAD); /* fails the test if the lock was kept */
    assert_int_equal(evb_store_head(f->st), 1);
}

static void test_create_without_service_is_einval(void **state)
{
    fx_t *f = *state;
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.service = NULL;
    s_open_fails(&o, EVB_EINVAL);
}

static void test_create_with_bad_service_is_einval(void **state)
{
    fx_t *f = *state;
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.service = "Bad Service";
    s_open_fails(&o, EVB_EINVAL);
}

static void test_open_without_dir_is_einval(void **state)
{
    fx_t *f = *state;
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.dir = NULL;
    s_open_fails(&o, EVB_EINVAL);
}

static void test_destroy_null_is_harmless(void **state)
{
    (void)state;
    evb_store_t *st = NULL;
    evb_store_destroy(&st);
    evb_store_destroy(NULL);
    evb_iter_t *it = NULL;
    s_it_done(&it);
    evb_txn_t *tx = NULL;
    s_tx_done(&tx);
    assert_null(st);
}

static void test_disk_size_is_positive(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 3, 1, 0);
    uint64_t bytes = 0;
    evb_err err;
    assert_int_equal(evb_store_disk_size(f->st, &bytes, &err), EVB_OK);
    assert_true(bytes > 0);
}

/* ================================================================ append */

static void test_append_assigns_seq_and_versions_from_one(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_append_result r = s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 3, 1, 0);
    assert_int_equal(r.first_seq, 1);
    assert_int_equal(r.last_seq, 3);
    assert_int_equal(r.first_version, 1);
    assert_int_equal(r.last_version, 3);
    assert_false(r.duplicate);
    assert_int_equal(evb_store_head(f->st), 3);
    assert_int_equal(s_stream_version(f->st, "show-1"), 3);
}

static void test_append_seq_is_contiguous_across_streams(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_append_result a = s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 2, 1, 0);
    evb_append_result b = s_append_ok(f->st, "ticket-9", EVB_EXPECT_ANY, 3, 3, 0);
    evb_append_result c = s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 1, 6, 0);
    assert_int_equal(a.last_seq, 2);
    assert_int_equal(b.first_seq, 3);
    assert_int_equal(b.last_seq, 5);
    assert_int_equal(b.first_version, 1);
    assert_int_equal(b.last_version, 3);
    assert_int_equal(c.first_seq, 6);
    assert_int_equal(c.first_version, 3);
    assert_int_equal(evb_store_head(f->st), 6);
}

static void test_append_writes_back_positions_and_ids(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "other-1", EVB_EXPECT_NONE, 1, 0, 0);
    batch_t b;
    s_batch(&b, 3, "seat.reserved", 10);
    b.ev[1].id = s_id(777); /* given: must be kept */
    evb_append_result r;
    evb_err err;
    assert_int_equal(
        evb_store_append(f->st, "show-1", EVB_EXPECT_NONE, b.ev, 3, &r, &err), EVB_OK);
    evb_store_info info = s_info(f->st);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(b.ev[i].seq, 2 + i);
        assert_int_equal(b.ev[i].version, 1 + i);
        assert_false(evb_id_is_zero(&b.ev[i].id));
        assert_non_null(b.ev[i].stream);
        assert_string_equal(b.ev[i].stream, "show-1");
        assert_non_null(b.ev[i].service);
        assert_string_equal(b.ev[i].service, SERVICE);
        assert_true(s_id_eq(&b.ev[i].log_id, &info.log_id));
    }
    evb_id given = s_id(777);
    assert_true(s_id_eq(&b.ev[1].id, &given));
    assert_false(s_id_eq(&b.ev[0].id, &b.ev[2].id));
    /* The generated ids are the ones stored. */
    uint64_t seq = 0;
    assert_int_equal(evb_store_find_id(f->st, &b.ev[0].id, &seq, &err), EVB_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(evb_store_find_id(f->st, &b.ev[2].id, &seq, &err), EVB_OK);
    assert_int_equal(seq, 4);
    s_batch_free(&b);
}

static void test_append_defaults_schema_payload_and_ts(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_MANUAL);
    evb_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = "seat.reserved"; /* schema 0, payload NULL, ts 0 */
    int64_t before = evb_now_us();
    evb_err err;
    assert_int_equal(
        evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, &ev, 1, NULL, &err), EVB_OK);
    int64_t after = evb_now_us();
    evb_iter_t *it = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    assert_non_null(it);
    const evb_event_t *got = NULL;
    assert_true(evb_iter_next(it, &got, &err));
    assert_int_equal(got->schema, 1);
    assert_int_equal(got->payload_len, 1);
    assert_int_equal(((const uint8_t *)got->payload)[0], 0x80);
    assert_true(got->ts_us >= before && got->ts_us <= after);
    assert_null(got->metadata);
    assert_int_equal(got->origin_seq, 0);
    s_it_done(&it);
    assert_null(it);
}

static void test_append_roundtrips_optional_fields(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_MANUAL);
    static const uint8_t meta[] = {0x81, 0xa1, 'k', 0x07}; /* {"k": 7} */
    pl_t pl;
    s_pl_n(&pl, 5);
    evb_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.id = s_id(1);
    ev.type = "seat.reserved";
    ev.schema = 3;
    ev.ts_us = 1700000000123456LL;
    ev.correlation_id = s_id(2);
    ev.causation_id = s_id(3);
    ev.payload = pl.b;
    ev.payload_len = pl.len;
    ev.metadata = meta;
    ev.metadata_len = sizeof meta;
    ev.origin_log_id = s_id(4);
    ev.origin_seq = 99;
    evb_err err;
    assert_int_equal(
        evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, &ev, 1, NULL, &err), EVB_OK);
    evb_iter_t *it = s_it(evb_store_read_stream(f->st, "show-1", 1, 0, NULL, &err));
    assert_non_null(it);
    const evb_event_t *g = NULL;
    assert_true(evb_iter_next(it, &g, &err));
    evb_id x1 = s_id(1), x2 = s_id(2), x3 = s_id(3), x4 = s_id(4);
    assert_true(s_id_eq(&g->id, &x1));
    assert_true(s_id_eq(&g->correlation_id, &x2));
    assert_true(s_id_eq(&g->causation_id, &x3));
    assert_true(s_id_eq(&g->origin_log_id, &x4));
    assert_int_equal(g->origin_seq, 99);
    assert_int_equal(g->schema, 3);
    assert_int_equal(g->ts_us, 1700000000123456LL);
    assert_int_equal(s_payload_n(g), 5);
    assert_int_equal(g->metadata_len, sizeof meta);
    assert_memory_equal(g->metadata, meta, sizeof meta);
    assert_string_equal(g->category, "show");
    assert_false(evb_iter_next(it, &g, &err));
    assert_int_equal(err.code, EVB_OK);
    s_it_done(&it);
}

static void test_append_expect_any(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_append_result r = s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 1, 1, 0);
    assert_int_equal(r.first_version, 1);
    r = s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 2, 2, 0);
    assert_int_equal(r.first_version, 2);
    assert_int_equal(r.last_version, 3);
}

static void test_append_expect_none_on_new_stream(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_append_result r = s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 1, 1, 0);
    assert_int_equal(r.first_version, 1);
}

static void test_append_expect_none_on_existing_stream_conflicts(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 5, 1, 0);
    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(s_append(f->st, "show-1", EVB_EXPECT_NONE, 1, 9, 0, &r, &err),
                     EVB_ECONFLICT);
    assert_int_equal(err.code, EVB_ECONFLICT);
    assert_true(s_has_number(err.msg, 5)); /* names the current version */
    assert_int_equal(evb_store_head(f->st), 5);
}

static void test_append_expect_exact(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 2, 1, 0);
    evb_append_result r = s_append_ok(f->st, "show-1", 2, 1, 3, 0);
    assert_int_equal(r.first_version, 3);
    r = s_append_ok(f->st, "show-1", 3, 2, 4, 0);
    assert_int_equal(r.last_version, 5);
}

static void test_append_stale_version_conflicts_and_writes_nothing(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 4, 1, 0);
    s_append_ok(f->st, "ticket-1", EVB_EXPECT_NONE, 1, 5, 0);
    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(s_append(f->st, "show-1", 2, 3, 6, 0, &r, &err), EVB_ECONFLICT);
    assert_true(s_has_number(err.msg, 4));
    assert_int_equal(evb_store_head(f->st), 5);
    assert_int_equal(s_stream_version(f->st, "show-1"), 4);
    /* The next append takes the next sequence: no gap was left. */
    r = s_append_ok(f->st, "show-1", 4, 1, 6, 0);
    assert_int_equal(r.first_seq, 6);
    assert_int_equal(r.first_version, 5);
}

static void test_append_future_version_conflicts(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 1, 1, 0);
    evb_append_result r;
    evb_err err;
    assert_int_equal(s_append(f->st, "show-1", 7, 1, 2, 0, &r, &err), EVB_ECONFLICT);
    assert_int_equal(s_append(f->st, "new-1", 1, 1, 2, 0, &r, &err), EVB_ECONFLICT);
    assert_int_equal(evb_store_head(f->st), 1);
    assert_int_equal(s_stream_version(f->st, "new-1"), 0);
}

static void test_append_bad_expected_version_is_einval(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_append_result r;
    evb_err err;
    assert_int_equal(s_append(f->st, "show-1", -2, 1, 1, 0, &r, &err), EVB_EINVAL);
    assert_int_equal(evb_store_head(f->st), 0);
}

static void test_append_retry_same_ids_is_duplicate(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 2, 1, 0);
    evb_append_result a = s_append_ok(f->st, "show-1", 2, 3, 3, 100);
    s_append_ok(f->st, "ticket-1", EVB_EXPECT_NONE, 1, 6, 0);
    /* Retry with the same ids and the (now stale) expected version. */
    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    memset(&r, 0, sizeof r);
    assert_int_equal(s_append(f->st, "show-1", 2, 3, 3, 100, &r, &err), EVB_OK);
    assert_true(r.duplicate);
    assert_int_equal(r.first_seq, a.first_seq);
    assert_int_equal(r.last_seq, a.last_seq);
    assert_int_equal(r.first_version, 3);
    assert_int_equal(r.last_version, 5);
    assert_int_equal(evb_store_head(f->st), 6);
    assert_int_equal(s_stream_version(f->st, "show-1"), 5);
}

/* The retry detection across a reopen, with the ids in the given place. */
static void s_retry_after_reopen(fx_t *f, evb_index_mode mode, bool index_before_close)
{
    s_open(f, mode);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 1, 1, 0);
    evb_append_result a = s_append_ok(f->st, "show-1", 1, 2, 2, 500);
    unsigned many = 200 * s_scale();
    for (unsigned i = 0; i < many; i++)
        s_append_ok(f->st, "filler-1", EVB_EXPECT_ANY, 1, 0, 0);
    uint64_t head = evb_store_head(f->st);
    if (index_before_close) {
        if (mode == EVB_INDEX_MANUAL) {
            size_t done = 0;
            evb_err err;
            assert_int_equal(evb_store_index_step(f->st, SIZE_MAX, &done, &err), EVB_OK);
            assert_int_equal(done, head);
        }
        s_index_all(f->st);
    }
    s_reopen(f, mode);
    assert_int_equal(s_info(f->st).indexed, index_before_close ? head : 0);

    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    memset(&r, 0, sizeof r);
    int rc = s_append(f->st, "show-1", 1, 2, 2, 500, &r, &err);
    if (rc != EVB_OK) fail_msg("retry after reopen: %d %s", rc, err.msg);
    assert_true(r.duplicate);
    assert_int_equal(r.first_seq, a.first_seq);
    assert_int_equal(r.last_seq, a.last_seq);
    assert_int_equal(r.first_version, 2);
    assert_int_equal(r.last_version, 3);
    assert_int_equal(evb_store_head(f->st), head);

    /* A partial retry is detected too. */
    evb_err_clear(&err);
    batch_t b;
    s_batch(&b, 2, "seat.reserved", 0);
    b.ev[0].id = s_id(501); /* stored */
    b.ev[1].id = s_id(502); /* new */
    assert_int_equal(evb_store_append(f->st, "show-1", 3, b.ev, 2, &r, &err),
                     EVB_EPARTIAL);
    s_batch_free(&b);
    assert_int_equal(evb_store_head(f->st), head);
}

static void test_append_retry_after_reopen_indexed_manual(void **state)
{
    s_retry_after_reopen(*state, EVB_INDEX_MANUAL, true);
}

static void test_append_retry_after_reopen_unindexed_manual(void **state)
{
    s_retry_after_reopen(*state, EVB_INDEX_MANUAL, false);
}

static void test_append_retry_after_reopen_thread(void **state)
{
    s_retry_after_reopen(*state, EVB_INDEX_THREAD, true);
}

/* Ids the store made are sealed (no tail set, no filter, no id entry): given
 * back by a caller before or after the indexer covers them (a re-import, a
 * retry with the ids the first append returned), they are still found,
 * whole and in part. */
static void s_made_ids_given_back(fx_t *f, evb_index_mode mode)
{
    s_open(f, mode);
    batch_t b;
    s_batch(&b, 3, "seat.reserved", 0);
    evb_append_result a, r;
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_append(f->st, "show-1", EVB_EXPECT_NONE, b.ev, 3, &a, &err),
                     EVB_OK);
    s_append_ok(f->st, "show-2", EVB_EXPECT_NONE, 2, 0, 0);
    if (mode == EVB_INDEX_MANUAL) assert_int_equal(s_info(f->st).indexed, 0);
    /* b.ev now carries the ids the store made: the same batch again. */
    evb_err_clear(&err);
    memset(&r, 0, sizeof r);
    int rc = evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, b.ev, 3, &r, &err);
    if (rc != EVB_OK) fail_msg("made ids given back: %d %s", rc, err.msg);
    assert_true(r.duplicate);
    assert_int_equal(r.first_seq, a.first_seq);
    assert_int_equal(r.last_seq, a.last_seq);
    assert_int_equal(evb_store_head(f->st), 5);
    /* One of them beside a new id: a partial retry. */
    batch_t c;
    s_batch(&c, 2, "seat.reserved", 0);
    c.ev[0].id = b.ev[1].id;
    c.ev[1].id = s_id(900);
    evb_err_clear(&err);
    assert_int_equal(evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, c.ev, 2, &r, &err),
                     EVB_EPARTIAL);
    assert_int_equal(evb_store_head(f->st), 5);
    uint64_t seq = 0;
    assert_int_equal(evb_store_find_id(f->st, &b.ev[2].id, &seq, &err), EVB_OK);
    assert_int_equal(seq, 3);
    s_batch_free(&c);
    s_batch_free(&b);
}

static void test_made_ids_given_back_manual(void **state)
{
    s_made_ids_given_back(*state, EVB_INDEX_MANUAL);
}

static void test_made_ids_given_back_thread(void **state)
{
    s_made_ids_given_back(*state, EVB_INDEX_THREAD);
}

/* Append n made ids to stream in one transaction and give them back in *b;
 * commit or not. */
static void s_made_batch(fx_t *f, const char *stream, size_t n, bool commit, batch_t *b)
{
    evb_err err;
    evb_err_clear(&err);
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    s_batch(b, n, "seat.reserved", 0);
    evb_append_result r;
    assert_int_equal(evb_txn_append(tx, stream, EVB_EXPECT_ANY, b->ev, n, &r, &err), EVB_OK);
    if (commit)
        assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    else
        s_tx_done(&tx);
}

static uint64_t s_find(fx_t *f, const evb_id *id)
{
    uint64_t seq = 0;
    evb_err err;
    evb_err_clear(&err);
    int rc = evb_store_find_id(f->st, id, &seq, &err);
    if (rc == EVB_ENOTFOUND) return 0;
    if (rc != EVB_OK) fail_msg("find_id: %d %s", rc, err.msg);
    return seq;
}

/* verify finds nothing wrong with the open store. */
static void s_verify_clean(evb_store_t *st)
{
    evb_err err;
    evb_err_clear(&err);
    uint64_t problems = 99;
    if (evb_store_verify(st, NULL, NULL, NULL, &problems, &err) != EVB_OK)
        fail_msg("verify: %s", err.msg);
    assert_int_equal(problems, 0);
}

/* Sealed ids are exact: another log's made ids, a made id with one bit
 * changed and the ids of a transaction that did not commit are not found;
 * the seqs of that transaction get other ids when they come round again,
 * and its ids given later by a caller are new events, not duplicates. */
static void test_sealed_ids_are_exact(void **state)
{
    fx_t *f = *state;
    fx_t other = *f; /* a second log beside f's, under its tmp */
    other.st = other.st2 = NULL;
    if (snprintf(other.dir, sizeof other.dir, "%.4000s/other", f->tmp) < 0) fail();
    s_open(&other, EVB_INDEX_MANUAL);
    batch_t theirs;
    s_made_batch(&other, "show-1", 3, true, &theirs);
    evb_store_destroy(&other.st);

    s_open(f, EVB_INDEX_MANUAL);
    batch_t ours, aborted, again;
    s_made_batch(f, "show-1", 3, true, &ours); /* seqs 1..3 */
    s_made_batch(f, "show-2", 2, false, &aborted); /* seqs 4, 5: not committed */
    s_made_batch(f, "show-2", 2, true, &again);    /* seqs 4, 5 */
    for (int i = 0; i < 2; i++)
        assert_memory_not_equal(aborted.ev[i].id.b, again.ev[i].id.b, EVB_ID_LEN);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < 3; i++) {
            assert_int_equal(s_find(f, &ours.ev[i].id), 1 + (uint64_t)i);
            assert_int_equal(s_find(f, &theirs.ev[i].id), 0);
            evb_id bent = ours.ev[i].id;
            bent.b[12] ^= 0x10;
            assert_int_equal(s_find(f, &bent), 0);
        }
        for (int i = 0; i < 2; i++) {
            assert_int_equal(s_find(f, &again.ev[i].id), 4 + (uint64_t)i);
            assert_int_equal(s_find(f, &aborted.ev[i].id), 0);
        }
        s_index_all(f->st);
    }
    /* theirs and the aborted ids, given by a caller: new events */
    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_append(f->st, "show-3", EVB_EXPECT_ANY, theirs.ev, 3, &r, &err),
                     EVB_OK);
    assert_false(r.duplicate);
    assert_int_equal(r.first_seq, 6);
    assert_int_equal(evb_store_append(f->st, "show-3", EVB_EXPECT_ANY, aborted.ev, 2, &r, &err),
                     EVB_OK);
    assert_false(r.duplicate);
    assert_int_equal(r.first_seq, 9);
    assert_int_equal(s_find(f, &theirs.ev[2].id), 8);
    assert_int_equal(s_find(f, &aborted.ev[1].id), 10);
    s_index_all(f->st);
    s_verify_clean(f->st);
    /* made ids to the end of the epoch: the one of seqs 8..15 is sealed */
    s_append_ok(f->st, "show-3", EVB_EXPECT_ANY, 8, 0, 0);
    s_index_all(f->st);
    s_verify_clean(f->st);
    evb_store_destroy(&f->st);
    char ix[PATH_MAX + 16];
    snprintf(ix, sizeof ix, "%s/index", f->dir);
    /* the caller ids, and again's: random, as their seqs were sealed before;
     * in the id database, none in the index (B, I) */
    assert_int_equal(s_idb_count(f->dir), 7);
    assert_int_equal(s_raw_count(ix, 'B'), 0);
    assert_int_equal(s_raw_count(ix, 'I'), 0);
    s_batch_free(&theirs);
    s_batch_free(&ours);
    s_batch_free(&aborted);
    s_batch_free(&again);
}

/* The sealed id the store would make that a caller stored first, or staged
 * earlier in the same batch (it knew the key, or kept the id from a
 * transaction that did not commit): the store makes a random id instead,
 * and both are found where they are. The time and the nonce in made ids are
 * fixed (EVB_TEST_ID_MS) so that the sealed id of a seq is known before it
 * is made. */
static void test_sealed_id_taken_by_a_caller(void **state)
{
    fx_t *f = *state;
    setenv("EVB_TEST_ID_MS", "1700000000000", 1);
    s_open(f, EVB_INDEX_MANUAL);
    s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 1, 0, 0); /* seq 1 */
    batch_t seen, taken;
    s_made_batch(f, "show-1", 2, false, &seen); /* the sealed ids of 2 and 3 */
    evb_store_destroy(&f->st); /* a new process would seal 2 and 3 again */
    s_reopen(f, EVB_INDEX_MANUAL);
    s_batch(&taken, 1, "seat.reserved", 0);
    taken.ev[0].id = seen.ev[1].id; /* seq 3's, stored at 2 by a caller */
    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_append(f->st, "show-2", EVB_EXPECT_ANY, taken.ev, 1, &r, &err),
                     EVB_OK);
    assert_int_equal(r.first_seq, 2);
    batch_t made;
    s_made_batch(f, "show-2", 1, true, &made); /* seq 3 */
    assert_memory_not_equal(made.ev[0].id.b, seen.ev[1].id.b, EVB_ID_LEN);
    /* The same in one batch: seq 5's sealed id staged by the caller at 4. */
    batch_t seen2, mixed;
    s_made_batch(f, "show-1", 2, false, &seen2); /* the sealed ids of 4 and 5 */
    s_reopen(f, EVB_INDEX_MANUAL);
    s_batch(&mixed, 2, "seat.reserved", 0);
    mixed.ev[0].id = seen2.ev[1].id;
    assert_int_equal(evb_store_append(f->st, "show-3", EVB_EXPECT_ANY, mixed.ev, 2, &r, &err),
                     EVB_OK);
    unsetenv("EVB_TEST_ID_MS");
    assert_int_equal(r.first_seq, 4);
    assert_memory_not_equal(mixed.ev[1].id.b, seen2.ev[1].id.b, EVB_ID_LEN);
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(s_find(f, &seen.ev[1].id), 2);
        assert_int_equal(s_find(f, &made.ev[0].id), 3);
        assert_int_equal(s_find(f, &seen2.ev[1].id), 4);
        assert_int_equal(s_find(f, &mixed.ev[1].id), 5);
        s_index_all(f->st);
    }
    s_verify_clean(f->st);
    s_batch_free(&seen);
    s_batch_free(&taken);
    s_batch_free(&made);
    s_batch_free(&seen2);
    s_batch_free(&mixed);
}

static void test_append_partial_retry_is_epartial(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 2, 1, 40); /* ids 40, 41 */
    batch_t b;
    s_batch(&b, 3, "seat.reserved", 0);
    s_batch_ids(&b, 41); /* 41 stored, 42 and 43 not */
    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_append(f->st, "show-1", 2, b.ev, 3, &r, &err),
                     EVB_EPARTIAL);
    assert_int_equal(err.code, EVB_EPARTIAL);
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id stored = s_id(41);
    evb_id_to_hex(&stored, hex);
    assert_non_null(strstr(err.msg, hex));
    assert_int_equal(evb_store_head(f->st), 2);
    s_batch_free(&b);
}

static void test_append_same_id_twice_in_batch_is_einval(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    batch_t b;
    s_batch(&b, 3, "seat.reserved", 0);
    b.ev[0].id = s_id(9);
    b.ev[2].id = s_id(9);
    evb_append_result r;
    evb_err err;
    assert_int_equal(evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, b.ev, 3, &r, &err),
                     EVB_EINVAL);
    assert_int_equal(evb_store_head(f->st), 0);
    s_batch_free(&b);
}

static void test_append_bad_stream_is_einval(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    char longname[EVB_MAX_STREAM_LEN + 2];
    memset(longname, 'a', EVB_MAX_STREAM_LEN + 1);
    longname[EVB_MAX_STREAM_LEN + 1] = '\0';
    const char *bad[] = {"", "-lead", "has space", "a/b", "caf\xc3\xa9", longname};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        evb_append_result r;
        evb_err err;
        evb_err_clear(&err);
        int rc = s_append(f->st, bad[i], EVB_EXPECT_ANY, 1, 1, 0, &r, &err);
        if (rc != EVB_EINVAL)
            fail_msg("stream \"%s\": got %d, want EVB_EINVAL", bad[i], rc);
    }
    evb_append_result r;
    evb_err err;
    assert_int_equal(s_append(f->st, NULL, EVB_EXPECT_ANY, 1, 1, 0, &r, &err),
                     EVB_EINVAL);
    assert_int_equal(evb_store_head(f->st), 0);
}

static void test_append_stream_with_too_long_category_is_einval(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    char name[EVB_MAX_CATEGORY_LEN + 8];
    memset(name, 'c', EVB_MAX_CATEGORY_LEN + 1);
    strcpy(name + EVB_MAX_CATEGORY_LEN + 1, "-1");
    evb_append_result r;
    evb_err err;
    assert_int_equal(s_append(f->st, name, EVB_EXPECT_ANY, 1, 1, 0, &r, &err),
                     EVB_EINVAL);
    assert_int_equal(evb_store_head(f->st), 0);
}

static void test_append_longest_valid_stream_is_ok(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_MANUAL);
    char name[EVB_MAX_STREAM_LEN + 1];
    memset(name, 'a', EVB_MAX_CATEGORY_LEN);
    memset(name + EVB_MAX_CATEGORY_LEN, 'b', EVB_MAX_STREAM_LEN - EVB_MAX_CATEGORY_LEN);
    name[EVB_MAX_CATEGORY_LEN] = '-';
    name[EVB_MAX_STREAM_LEN] = '\0';
    s_append_ok(f->st, name, EVB_EXPECT_NONE, 1, 1, 0);
    s_index_all(f->st);
    assert_int_equal(s_stream_version(f->st, name), 1);
}

static void test_append_bad_type_is_einval(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    char longtype[EVB_MAX_TYPE_LEN + 2];
    memset(longtype, 't', EVB_MAX_TYPE_LEN + 1);
    longtype[EVB_MAX_TYPE_LEN + 1] = '\0';
    const char *bad[] = {"", "has space", "a/b", longtype, NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        batch_t b;
        s_batch(&b, 2, "seat.reserved", 0);
        b.ev[1].type = bad[i]; /* the second one is bad: nothing at all is written */
        evb_append_result r;
        evb_err err;
        evb_err_clear(&err);
        int rc = evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, b.ev, 2, &r, &err);
        s_batch_free(&b);
        if (rc != EVB_EINVAL)
            fail_msg("type #%zu \"%s\": got %d, want EVB_EINVAL", i,
                     bad[i] ? bad[i] : "NULL", rc);
    }
    assert_int_equal(evb_store_head(f->st), 0);
    assert_int_equal(s_stream_version(f->st, "show-1"), 0);
}

static void test_append_zero_events_is_rejected(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = "seat.reserved";
    evb_append_result r;
    evb_err err;
    assert_int_equal(evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, &ev, 0, &r, &err),
                     EVB_EINVAL);
    assert_int_equal(evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, NULL, 1, &r, &err),
                     EVB_EINVAL);
    assert_int_equal(evb_store_head(f->st), 0);
}

static void test_append_over_max_batch_is_rejected(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_event_t *ev = calloc(EVB_MAX_BATCH + 1, sizeof *ev);
    assert_non_null(ev);
    for (size_t i = 0; i <= EVB_MAX_BATCH; i++)
        ev[i].type = "seat.reserved";
    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    int rc = evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, ev, EVB_MAX_BATCH + 1, &r,
                              &err);
    assert_true(rc == EVB_EINVAL || rc == EVB_ETOOBIG);
    assert_int_equal(evb_store_head(f->st), 0);
    /* Exactly the ceiling is fine. */
    rc = evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, ev, EVB_MAX_BATCH, &r, &err);
    free(ev);
    if (rc != EVB_OK) fail_msg("append of EVB_MAX_BATCH: %d %s", rc, err.msg);
    assert_int_equal(r.last_seq, EVB_MAX_BATCH);
}

static void test_append_payload_not_a_map_is_rejected(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    static const uint8_t arr[] = {0x91, 0x01}; /* [1] */
    static const uint8_t num[] = {0x05};       /* 5 */
    static const uint8_t cut[] = {0x81, 0xa1}; /* truncated map */
    static const uint8_t two[] = {0x80, 0x80}; /* map + trailing bytes */
    static const uint8_t nil[] = {0xc0};       /* nil */
    const struct {
        const uint8_t *p;
        size_t n;
    } bad[] = {{arr, sizeof arr},
               {num, sizeof num},
               {cut, sizeof cut},
               {two, sizeof two},
               {nil, sizeof nil}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        evb_event_t ev;
        memset(&ev, 0, sizeof ev);
        ev.type = "seat.reserved";
        ev.payload = bad[i].p;
        ev.payload_len = bad[i].n;
        evb_append_result r;
        evb_err err;
        evb_err_clear(&err);
        int rc = evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, &ev, 1, &r, &err);
        if (rc != EVB_EINVAL && rc != EVB_EDECODE)
            fail_msg("payload #%zu: got %d, want EVB_EINVAL/EVB_EDECODE", i, rc);
    }
    assert_int_equal(evb_store_head(f->st), 0);
}

static void test_append_metadata_not_a_map_is_rejected(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    static const uint8_t arr[] = {0x91, 0x01};
    evb_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = "seat.reserved";
    ev.metadata = arr;
    ev.metadata_len = sizeof arr;
    evb_append_result r;
    evb_err err;
    int rc = evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, &ev, 1, &r, &err);
    assert_true(rc == EVB_EINVAL || rc == EVB_EDECODE);
    assert_int_equal(evb_store_head(f->st), 0);
}

static void test_append_oversized_payload_is_etoobig(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    /* {"b": bin32 of EVB_MAX_PAYLOAD_BYTES bytes}: a valid map one ceiling over. */
    size_t body = EVB_MAX_PAYLOAD_BYTES;
    size_t len = 1 + 2 + 5 + body;
    uint8_t *p = calloc(1, len);
    assert_non_null(p);
    p[0] = 0x81;
    p[1] = 0xa1;
    p[2] = 'b';
    p[3] = 0xc6;
    p[4] = (uint8_t)(body >> 24);
    p[5] = (uint8_t)(body >> 16);
    p[6] = (uint8_t)(body >> 8);
    p[7] = (uint8_t)body;
    evb_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = "seat.reserved";
    ev.payload = p;
    ev.payload_len = len;
    evb_append_result r;
    evb_err err;
    int rc = evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, &ev, 1, &r, &err);
    free(p);
    assert_int_equal(rc, EVB_ETOOBIG);
    assert_int_equal(evb_store_head(f->st), 0);
}

/* ================================================================ reads */

/*
 * The scripted data set: rounds of appends to six streams in three
 * categories. Payload n, and the id key, of every event equal its seq.
 */
static const struct {
    const char *stream;
    size_t n;
} k_script[] = {{"show-1", 3},   {"ticket-1", 2}, {"show-2", 1},
                {"show-1", 2},   {"show", 2},     {"ticket-1", 1},
                {"show-1-a", 2}, {"other", 1},    {"show-2", 3}};
#define K_NSTREAMS 6
static const char *const k_streams[K_NSTREAMS] = {"show-1", "ticket-1", "show-2",
                                                  "show",   "show-1-a", "other"};
#define DS_MAX 4096

typedef struct ds {
    uint64_t head;
    evb_id log_id;
    const char *stream[DS_MAX + 1]; /* by seq */
    uint64_t version[DS_MAX + 1];
    uint64_t stream_v[K_NSTREAMS]; /* current versions */
} ds_t;

static ds_t g_ds;

static const char *s_cat(const char *stream, char *buf, size_t cap)
{
    const char *dash = strchr(stream, '-');
    size_t n = dash ? (size_t)(dash - stream) : strlen(stream);
    if (n >= cap) n = cap - 1;
    memcpy(buf, stream, n);
    buf[n] = '\0';
    return buf;
}

static int s_stream_ix(const char *stream)
{
    for (int i = 0; i < K_NSTREAMS; i++)
        if (strcmp(k_streams[i], stream) == 0) return i;
    fail_msg("unknown stream %s", stream);
    return -1;
}

static const char *s_type_of(uint64_t seq)
{
    return seq % 3 == 0 ? "seat.released" : "seat.reserved";
}

static void s_ds_build(evb_store_t *st, unsigned rounds)
{
    ds_t *d = &g_ds;
    memset(d, 0, sizeof *d);
    for (unsigned r = 0; r < rounds; r++) {
        for (size_t i = 0; i < sizeof k_script / sizeof k_script[0]; i++) {
            const char *s = k_script[i].stream;
            size_t n = k_script[i].n;
            int ix = s_stream_ix(s);
            if (d->head + n > DS_MAX) return;
            batch_t b;
            s_batch(&b, n, "x", (int64_t)d->head + 1);
            s_batch_ids(&b, d->head + 1);
            for (size_t k = 0; k < n; k++)
                b.ev[k].type = s_type_of(d->head + 1 + k);
            /* exact expected versions, NONE for a new stream */
            int64_t exp =
                d->stream_v[ix] == 0 ? EVB_EXPECT_NONE : (int64_t)d->stream_v[ix];
            evb_append_result res;
            evb_err err;
            evb_err_clear(&err);
            int rc = evb_store_append(st, s, exp, b.ev, n, &res, &err);
            s_batch_free(&b);
            if (rc != EVB_OK) fail_msg("dataset append %s: %d %s", s, rc, err.msg);
            assert_int_equal(res.first_seq, d->head + 1);
            assert_int_equal(res.first_version, d->stream_v[ix] + 1);
            for (size_t k = 0; k < n; k++) {
                d->head++;
                d->stream_v[ix]++;
                d->stream[d->head] = s;
                d->version[d->head] = d->stream_v[ix];
            }
        }
    }
    d->log_id = s_info(st).log_id;
    assert_int_equal(evb_store_head(st), d->head);
}

typedef enum ix_mode {
    IX_NONE,        /* manual, nothing indexed: all reads from the tail */
    IX_HALF,        /* manual, half indexed */
    IX_FULL,        /* manual, all indexed */
    IX_REOPEN_HALF, /* half indexed, then closed and reopened (tail rebuilt) */
    IX_THREAD       /* the background indexer races the reads */
} ix_mode;

static void s_ds_prepare(fx_t *f, ix_mode m)
{
    s_open(f, m == IX_THREAD ? EVB_INDEX_THREAD : EVB_INDEX_MANUAL);
    unsigned rounds = 2 * s_scale();
    if (rounds > 200) rounds = 200;
    s_ds_build(f->st, rounds);
    uint64_t head = g_ds.head;
    evb_err err;
    evb_err_clear(&err);
    size_t done = 0;
    switch (m) {
    case IX_NONE:
        assert_int_equal(s_info(f->st).indexed, 0);
        break;
    case IX_HALF:
    case IX_REOPEN_HALF:
        assert_int_equal(evb_store_index_step(f->st, head / 2, &done, &err), EVB_OK);
        assert_int_equal(done, head / 2);
        assert_int_equal(s_info(f->st).indexed, head / 2);
        if (m == IX_REOPEN_HALF) {
            s_reopen(f, EVB_INDEX_MANUAL);
            evb_store_info info = s_info(f->st);
            assert_int_equal(info.head, head);
            assert_int_equal(info.indexed, head / 2);
        }
        break;
    case IX_FULL:
        assert_int_equal(evb_store_index_step(f->st, SIZE_MAX, &done, &err), EVB_OK);
        assert_int_equal(done, head);
        assert_int_equal(s_info(f->st).indexed, head);
        /* nothing left */
        assert_int_equal(evb_store_index_step(f->st, SIZE_MAX, &done, &err), EVB_OK);
        assert_int_equal(done, 0);
        break;
    case IX_THREAD:
        break;
    }
}

/* Compare one event with the data set. */
static void s_check_ev(const evb_event_t *ev)
{
    const ds_t *d = &g_ds;
    assert_true(ev->seq >= 1 && ev->seq <= d->head);
    char cat[EVB_MAX_CATEGORY_LEN + 1];
    assert_string_equal(ev->stream, d->stream[ev->seq]);
    assert_int_equal(ev->version, d->version[ev->seq]);
    assert_non_null(ev->category);
    assert_string_equal(ev->category, s_cat(d->stream[ev->seq], cat, sizeof cat));
    assert_string_equal(ev->type, s_type_of(ev->seq));
    assert_string_equal(ev->service, SERVICE);
    assert_int_equal(ev->schema, 1);
    assert_true(s_id_eq(&ev->log_id, &d->log_id));
    evb_id id = s_id(ev->seq);
    assert_true(s_id_eq(&ev->id, &id));
    assert_int_equal(s_payload_n(ev), (int64_t)ev->seq);
    assert_true(ev->ts_us > 0);
}

/* Iterate and compare with the seqs in want[0..n). */
static void s_expect_iter(evb_iter_t *it, const uint64_t *want, size_t n)
{
    assert_non_null(it);
    const evb_event_t *ev = NULL;
    evb_err err;
    evb_err_clear(&err);
    size_t i = 0;
    while (evb_iter_next(it, &ev, &err)) {
        if (i >= n)
            fail_msg("iterator: extra event seq %llu", (unsigned long long)ev->seq);
        if (ev->seq != want[i])
            fail_msg(
                "iterator: event #%zu has seq %llu (%s v%llu), want seq %llu (%s v%llu)",
                i, (unsigned long long)ev->seq, ev->stream,
                (unsigned long long)ev->version, (unsigned long long)want[i],
                g_ds.stream[want[i]], (unsigned long long)g_ds.version[want[i]]);
        s_check_ev(ev);
        i++;
    }
    if (err.code != EVB_OK) fail_msg("iterator error: %d %s", err.code, err.msg);
    if (i != n) fail_msg("iterator: %zu events, want %zu", i, n);
    /* next after the end stays at the end */
    assert_false(evb_iter_next(it, &ev, &err));
    assert_int_equal(err.code, EVB_OK);
}

static void test_read_range(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    uint64_t head = g_ds.head;
    uint64_t *want = calloc(head + 1, sizeof *want);
    assert_non_null(want);
    evb_err err;
    size_t n = 0;

    for (uint64_t s = 1; s <= head; s++)
        want[n++] = s;
    evb_iter_t *it = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    s_expect_iter(it, want, n);
    s_it_done(&it);

    uint64_t lo = 5, hi = head - 3;
    n = 0;
    for (uint64_t s = lo; s <= hi; s++)
        want[n++] = s;
    it = s_it(evb_store_read_range(f->st, lo, hi, NULL, &err));
    s_expect_iter(it, want, n);
    s_it_done(&it);

    /* one event */
    want[0] = head / 2;
    it = s_it(evb_store_read_range(f->st, head / 2, head / 2, NULL, &err));
    s_expect_iter(it, want, 1);
    s_it_done(&it);

    /* to past the head stops at the head */
    n = 0;
    for (uint64_t s = head - 1; s <= head; s++)
        want[n++] = s;
    it = s_it(evb_store_read_range(f->st, head - 1, head + 100, NULL, &err));
    s_expect_iter(it, want, n);
    s_it_done(&it);

    /* from past the head: empty */
    it = s_it(evb_store_read_range(f->st, head + 1, 0, NULL, &err));
    s_expect_iter(it, want, 0);
    s_it_done(&it);
    free(want);
}

/* Seqs of stream with from_v <= version <= to_v (0: all). */
static size_t s_want_stream(const char *stream, uint64_t from_v, uint64_t to_v,
                            uint64_t *want)
{
    size_t n = 0;
    for (uint64_t s = 1; s <= g_ds.head; s++) {
        if (strcmp(g_ds.stream[s], stream) != 0) continue;
        uint64_t v = g_ds.version[s];
        if (v < from_v || (to_v != 0 && v > to_v)) continue;
        want[n++] = s;
    }
    return n;
}

static void test_read_stream_from_version(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    uint64_t *want = calloc(g_ds.head + 1, sizeof *want);
    assert_non_null(want);
    evb_err err;
    for (int i = 0; i < K_NSTREAMS; i++) {
        const char *s = k_streams[i];
        uint64_t cur = g_ds.stream_v[i];
        uint64_t froms[] = {1, 2, cur / 2 + 1, cur, cur + 1};
        for (size_t k = 0; k < sizeof froms / sizeof froms[0]; k++) {
            size_t n = s_want_stream(s, froms[k], 0, want);
            evb_iter_t *it =
                s_it(evb_store_read_stream(f->st, s, froms[k], 0, NULL, &err));
            s_expect_iter(it, want, n);
            s_it_done(&it);
        }
    }
    free(want);
}

static void test_read_stream_as_of_version(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    uint64_t *want = calloc(g_ds.head + 1, sizeof *want);
    assert_non_null(want);
    evb_err err;
    for (int i = 0; i < K_NSTREAMS; i++) {
        const char *s = k_streams[i];
        uint64_t cur = g_ds.stream_v[i];
        uint64_t tos[] = {1, cur / 2 + 1, cur > 1 ? cur - 1 : 1, cur};
        for (size_t k = 0; k < sizeof tos / sizeof tos[0]; k++) {
            size_t n = s_want_stream(s, 1, tos[k], want);
            assert_int_equal(n, tos[k]);
            evb_iter_t *it = s_it(evb_store_read_stream(f->st, s, 1, tos[k], NULL, &err));
            s_expect_iter(it, want, n);
            s_it_done(&it);
        }
        /* a window in the middle */
        if (cur >= 4) {
            size_t n = s_want_stream(s, 2, cur - 1, want);
            evb_iter_t *it =
                s_it(evb_store_read_stream(f->st, s, 2, cur - 1, NULL, &err));
            s_expect_iter(it, want, n);
            s_it_done(&it);
        }
    }
    free(want);
}

static void test_read_unknown_stream_is_empty(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    evb_err err;
    evb_err_clear(&err);
    /* "show-1" exists: its prefix and its extension must not match */
    const char *names[] = {"nosuch-1", "show-", "show-1-", "show-10"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        evb_iter_t *it = s_it(evb_store_read_stream(f->st, names[i], 1, 0, NULL, &err));
        if (it == NULL) {
            assert_int_equal(err.code, EVB_ENOTFOUND);
            continue;
        }
        s_expect_iter(it, NULL, 0);
        s_it_done(&it);
    }
}

/* Seqs of category with seq > after. */
static size_t s_want_cat(const char *cat, uint64_t after, uint64_t *want)
{
    size_t n = 0;
    char c[EVB_MAX_CATEGORY_LEN + 1];
    for (uint64_t s = after + 1; s <= g_ds.head; s++)
        if (strcmp(s_cat(g_ds.stream[s], c, sizeof c), cat) == 0) want[n++] = s;
    return n;
}

/* evb_iter_next_raw gives what evb_iter_next and evb_iter_raw give: the same
 * events (seq, category), the same stored bytes, the same end. */
static void s_expect_raw_same(evb_iter_t *a, evb_iter_t *b)
{
    evb_err ea, eb;
    for (;;) {
        const evb_event_t *ev;
        evb_raw_event re;
        bool ga = evb_iter_next(a, &ev, &ea), gb = evb_iter_next_raw(b, &re, &eb);
        assert_int_equal(ga, gb);
        if (!ga) break;
        const void *buf;
        size_t len;
        assert_true(evb_iter_raw(a, &buf, &len));
        assert_int_equal(re.seq, ev->seq);
        assert_string_equal(re.category, ev->category);
        assert_int_equal(re.len, len);
        assert_memory_equal(re.buf, buf, len);
    }
    assert_int_equal(ea.code, eb.code);
    assert_int_equal(ea.code, EVB_OK);
}

static void test_read_category_after_seq(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    uint64_t head = g_ds.head;
    uint64_t *want = calloc(head + 1, sizeof *want);
    assert_non_null(want);
    evb_err err;
    const char *cats[] = {"show", "ticket", "other"};
    uint64_t afters[] = {0, 1, 7, head / 2, head - 1, head};
    for (size_t c = 0; c < sizeof cats / sizeof cats[0]; c++) {
        for (size_t a = 0; a < sizeof afters / sizeof afters[0]; a++) {
            size_t n = s_want_cat(cats[c], afters[a], want);
            evb_iter_t *it =
                s_it(evb_store_read_category(f->st, cats[c], afters[a], NULL, &err));
            s_expect_iter(it, want, n);
            s_it_done(&it);
            evb_iter_t *x =
                s_it(evb_store_read_category(f->st, cats[c], afters[a], NULL, &err));
            evb_iter_t *y =
                s_it(evb_store_read_category(f->st, cats[c], afters[a], NULL, &err));
            s_expect_raw_same(x, y);
            s_it_done(&x);
            s_it_done(&y);
        }
    }
    evb_iter_t *x = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    evb_iter_t *y = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    s_expect_raw_same(x, y);
    s_it_done(&x);
    s_it_done(&y);
    /* A category that is a prefix of another must not match it. */
    evb_iter_t *it = s_it(evb_store_read_category(f->st, "sho", 0, NULL, &err));
    if (it != NULL) {
        s_expect_iter(it, want, 0);
        s_it_done(&it);
    } else {
        assert_int_equal(err.code, EVB_ENOTFOUND);
    }
    free(want);
}

typedef struct cat_seen {
    size_t n;
    char name[8][EVB_MAX_CATEGORY_LEN + 1];
    uint64_t head[8];
    uint64_t count[8];
} cat_seen_t;

static int s_on_cat(const evb_category_info *ci, void *ctx)
{
    cat_seen_t *cs = ctx;
    if (cs->n < 8) {
        snprintf(cs->name[cs->n], sizeof cs->name[cs->n], "%s", ci->name);
        cs->head[cs->n] = ci->head;
        cs->count[cs->n] = ci->count;
    }
    cs->n++;
    return 0;
}

static void s_cat_model(const char *cat, uint64_t *head, uint64_t *count)
{
    char c[EVB_MAX_CATEGORY_LEN + 1];
    *head = 0;
    *count = 0;
    for (uint64_t s = 1; s <= g_ds.head; s++)
        if (strcmp(s_cat(g_ds.stream[s], c, sizeof c), cat) == 0) {
            *head = s;
            (*count)++;
        }
}

static void test_categories_heads_and_counts(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    cat_seen_t cs;
    memset(&cs, 0, sizeof cs);
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_categories(f->st, s_on_cat, &cs, &err), EVB_OK);
    const char *names[] = {"other", "show", "ticket"}; /* name order */
    assert_int_equal(cs.n, 3);
    for (size_t i = 0; i < 3; i++) {
        uint64_t h, c;
        s_cat_model(names[i], &h, &c);
        assert_string_equal(cs.name[i], names[i]);
        assert_int_equal(cs.head[i], h);
        assert_int_equal(cs.count[i], c);
    }
}

static void test_category_head(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    evb_err err;
    const char *names[] = {"other", "show", "ticket"};
    for (size_t i = 0; i < 3; i++) {
        uint64_t h = 0, c = 0, got = 777;
        s_cat_model(names[i], &h, &c);
        assert_int_equal(evb_store_category_head(f->st, names[i], &got, &err), EVB_OK);
        assert_int_equal(got, h);
    }
    uint64_t got = 777;
    int rc = evb_store_category_head(f->st, "nosuch", &got, &err);
    assert_true((rc == EVB_OK && got == 0) || rc == EVB_ENOTFOUND);
    /* a new event moves the head */
    evb_append_result r = s_append_ok(f->st, "other", EVB_EXPECT_ANY, 1, 0, 0);
    assert_int_equal(evb_store_category_head(f->st, "other", &got, &err), EVB_OK);
    assert_int_equal(got, r.last_seq);
}

static void test_stream_version(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    for (int i = 0; i < K_NSTREAMS; i++)
        assert_int_equal(s_stream_version(f->st, k_streams[i]), g_ds.stream_v[i]);
    assert_int_equal(s_stream_version(f->st, "nosuch-1"), 0);
    assert_int_equal(s_stream_version(f->st, "show-10"), 0);
}

static void test_find_id(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    evb_err err;
    for (uint64_t s = 1; s <= g_ds.head; s++) {
        evb_id id = s_id(s);
        uint64_t seq = 0;
        int rc = evb_store_find_id(f->st, &id, &seq, &err);
        if (rc != EVB_OK)
            fail_msg("find_id of seq %llu: %d %s", (unsigned long long)s, rc, err.msg);
        assert_int_equal(seq, s);
    }
    evb_id none = s_id(g_ds.head + 1000);
    uint64_t seq = 0;
    assert_int_equal(evb_store_find_id(f->st, &none, &seq, &err), EVB_ENOTFOUND);
}

static void test_stream_version_across_reopen(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    s_reopen(f, m == IX_THREAD ? EVB_INDEX_THREAD : EVB_INDEX_MANUAL);
    for (int i = 0; i < K_NSTREAMS; i++)
        assert_int_equal(s_stream_version(f->st, k_streams[i]), g_ds.stream_v[i]);
    /* and appends continue with exact versions */
    evb_append_result r = s_append_ok(f->st, "show-1", (int64_t)g_ds.stream_v[0], 1,
                                      (int64_t)g_ds.head + 1, 0);
    assert_int_equal(r.first_version, g_ds.stream_v[0] + 1);
    assert_int_equal(r.first_seq, g_ds.head + 1);
}

static void test_iterator_snapshot_ignores_later_appends(void **state, ix_mode m)
{
    fx_t *f = *state;
    s_ds_prepare(f, m);
    uint64_t head = g_ds.head;
    evb_err err;
    evb_iter_t *r = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    evb_iter_t *s = s_it(evb_store_read_stream(f->st, "show-1", 1, 0, NULL, &err));
    evb_iter_t *c = s_it(evb_store_read_category(f->st, "show", 0, NULL, &err));
    assert_non_null(r);
    assert_non_null(s);
    assert_non_null(c);
    /* take one step before the appends, too */
    const evb_event_t *ev = NULL;
    assert_true(evb_iter_next(r, &ev, &err));
    assert_int_equal(ev->seq, 1);

    s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 3, 0, 0);
    s_append_ok(f->st, "show-9", EVB_EXPECT_ANY, 2, 0, 0);
    if (m != IX_THREAD) s_index_all(f->st);

    assert_int_equal(s_count_iter(r), head - 1);
    assert_int_equal(s_count_iter(s), g_ds.stream_v[0]);
    uint64_t h, cnt;
    s_cat_model("show", &h, &cnt);
    assert_int_equal(s_count_iter(c), cnt);
    s_it_done(&r);
    s_it_done(&s);
    s_it_done(&c);
    /* a new iterator sees them */
    r = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    assert_int_equal(s_count_iter(r), head + 5);
    s_it_done(&r);
}

#define IX_VARIANTS(name)                                                                \
    static void name##__unindexed(void **s)                                              \
    {                                                                                    \
        name(s, IX_NONE);                                                                \
    }                                                                                    \
    static void name##__half_indexed(void **s)                                           \
    {                                                                                    \
        name(s, IX_HALF);                                                                \
    }                                                                                    \
    static void name##__indexed(void **s)                                                \
    {                                                                                    \
        name(s, IX_FULL);                                                                \
    }                                                                                    \
    static void name##__half_indexed_reopened(void **s)                                  \
    {                                                                                    \
        name(s, IX_REOPEN_HALF);                                                         \
    }                                                                                    \
    static void name##__indexer_thread(void **s)                                         \
    {                                                                                    \
        name(s, IX_THREAD);                                                              \
    }

#define IX_TESTS(name)                                                                   \
    cmocka_unit_test_setup_teardown(name##__unindexed, s_setup, s_teardown),             \
        cmocka_unit_test_setup_teardown(name##__half_indexed, s_setup, s_teardown),      \
        cmocka_unit_test_setup_teardown(name##__indexed, s_setup, s_teardown),           \
        cmocka_unit_test_setup_teardown(name##__half_indexed_reopened, s_setup,          \
                                        s_teardown),                                     \
        cmocka_unit_test_setup_teardown(name##__indexer_thread, s_setup, s_teardown)

IX_VARIANTS(test_read_range)
IX_VARIANTS(test_read_stream_from_version)
IX_VARIANTS(test_read_stream_as_of_version)
IX_VARIANTS(test_read_unknown_stream_is_empty)
IX_VARIANTS(test_read_category_after_seq)
IX_VARIANTS(test_categories_heads_and_counts)
IX_VARIANTS(test_category_head)
IX_VARIANTS(test_stream_version)
IX_VARIANTS(test_find_id)
IX_VARIANTS(test_stream_version_across_reopen)
IX_VARIANTS(test_iterator_snapshot_ignores_later_appends)

static void test_empty_log_reads_nothing(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_err err;
    evb_iter_t *it = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    assert_non_null(it);
    assert_int_equal(s_count_iter(it), 0);
    s_it_done(&it);
    cat_seen_t cs;
    memset(&cs, 0, sizeof cs);
    assert_int_equal(evb_store_categories(f->st, s_on_cat, &cs, &err), EVB_OK);
    assert_int_equal(cs.n, 0);
}

static void test_reindex_keeps_reads(void **state)
{
    fx_t *f = *state;
    s_ds_prepare(f, IX_FULL);
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_reindex(f->st, &err), EVB_OK);
    s_index_all(f->st);
    uint64_t *want = calloc(g_ds.head + 1, sizeof *want);
    assert_non_null(want);
    size_t n = s_want_cat("show", 0, want);
    evb_iter_t *it = s_it(evb_store_read_category(f->st, "show", 0, NULL, &err));
    s_expect_iter(it, want, n);
    s_it_done(&it);
    n = s_want_stream("ticket-1", 1, 0, want);
    it = s_it(evb_store_read_stream(f->st, "ticket-1", 1, 0, NULL, &err));
    s_expect_iter(it, want, n);
    s_it_done(&it);
    free(want);
}

/* ================================================================ upcasters */

static int s_up_1_to_2(const evb_event_t *ev, evb_buf *out, uint32_t *to_schema,
                       void *ctx, evb_err *err)
{
    int *calls = ctx;
    (*calls)++;
    msgpack_unpacked u;
    msgpack_object o;
    bool ok = s_map_find(ev->payload, ev->payload_len, "n", &o, &u);
    int64_t n = ok ? (int64_t)o.via.u64 : -1;
    msgpack_unpacked_destroy(&u);
    if (!ok) return evb_err_set(err, EVB_EDECODE, "no n");
    /* {"n": n, "v2": true} */
    uint8_t buf[32];
    pl_t p;
    s_pl_n(&p, n);
    memcpy(buf, p.b, p.len);
    buf[0] = 0x82;
    size_t len = p.len;
    buf[len++] = 0xa2;
    buf[len++] = 'v';
    buf[len++] = '2';
    buf[len++] = 0xc3;
    *to_schema = 2;
    return evb_buf_append(out, buf, len, err);
}

static void test_reads_with_upcasters_return_current_schema(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_MANUAL);
    int calls = 0;
    evb_err err;
    evb_upcasters_t *up = evb_upcasters_new(&err);
    assert_non_null(up);
    assert_int_equal(evb_upcasters_add(up, "seat.reserved", 1, s_up_1_to_2, &calls, &err),
                     EVB_OK);

    /* seq 1, 2: seat.reserved schema 1; seq 3: other type; seq 4: already schema 2 */
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 2, 1, 0);
    batch_t b;
    s_batch(&b, 2, "seat.released", 3);
    b.ev[1].type = "seat.reserved";
    b.ev[1].schema = 2;
    evb_append_result r;
    assert_int_equal(evb_store_append(f->st, "show-1", 2, b.ev, 2, &r, &err), EVB_OK);
    s_batch_free(&b);
    size_t done = 0;
    assert_int_equal(evb_store_index_step(f->st, 2, &done, &err), EVB_OK); /* half */

    for (int kind = 0; kind < 3; kind++) {
        calls = 0;
        evb_iter_t *it =
            kind == 0   ? s_it(evb_store_read_range(f->st, 1, 0, up, &err))
            : kind == 1 ? s_it(evb_store_read_stream(f->st, "show-1", 1, 0, up, &err))
                        : s_it(evb_store_read_category(f->st, "show", 0, up, &err));
        assert_non_null(it);
        const evb_event_t *ev = NULL;
        uint32_t want_schema[] = {2, 2, 1, 2};
        bool want_v2[] = {true, true, false, false};
        for (int i = 0; i < 4; i++) {
            assert_true(evb_iter_next(it, &ev, &err));
            assert_int_equal(ev->seq, (uint64_t)i + 1);
            assert_int_equal(ev->schema, want_schema[i]);
            assert_int_equal(s_payload_has(ev, "v2"), want_v2[i]);
            assert_int_equal(s_payload_n(ev), i + 1);
        }
        assert_false(evb_iter_next(it, &ev, &err));
        assert_int_equal(err.code, EVB_OK);
        s_it_done(&it);
        assert_int_equal(calls, 2);
    }

    /* without the registry: stored shape */
    evb_iter_t *it = s_it(evb_store_read_range(f->st, 1, 1, NULL, &err));
    const evb_event_t *ev = NULL;
    assert_true(evb_iter_next(it, &ev, &err));
    assert_int_equal(ev->schema, 1);
    assert_false(s_payload_has(ev, "v2"));
    s_it_done(&it);
    evb_upcasters_destroy(&up);
    assert_null(up);
}

/* ================================================================ transactions */

static void test_txn_commit_writes_everything_together(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "other", EVB_EXPECT_NONE, 1, 0, 0);
    evb_err err;
    evb_err_clear(&err);
    evb_id src = s_id(4242);
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx);
    assert_int_equal(evb_txn_put(tx, "k1", 2, "v1", 2, &err), EVB_OK);
    assert_int_equal(evb_txn_checkpoint(tx, "proj", &src, "show", 42, &err), EVB_OK);
    batch_t b;
    s_batch(&b, 2, "seat.reserved", 1);
    evb_append_result r;
    assert_int_equal(evb_txn_append(tx, "show-1", EVB_EXPECT_NONE, b.ev, 2, &r, &err),
                     EVB_OK);
    assert_int_equal(r.first_seq, 2);
    assert_int_equal(r.last_seq, 3);
    assert_int_equal(r.first_version, 1);
    assert_int_equal(r.last_version, 2);

    /* nothing visible before commit */
    evb_buf out = {0};
    uint64_t seq = 99;
    assert_int_equal(evb_store_get(f->st, "k1", 2, &out, &err), EVB_ENOTFOUND);
    assert_int_equal(evb_store_checkpoint_get(f->st, "proj", &src, "show", &seq, &err),
                     EVB_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(evb_store_head(f->st), 1);
    assert_int_equal(s_stream_version(f->st, "show-1"), 0);

    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    assert_null(tx);
    s_batch_free(&b);

    assert_int_equal(evb_store_get(f->st, "k1", 2, &out, &err), EVB_OK);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.data, "v1", 2);
    assert_int_equal(evb_store_checkpoint_get(f->st, "proj", &src, "show", &seq, &err),
                     EVB_OK);
    assert_int_equal(seq, 42);
    assert_int_equal(evb_store_head(f->st), 3);
    assert_int_equal(s_stream_version(f->st, "show-1"), 2);
    evb_iter_t *it = s_it(evb_store_read_stream(f->st, "show-1", 1, 0, NULL, &err));
    assert_int_equal(s_count_iter(it), 2);
    s_it_done(&it);

    /* and it survives a reopen */
    s_reopen(f, EVB_INDEX_THREAD);
    assert_int_equal(evb_store_get(f->st, "k1", 2, &out, &err), EVB_OK);
    assert_memory_equal(out.data, "v1", 2);
    assert_int_equal(evb_store_checkpoint_get(f->st, "proj", &src, "show", &seq, &err),
                     EVB_OK);
    assert_int_equal(seq, 42);
    assert_int_equal(evb_store_head(f->st), 3);
    evb_buf_free(&out);
}

static void test_txn_destroy_writes_nothing(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 1, 0, 0);
    evb_err err;
    evb_id src = s_id(1);
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx);
    assert_int_equal(evb_txn_put(tx, "k", 1, "v", 1, &err), EVB_OK);
    assert_int_equal(evb_txn_checkpoint(tx, "proj", &src, "show", 7, &err), EVB_OK);
    assert_int_equal(evb_txn_snapshot(tx, "show-1", 1, "st", 2, &err), EVB_OK);
    evb_append_result r;
    batch_t b;
    s_batch(&b, 2, "seat.reserved", 0);
    s_batch_ids(&b, 300);
    assert_int_equal(evb_txn_append(tx, "show-1", 1, b.ev, 2, &r, &err), EVB_OK);
    s_tx_done(&tx);
    assert_null(tx);

    evb_buf out = {0};
    uint64_t seq = 99, v = 99;
    assert_int_equal(evb_store_get(f->st, "k", 1, &out, &err), EVB_ENOTFOUND);
    assert_int_equal(evb_store_checkpoint_get(f->st, "proj", &src, "show", &seq, &err),
                     EVB_OK);
    assert_int_equal(seq, 0);
    assert_int_equal(evb_store_snapshot_load(f->st, "show-1", &v, &out, &err), EVB_OK);
    assert_int_equal(v, 0);
    assert_int_equal(evb_store_head(f->st), 1);
    assert_int_equal(s_stream_version(f->st, "show-1"), 1);
    /* the ids of the aborted append are free, and no sequence was burnt */
    uint64_t where = 0;
    assert_int_equal(evb_store_find_id(f->st, &b.ev[0].id, &where, &err), EVB_ENOTFOUND);
    memset(&r, 0, sizeof r);
    assert_int_equal(evb_store_append(f->st, "show-1", 1, b.ev, 2, &r, &err), EVB_OK);
    assert_false(r.duplicate);
    assert_int_equal(r.first_seq, 2);
    assert_int_equal(r.first_version, 2);
    s_batch_free(&b);
    evb_buf_free(&out);
}

static void test_txn_append_conflict_then_destroy_writes_nothing(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 1, 0, 0);
    evb_err err;
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx);
    assert_int_equal(evb_txn_put(tx, "k", 1, "v", 1, &err), EVB_OK);
    batch_t b;
    s_batch(&b, 1, "seat.reserved", 0);
    evb_append_result r;
    evb_err_clear(&err);
    assert_int_equal(evb_txn_append(tx, "show-1", 5, b.ev, 1, &r, &err), EVB_ECONFLICT);
    assert_int_equal(err.code, EVB_ECONFLICT);
    s_tx_done(&tx);
    assert_null(tx);
    s_batch_free(&b);
    evb_buf out = {0};
    assert_int_equal(evb_store_get(f->st, "k", 1, &out, &err), EVB_ENOTFOUND);
    assert_int_equal(evb_store_head(f->st), 1);
    /* the store is usable again */
    tx = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx);
    s_tx_done(&tx);
}

static void test_txn_appends_see_each_others_versions(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_NONE, 2, 0, 0);
    evb_err err;
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx);
    batch_t a, b;
    s_batch(&a, 1, "seat.reserved", 3);
    s_batch(&b, 2, "seat.reserved", 4);
    evb_append_result ra, rb;
    assert_int_equal(evb_txn_append(tx, "show-1", 2, a.ev, 1, &ra, &err), EVB_OK);
    assert_int_equal(ra.first_version, 3);
    assert_int_equal(ra.first_seq, 3);
    /* the second append must expect 3, not 2 */
    assert_int_equal(evb_txn_append(tx, "show-1", 2, b.ev, 2, &rb, &err), EVB_ECONFLICT);
    assert_int_equal(evb_txn_append(tx, "show-1", 3, b.ev, 2, &rb, &err), EVB_OK);
    assert_int_equal(rb.first_version, 4);
    assert_int_equal(rb.last_version, 5);
    assert_int_equal(rb.first_seq, 4);
    assert_int_equal(rb.last_seq, 5);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    s_batch_free(&a);
    s_batch_free(&b);
    assert_int_equal(s_stream_version(f->st, "show-1"), 5);
    assert_int_equal(evb_store_head(f->st), 5);
    evb_iter_t *it = s_it(evb_store_read_stream(f->st, "show-1", 1, 0, NULL, &err));
    uint64_t seqs[8];
    assert_int_equal(s_drain(it, seqs, 8), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(seqs[i], (uint64_t)i + 1);
    s_it_done(&it);
}

static void test_txn_duplicate_ids_across_appends_is_rejected(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_err err;
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx);
    batch_t a;
    s_batch(&a, 1, "seat.reserved", 0);
    s_batch_ids(&a, 77);
    evb_append_result r;
    assert_int_equal(evb_txn_append(tx, "show-1", EVB_EXPECT_NONE, a.ev, 1, &r, &err),
                     EVB_OK);
    /* the same id again in the same txn: a retry of it, so a duplicate */
    evb_event_t again;
    memset(&again, 0, sizeof again);
    again.type = "seat.reserved";
    again.id = s_id(77);
    memset(&r, 0, sizeof r);
    /* with the right expected version, so only the id check can stop it */
    int rc = evb_txn_append(tx, "show-1", 1, &again, 1, &r, &err);
    assert_true((rc == EVB_OK && r.duplicate && r.first_seq == 1) || rc == EVB_EINVAL);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    assert_int_equal(evb_store_head(f->st), 1);
    s_batch_free(&a);
}

static void test_txn_second_begin_is_ebusy(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_err err;
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx);
    evb_err_clear(&err);
    evb_txn_t *tx2 = s_tx(evb_txn_begin(f->st, &err));
    assert_null(tx2);
    assert_int_equal(err.code, EVB_EBUSY);
    s_tx_done(&tx);
    tx2 = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx2);
    assert_int_equal(s_tx_commit(&tx2, &err), EVB_OK); /* empty commit */
    tx = s_tx(evb_txn_begin(f->st, &err));             /* after commit too */
    assert_non_null(tx);
    s_tx_done(&tx);
}

static void test_txn_delete_removes_key(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_err err;
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_int_equal(evb_txn_put(tx, "a", 1, "1", 1, &err), EVB_OK);
    assert_int_equal(evb_txn_put(tx, "b", 1, "2", 1, &err), EVB_OK);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    tx = s_tx(evb_txn_begin(f->st, &err));
    assert_int_equal(evb_txn_delete(tx, "a", 1, &err), EVB_OK);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    evb_buf out = {0};
    assert_int_equal(evb_store_get(f->st, "a", 1, &out, &err), EVB_ENOTFOUND);
    assert_int_equal(evb_store_get(f->st, "b", 1, &out, &err), EVB_OK);
    assert_memory_equal(out.data, "2", 1);
    evb_buf_free(&out);
}

static void test_store_get_replaces_buffer_contents(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_err err;
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    /* binary key and value with NULs */
    static const uint8_t key[] = {0, 1, 2, 0};
    static const uint8_t val[] = {9, 0, 8};
    assert_int_equal(evb_txn_put(tx, key, sizeof key, val, sizeof val, &err), EVB_OK);
    assert_int_equal(evb_txn_put(tx, "x", 1, "", 0, &err), EVB_OK); /* empty value */
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    evb_buf out = {0};
    assert_int_equal(evb_buf_append(&out, "junk-junk-junk", 14, &err), EVB_OK);
    assert_int_equal(evb_store_get(f->st, key, sizeof key, &out, &err), EVB_OK);
    assert_int_equal(out.len, sizeof val);
    assert_memory_equal(out.data, val, sizeof val);
    assert_int_equal(evb_store_get(f->st, "x", 1, &out, &err), EVB_OK);
    assert_int_equal(out.len, 0);
    /* a key that is a prefix of a stored key is not found */
    assert_int_equal(evb_store_get(f->st, key, 3, &out, &err), EVB_ENOTFOUND);
    evb_buf_free(&out);
}

static void test_txn_put_oversized_key_is_rejected(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_err err;
    char *key = calloc(1, EVB_MAX_KEY_LEN + 1);
    assert_non_null(key);
    memset(key, 'k', EVB_MAX_KEY_LEN + 1);
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx);
    int rc = evb_txn_put(tx, key, EVB_MAX_KEY_LEN + 1, "v", 1, &err);
    assert_true(rc == EVB_EINVAL || rc == EVB_ETOOBIG);
    assert_int_equal(evb_txn_put(tx, key, EVB_MAX_KEY_LEN, "v", 1, &err), EVB_OK);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    evb_buf out = {0};
    assert_int_equal(evb_store_get(f->st, key, EVB_MAX_KEY_LEN, &out, &err), EVB_OK);
    free(key);
    evb_buf_free(&out);
}

static void test_checkpoint_get_is_zero_when_none(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_err err;
    evb_id src = s_id(5);
    uint64_t seq = 1234;
    assert_int_equal(evb_store_checkpoint_get(f->st, "proj", &src, "show", &seq, &err),
                     EVB_OK);
    assert_int_equal(seq, 0);
}

typedef struct cp_seen {
    size_t n;
    char consumer[8][EVB_MAX_CONSUMER_LEN + 1];
    evb_id src[8];
    char category[8][EVB_MAX_CATEGORY_LEN + 1];
    uint64_t seq[8];
} cp_seen_t;

static int s_on_cp(const char *consumer, const evb_id *source_log, const char *category,
                   uint64_t seq, void *ctx)
{
    cp_seen_t *cs = ctx;
    if (cs->n < 8) {
        snprintf(cs->consumer[cs->n], sizeof cs->consumer[cs->n], "%s", consumer);
        cs->src[cs->n] = *source_log;
        snprintf(cs->category[cs->n], sizeof cs->category[cs->n], "%s", category);
        cs->seq[cs->n] = seq;
    }
    cs->n++;
    return 0;
}

static void test_checkpoints_enumerates_latest_values(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    evb_err err;
    evb_id s1 = s_id(1), s2 = s_id(2);
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_int_equal(evb_txn_checkpoint(tx, "proj", &s1, "show", 5, &err), EVB_OK);
    assert_int_equal(evb_txn_checkpoint(tx, "proj", &s1, "ticket", 7, &err), EVB_OK);
    assert_int_equal(evb_txn_checkpoint(tx, "mail", &s2, "show", 9, &err), EVB_OK);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    tx = s_tx(evb_txn_begin(f->st, &err));
    assert_int_equal(evb_txn_checkpoint(tx, "proj", &s1, "show", 6, &err), EVB_OK);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);

    cp_seen_t cs;
    memset(&cs, 0, sizeof cs);
    assert_int_equal(evb_store_checkpoints(f->st, s_on_cp, &cs, &err), EVB_OK);
    assert_int_equal(cs.n, 3);
    const struct {
        const char *c;
        evb_id *s;
        const char *cat;
        uint64_t seq;
    } want[] = {
        {"proj", &s1, "show", 6}, {"proj", &s1, "ticket", 7}, {"mail", &s2, "show", 9}};
    for (size_t w = 0; w < 3; w++) {
        size_t hits = 0;
        for (size_t i = 0; i < cs.n && i < 8; i++)
            if (strcmp(cs.consumer[i], want[w].c) == 0 &&
                s_id_eq(&cs.src[i], want[w].s) &&
                strcmp(cs.category[i], want[w].cat) == 0) {
                hits++;
                assert_int_equal(cs.seq[i], want[w].seq);
            }
        if (hits != 1)
            fail_msg("checkpoint %s/%s seen %zu times", want[w].c, want[w].cat, hits);
    }
    /* the same consumer against another source log is separate */
    uint64_t seq = 1;
    assert_int_equal(evb_store_checkpoint_get(f->st, "proj", &s2, "show", &seq, &err),
                     EVB_OK);
    assert_int_equal(seq, 0);
}

/* ================================================================ snapshots */

static void test_snapshot_save_then_load(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "acct-1", EVB_EXPECT_NONE, 3, 1, 0);
    evb_err err;
    assert_int_equal(evb_store_snapshot_save(f->st, "acct-1", 3, "abc", 3, &err), EVB_OK);
    evb_buf out = {0};
    uint64_t v = 0;
    assert_int_equal(evb_store_snapshot_load(f->st, "acct-1", &v, &out, &err), EVB_OK);
    assert_int_equal(v, 3);
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "abc", 3);
    s_reopen(f, EVB_INDEX_THREAD);
    out.len = 0;
    assert_int_equal(evb_store_snapshot_load(f->st, "acct-1", &v, &out, &err), EVB_OK);
    assert_int_equal(v, 3);
    assert_memory_equal(out.data, "abc", 3);
    evb_buf_free(&out);
}

static void test_snapshot_load_when_none_is_version_zero(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "acct-1", EVB_EXPECT_NONE, 1, 1, 0);
    evb_err err;
    evb_buf out = {0};
    assert_int_equal(evb_buf_append(&out, "junk", 4, &err), EVB_OK);
    uint64_t v = 77;
    assert_int_equal(evb_store_snapshot_load(f->st, "acct-1", &v, &out, &err), EVB_OK);
    assert_int_equal(v, 0);
    assert_int_equal(out.len, 0);
    /* another stream's snapshot is not this one's */
    assert_int_equal(evb_store_snapshot_save(f->st, "acct-10", 1, "x", 1, &err), EVB_OK);
    assert_int_equal(evb_store_snapshot_load(f->st, "acct-1", &v, &out, &err), EVB_OK);
    assert_int_equal(v, 0);
    evb_buf_free(&out);
}

static void test_snapshot_load_returns_latest(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "acct-1", EVB_EXPECT_NONE, 300, 1, 0);
    evb_err err;
    /* 9 < 256: a store that kept every snapshot and picked one by a byte-wise
     * compare of little-endian or text versions would pick the wrong one */
    assert_int_equal(evb_store_snapshot_save(f->st, "acct-1", 2, "two", 3, &err), EVB_OK);
    assert_int_equal(evb_store_snapshot_save(f->st, "acct-1", 9, "nine", 4, &err),
                     EVB_OK);
    assert_int_equal(evb_store_snapshot_save(f->st, "acct-1", 256, "b256", 4, &err),
                     EVB_OK);
    evb_buf out = {0};
    uint64_t v = 0;
    assert_int_equal(evb_store_snapshot_load(f->st, "acct-1", &v, &out, &err), EVB_OK);
    assert_int_equal(v, 256);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "b256", 4);
    evb_buf_free(&out);
}

static void test_snapshot_plus_later_events_rebuilds_aggregate(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_MANUAL);
    unsigned first = 5 * s_scale(), later = 4 * s_scale();
    int64_t total = 0, at_snap = 0;
    for (unsigned i = 1; i <= first; i++) {
        s_append_ok(f->st, "acct-1", EVB_EXPECT_ANY, 1, (int64_t)i, 0);
        s_append_ok(f->st, "acct-2", EVB_EXPECT_ANY, 1, 1000, 0); /* noise */
        total += i;
    }
    at_snap = total;
    char state_txt[32];
    int sl = snprintf(state_txt, sizeof state_txt, "%lld", (long long)at_snap);
    evb_err err;
    assert_int_equal(
        evb_store_snapshot_save(f->st, "acct-1", first, state_txt, (size_t)sl, &err),
        EVB_OK);
    size_t done;
    assert_int_equal(evb_store_index_step(f->st, SIZE_MAX, &done, &err), EVB_OK);
    for (unsigned i = first + 1; i <= first + later; i++) {
        s_append_ok(f->st, "acct-1", EVB_EXPECT_ANY, 1, (int64_t)i, 0);
        total += i;
    }

    evb_buf out = {0};
    uint64_t v = 0;
    assert_int_equal(evb_store_snapshot_load(f->st, "acct-1", &v, &out, &err), EVB_OK);
    assert_int_equal(v, first);
    assert_int_equal(evb_buf_append(&out, "", 1, &err), EVB_OK); /* NUL */
    int64_t agg = strtoll(out.data, NULL, 10);
    assert_int_equal(agg, at_snap);
    evb_iter_t *it = s_it(evb_store_read_stream(f->st, "acct-1", v + 1, 0, NULL, &err));
    assert_non_null(it);
    const evb_event_t *ev = NULL;
    uint64_t expect_v = v + 1;
    while (evb_iter_next(it, &ev, &err)) {
        assert_int_equal(ev->version, expect_v++);
        agg += s_payload_n(ev);
    }
    assert_int_equal(err.code, EVB_OK);
    s_it_done(&it);
    assert_int_equal(expect_v, first + later + 1);
    assert_int_equal(agg, total);
    evb_buf_free(&out);
}

static void test_txn_snapshot_commits(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "acct-1", EVB_EXPECT_NONE, 2, 1, 0);
    evb_err err;
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_int_equal(evb_txn_snapshot(tx, "acct-1", 2, "s2", 2, &err), EVB_OK);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    evb_buf out = {0};
    uint64_t v = 0;
    assert_int_equal(evb_store_snapshot_load(f->st, "acct-1", &v, &out, &err), EVB_OK);
    assert_int_equal(v, 2);
    assert_memory_equal(out.data, "s2", 2);
    evb_buf_free(&out);
}

/* ================================================================ verify */

typedef struct probs {
    size_t n;
    char text[16][EVB_ERR_MSG_LEN];
} probs_t;

static void s_on_problem(const char *p, void *ctx)
{
    probs_t *pr = ctx;
    if (pr->n < 16) snprintf(pr->text[pr->n], sizeof pr->text[pr->n], "%s", p);
    pr->n++;
}

static bool s_probs_name(const probs_t *pr, uint64_t seq)
{
    for (size_t i = 0; i < pr->n && i < 16; i++)
        if (s_has_number(pr->text[i], seq)) return true;
    return false;
}

static void test_verify_clean_log(void **state)
{
    fx_t *f = *state;
    s_ds_prepare(f, IX_HALF);
    probs_t pr;
    memset(&pr, 0, sizeof pr);
    uint64_t problems = 99;
    evb_err err;
    evb_err_clear(&err);
    int rc = evb_store_verify(f->st, s_on_problem, NULL, &pr, &problems, &err);
    if (rc != EVB_OK)
        fail_msg("verify: %d %s; first problem: %s", rc, err.msg, pr.text[0]);
    assert_int_equal(problems, 0);
    assert_int_equal(pr.n, 0);
    s_index_all(f->st);
    assert_int_equal(evb_store_verify(f->st, s_on_problem, NULL, &pr, &problems, &err),
                     EVB_OK);
    assert_int_equal(problems, 0);
}

static void test_verify_empty_log_is_clean(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    uint64_t problems = 99;
    evb_err err;
    assert_int_equal(evb_store_verify(f->st, NULL, NULL, NULL, &problems, &err), EVB_OK);
    assert_int_equal(problems, 0);
}

static void test_verify_after_reindex_is_clean(void **state)
{
    fx_t *f = *state;
    s_ds_prepare(f, IX_FULL);
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_reindex(f->st, &err), EVB_OK);
    s_index_all(f->st);
    probs_t pr;
    memset(&pr, 0, sizeof pr);
    uint64_t problems = 99;
    int rc = evb_store_verify(f->st, s_on_problem, NULL, &pr, &problems, &err);
    if (rc != EVB_OK)
        fail_msg("verify: %d %s; first problem: %s", rc, err.msg, pr.text[0]);
    assert_int_equal(problems, 0);
}

typedef struct prog {
    uint64_t calls, last_done, total;
} prog_t;

static void s_on_progress(uint64_t done, uint64_t total, void *ctx)
{
    prog_t *p = ((prog_t *)ctx);
    p->calls++;
    p->last_done = done;
    p->total = total;
}

static void test_verify_reports_progress(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_MANUAL);
    /* more than 65536 events, in big batches */
    uint64_t n = 70000;
    while (evb_store_head(f->st) < n) {
        size_t k = n - evb_store_head(f->st) < EVB_MAX_BATCH ? n - evb_store_head(f->st)
                                                             : EVB_MAX_BATCH;
        s_append_ok(f->st, "bulk-1", EVB_EXPECT_ANY, k, 0, 0);
    }
    s_index_all(f->st);
    prog_t p;
    memset(&p, 0, sizeof p);
    uint64_t problems = 99;
    evb_err err;
    assert_int_equal(evb_store_verify(f->st, NULL, s_on_progress, &p, &problems, &err),
                     EVB_OK);
    assert_true(p.calls >= 1);
    assert_true(p.last_done >= 65536 && p.last_done <= n);
    assert_int_equal(p.total, n);
}

/* Build a 50-event log, fully indexed, and close it. */
static void s_verify_log(fx_t *f)
{
    s_open(f, EVB_INDEX_MANUAL);
    for (int i = 0; i < 10; i++) {
        char s[16];
        snprintf(s, sizeof s, "show-%d", i % 3);
        s_append_ok(f->st, s, EVB_EXPECT_ANY, 5, 0, 0);
    }
    assert_int_equal(evb_store_head(f->st), 50);
    s_index_all(f->st);
    evb_store_destroy(&f->st);
}

static void s_expect_corrupt(fx_t *f, uint64_t seq)
{
    evb_store_opts o = s_opts(f, EVB_INDEX_MANUAL);
    o.create = false;
    f->st = s_open_o(&o);
    probs_t pr;
    memset(&pr, 0, sizeof pr);
    uint64_t problems = 0;
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_verify(f->st, s_on_problem, NULL, &pr, &problems, &err),
                     EVB_ECORRUPT);
    assert_true(problems > 0);
    assert_int_equal(pr.n, problems);
    if (!s_probs_name(&pr, seq))
        fail_msg("no problem names seq %llu; first: %s", (unsigned long long)seq,
                 pr.text[0]);
}

static void test_verify_missing_event_is_corrupt(void **state)
{
    fx_t *f = *state;
    s_verify_log(f);
    uint8_t key[9];
    s_event_key(37, key);
    s_raw_delete(f->dir, key, sizeof key);
    s_expect_corrupt(f, 37);
}

static void test_verify_garbage_event_is_corrupt(void **state)
{
    fx_t *f = *state;
    s_verify_log(f);
    uint8_t key[9];
    s_event_key(23, key);
    s_raw_put(f->dir, false, key, sizeof key, "garbage!", 8);
    s_expect_corrupt(f, 23);
}

/* A record under another event's key (its bytes are whole, its block's
 * checksum good) is a hole for a read that does not decode too: the seq in
 * its head is checked (evb_iter_next_raw). */
static void test_read_raw_misplaced_record(void **state)
{
    fx_t *f = *state;
    s_verify_log(f);
    s_open(f, EVB_INDEX_MANUAL);
    evb_err err;
    evb_iter_t *it = s_it(evb_store_read_range(f->st, 5, 5, NULL, &err));
    evb_raw_event re;
    assert_true(evb_iter_next_raw(it, &re, &err));
    char *five = malloc(re.len);
    assert_non_null(five);
    memcpy(five, re.buf, re.len);
    size_t five_len = re.len;
    s_it_done(&it);
    evb_store_destroy(&f->st);
    uint8_t key[9];
    s_event_key(6, key);
    s_raw_put(f->dir, false, key, sizeof key, five, five_len);
    free(five);
    s_open(f, EVB_INDEX_MANUAL);
    for (int raw = 0; raw < 2; raw++) {
        it = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
        const evb_event_t *ev;
        uint64_t n = 0, from = 0, to = 0;
        while (raw ? evb_iter_next_raw(it, &re, &err) : evb_iter_next(it, &ev, &err))
            n++;
        assert_int_equal(n, 5);
        assert_int_equal(err.code, EVB_ECORRUPT);
        assert_non_null(strstr(err.msg, "says it is event 5"));
        assert_true(evb_iter_hole(it, &from, &to));
        assert_int_equal(from, 6);
        assert_int_equal(to, 6);
        s_it_done(&it);
    }
}

/* Payload k of test_damaged_block_is_a_hole: {"r": 400 bytes of bin} from a
 * PRNG seeded with k, so that LevelDB keeps the blocks uncompressed (snappy
 * cannot shrink them) and the bytes can be found in a table again. */
#define DMG_PAYLOAD 406
static void s_dmg_payload(uint64_t k, uint8_t out[DMG_PAYLOAD])
{
    const uint8_t head[6] = {0x81, 0xa1, 'r', 0xc5, 0x01, 0x90};
    memcpy(out, head, sizeof head);
    uint64_t x = k * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = sizeof head; i < DMG_PAYLOAD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = (uint8_t)x;
    }
}

/* The largest table file of a LevelDB directory. */
static void s_largest_table(const char *dir, char path[PATH_MAX])
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ls -S %s/*.ldb | head -1", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(path, PATH_MAX, p));
    path[strcspn(path, "\n")] = '\0';
    pclose(p);
}

/* A damaged table block is a hole for a read, never an event with other
 * bytes, whoever checks the block's CRC: the store's Env in hardware for a
 * writable open (reads then leave LevelDB's check off; bgenv.cc), LevelDB
 * for a read-only one. */
static void test_damaged_block_is_a_hole(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_MANUAL);
    const uint64_t n = 3000, victim = 1500;
    for (uint64_t k = 1; k <= n; k += 100) {
        evb_event_t ev[100];
        uint8_t pl[100][DMG_PAYLOAD];
        memset(ev, 0, sizeof ev);
        for (int i = 0; i < 100; i++) {
            s_dmg_payload(k + (uint64_t)i, pl[i]);
            ev[i].type = "blob.stored";
            ev[i].payload = pl[i];
            ev[i].payload_len = DMG_PAYLOAD;
        }
        evb_append_result r;
        evb_err err;
        evb_err_clear(&err);
        assert_int_equal(evb_store_append(f->st, "blob-1", EVB_EXPECT_ANY, ev, 100, &r, &err),
                         EVB_OK);
    }
    s_index_all(f->st); /* an open reads no event then (a damaged tail refuses it) */
    evb_store_destroy(&f->st);
    s_open(f, EVB_INDEX_MANUAL); /* the write-ahead log goes into a table */
    evb_store_destroy(&f->st);
    /* Flip a byte of the victim's payload where it lies in a table. */
    char table[PATH_MAX];
    s_largest_table(f->dir, table);
    FILE *fp = fopen(table, "r+b");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    uint8_t *data = malloc((size_t)size);
    assert_non_null(data);
    fseek(fp, 0, SEEK_SET);
    assert_int_equal(fread(data, 1, (size_t)size, fp), (size_t)size);
    uint8_t want[DMG_PAYLOAD];
    uint64_t hit = 0;
    long at = -1;
    for (uint64_t k = victim; k < n && at < 0; k++) { /* the first one in this table */
        s_dmg_payload(k, want);
        for (long i = 0; i + DMG_PAYLOAD <= size; i++)
            if (data[i] == want[0] && memcmp(data + i, want, DMG_PAYLOAD) == 0) {
                at = i + 200;
                hit = k;
                break;
            }
    }
    assert_true(at > 0);
    data[at] ^= 0x40;
    fseek(fp, at, SEEK_SET);
    assert_int_equal(fwrite(data + at, 1, 1, fp), 1);
    fclose(fp);
    free(data);
    for (int ro = 0; ro < 2; ro++) {
        evb_store_opts o = s_opts(f, EVB_INDEX_MANUAL);
        o.create = false;
        o.read_only_intent = ro == 1;
        f->st = s_open_o(&o);
        evb_err err;
        evb_iter_t *it = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
        const evb_event_t *ev;
        uint64_t seen = 0, from = 0, to = 0;
        while (evb_iter_next(it, &ev, &err)) {
            s_dmg_payload(ev->seq, want);
            assert_int_equal(ev->payload_len, DMG_PAYLOAD);
            assert_memory_equal(ev->payload, want, DMG_PAYLOAD); /* never other bytes */
            seen++;
        }
        assert_int_equal(err.code, EVB_ECORRUPT);
        assert_true(evb_iter_hole(it, &from, &to));
        assert_true(from <= hit && hit <= to);
        assert_int_equal(seen, from - 1);
        s_it_done(&it);
        evb_store_destroy(&f->st);
    }
}

/* A table whose end (its footer and index block) is damaged does not open,
 * and LevelDB's RepairDB moves it to lost/ whole. evb_store_repair_copy
 * finds its data blocks by their checksums (store/rawtable.c) and puts their
 * events back into the copy, so salvage gets every event, byte for byte,
 * from blocks stored plain and blocks snappy compressed; a consumer key of
 * that table comes back too, and one deleted later (the deletion in the
 * write-ahead log, which RepairDB keeps) does not. */
#define SALV_N 3000u
#define SALV_MORE 50u
static void s_salv_payload(uint64_t k, uint8_t out[DMG_PAYLOAD])
{
    s_dmg_payload(k, out);
    if ((k / 40) % 2 == 1) /* runs that snappy shrinks: their blocks are compressed */
        for (size_t i = 6; i < DMG_PAYLOAD; i++)
            out[i] = (uint8_t)("evbus-salvage"[i % 13] + (i % 50 == 0 ? k : 0));
}

static void s_salv_append(evb_store_t *st, uint64_t from, uint64_t n)
{
    for (uint64_t k = from; k < from + n; k += 100) {
        evb_event_t ev[100];
        uint8_t pl[100][DMG_PAYLOAD];
        memset(ev, 0, sizeof ev);
        size_t m = from + n - k < 100 ? (size_t)(from + n - k) : 100;
        for (size_t i = 0; i < m; i++) {
            s_salv_payload(k + i, pl[i]);
            ev[i].type = "blob.stored";
            ev[i].payload = pl[i];
            ev[i].payload_len = DMG_PAYLOAD;
        }
        char stream[32];
        snprintf(stream, sizeof stream, "blob-%llu", (unsigned long long)(k / 100 % 7));
        evb_append_result r;
        evb_err err;
        evb_err_clear(&err);
        assert_int_equal(evb_store_append(st, stream, EVB_EXPECT_ANY, ev, m, &r, &err), EVB_OK);
        assert_int_equal(r.first_seq, k);
    }
}

typedef struct salv_ev {
    evb_id id;
    uint64_t version;
    int64_t ts_us;
    char stream[32];
} salv_ev;

static void test_salvage_table_with_damaged_end(void **state)
{
    fx_t *f = *state;
    const uint64_t total = SALV_N + SALV_MORE;
    evb_err err;
    evb_err_clear(&err);
    evb_store_opts o = s_opts(f, EVB_INDEX_MANUAL);
    o.write_buffer_bytes = 16u << 20; /* all of it in one table */
    f->st = s_open_o(&o);
    s_salv_append(f->st, 1, SALV_N);
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_int_equal(evb_txn_put(tx, "kept", 4, "v1", 2, &err), EVB_OK);
    assert_int_equal(evb_txn_put(tx, "gone", 4, "v2", 2, &err), EVB_OK);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    s_index_all(f->st);
    evb_store_destroy(&f->st);
    o.create = false;
    f->st = s_open_o(&o); /* the write-ahead log goes into a table */
    tx = s_tx(evb_txn_begin(f->st, &err));
    assert_int_equal(evb_txn_delete(tx, "gone", 4, &err), EVB_OK);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    s_salv_append(f->st, SALV_N + 1, SALV_MORE);
    evb_store_info info;
    evb_store_get_info(f->st, &info);
    salv_ev *want = calloc(total + 1, sizeof *want);
    assert_non_null(want);
    evb_iter_t *it = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    const evb_event_t *ev;
    uint64_t n = 0;
    while (evb_iter_next(it, &ev, &err)) {
        assert_int_equal(ev->seq, ++n);
        want[n].id = ev->id;
        want[n].version = ev->version;
        want[n].ts_us = ev->ts_us;
        snprintf(want[n].stream, sizeof want[n].stream, "%s", ev->stream);
    }
    assert_int_equal(err.code, EVB_OK);
    assert_int_equal(n, total);
    s_it_done(&it);
    evb_store_destroy(&f->st);

    /* 16 bytes flipped at the end of the events' table */
    char table[PATH_MAX];
    s_largest_table(f->dir, table);
    FILE *fp = fopen(table, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, -16, SEEK_END), 0);
    uint8_t b[16];
    assert_int_equal(fread(b, 1, 16, fp), 16);
    for (int i = 0; i < 16; i++)
        b[i] ^= 0xff;
    assert_int_equal(fseek(fp, -16, SEEK_END), 0);
    assert_int_equal(fwrite(b, 1, 16, fp), 16);
    fclose(fp);

    o.read_only_intent = true;
    evb_err oerr;
    evb_err_clear(&oerr);
    evb_store_t *bad = evb_store_open(&o, &oerr);
    evb_store_destroy(&bad);
    assert_int_equal(oerr.code, EVB_ECORRUPT); /* the damaged log does not open */
    char copy[PATH_MAX + 16], dest[PATH_MAX + 16];
    snprintf(copy, sizeof copy, "%s/repaired", f->tmp);
    snprintf(dest, sizeof dest, "%s/salvaged", f->tmp);
    assert_int_equal(evb_store_repair_copy(f->dir, copy, &err), EVB_OK);
    o.dir = copy;
    f->st = s_open_o(&o);
    evb_salvage_info si;
    assert_int_equal(evb_store_salvage(f->st, dest, NULL, &si, &err), EVB_OK);
    evb_store_destroy(&f->st);
    assert_int_equal(si.head, total);
    assert_int_equal(si.events, total);
    assert_int_equal(si.unreadable, 0);
    assert_int_equal(si.holes, 0);

    o.dir = dest;
    f->st = s_open_o(&o);
    evb_store_info di;
    evb_store_get_info(f->st, &di);
    assert_memory_equal(di.log_id.b, info.log_id.b, EVB_ID_LEN);
    assert_int_equal(di.head, total);
    it = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    n = 0;
    uint8_t pl[DMG_PAYLOAD];
    while (evb_iter_next(it, &ev, &err)) {
        assert_int_equal(ev->seq, ++n);
        assert_memory_equal(ev->id.b, want[n].id.b, EVB_ID_LEN);
        assert_int_equal(ev->version, want[n].version);
        assert_int_equal(ev->ts_us, want[n].ts_us);
        assert_string_equal(ev->stream, want[n].stream);
        assert_string_equal(ev->type, "blob.stored");
        s_salv_payload(n, pl);
        assert_int_equal(ev->payload_len, DMG_PAYLOAD);
        assert_memory_equal(ev->payload, pl, DMG_PAYLOAD);
    }
    assert_int_equal(err.code, EVB_OK);
    assert_int_equal(n, total);
    s_it_done(&it);
    evb_buf v = {0};
    assert_int_equal(evb_store_get(f->st, "kept", 4, &v, &err), EVB_OK);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.data, "v1", 2);
    assert_int_equal(evb_store_get(f->st, "gone", 4, &v, &err), EVB_ENOTFOUND);
    evb_buf_free(&v);
    free(want);
}

/* Format 2: the indexes are a database of their own in DIR/index. They are
 * derived: removed, they are built again at the next open; and when they
 * cover events the log no longer holds (a power loss took back an unsynced
 * suffix, simulated here by deleting the last 10 events), the open builds
 * them again instead of refusing the log. Reads, versions and verify agree
 * with the log either way. */
static void s_expect_streams(fx_t *f, uint64_t head)
{
    evb_err err;
    evb_err_clear(&err);
    uint64_t n = 0;
    for (int i = 0; i < 3; i++) {
        char s[16];
        snprintf(s, sizeof s, "show-%d", i);
        evb_iter_t *it = s_it(evb_store_read_stream(f->st, s, 1, 0, NULL, &err));
        n += s_drain(it, NULL, 0);
        s_it_done(&it);
    }
    assert_int_equal(n, head);
    evb_iter_t *it = s_it(evb_store_read_category(f->st, "show", 0, NULL, &err));
    assert_int_equal(s_drain(it, NULL, 0), head);
    s_it_done(&it);
    uint64_t problems = 99;
    if (evb_store_verify(f->st, NULL, NULL, NULL, &problems, &err) != EVB_OK)
        fail_msg("verify: %s", err.msg);
    assert_int_equal(problems, 0);
}

static void test_index_dir_removed_is_rebuilt(void **state)
{
    fx_t *f = *state;
    s_verify_log(f);
    char ix[PATH_MAX + 16];
    snprintf(ix, sizeof ix, "%s/index", f->dir);
    struct stat sb;
    assert_int_equal(stat(ix, &sb), 0); /* format >= 2: the index apart */
    assert_int_equal(nftw(ix, s_rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    s_open(f, EVB_INDEX_MANUAL);
    assert_int_equal(s_info(f->st).format, EVB_STORE_FORMAT);
    assert_int_equal(s_info(f->st).indexed, 0);
    s_expect_streams(f, 50); /* through the tail: nothing indexed yet */
    s_index_all(f->st);
    assert_int_equal(s_info(f->st).indexed, 50);
    s_expect_streams(f, 50);
    assert_int_equal(s_stream_version(f->st, "show-0"), 20);
    s_append_ok(f->st, "show-0", 20, 1, 0, 0); /* expected version from the index */
}

/* A store whose LevelDB caches are bounded (a service's): one block cache
 * of 64 KiB shared by the log and its index (3 MB of events read through
 * it; the open-table bound is set too, but at LevelDB's least, 64 tables,
 * it is not reached by so small a log); every event still reads back, through the
 * stream and category indexes too, before and after a reopen, and verify
 * is clean (ASan: the shared cache outlives both databases). */
static void test_bounded_caches(void **state)
{
    fx_t *f = *state;
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.write_buffer_bytes = 64u << 10; /* many small tables */
    o.block_cache_bytes = 64u << 10;
    o.max_open_tables = 1; /* taken as 64 */
    f->st = s_open_o(&o);
    for (int i = 0; i < 60; i++)
        s_append_ok(f->st, i % 3 == 0 ? "show-0" : i % 3 == 1 ? "show-1" : "show-2",
                    EVB_EXPECT_ANY, 500, i * 500, 0);
    s_index_all(f->st);
    s_expect_streams(f, 30000);
    evb_store_destroy(&f->st);
    o.create = false;
    f->st = s_open_o(&o);
    s_expect_streams(f, 30000);
}

static void test_index_past_the_head_is_rebuilt(void **state)
{
    fx_t *f = *state;
    s_verify_log(f); /* 50 events, all indexed */
    for (uint64_t seq = 41; seq <= 50; seq++) {
        uint8_t key[9];
        s_event_key(seq, key);
        s_raw_delete(f->dir, key, sizeof key);
    }
    s_open(f, EVB_INDEX_MANUAL);
    assert_int_equal(evb_store_head(f->st), 40);
    assert_int_equal(s_info(f->st).indexed, 0);
    s_index_all(f->st);
    s_expect_streams(f, 40);
    /* the versions the index gives are those of the log that is left */
    uint64_t v = 0;
    for (int i = 0; i < 3; i++) {
        char s[16];
        snprintf(s, sizeof s, "show-%d", i);
        v += s_stream_version(f->st, s);
    }
    assert_int_equal(v, 40);
}


/* show-1 x500 in one append, show-2 x10 one at a time, show-1 x300, cust-1
 * x5: 815 events, indexed in one step. */
static void s_runs_log(fx_t *f)
{
    s_open(f, EVB_INDEX_MANUAL);
    s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 500, 0, 0);
    for (int i = 0; i < 10; i++)
        s_append_ok(f->st, "show-2", EVB_EXPECT_ANY, 1, i, 0);
    s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 300, 500, 0);
    for (int i = 0; i < 5; i++)
        s_append_ok(f->st, "cust-1", EVB_EXPECT_ANY, 1, i, 0);
    s_index_all(f->st);
    evb_store_destroy(&f->st);
}

/* From format 3: one stream entry and one category entry per run of events
 * that follow each other, and reads that start inside a run. */
static void test_index_runs(void **state)
{
    fx_t *f = *state;
    s_runs_log(f);
    char ix[PATH_MAX + 16];
    snprintf(ix, sizeof ix, "%s/index", f->dir);
    /* S: show-1 v1..500, show-2 v1..10, show-1 v501..800, cust-1 v1..5 */
    assert_int_equal(s_raw_count(ix, 'S'), 4);
    /* C: show seqs 1..810, cust 811..815 */
    assert_int_equal(s_raw_count(ix, 'C'), 2);
    assert_int_equal(s_raw_count(ix, 'B') + s_raw_count(ix, 'I'), 0); /* sealed */
    assert_int_equal(s_idb_count(f->dir), 0);
    s_reopen(f, EVB_INDEX_MANUAL);
    assert_int_equal(s_info(f->st).format, EVB_STORE_FORMAT);
    assert_int_equal(s_stream_version(f->st, "show-1"), 800);
    assert_int_equal(s_stream_version(f->st, "show-2"), 10);
    evb_err err;
    uint64_t seqs[815];
    /* show-1 v250..800: seqs 250..500, then 511..810 */
    evb_iter_t *it = s_it(evb_store_read_stream(f->st, "show-1", 250, 0, NULL, &err));
    assert_int_equal(s_drain(it, seqs, 815), 551);
    assert_int_equal(seqs[0], 250);
    assert_int_equal(seqs[250], 500);
    assert_int_equal(seqs[251], 511);
    assert_int_equal(seqs[550], 810);
    s_it_done(&it);
    /* as of a version inside the second run */
    it = s_it(evb_store_read_stream(f->st, "show-1", 501, 650, NULL, &err));
    assert_int_equal(s_drain(it, seqs, 815), 150);
    assert_int_equal(seqs[0], 511);
    assert_int_equal(seqs[149], 660);
    s_it_done(&it);
    it = s_it(evb_store_read_stream(f->st, "show-2", 10, 0, NULL, &err));
    assert_int_equal(s_drain(it, seqs, 815), 1);
    assert_int_equal(seqs[0], 510);
    s_it_done(&it);
    /* category show after 505: 506..810; cust after its first: 812..815 */
    it = s_it(evb_store_read_category(f->st, "show", 505, NULL, &err));
    assert_int_equal(s_drain(it, seqs, 815), 305);
    assert_int_equal(seqs[0], 506);
    assert_int_equal(seqs[304], 810);
    s_it_done(&it);
    it = s_it(evb_store_read_category(f->st, "cust", 811, NULL, &err));
    assert_int_equal(s_drain(it, seqs, 815), 4);
    assert_int_equal(seqs[0], 812);
    s_it_done(&it);
    /* expected versions come from the runs too */
    s_append_ok(f->st, "show-1", 800, 1, 800, 0);
    s_index_all(f->st);
    uint64_t problems = 99;
    if (evb_store_verify(f->st, NULL, NULL, NULL, &problems, &err) != EVB_OK)
        fail_msg("verify: %s", err.msg);
    assert_int_equal(problems, 0);
}

/* Every key and value of the index database but the indexer's metadata, as
 * one string (hex), for comparing two indexes of one log. */
static char *s_raw_db_dump(const char *ix);

/* The index's entries, then the id database's. */
static char *s_raw_index_dump(const char *log)
{
    char ix[PATH_MAX + 16];
    snprintf(ix, sizeof ix, "%s/index", log);
    char *a = s_raw_db_dump(ix);
    snprintf(ix, sizeof ix, "%s/index/ids", log);
    char *b = s_raw_db_dump(ix);
    char *out = malloc(strlen(a) + strlen(b) + 8);
    assert_non_null(out);
    sprintf(out, "%s--\n%s", a, b);
    free(a);
    free(b);
    return out;
}

static char *s_raw_db_dump(const char *ix)
{
    leveldb_t *db = s_raw_open(ix, false);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl), *v = leveldb_iter_value(it, &vl);
        if (kl > 0 && k[0] == 'M') continue;
        while (len + 2 * (kl + vl) + 3 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        for (size_t i = 0; i < kl; i++)
            len += (size_t)sprintf(out + len, "%02x", (unsigned char)k[i]);
        out[len++] = '=';
        for (size_t i = 0; i < vl; i++)
            len += (size_t)sprintf(out + len, "%02x", (unsigned char)v[i]);
        out[len++] = '\n';
    }
    out[len] = '\0';
    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    return out;
}

/* The index built from what transactions hand the indexer (the feed) is the
 * index built by reading the log back, entry for entry: one-event appends,
 * big ones, and a transaction that appends to a stream, another, and the
 * first again. */
static void test_index_feed_equals_read_back(void **state)
{
    fx_t *f = *state;
    s_runs_log(f);
    s_open(f, EVB_INDEX_MANUAL);
    evb_err err;
    evb_err_clear(&err);
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    assert_non_null(tx);
    const char *streams[] = {"show-1", "cust-2", "show-1", "show-3"};
    for (size_t i = 0; i < 4; i++) {
        batch_t b;
        s_batch(&b, 2 + i, "seat.reserved", 0);
        if (i % 2) s_batch_ids(&b, 1000 + 10 * i); /* caller ids: 3 + 5 entries */
        evb_append_result r;
        assert_int_equal(evb_txn_append(tx, streams[i], EVB_EXPECT_ANY, b.ev, 2 + i, &r, &err),
                         EVB_OK);
        s_batch_free(&b);
    }
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    /* and made ids past the end of the last epoch that has caller ids */
    s_append_ok(f->st, "show-3", EVB_EXPECT_ANY, 1 << S_EPOCH_BITS, 0, 0);
    s_index_all(f->st);
    evb_store_destroy(&f->st);
    char *fed = s_raw_index_dump(f->dir);

    s_open(f, EVB_INDEX_MANUAL);
    assert_int_equal(evb_store_reindex(f->st, &err), EVB_OK); /* reads the log back */
    uint64_t problems = 99;
    if (evb_store_verify(f->st, NULL, NULL, NULL, &problems, &err) != EVB_OK)
        fail_msg("verify: %s", err.msg);
    assert_int_equal(problems, 0);
    assert_int_equal(s_stream_version(f->st, "show-1"), 806);
    evb_store_destroy(&f->st);
    char *read = s_raw_index_dump(f->dir);
    assert_string_equal(fed, read);
    char ix[PATH_MAX + 16];
    snprintf(ix, sizeof ix, "%s/index", f->dir);
    assert_int_equal(s_raw_count(ix, 'B'), 0);
    assert_int_equal(s_idb_count(f->dir), 8); /* the caller ids; the others sealed */
    free(fed);
    free(read);
}

/* A damaged run entry is an error that names the stream, never events
 * silently left out; verify counts it. */
static void test_index_run_damaged(void **state)
{
    fx_t *f = *state;
    s_runs_log(f);
    char ix[PATH_MAX + 16];
    snprintf(ix, sizeof ix, "%s/index", f->dir);
    uint8_t key[64], val[16];
    size_t kl = (size_t)snprintf((char *)key, sizeof key, "Sshow-1") + 1; /* + \0 */
    for (int i = 0; i < 8; i++)
        key[kl + (size_t)i] = (uint8_t)(i == 7 ? 0x58 : i == 6 ? 0x02 : 0); /* v600 */
    memset(val, 0, sizeof val);
    val[7] = 0x01; /* seq 1, count 0: no run has 0 events */
    s_raw_put(ix, false, key, kl + 8, val, 16);
    s_reopen(f, EVB_INDEX_MANUAL);
    evb_err err;
    evb_err_clear(&err);
    evb_iter_t *it = s_it(evb_store_read_stream(f->st, "show-1", 650, 0, NULL, &err));
    const evb_event_t *ev;
    assert_false(evb_iter_next(it, &ev, &err));
    assert_int_equal(err.code, EVB_ECORRUPT);
    assert_non_null(strstr(err.msg, "show-1"));
    s_it_done(&it);
    probs_t pr;
    memset(&pr, 0, sizeof pr);
    uint64_t problems = 0;
    assert_int_equal(evb_store_verify(f->st, s_on_problem, NULL, &pr, &problems, &err),
                     EVB_ECORRUPT);
    assert_true(problems > 0);
    assert_non_null(strstr(pr.text[0], "show-1")); /* its first problem */
}

/* Every event read through the stream and category indexes, and verify
 * clean. */
static void s_expect_clean(fx_t *f, uint64_t head)
{
    evb_err err;
    uint64_t n = 0, problems = 99;
    const char *streams[] = {"show-0", "cust-0"}, *cats[] = {"show", "cust"};
    for (int i = 0; i < 2; i++) {
        evb_iter_t *it = s_it(evb_store_read_stream(f->st, streams[i], 1, 0, NULL, &err));
        n += s_drain(it, NULL, 0);
        s_it_done(&it);
        it = s_it(evb_store_read_category(f->st, cats[i], 0, NULL, &err));
        n += s_drain(it, NULL, 0);
        s_it_done(&it);
    }
    assert_int_equal(n, 2 * head);
    if (evb_store_verify(f->st, NULL, NULL, NULL, &problems, &err) != EVB_OK)
        fail_msg("verify: %s", err.msg);
    assert_int_equal(problems, 0);
}

/* An older log (format 2: an entry per event; format 3: runs, and made ids
 * random, so each has an id entry; format 4: sealed ids; all three with id
 * entries "I id", not filed by epoch) is read as it is by a read-only open,
 * and becomes the current format at a writable open, before any run is made,
 * any id is sealed or any id is filed by epoch: its ids are found as before
 * and refused again as duplicates, new ones are sealed. The old log is
 * faked: caller ids stand for the random ids an old store made. */
static void s_old_format_becomes_current(fx_t *f, uint8_t fmt)
{
    /* Streams and categories take turns: every run is of one event, the
     * shape a format 2 index has. */
    s_open(f, EVB_INDEX_MANUAL);
    for (int i = 0; i < 50; i++)
        s_append_ok(f->st, i % 2 ? "show-0" : "cust-0", EVB_EXPECT_ANY, 1, i, 500 + i);
    s_index_all(f->st);
    evb_store_destroy(&f->st);
    char ix[PATH_MAX + 16];
    snprintf(ix, sizeof ix, "%s/index", f->dir);
    /* ids as those stores kept them */
    assert_int_equal(s_raw_fake_old_ids(f->dir, 50, 500, fmt == 5), 50);
    const uint8_t old[4] = {0, 0, 0, fmt};
    s_raw_put(f->dir, false, "Mformat", 7, old, 4);
    if (fmt < 4) s_raw_delete(f->dir, "Msealkey", 8);
    evb_store_opts o = s_opts(f, EVB_INDEX_MANUAL);
    o.create = false;
    o.service = NULL;
    o.read_only_intent = true;
    f->st = s_open_o(&o);
    assert_int_equal(s_info(f->st).format, fmt);
    s_expect_clean(f, 50);
    evb_store_destroy(&f->st);
    s_reopen(f, EVB_INDEX_MANUAL);
    assert_int_equal(s_info(f->st).format, EVB_STORE_FORMAT);
    batch_t b;
    s_batch(&b, 20, "seat.reserved", 0);
    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_append(f->st, "show-0", EVB_EXPECT_ANY, b.ev, 20, &r, &err),
                     EVB_OK);
    /* before and after indexing: old ids from the index, new ones sealed */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t seq = 0;
        evb_id old_id = s_id(500 + 7);
        assert_int_equal(evb_store_find_id(f->st, &old_id, &seq, &err), EVB_OK);
        assert_int_equal(seq, 8);
        for (int i = 0; i < 20; i++) {
            assert_int_equal(evb_store_find_id(f->st, &b.ev[i].id, &seq, &err), EVB_OK);
            assert_int_equal(seq, 51 + (uint64_t)i);
        }
        evb_append_result again;
        assert_int_equal(s_append(f->st, "cust-0", EVB_EXPECT_ANY, 1, 0, 500 + 6, &again,
                                  &err),
                         EVB_OK);
        assert_true(again.duplicate);
        assert_int_equal(again.first_seq, 7);
        s_index_all(f->st);
    }
    s_expect_clean(f, 70);
    evb_store_destroy(&f->st);
    /* kept as they were; the new ones are sealed (no entry) */
    assert_int_equal(s_raw_count(ix, fmt == 5 ? 'B' : 'I'), 50);
    assert_int_equal(s_raw_count(ix, fmt == 5 ? 'I' : 'B'), 0);
    assert_int_equal(s_idb_count(f->dir), 0);
    o.read_only_intent = false;
    f->st = s_open_o(&o);
    assert_int_equal(s_info(f->st).format, EVB_STORE_FORMAT);
    s_batch_free(&b);
}

static void test_format2_log_becomes_current(void **state)
{
    s_old_format_becomes_current(*state, 2);
}

/* Id entries are sorted before they go into the index's batch (a radix sort
 * from 64 entries a step): every caller id of a step of thousands, random or
 * sharing their first bytes, is in the index once, where verify looks. */
static void test_index_sorted_ids(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_MANUAL);
    batch_t b;
    s_batch(&b, 1000, "seat.reserved", 0);
    evb_append_result r;
    evb_err err;
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < b.n; i++) {
            if (k == 0)
                b.ev[i].id = s_id(7000 + i); /* the first 8 bytes all alike */
            else
                assert_int_equal(evb_id_random(&b.ev[i].id, &err), EVB_OK);
        }
        evb_err_clear(&err);
        assert_int_equal(evb_store_append(f->st, "show-1", EVB_EXPECT_ANY, b.ev, b.n, &r,
                                          &err),
                         EVB_OK);
    }
    s_append_ok(f->st, "show-2", EVB_EXPECT_ANY, 1 << S_EPOCH_BITS, 0, 0); /* seals 3000 */
    s_index_all(f->st);
    s_verify_clean(f->st);
    assert_int_equal(s_find(f, &b.ev[999].id), 3000);
    evb_id first = s_id(7000);
    assert_int_equal(s_find(f, &first), 1);
    evb_store_destroy(&f->st);
    assert_int_equal(s_idb_count(f->dir), 3000);
    s_batch_free(&b);
}

/* The id database (format 6) takes each epoch's caller ids once the epoch
 * is over (epochs of 8 events here, key "B epoch(4) id"): ids are found and
 * refused again as duplicates while their epoch is gathered, after it went
 * to the database, across reopens in the middle of an epoch (the open
 * gathers again what the indexer had), and after a reindex; each sealed
 * epoch holds its own ids, and verify agrees. */
static void s_ids_all_found(fx_t *f, uint64_t n, uint64_t key0)
{
    for (uint64_t seq = 1; seq <= n; seq++) {
        evb_id id = s_id(key0 + seq);
        assert_int_equal(s_find(f, &id), seq);
    }
    evb_id none = s_id(key0 + n + 1);
    assert_int_equal(s_find(f, &none), 0);
    for (uint64_t seq = 1; seq <= n; seq += 13) {
        evb_append_result r;
        evb_err err;
        evb_err_clear(&err);
        assert_int_equal(s_append(f->st, "show-1", EVB_EXPECT_ANY, 1, 0, key0 + seq, &r, &err),
                         EVB_OK);
        assert_true(r.duplicate);
        assert_int_equal(r.first_seq, seq);
    }
}

static void test_id_database_epochs(void **state)
{
    fx_t *f = *state;
    const uint64_t total = 100, key0 = 1u << 30, per = 1u << S_EPOCH_BITS;
    s_open(f, EVB_INDEX_MANUAL);
    for (uint64_t seq = 1; seq <= total; seq += 7)
        s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, (size_t)(total - seq + 1 < 7 ? total - seq + 1 : 7),
                    0, key0 + seq); /* event seq gets id s_id(key0 + seq) */
    s_ids_all_found(f, total, key0); /* none indexed */
    evb_err err;
    size_t done;
    for (int i = 0; i < 7; i++) /* 35 events, in steps that end inside epochs */
        assert_int_equal(evb_store_index_step(f->st, 5, &done, &err), EVB_OK);
    s_ids_all_found(f, total, key0);
    s_reopen(f, EVB_INDEX_MANUAL); /* indexed to 35, sealed to 31: 32..35 gathered again */
    s_ids_all_found(f, total, key0);
    s_verify_clean(f->st);
    s_index_all(f->st);
    s_ids_all_found(f, total, key0);
    s_verify_clean(f->st);
    s_reopen(f, EVB_INDEX_MANUAL);
    s_ids_all_found(f, total, key0);
    evb_store_destroy(&f->st);
    /* sealed to 95 (epoch 11 ends there): 96..100 wait for their epoch */
    assert_int_equal(s_idb_count(f->dir), 95);
    const uint8_t e0[5] = {'B', 0, 0, 0, 0}, e5[5] = {'B', 0, 0, 0, 5};
    char ids[PATH_MAX + 16];
    snprintf(ids, sizeof ids, "%s/index/ids", f->dir);
    assert_int_equal(s_raw_count_prefix(ids, e0, 5), per - 1); /* seqs 1..7 */
    assert_int_equal(s_raw_count_prefix(ids, e5, 5), per);
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-2", EVB_EXPECT_ANY, 4, 0, 0); /* made ids: no entries */
    s_index_all(f->st);
    s_ids_all_found(f, total, key0);
    s_verify_clean(f->st);
    assert_int_equal(evb_store_reindex(f->st, &err), EVB_OK);
    s_ids_all_found(f, total, key0);
    s_verify_clean(f->st);
    evb_store_destroy(&f->st);
    assert_int_equal(s_idb_count(f->dir), total);
    char ix[PATH_MAX + 16];
    snprintf(ix, sizeof ix, "%s/index", f->dir);
    assert_int_equal(s_raw_count(ix, 'B') + s_raw_count(ix, 'I'), 0);
    /* index/ids lost: a read-only open finds the ids in the log (and verify
     * says it is missing); a writable one builds the index again */
    leveldb_options_t *lo = leveldb_options_create();
    char *e = NULL;
    leveldb_destroy_db(lo, ids, &e);
    leveldb_options_destroy(lo);
    assert_null(e);
    evb_store_opts o = s_opts(f, EVB_INDEX_MANUAL);
    o.create = false;
    o.service = NULL;
    o.read_only_intent = true;
    f->st = s_open_o(&o);
    for (uint64_t seq = 1; seq <= total; seq++) {
        evb_id id = s_id(key0 + seq);
        assert_int_equal(s_find(f, &id), seq);
    }
    uint64_t problems = 0;
    evb_err_clear(&err);
    assert_int_equal(evb_store_verify(f->st, NULL, NULL, NULL, &problems, &err),
                     EVB_ECORRUPT);
    assert_int_equal(problems, 1);
    evb_store_destroy(&f->st);
    s_open(f, EVB_INDEX_MANUAL);
    s_ids_all_found(f, total, key0);
    s_index_all(f->st);
    s_ids_all_found(f, total, key0);
    s_verify_clean(f->st);
    evb_store_destroy(&f->st);
    assert_int_equal(s_idb_count(f->dir), total);
}

/* The tail set keeps every caller id the id database does not hold yet,
 * also once the indexer is past them: with epochs of 2^18 events nothing is
 * sealed, and ids the indexer covered stay found after the set was rebuilt
 * (it rebuilds when 3/4 full: 98,304 and 196,608 ids here). */
static void test_tail_set_keeps_unsealed_ids(void **state)
{
    fx_t *f = *state;
    const uint64_t key0 = 1u << 31, first = 100000, total = 220000;
    setenv("EVB_TEST_ID_EPOCH_BITS", "18", 1);
    s_open(f, EVB_INDEX_MANUAL);
    setenv("EVB_TEST_ID_EPOCH_BITS", S_EPOCH_BITS_STR, 1);
    for (uint64_t seq = 1; seq <= total; seq += 1000) {
        if (seq == first + 1) s_index_all(f->st); /* past the first 100,000 */
        s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 1000, 0, key0 + seq);
    }
    for (uint64_t seq = 1; seq <= total; seq += 997) {
        evb_id id = s_id(key0 + seq);
        assert_int_equal(s_find(f, &id), seq);
    }
    evb_append_result r;
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(s_append(f->st, "show-1", EVB_EXPECT_ANY, 1, 0, key0 + 5, &r, &err),
                     EVB_OK);
    assert_true(r.duplicate);
    assert_int_equal(r.first_seq, 5);
    s_index_all(f->st);
    s_verify_clean(f->st);
    evb_store_destroy(&f->st);
    assert_int_equal(s_idb_count(f->dir), 0); /* nothing sealed yet */
}

/* A format 5 log upgraded with its indexer in the middle of an epoch: the
 * id database is sealed there, and the ids before it in that epoch are in
 * the old index. A reindex drops those and gathers them again without
 * sealing them (the epoch is not over): they stay found. */
static void test_upgrade_mid_epoch_then_reindex(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_MANUAL);
    for (int i = 0; i < 50; i++)
        s_append_ok(f->st, "show-0", EVB_EXPECT_ANY, 1, i, 500 + i);
    s_index_all(f->st);
    evb_store_destroy(&f->st);
    assert_int_equal(s_raw_fake_old_ids(f->dir, 50, 500, true), 50);
    const uint8_t old[4] = {0, 0, 0, 5};
    s_raw_put(f->dir, false, "Mformat", 7, old, 4);
    s_open(f, EVB_INDEX_MANUAL); /* sealed at 50: epoch 6 is 48..55 */
    for (int i = 0; i < 3; i++)
        s_append_ok(f->st, "show-0", EVB_EXPECT_ANY, 1, 50 + i, 900 + i); /* 51..53 */
    evb_err err;
    evb_err_clear(&err);
    assert_int_equal(evb_store_reindex(f->st, &err), EVB_OK);
    for (int pass = 0; pass < 2; pass++) {
        const uint64_t keys[] = {500, 547, 548, 549, 900, 902}, seqs[] = {1, 48, 49, 50, 51, 53};
        for (size_t i = 0; i < 6; i++) {
            evb_id id = s_id(keys[i]);
            assert_int_equal(s_find(f, &id), seqs[i]);
            evb_append_result r;
            assert_int_equal(s_append(f->st, "show-0", EVB_EXPECT_ANY, 1, 0, keys[i], &r, &err),
                             EVB_OK);
            assert_true(r.duplicate);
            assert_int_equal(r.first_seq, seqs[i]);
        }
        s_verify_clean(f->st);
        s_reopen(f, EVB_INDEX_MANUAL);
    }
}

static void test_format3_log_becomes_current(void **state)
{
    s_old_format_becomes_current(*state, 3);
}

static void test_format4_log_becomes_current(void **state)
{
    s_old_format_becomes_current(*state, 4);
}

/* Format 5: caller ids in the index, filed by epochs of 2^20 events. */
static void test_format5_log_becomes_current(void **state)
{
    s_old_format_becomes_current(*state, 5);
}

/* Read-only (the evbus log tools), a stale index is not rebuilt: the log is
 * read without it, and verify reports it as one problem. */
static void test_stale_index_read_only(void **state)
{
    fx_t *f = *state;
    s_verify_log(f);
    for (uint64_t seq = 41; seq <= 50; seq++) {
        uint8_t key[9];
        s_event_key(seq, key);
        s_raw_delete(f->dir, key, sizeof key);
    }
    evb_store_opts o = s_opts(f, EVB_INDEX_MANUAL);
    o.create = false;
    o.service = NULL;
    o.read_only_intent = true;
    f->st = s_open_o(&o);
    assert_int_equal(evb_store_head(f->st), 40);
    assert_int_equal(s_info(f->st).indexed, 0);
    evb_err err;
    evb_err_clear(&err);
    uint64_t n = 0;
    for (int i = 0; i < 3; i++) {
        char s[16];
        snprintf(s, sizeof s, "show-%d", i);
        evb_iter_t *it = s_it(evb_store_read_stream(f->st, s, 1, 0, NULL, &err));
        n += s_drain(it, NULL, 0);
        s_it_done(&it);
    }
    assert_int_equal(n, 40);
    evb_iter_t *it = s_it(evb_store_read_category(f->st, "show", 0, NULL, &err));
    assert_int_equal(s_drain(it, NULL, 0), 40);
    s_it_done(&it);
    uint64_t problems = 0;
    assert_int_equal(evb_store_verify(f->st, NULL, NULL, NULL, &problems, &err),
                     EVB_ECORRUPT);
    assert_int_equal(problems, 1);
    evb_store_destroy(&f->st);
    s_open(f, EVB_INDEX_MANUAL); /* writable: rebuilt */
    s_index_all(f->st);
    s_expect_streams(f, 40);
}

/* An index/ left by another log (a directory put in place of the log) is
 * stale whatever its position: rebuilt at open. */
static void test_index_of_another_log_is_rebuilt(void **state)
{
    fx_t *f = *state;
    s_verify_log(f); /* log A: 50 events, indexed */
    char a_ix[PATH_MAX + 16], b_dir[PATH_MAX + 16], b_ix[PATH_MAX + 32];
    snprintf(a_ix, sizeof a_ix, "%s/index", f->dir);
    snprintf(b_dir, sizeof b_dir, "%s/other", f->tmp);
    snprintf(b_ix, sizeof b_ix, "%s/index", b_dir);
    evb_store_opts o = s_opts(f, EVB_INDEX_MANUAL);
    o.dir = b_dir;
    f->st2 = s_open_o(&o); /* log B: 60 events, unindexed */
    for (int i = 0; i < 12; i++)
        s_append_ok(f->st2, i % 2 ? "show-0" : "show-9", EVB_EXPECT_ANY, 5, 0, 0);
    evb_store_destroy(&f->st2);
    assert_int_equal(nftw(b_ix, s_rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    assert_int_equal(rename(a_ix, b_ix), 0); /* A's index, position 50 <= 60 */
    f->st2 = s_open_o(&(evb_store_opts){.dir = b_dir, .index_mode = EVB_INDEX_MANUAL});
    assert_int_equal(s_info(f->st2).indexed, 0);
    s_index_all(f->st2);
    assert_int_equal(s_stream_version(f->st2, "show-0"), 30);
    assert_int_equal(s_stream_version(f->st2, "show-9"), 30);
    assert_int_equal(s_stream_version(f->st2, "show-1"), 0); /* A's stream */
    evb_err err;
    evb_err_clear(&err);
    uint64_t problems = 99;
    assert_int_equal(evb_store_verify(f->st2, NULL, NULL, NULL, &problems, &err), EVB_OK);
    assert_int_equal(problems, 0);
}

static void test_read_garbage_event_is_ecorrupt(void **state)
{
    fx_t *f = *state;
    s_verify_log(f);
    uint8_t key[9];
    s_event_key(23, key);
    s_raw_put(f->dir, false, key, sizeof key, "garbage!", 8);
    s_reopen(f, EVB_INDEX_MANUAL);
    evb_err err;
    evb_err_clear(&err);
    evb_iter_t *it = s_it(evb_store_read_range(f->st, 1, 0, NULL, &err));
    assert_non_null(it);
    const evb_event_t *ev = NULL;
    uint64_t n = 0;
    while (evb_iter_next(it, &ev, &err))
        n++;
    s_it_done(&it);
    assert_int_equal(n, 22);
    assert_int_equal(err.code, EVB_ECORRUPT);
    assert_true(s_has_number(err.msg, 23));
}

/* ================================================================ sync */

static void test_sync_every_is_durable_after_each_append(void **state)
{
    fx_t *f = *state;
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.sync = EVB_SYNC_EVERY;
    f->st = s_open_o(&o);
    assert_int_equal(s_info(f->st).sync, EVB_SYNC_EVERY);
    unsigned n = 20 * s_scale();
    for (unsigned i = 0; i < n; i++) {
        s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 1 + i % 3, 0, 0);
        assert_int_equal(evb_store_synced(f->st), evb_store_head(f->st));
    }
    /* a transaction commit too */
    evb_err err;
    evb_txn_t *tx = s_tx(evb_txn_begin(f->st, &err));
    batch_t b;
    s_batch(&b, 2, "seat.reserved", 0);
    evb_append_result r;
    assert_int_equal(evb_txn_append(tx, "show-2", EVB_EXPECT_NONE, b.ev, 2, &r, &err),
                     EVB_OK);
    assert_int_equal(s_tx_commit(&tx, &err), EVB_OK);
    s_batch_free(&b);
    assert_int_equal(evb_store_synced(f->st), evb_store_head(f->st));
    assert_int_equal(evb_store_head(f->st), r.last_seq);
}

static void test_sync_group_sync_makes_everything_durable(void **state)
{
    fx_t *f = *state;
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.sync = EVB_SYNC_GROUP;
    o.group_interval_ms = 60000; /* the flusher will not get there first */
    f->st = s_open_o(&o);
    assert_int_equal(s_info(f->st).sync, EVB_SYNC_GROUP);
    unsigned n = 50 * s_scale();
    evb_err err;
    for (unsigned i = 0; i < n; i++) {
        s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 2, 0, 0);
        assert_true(evb_store_synced(f->st) <= evb_store_head(f->st));
        if (i % 10 == 9) {
            evb_err_clear(&err);
            assert_int_equal(evb_store_sync(f->st, &err), EVB_OK);
            assert_int_equal(evb_store_synced(f->st), evb_store_head(f->st));
        }
    }
    assert_int_equal(evb_store_sync(f->st, &err), EVB_OK);
    assert_int_equal(evb_store_synced(f->st), 2 * n);
}

static void test_sync_group_flusher_catches_up(void **state)
{
    fx_t *f = *state;
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.sync = EVB_SYNC_GROUP;
    o.group_interval_ms = 2;
    f->st = s_open_o(&o);
    s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 10, 0, 0);
    uint64_t head = evb_store_head(f->st);
    /* bounded poll: the condition is checked every iteration */
    double deadline = s_now() + 10.0;
    while (evb_store_synced(f->st) < head && s_now() < deadline) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(evb_store_synced(f->st), head);
}

static void test_sync_none_synced_follows_head(void **state)
{
    fx_t *f = *state;
    s_open(f, EVB_INDEX_THREAD);
    s_append_ok(f->st, "show-1", EVB_EXPECT_ANY, 3, 0, 0);
    assert_int_equal(evb_store_synced(f->st), 3);
    evb_err err;
    assert_int_equal(evb_store_sync(f->st, &err), EVB_OK);
    assert_int_equal(evb_store_synced(f->st), 3);
}

/* ================================================================ many streams */

static uint64_t s_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void test_many_streams_with_bounded_cache(void **state)
{
    fx_t *f = *state;
    size_t ns = 20000 * (size_t)s_scale();
    uint64_t *ver = calloc(ns, sizeof *ver);
    assert_non_null(ver);
    evb_store_opts o = s_opts(f, EVB_INDEX_THREAD);
    o.stream_cache_entries = 1000;
    f->st = s_open_o(&o);
    char name[32];
    for (size_t i = 0; i < ns; i++) {
        snprintf(name, sizeof name, "acct-%zu", i);
        s_append_ok(f->st, name, EVB_EXPECT_NONE, 1, (int64_t)i, 0);
        ver[i] = 1;
    }
    /* a stream evicted from the cache long ago still conflicts correctly */
    evb_append_result r;
    evb_err err;
    assert_int_equal(s_append(f->st, "acct-0", EVB_EXPECT_NONE, 1, 0, 0, &r, &err),
                     EVB_ECONFLICT);
    evb_store_destroy(&f->st);

    o.create = false;
    f->st = s_open_o(&o);
    assert_int_equal(evb_store_head(f->st), ns);
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    size_t picks = 5000 * (size_t)s_scale();
    uint64_t head = ns;
    for (size_t k = 0; k < picks; k++) {
        size_t i = (size_t)(s_rand(&seed) % ns);
        snprintf(name, sizeof name, "acct-%zu", i);
        if (k % 7 == 0) {
            /* a stale expected version must conflict and write nothing */
            evb_err_clear(&err);
            int rc =
                s_append(f->st, name,
                         (int64_t)ver[i] - 1 == 0 ? EVB_EXPECT_NONE : (int64_t)ver[i] - 1,
                         1, 0, 0, &r, &err);
            if (rc != EVB_ECONFLICT)
                fail_msg("%s at %llu, stale append: got %d %s", name,
                         (unsigned long long)ver[i], rc, err.msg);
        }
        evb_err_clear(&err);
        int rc = s_append(f->st, name, (int64_t)ver[i], 1, 0, 0, &r, &err);
        if (rc != EVB_OK)
            fail_msg("%s expecting %llu: %d %s", name, (unsigned long long)ver[i], rc,
                     err.msg);
        ver[i]++;
        head++;
        assert_int_equal(r.first_version, ver[i]);
        assert_int_equal(r.first_seq, head);
    }
    s_index_all(f->st);
    assert_int_equal(s_info(f->st).streams, ns);
    for (size_t i = 0; i < ns; i += 97) {
        snprintf(name, sizeof name, "acct-%zu", i);
        assert_int_equal(s_stream_version(f->st, name), ver[i]);
    }
    uint64_t problems = 99;
    assert_int_equal(evb_store_verify(f->st, NULL, NULL, NULL, &problems, &err), EVB_OK);
    assert_int_equal(problems, 0);
    free(ver);
}

/* ================================================================ main */

#define T(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)

/* Library messages below WARN (e.g. the sync-policy notice on every open)
 * would bury the test output. */
static void s_log_sink(evb_log_level level, const char *msg, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "evbus %s: %s\n", level == EVB_LOG_ERROR ? "error" : "warn", msg);
}

int main(void)
{
    evb_log_set_sink(s_log_sink, NULL, EVB_LOG_WARN);
    /* Id database epochs of 8 events (a test build reads it when it makes
     * one): every test that appends caller ids seals epochs. */
    setenv("EVB_TEST_ID_EPOCH_BITS", S_EPOCH_BITS_STR, 1);
    const struct CMUnitTest tests[] = {
        T(test_create_then_reopen_keeps_log_id_and_service),
        T(test_reopen_with_create_does_not_recreate),
        T(test_failed_reopen_leaves_store_closed),
        T(test_reopen_short_of_space_retries),
        T(test_two_logs_get_different_log_ids),
        T(test_open_missing_dir_without_create_is_enotfound),
        T(test_open_empty_dir_without_create_is_enotfound),
        T(test_open_dir_with_unrelated_files_is_eformat),
        T(test_create_in_dir_with_unrelated_files_is_eformat),
        T(test_open_foreign_leveldb_is_eformat),
        T(test_create_on_foreign_leveldb_is_eformat),
        T(test_open_newer_format_is_eformat),
        T(test_open_bad_format_record_is_rejected),
        T(test_open_twice_is_elocked),
        T(test_lock_is_released_on_destroy),
        T(test_create_without_service_is_einval),
        T(test_create_with_bad_service_is_einval),
        T(test_open_without_dir_is_einval),
        T(test_destroy_null_is_harmless),
        T(test_disk_size_is_positive),

        T(test_append_assigns_seq_and_versions_from_one),
        T(test_append_seq_is_contiguous_across_streams),
        T(test_append_writes_back_positions_and_ids),
        T(test_append_defaults_schema_payload_and_ts),
        T(test_append_roundtrips_optional_fields),
        T(test_append_expect_any),
        T(test_append_expect_none_on_new_stream),
        T(test_append_expect_none_on_existing_stream_conflicts),
        T(test_append_expect_exact),
        T(test_append_stale_version_conflicts_and_writes_nothing),
        T(test_append_future_version_conflicts),
        T(test_append_bad_expected_version_is_einval),
        T(test_append_retry_same_ids_is_duplicate),
        T(test_made_ids_given_back_manual),
        T(test_made_ids_given_back_thread),
        T(test_sealed_ids_are_exact),
        T(test_sealed_id_taken_by_a_caller),
        T(test_append_retry_after_reopen_indexed_manual),
        T(test_append_retry_after_reopen_unindexed_manual),
        T(test_append_retry_after_reopen_thread),
        T(test_append_partial_retry_is_epartial),
        T(test_append_same_id_twice_in_batch_is_einval),
        T(test_append_bad_stream_is_einval),
        T(test_append_stream_with_too_long_category_is_einval),
        T(test_append_longest_valid_stream_is_ok),
        T(test_append_bad_type_is_einval),
        T(test_append_zero_events_is_rejected),
        T(test_append_over_max_batch_is_rejected),
        T(test_append_payload_not_a_map_is_rejected),
        T(test_append_metadata_not_a_map_is_rejected),
        T(test_append_oversized_payload_is_etoobig),

        IX_TESTS(test_read_range),
        IX_TESTS(test_read_stream_from_version),
        IX_TESTS(test_read_stream_as_of_version),
        IX_TESTS(test_read_unknown_stream_is_empty),
        IX_TESTS(test_read_category_after_seq),
        IX_TESTS(test_categories_heads_and_counts),
        IX_TESTS(test_category_head),
        IX_TESTS(test_stream_version),
        IX_TESTS(test_find_id),
        IX_TESTS(test_stream_version_across_reopen),
        IX_TESTS(test_iterator_snapshot_ignores_later_appends),
        T(test_empty_log_reads_nothing),
        T(test_reindex_keeps_reads),
        T(test_reads_with_upcasters_return_current_schema),

        T(test_txn_commit_writes_everything_together),
        T(test_txn_destroy_writes_nothing),
        T(test_txn_append_conflict_then_destroy_writes_nothing),
        T(test_txn_appends_see_each_others_versions),
        T(test_txn_duplicate_ids_across_appends_is_rejected),
        T(test_txn_second_begin_is_ebusy),
        T(test_txn_delete_removes_key),
        T(test_store_get_replaces_buffer_contents),
        T(test_txn_put_oversized_key_is_rejected),
        T(test_checkpoint_get_is_zero_when_none),
        T(test_checkpoints_enumerates_latest_values),

        T(test_snapshot_save_then_load),
        T(test_snapshot_load_when_none_is_version_zero),
        T(test_snapshot_load_returns_latest),
        T(test_snapshot_plus_later_events_rebuilds_aggregate),
        T(test_txn_snapshot_commits),

        T(test_verify_clean_log),
        T(test_verify_empty_log_is_clean),
        T(test_verify_after_reindex_is_clean),
        T(test_verify_reports_progress),
        T(test_verify_missing_event_is_corrupt),
        T(test_index_dir_removed_is_rebuilt),
        T(test_bounded_caches),
        T(test_index_runs),
        T(test_index_feed_equals_read_back),
        T(test_index_run_damaged),
        T(test_format2_log_becomes_current),
        T(test_format3_log_becomes_current),
        T(test_format4_log_becomes_current),
        T(test_format5_log_becomes_current),
        T(test_id_database_epochs),
        T(test_tail_set_keeps_unsealed_ids),
        T(test_upgrade_mid_epoch_then_reindex),
        T(test_index_sorted_ids),
        T(test_read_raw_misplaced_record),
        T(test_damaged_block_is_a_hole),
        T(test_salvage_table_with_damaged_end),
        T(test_index_past_the_head_is_rebuilt),
        T(test_stale_index_read_only),
        T(test_index_of_another_log_is_rebuilt),
        T(test_verify_garbage_event_is_corrupt),
        T(test_read_garbage_event_is_ecorrupt),

        T(test_sync_every_is_durable_after_each_append),
        T(test_sync_group_sync_makes_everything_durable),
        T(test_sync_group_flusher_catches_up),
        T(test_sync_none_synced_follows_head),

        T(test_many_streams_with_bounded_cache),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
