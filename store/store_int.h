/*
 * store_int.h (private): the store's internal state and key layout, shared by
 * store.c (open, close, metadata, helpers), state.c (in-memory state and id
 * filter), txn.c (transactions, appends), durability.c (sync), consumer.c
 * (key/values, checkpoints, snapshots), indexer.c, read.c and verify.c.
 * The key layout is specified in store/FORMAT.md; keep the two in step.
 */
#if !defined(EVB_BUILDING_STORE)
#error                                                                                   \
    "store/store_int.h is private to libevbus's store module; programs include <evbus/evbus_store.h>"
#endif
#ifndef EVB_STORE_INT_H
#define EVB_STORE_INT_H

#include "evbus_store.h"
#include "bgenv.h"
#include "hmap.h"
#include "idset.h"

#include <leveldb/c.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* Key prefixes (one byte). */
#define K_EVENT 'E'   /* E seq(8)                    -> envelope */
#define K_META 'M'    /* M name                      -> value */
#define K_STREAM 'S'  /* S stream \0 version(8)      -> seq(8) [count(8)] */
#define K_CAT 'C'     /* C category \0 seq(8)        -> "" or count(8) */
#define K_ID 'I'      /* I id(16)                    -> seq(8): format 1, old indexes */
#define K_IDE 'B'     /* B epoch(4) id(16)           -> seq(8): format >= 2 */
#define K_CATSTAT 'c' /* c category                  -> head(8) count(8) */
#define K_USER 'U'    /* U key                       -> consumer value */
#define K_CKPT 'P'    /* P consumer \0 log_id(16) category -> seq(8) */
#define K_SNAP 'N'    /* N stream \0 version(8)      -> state */

#define META_FORMAT "Mformat"
#define META_LOGID "Mlogid"
#define META_SERVICE "Mservice"
#define META_IXPOS "Mixpos"
#define META_NSTREAMS "Mnstreams"
#define META_SEALKEY "Msealkey" /* format 4: 16 bytes, the key of sealed ids */
/* The id database (format 6: DIR/index/ids, FORMAT.md "Id database"). */
#define META_IDSEAL "Midseal" /* be64: every caller id of events up to it is there */
#define META_IDBITS "Midbits" /* 1 byte: an epoch holds 2^bits events */
#define IDS_EPOCH_BITS 18     /* 256 Ki events an epoch */

#define KEY_MAX                                                                          \
    (1 + EVB_MAX_STREAM_LEN + 1 + 8 + 16 + EVB_MAX_CONSUMER_LEN + EVB_MAX_KEY_LEN)

static inline void be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* splitmix64's finaliser: a cheap bijective 64-bit mix. */
static inline uint64_t st_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static inline uint64_t be64_get(const void *q)
{
    const uint8_t *p = q;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static inline size_t key_event(uint8_t *out, uint64_t seq)
{
    out[0] = K_EVENT;
    be64_put(out + 1, seq);
    return 9;
}

/* prefix byte + name + \0 + be64(n) */
static inline size_t key_name_num(uint8_t *out, char prefix, const char *name,
                                  size_t nlen, uint64_t n)
{
    out[0] = (uint8_t)prefix;
    memcpy(out + 1, name, nlen);
    out[1 + nlen] = 0;
    be64_put(out + 2 + nlen, n);
    return nlen + 10;
}

static inline size_t key_id(uint8_t *out, const evb_id *id)
{
    out[0] = K_ID;
    memcpy(out + 1, id->b, EVB_ID_LEN);
    return 1 + EVB_ID_LEN;
}

/* The id index of a log whose index is a database of its own keys each id by
 * the epoch of its event first (FORMAT.md, "Id epochs"): LevelDB then merges
 * a new id only with its own epoch's, and finished epochs are left alone.
 * The prefix sorts below every other index key, so the tables of the newest
 * epoch never overlap an older epoch's. */
#define ID_EPOCH_BITS 20 /* 1 Mi events an epoch */
#define ID_EPOCH_KEY_LEN (1 + 4 + EVB_ID_LEN)

static inline uint32_t id_epoch(uint64_t seq)
{
    uint64_t e = seq >> ID_EPOCH_BITS; /* from 2^52 on, one last epoch */
    return e > UINT32_MAX ? UINT32_MAX : (uint32_t)e;
}

static inline size_t key_id_epoch(uint8_t *out, uint32_t epoch, const evb_id *id)
{
    out[0] = K_IDE;
    for (int i = 3; i >= 0; i--) {
        out[1 + i] = (uint8_t)epoch;
        epoch >>= 8;
    }
    memcpy(out + 5, id->b, EVB_ID_LEN);
    return ID_EPOCH_KEY_LEN;
}

/* The epoch of a key_id_epoch key. */
static inline uint32_t key_epoch(const void *key)
{
    const uint8_t *p = (const uint8_t *)key + 1;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The epoch of seq in the id database (format 6): epochs of 2^bits events. */
static inline uint32_t ids_epoch(unsigned bits, uint64_t seq)
{
    uint64_t e = seq >> bits;
    return e > UINT32_MAX ? UINT32_MAX : (uint32_t)e;
}

/* Id entries gathered by the indexer, put into a batch in key order
 * (indexer.c): LevelDB's memtable is a skip list, and an insert next to the
 * previous one finds its path in the cache where a random one misses at
 * every level. */
typedef struct id_ent {
    uint32_t epoch; /* 0 in format 1 (ids alone) */
    evb_id id;
    uint64_t seq;
} id_ent;

typedef struct id_acc {
    id_ent *v;
    size_t n, cap;
    bool oom;
} id_acc;

/* A Bloom filter over event ids: "maybe stored" or "surely not". It grows
 * in layers: when the newest holds as many ids as it was sized for, a new
 * one twice as big takes the next ones, and a lookup asks every layer. So
 * the false-positive rate stays near one layer's times the number of
 * layers (a few), however many ids come after the open that sized it. */
#define ST_BLOOM_LAYERS 16
typedef struct bloom {
    uint64_t *bits[ST_BLOOM_LAYERS];
    uint64_t nbits[ST_BLOOM_LAYERS]; /* each a power of two */
    uint64_t added;                  /* ids added to the newest layer */
    unsigned nlayers;                /* 0: no filter (read-only): "maybe" */
} bloom;

/* Ids and stream versions staged by an open transaction. */
typedef struct txn_stream {
    char stream[EVB_MAX_STREAM_LEN + 1];
    uint64_t version, last_seq;
    uint64_t count; /* events staged for it */
} txn_stream;

typedef struct txn_id {
    evb_id id;
    uint64_t seq, version;
    uint32_t stream_ix; /* into txn streams */
    bool sealed;        /* a sealed id (idseal.c): no tail set, filter or index entry */
} txn_id;

/* The index feed (indexer.c): what a committed transaction gives the indexer
 * so that it need not read its events back and decode them. A chunk holds
 * events first_seq .. first_seq + n - 1: runs of one stream with consecutive
 * versions, and every event's id. */
typedef struct ix_feed_run {
    uint64_t first_version;
    uint32_t count;
    uint32_t name_off, name_len; /* into the chunk's names */
} ix_feed_run;

typedef struct ix_chunk {
    struct ix_chunk *next;
    uint64_t first_seq;
    size_t n, nruns, bytes;
    ix_feed_run *runs;
    evb_id *ids;
    char *names;
} ix_chunk;

struct evb_txn {
    evb_store_t *st;
    leveldb_writebatch_t *wb;
    uint64_t next_seq; /* next sequence to assign */
    txn_stream *streams;
    size_t nstreams, cap_streams;
    txn_id *ids;
    size_t nids, cap_ids;
    bool failed; /* a staged step failed: commit refuses */
    bool sealed_ahead; /* a staged caller id is the sealed id of a seq to come */
    bool plain;  /* made by evb_store_append (names its crash points) */
    struct {
        evb_txn_end_fn fn;
        void *ctx;
    } hooks[EVB_TXN_MAX_HOOKS]; /* evb_txn_on_end, run once at the end */
    size_t nhooks;
};

struct evb_store {
    char *dir;
    leveldb_t *db; /* the events, metadata, consumer keys, snapshots */
    /* The indexes (S, C, I, c keys, M ixpos, M nstreams): a LevelDB of its
     * own in DIR/index from format 2 on (FORMAT.md, "Two databases"), the
     * same database as db in a format 1 log. Derived: it is never fsynced. */
    leveldb_t *ix;
    /* Format 6: the caller ids (those not sealed) of finished epochs, in
     * DIR/index/ids, each epoch written once, whole and in key order
     * (FORMAT.md, "Id database"); derived like the index and reset with it.
     * NULL before format 6, and for a read-only open that finds none. */
    leveldb_t *idb;
    leveldb_env_t *idb_env; /* its read-only view */
    leveldb_options_t *idb_options;
    leveldb_env_t *idb_bg;      /* its Env: a background thread of its own */
    unsigned idb_bits;          /* its epochs hold 2^idb_bits events */
    _Atomic uint64_t id_sealed; /* caller ids of events up to it are in idb */
    bool ix_old_b;              /* ix holds B entries of format 5 (1 Mi epochs) */
    bool idb_fresh;             /* made by this open (s_open_idb) */
    bool upgraded;              /* this open made the log format 6 (s_upgrade) */
    /* The indexer's caller ids of events after id_sealed (under ix_mu):
     * written to idb when their epoch is over; acc_upto is the last seq it
     * took, so that a failed step taken again adds none twice. */
    id_acc ix_acc;
    uint64_t acc_upto;
    /* Read-only opens: the views (roenv.h) db and ix read through; NULL
     * otherwise. Destroyed after their database is closed. */
    leveldb_env_t *db_env, *ix_env;
    bool ix_foreign; /* its M logid is another log's (a log put in its place) */
    bool ix_ignored; /* read-only open of a stale index: reads do without it */
    bool ix_broken;  /* read-only open of an index that cannot be opened: ix is db */
    leveldb_options_t *options;
    leveldb_options_t *ix_options;
    leveldb_filterpolicy_t *ix_filter; /* Bloom filters in the index's tables */
    leveldb_env_t *ix_bg; /* the index's Env: its own background thread (bgenv.h) */
    leveldb_env_t *db_bg; /* the events' Env (bgenv.h); both NULL when read-only */
    leveldb_readoptions_t *ro;
    leveldb_writeoptions_t *wo;      /* per the sync policy */
    leveldb_writeoptions_t *wo_sync; /* explicit fsync */
    evb_id log_id;
    uint32_t format;
    bool ix_runs; /* the indexer writes runs (format >= 3) */
    bool seal_on; /* the store makes sealed ids (format >= 4; idseal.c) */
    uint32_t seal_nonce; /* 26 bits, drawn at open */
    uint64_t seal_rk[6];
    uint8_t rnd[64 * EVB_ID_LEN]; /* random bytes for ids, used from the end */
    size_t rnd_left;
    char service[EVB_MAX_SERVICE_LEN + 1];
    evb_sync sync;
    unsigned group_ms;
    evb_index_mode index_mode;
    bool read_only;
    /* read-only: damage met loading the unindexed events (count, first) */
    size_t tail_damage;
    char tail_damage_msg[300];
    atomic_bool unwritable; /* set by the owner or the flusher */
    size_t stream_cache_max;
    size_t sweep_at; /* st_sweep: twice what its last sweep kept */

    _Atomic uint64_t head;    /* written by the owner thread only */
    _Atomic uint64_t indexed; /* written under ix_mu only */
    _Atomic uint64_t synced;
    _Atomic uint64_t max_lag;
    _Atomic uint64_t nstreams;

    /* Owner-thread state. */
    leveldb_cache_t *block_cache; /* opts->block_cache_bytes, or NULL: LevelDB's */
    hmap streams;   /* stream -> a = version, b = seq of its last event */
    idset tail_ids; /* ids the caller gave, possibly not yet indexed */
    uint64_t sealed_upto; /* highest seq given a sealed id in this process */
    uint64_t caller_ms_max; /* highest time prefix of an id in the log not sealed */
    uint64_t lost_upto;   /* last seq of a caller id tail_ids had no memory for */
    bool ix_old_ids;      /* an index apart that still holds I entries (before epochs) */
    hmap cats;      /* category -> a = head seq, b = count */
    bloom ids;
    evb_buf enc;   /* reused encode buffer */
    evb_txn_t txn; /* the one transaction object, reused */
    evb_txn_t *open_txn;

    /* Indexer and flusher threads. */
    pthread_mutex_t ix_mu;       /* one indexing step at a time */
    leveldb_writebatch_t *ix_wb; /* the indexer's batch, under ix_mu */
    pthread_mutex_t mu;          /* guards the flags and conditions below */
    pthread_cond_t cv_work;
    pthread_cond_t cv_done;
    pthread_cond_t cv_flush;
    bool stop;
    bool ix_urgent; /* someone waits in evb_store_index_wait */
    bool ix_running, fl_running;
    _Atomic int64_t last_append_us; /* for the indexer's idle test */
    pthread_t ix_thread, fl_thread;
    char ix_error[EVB_ERR_MSG_LEN]; /* last indexer failure, logged once */
    /* The index feed: chunks in seq order, under feed_mu; gaps allowed (the
     * indexer reads those events back). */
    pthread_mutex_t feed_mu;
    ix_chunk *feed_head, *feed_tail;
    size_t feed_bytes;

#ifdef EVB_CRASH_POINTS
    const char *crash_point; /* from EVB_CRASH_POINT */
    long crash_after;
    atomic_long crash_hits;
    uint64_t test_id_ms; /* EVB_TEST_ID_MS: the time in made ids, fixed */
#endif
};

/* Test hook: SIGKILL the process the n-th time point `name` is reached when
 * EVB_CRASH_POINT=name (and EVB_CRASH_AFTER=n, default 1). */
#ifdef EVB_CRASH_POINTS
void evb_crash_point(evb_store_t *st, const char *name);
#define CRASH_POINT(st, name) evb_crash_point((st), (name))
#else
#define CRASH_POINT(st, name) ((void)0)
#endif

/* Turn a LevelDB error string (freed here) into an evb_err. */
int st_ldb_err(evb_store_t *st, char *ldb_err, const char *what, evb_err *err);

/* Get a key from db (st->db or st->ix) with optional read options (NULL =
 * st->ro). *val is malloc'd (free it with leveldb_free) or NULL when absent. */
int st_get(evb_store_t *st, leveldb_t *db, const leveldb_readoptions_t *ro,
           const void *key, size_t klen, char **val, size_t *vlen, evb_err *err);

/* Do reads need LevelDB to check table blocks' CRC? Not when the store's
 * writable Envs check every block they read (bgenv.cc). */
static inline bool st_ldb_checks(const evb_store_t *st)
{
    return st->db_bg == NULL || !st_bgenv_checks_blocks();
}

/* Is the index a database of its own (format >= 2)? */
static inline bool st_ix_apart(const evb_store_t *st)
{
    return st->ix != st->db;
}

/* The id index key of the event at seq with this id in st->ix: by epoch in
 * an index of its own (format 2 to 5), by id alone in format 1's shared
 * database. From format 6 the ids are in st->idb (st_key_idb). */
static inline size_t st_key_id(const evb_store_t *st, uint8_t *out, const evb_id *id,
                               uint64_t seq)
{
    return st_ix_apart(st) ? key_id_epoch(out, id_epoch(seq), id) : key_id(out, id);
}

/* Are caller ids filed in the id database (format 6, st->idb)? Then the
 * index proper holds none (but B entries from before the upgrade). */
static inline bool st_ids_apart(const evb_store_t *st)
{
    return st->format >= 6 && st_ix_apart(st);
}

/* The key of a caller id in the id database (format 6). */
static inline size_t st_key_idb(const evb_store_t *st, uint8_t *out, const evb_id *id,
                                uint64_t seq)
{
    return key_id_epoch(out, ids_epoch(st->idb_bits, seq), id);
}

/* The tail set (st->tail_ids) must hold the caller ids after this seq: the
 * id index covers those up to it. */
static inline uint64_t st_id_floor(const evb_store_t *st)
{
    return st_ids_apart(st) ? atomic_load(&st->id_sealed) : atomic_load(&st->indexed);
}

/* Peek at an envelope's seq (NULL: not wanted) and stream id without
 * decoding all of it. False when its head is not the shape this store writes. */
bool st_peek_stream(const void *buf, size_t len, uint64_t *seq, const char **stream,
                    size_t *slen);

/* Put it on the last key that starts with prefix[0..plen) and sorts before
 * bound (a key after all the wanted ones: the prefix followed by the largest
 * suffix, or the next prefix). Returns that key (length in *klen), or NULL
 * when there is none; read the value with leveldb_iter_value, and check
 * leveldb_iter_get_error before destroying the iterator. */
const char *st_seek_last(leveldb_iterator_t *it, const void *prefix, size_t plen,
                         const void *bound, size_t blen, size_t *klen);

/* Put it on the highest version of name among the "prefix name \0 version(8)"
 * keys (K_STREAM, K_SNAP); true and *version when there is one, false (and
 * *version untouched) when not. */
bool st_seek_last_version(leveldb_iterator_t *it, char prefix, const char *name,
                          size_t nlen, uint64_t *version);

/* A stream or category index entry (FORMAT.md, "Index runs"): count events
 * from seq on, one after another in the log. Stream entries: versions first..
 * first+count-1 at seqs seq..seq+count-1. Category entries: first == seq. */
typedef struct ix_run {
    uint64_t first, seq, count;
} ix_run;

/* Decode an entry of kind K_STREAM or K_CAT whose key (kl bytes) is kind,
 * a name of nlen bytes, \0 and be64(first). false when it is malformed. */
bool st_run_decode(char kind, const char *k, size_t kl, size_t nlen, const char *v,
                   size_t vl, ix_run *r);

/* Put it on the entry of (kind, name) that covers n and return 1 with *r
 * decoded; or else on the first key after n's place (maybe another prefix,
 * maybe none) and return 0; -1 when the entry before n's place that could
 * cover it is malformed. */
int st_seek_run(leveldb_iterator_t *it, char kind, const char *name, size_t nlen,
                uint64_t n, ix_run *r);

/* The last version of stream in the stream index and the seq of that
 * version: 1 when the index has the stream, 0 when not, -1 when its last
 * entry is malformed. */
int st_stream_last(leveldb_iterator_t *it, const char *stream, size_t nlen,
                   uint64_t *version, uint64_t *seq);

/* In-memory state (state.c): a Bloom filter of every stored id, the stream
 * versions and ids the indexer may not cover yet, the category stats. */
int st_bloom_init(bloom *bf, uint64_t n); /* sized for n ids; -1: no memory */
void st_bloom_add(bloom *bf, const evb_id *id);
void st_bloom_free(bloom *bf);
/* Drop cached entries the indexes now cover, when the maps grew large. */
void st_sweep(evb_store_t *st);
/* Record that stream reached version at seq, adding count events to its
 * category (EVB_ENOMEM without setting an error). */
int st_note_stream(evb_store_t *st, const char *stream, uint64_t version, uint64_t seq,
                   const char *cat, uint64_t count);
/* Record the id of an event the log holds (the tail, at open): into the
 * tail set and the filter unless sealed (EVB_ENOMEM without an error). */
int st_note_tail_id(evb_store_t *st, const evb_id *id, uint64_t seq);
/* Record an event the log holds (the unindexed tail, at open). */
int st_note_event(evb_store_t *st, const evb_id *id, const char *stream, uint64_t version,
                  uint64_t seq, const char *cat);
/* Current version and last seq of stream (0 and 0 for a new stream), from
 * memory or the stream index. */
int st_stream_lookup(evb_store_t *st, const char *stream, uint64_t *version,
                     uint64_t *last_seq, evb_err *err);
/* Position of an id: *seq = 0 when not stored. */
int st_id_lookup(evb_store_t *st, const evb_id *id, uint64_t *seq, evb_err *err);
/* Start loading what looking up (or, with add, adding) id will touch: its
 * filter blocks and tail set slot. A batch's loop calls it a few ids ahead,
 * so that their cache misses overlap instead of following each other. */
void st_id_prefetch(const evb_store_t *st, const evb_id *id, bool add);
/* Is a sealed id the store just made not stored yet (as a caller's)? */
int st_id_fresh(evb_store_t *st, const evb_id *id, bool *fresh, evb_err *err);

/* Sealed ids (idseal.c): ids the store makes that decipher to their seq. */
#define ST_SEAL_MAX_SEQ (1ull << 48)
/* evb_txn_append, with the stream's versions from first_version on when it
 * is not 0 (it must be after the stream's current version; a salvage keeps
 * the versions its source had, skipping those it lost). */
int st_txn_append(evb_txn_t *tx, const char *stream, int64_t expected_version,
                  uint64_t first_version, evb_event_t *events, size_t n,
                  evb_append_result *res, evb_err *err);

int st_seal_init(evb_store_t *st, const uint8_t key[EVB_ID_LEN], evb_err *err);
/* Make the sealed id of seq at Unix time ms; false (id untouched) when the
 * log makes none (format < 4, seq out of range). */
bool st_id_seal(const evb_store_t *st, uint64_t seq, uint64_t ms, evb_id *id);
/* The seq an id would be the sealed id of, or 0: then it is no sealed id of
 * this log. Otherwise it is one only if the event at that seq has it. */
uint64_t st_id_unseal(const evb_store_t *st, const evb_id *id);
/* A random UUIDv7 of time ms (a pooled getrandom). */
int st_id_random_v7(evb_store_t *st, uint64_t ms, evb_id *id, evb_err *err);
/* The first 48 bits of an id: a UUIDv7's time in ms. */
static inline uint64_t st_id_ms(const evb_id *id)
{
    uint64_t ms = 0;
    for (int k = 0; k < 6; k++)
        ms = (ms << 8) | id->b[k];
    return ms;
}

/* Note an id the log holds that is not sealed (it may equal a sealed id
 * the store makes only if their times match). */
static inline void st_note_caller_id(evb_store_t *st, const evb_id *id)
{
    uint64_t ms = st_id_ms(id);
    if (ms > st->caller_ms_max) st->caller_ms_max = ms;
}

/* Is id the sealed id of the event at seq? */
static inline bool st_id_sealed_at(const evb_store_t *st, const evb_id *id, uint64_t seq)
{
    return st->seal_on && st_id_unseal(st, id) == seq;
}

/* The group-fsync thread (durability.c), started by store.c. */
void *st_flusher(void *arg);

/* Free the reusable transaction's memory at store destroy (txn.c). */
void st_txn_free(evb_txn_t *tx);

/* Indexer (indexer.c). */
int ix_start(evb_store_t *st, evb_err *err);
void ix_stop(evb_store_t *st);
void ix_kick(evb_store_t *st);
int ix_step(evb_store_t *st, size_t max_events, size_t *done, evb_err *err);
/* Give the indexer a committed transaction's events (owner thread, before
 * the head moves); dropped when the feed holds too much. */
void ix_feed_push(evb_store_t *st, const evb_txn_t *tx);
void ix_feed_clear(evb_store_t *st);
/* Give the indexer's next epoch a caller id it gathered before the store
 * was closed (s_load_tail; sealed ids are left out). EVB_ENOMEM without an
 * error. */
int ix_acc_add(evb_store_t *st, const evb_id *id, uint64_t seq);

#endif
