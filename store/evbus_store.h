/*
 * evbus_store.h: a service's event log, kept in one LevelDB directory.
 *
 * Owns: the directory (one process at a time: LevelDB's LOCK), the global
 * sequence (contiguous from 1), stream versions, the derived indexes (stream,
 * category, event id), consumer key/values and checkpoints, and snapshots.
 * The disk format is specified in store/FORMAT.md.
 *
 * Thread rules: an evb_store_t is used by one thread (the owner). The store
 * runs two threads of its own (the indexer and, under EVB_SYNC_GROUP, the
 * group-fsync flusher); they share nothing with the caller but LevelDB and a
 * few atomics. Iterators and transactions belong to the thread of their store.
 *
 * Appends write one LevelDB WriteBatch holding only the encoded events (no
 * index entries): the stream, category and id indexes are written behind by
 * the indexer, with its position in the same batch, so a crash at any instant
 * leaves a log that reopens consistent. Reads merge the indexes with the short
 * unindexed tail. Expected-version and duplicate-id checks go through memory
 * (a bounded stream-version cache, a Bloom filter of ids, an exact map of the
 * unindexed tail's ids) backed by the indexes. Why, and what it measured:
 * store/FORMAT.md, "Append path".
 *
 * Limits: EVB_MAX_BATCH events per append; the indexer may fall at most
 * EVB_STORE_MAX_INDEX_LAG events behind before appends wait for it.
 */
#ifndef EVBUS_STORE_H
#define EVBUS_STORE_H

#include "evbus_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_STORE_FORMAT 6u /* on-disk format of new logs (1 to 5 are read too) */
#define EVB_STORE_MAX_INDEX_LAG 1000000u
#define EVB_MAX_KEY_LEN 1024u /* consumer keys */
#define EVB_MAX_VALUE_BYTES (16u * 1024u * 1024u)
#define EVB_MAX_CONSUMER_LEN 128u

typedef enum evb_sync {
    EVB_SYNC_NONE = 0, /* no fsync: a power loss may take back recent appends */
    EVB_SYNC_EVERY,    /* fsync inside every append/commit */
    EVB_SYNC_GROUP     /* appends return at once; one fsync every interval */
} evb_sync;

typedef enum evb_index_mode {
    EVB_INDEX_THREAD = 0, /* a background thread indexes behind the appends */
    EVB_INDEX_MANUAL      /* only evb_store_index_step indexes (tests, tools) */
} evb_index_mode;

typedef struct evb_store_opts {
    const char *dir;       /* the log's directory */
    const char *service;   /* service name; required when creating */
    bool create;           /* create the log if the directory has none */
    bool read_only_intent; /* tools: never write, not even the indexer; the
                            * log is read as a snapshot of the directory that
                            * no byte of changes, beside a running owner
                            * (store/FORMAT.md, "Reading without writing") */
    evb_sync sync;
    unsigned group_interval_ms; /* EVB_SYNC_GROUP: fsync period (default 2) */
    evb_index_mode index_mode;
    size_t write_buffer_bytes;   /* LevelDB write buffer (default 32 MiB) */
    size_t stream_cache_entries; /* stream versions kept in memory (default 100k) */
    size_t block_cache_bytes;    /* one LevelDB block cache for the log and its index
                                    (default 0: LevelDB's own, 8 MiB each) */
    unsigned max_open_tables;    /* tables kept open, with their index blocks in
                                    memory, per database (default 0: LevelDB's,
                                    about 1,000) */
    size_t event_block_bytes;    /* the events' table blocks before compression
                                    (default 0: LevelDB's 4 KiB); larger blocks
                                    make the index blocks an open table keeps in
                                    memory smaller, and a point read of one event
                                    decompress more; clamped to 1 KiB..4 MiB;
                                    services/README.md, "Memory") */
} evb_store_opts;

typedef struct evb_store evb_store_t;
typedef struct evb_iter evb_iter_t;
typedef struct evb_txn evb_txn_t;

/* Open (or with opts->create, create) the log in opts->dir. Errors:
 *  EVB_ELOCKED  "log is in use by another process: DIR"
 *  EVB_EFORMAT  the directory holds no evbus log, or a newer format
 *  EVB_ENOTFOUND no log and create is false
 *  EVB_ECORRUPT / EVB_EIO with LevelDB's reason and the directory.
 * A log id (16 random bytes) is made once, at creation, and kept. */
EVB_EXPORT evb_store_t *evb_store_open(const evb_store_opts *opts, evb_err *err);

/* Stop the store's threads (a pending group fsync is done first) and close
 * LevelDB. *stp becomes NULL. */
EVB_EXPORT void evb_store_destroy(evb_store_t **stp);

/* What evb_store_backup wrote. */
typedef struct evb_backup_info {
    uint64_t head;         /* the backup's last sequence */
    uint64_t bytes_copied; /* bytes written (hard-linked tables not counted) */
    unsigned files_linked; /* tables hard-linked instead of copied */
} evb_backup_info;

/* Write a consistent copy of a store opened with read_only_intent into the
 * new directory dest (it must not exist; its parent must): the log as of
 * the open (its owner may be running), which opens and verifies as a log of
 * its own, with the same log id. Tables are hard-linked where the file
 * system allows, the rest copied; everything is fsynced. EVB_EINVAL for a
 * store not opened read-only, EVB_EIO naming the file on failure (dest is
 * then incomplete: remove it). */
EVB_EXPORT int evb_store_backup(evb_store_t *st, const char *dest, evb_backup_info *out,
                                evb_err *err);

/* What evb_store_salvage wrote. */
typedef struct evb_salvage_info {
    uint64_t head;       /* the copy's last sequence: the source's head */
    uint64_t events;     /* events copied as they were */
    uint64_t unreadable; /* sequences that could not be read (each a marker now) */
    uint64_t holes;      /* ranges of them */
    uint64_t keys;       /* consumer keys, checkpoints and snapshots copied */
    bool keys_damaged;   /* some of those were in damaged blocks: not copied */
} evb_salvage_info;

/* Told along the way (any may be NULL): each hole as it is met (why: what
 * the read said), and the progress now and then. */
typedef struct evb_salvage_cbs {
    void (*hole)(void *ctx, uint64_t from, uint64_t to, const char *why);
    void (*progress)(void *ctx, uint64_t seq, uint64_t head);
    void *ctx;
} evb_salvage_cbs;

/* Copy what the log opened with read_only_intent can read into a new log in
 * dest (it must not exist; its parent must): the same log id, service and
 * key of sealed ids; every readable event at its own sequence with its id,
 * stream version and all its fields; in place of each sequence that cannot
 * be read, a marker event of stream "evbus.hole-FROM", type "Unreadable",
 * payload {from, to}; consumer keys, checkpoints and snapshots as they are.
 * The copy is fsynced. A service can then run on it (its streams skip the
 * versions that were lost). EVB_EINVAL when dest exists or st is not
 * read-only; other errors name the file (dest is then incomplete). */
EVB_EXPORT int evb_store_salvage(evb_store_t *st, const char *dest,
                                 const evb_salvage_cbs *cb, evb_salvage_info *out,
                                 evb_err *err);

/* For a log that cannot be opened at all (its MANIFEST or CURRENT damaged,
 * or a table whose footer or index block is): copy the files of the log's
 * own database (not index/, which is derived) into the new directory copy
 * and run LevelDB's RepairDB there, which makes a new MANIFEST from the
 * tables and write-ahead logs it can read; the tables it cannot read (moved
 * to copy/lost/) are scanned for data blocks by their checksums and their
 * keys put back where the copy has none (store/rawtable.c). dir is not
 * changed. Open the copy read-only and salvage it; then remove it. */
EVB_EXPORT int evb_store_repair_copy(const char *dir, const char *copy, evb_err *err);

typedef struct evb_store_info {
    evb_id log_id;
    uint32_t format;
    char service[EVB_MAX_SERVICE_LEN + 1];
    uint64_t head;          /* last sequence appended (0 = empty) */
    uint64_t indexed;       /* indexer position: events <= this are indexed */
    uint64_t synced;        /* last sequence known durable under the policy */
    uint64_t streams;       /* streams indexed so far */
    uint64_t max_index_lag; /* largest head - indexed seen since open */
    evb_sync sync;
} evb_store_info;

EVB_EXPORT void evb_store_get_info(const evb_store_t *st, evb_store_info *info);
EVB_EXPORT uint64_t evb_store_head(const evb_store_t *st);
EVB_EXPORT const char *evb_store_dir(const evb_store_t *st);

/* After a failed write (EVB_EUNWRITABLE: disk full, I/O error) LevelDB
 * refuses writes until it is reopened. evb_store_reopen closes and reopens
 * the database in place (the same evb_store_t, so publishers and iterators'
 * owners keep their pointer; no iterator may be open), reads the head and the
 * in-memory state again from the log, and accepts writes again. On failure
 * the store is closed: reads, transactions, scans, sync and verify return
 * EVB_ECLOSED until a later evb_store_reopen succeeds or it is destroyed.
 * Short of space (no room for LevelDB's recovery, the new log or manifest,
 * RLIMIT_FSIZE) it returns EVB_EUNWRITABLE: wait and reopen again; other
 * failures (EVB_EIO, EVB_ECORRUPT, EVB_ELOCKED) need an operator.
 * evb_store_unwritable tells whether a write failed since the last open. */
EVB_EXPORT int evb_store_reopen(evb_store_t *st, evb_err *err);
EVB_EXPORT bool evb_store_unwritable(const evb_store_t *st);

/* Bytes the directory takes on disk (sum of its files). */
EVB_EXPORT int evb_store_disk_size(const evb_store_t *st, uint64_t *bytes, evb_err *err);

/* Damage a read-only open found in the log's LevelDB write-ahead log: how
 * many times its replay dropped damaged bytes (0: none), with LevelDB's
 * first report in msg[0..cap) ("DIR/N.log: dropping B bytes; Corruption:
 * ..."). Always 0 for a writable store (its open refuses such a log when
 * events are missing). Damage in tables shows only when read (verify). */
EVB_EXPORT size_t evb_store_wal_damage(const evb_store_t *st, char *msg, size_t cap);
/* Damage a read-only open met reading the log's unindexed events (table
 * blocks that fail their checksum, events that do not decode): how many
 * (0: none), the first described in msg[0..cap). Such an open reads past it
 * (a writable one refuses the log); other damage in tables shows when read
 * (cat, verify). */
EVB_EXPORT size_t evb_store_tail_damage(const evb_store_t *st, char *msg, size_t cap);

/* ---- append ---- */

typedef struct evb_append_result {
    uint64_t first_seq, last_seq;         /* global positions */
    uint64_t first_version, last_version; /* stream versions */
    bool duplicate; /* every id was already stored: nothing written, these
                       are the original positions */
} evb_append_result;

/*
 * Append events[0..n) to stream, expecting its current version to be
 * expected_version (EVB_EXPECT_ANY, EVB_EXPECT_NONE or exact). The caller
 * sets in each event: type, schema (0 means 1), payload (NULL means {}),
 * optionally id (zero: the store makes a UUIDv7 that also names the
 * event's place in this log, store/FORMAT.md "Sealed ids", and writes it
 * back as the event is staged; an append its checks refuse leaves it zero),
 * correlation_id, causation_id, metadata, ts_us (0: now), and for copies
 * origin_log_id/origin_seq. The store sets stream, service, log_id, seq,
 * version (written back into events[] on success; the string pointers it
 * writes back are owned by the store / the caller's stream argument).
 * Checks, in this order:
 *  1. ids: all already stored in this stream, in order -> EVB_OK with
 *     duplicate = true and the original positions, nothing written; some
 *     but not all -> EVB_EPARTIAL naming them; an id twice in the batch ->
 *     EVB_EINVAL.
 *  2. version: mismatch -> EVB_ECONFLICT naming the current version.
 * One WriteBatch; under EVB_SYNC_EVERY it is fsynced before returning.
 * A LevelDB write failure makes the store refuse later writes
 * (EVB_EUNWRITABLE) until it is reopened; reads keep working.
 */
EVB_EXPORT int evb_store_append(evb_store_t *st, const char *stream,
                                int64_t expected_version, evb_event_t *events, size_t n,
                                evb_append_result *res, evb_err *err);

/* Current version of stream (0 if it has no events). */
EVB_EXPORT int evb_store_stream_version(evb_store_t *st, const char *stream,
                                        uint64_t *version, evb_err *err);

/* Position of an event id: EVB_ENOTFOUND if not stored. */
EVB_EXPORT int evb_store_find_id(evb_store_t *st, const evb_id *id, uint64_t *seq,
                                 evb_err *err);

/* ---- durability and indexing ---- */

/* Last sequence covered by an fsync (EVB_SYNC_EVERY/GROUP) or simply
 * written (EVB_SYNC_NONE, where nothing is promised across power loss). */
EVB_EXPORT uint64_t evb_store_synced(const evb_store_t *st);
/* Will the events not indexed yet be? True while the store's background
 * indexer runs without a standing failure (false for EVB_INDEX_MANUAL, a
 * read-only store, and an indexer that cannot read the log on, e.g. at
 * damage). */
EVB_EXPORT bool evb_store_indexing(evb_store_t *st);
/* fsync now; returns once everything appended so far is durable. */
EVB_EXPORT int evb_store_sync(evb_store_t *st, evb_err *err);

/* Index up to max_events events now (any index mode); *done gets how many.
 * Used by EVB_INDEX_MANUAL stores and tools. */
EVB_EXPORT int evb_store_index_step(evb_store_t *st, size_t max_events, size_t *done,
                                    evb_err *err);
/* Wait until the indexer has caught up with the head (or index inline in
 * manual mode). */
EVB_EXPORT int evb_store_index_wait(evb_store_t *st, evb_err *err);
/* Drop every index entry and index again from sequence 1. */
EVB_EXPORT int evb_store_reindex(evb_store_t *st, evb_err *err);

/* ---- reads ----
 * Iterators read a consistent LevelDB snapshot taken when they are made:
 * events appended later are not seen. Memory is bounded (one page of keys and
 * one decoded event) however long the log is. Passing an upcaster registry
 * (may be NULL) returns events in their current shape. */

/* Events with from_seq <= seq <= to_seq (to_seq 0: up to the head). */
EVB_EXPORT evb_iter_t *evb_store_read_range(evb_store_t *st, uint64_t from_seq,
                                            uint64_t to_seq, const evb_upcasters_t *up,
                                            evb_err *err);
/* Events of stream with from_version <= version <= to_version (to_version 0:
 * all; "as of version V" is from 1 to V). */
EVB_EXPORT evb_iter_t *evb_store_read_stream(evb_store_t *st, const char *stream,
                                             uint64_t from_version, uint64_t to_version,
                                             const evb_upcasters_t *up, evb_err *err);
/* Events of category with seq > after_seq, in log order. */
EVB_EXPORT evb_iter_t *evb_store_read_category(evb_store_t *st, const char *category,
                                               uint64_t after_seq,
                                               const evb_upcasters_t *up, evb_err *err);

/* Next event: returns true and sets *ev (lent: valid until the next call or
 * destroy), or false at the end or on error (err->code != EVB_OK then: a
 * damaged record is EVB_ECORRUPT naming its sequence). */
EVB_EXPORT bool evb_iter_next(evb_iter_t *it, const evb_event_t **ev, evb_err *err);
EVB_EXPORT void evb_iter_destroy(evb_iter_t **itp);
/* What evb_iter_next_raw gives: the stored envelope (what the bus sends),
 * its seq and its category, lent like an event. */
typedef struct evb_raw_event {
    uint64_t seq;
    const char *category;
    const void *buf;
    size_t len;
} evb_raw_event;
/* As evb_iter_next, without decoding the event: its seq and stream are read
 * from the envelope's head in place and checked against the log as
 * evb_iter_next checks them; the rest is not decoded (its block passed its
 * checksum, and a receiver decodes what it is sent). A publisher's pages and
 * live sends cost then about what reading the log costs. Range and category
 * reads without upcasters only; the others decode. */
EVB_EXPORT bool evb_iter_next_raw(evb_iter_t *it, evb_raw_event *out, evb_err *err);
/* The stored envelope bytes of the event the last evb_iter_next returned
 * (before any upcasting): what the bus sends. Lent like the event. False
 * before the first event. */
EVB_EXPORT bool evb_iter_raw(const evb_iter_t *it, const void **buf, size_t *len);
/* After evb_iter_next stopped with EVB_ECORRUPT because events cannot be read
 * (a damaged or missing record; reads verify LevelDB's block checksums, so
 * damage is never decoded into an event): true, and the range of sequences
 * [*from, *to] that cannot be read. *to + 1 is the next readable event (or
 * past the head when none is). A new iterator from *to + 1 reads on after
 * the hole. False when the iterator met no hole (other errors: a damaged
 * index entry, an upcaster's refusal). */
EVB_EXPORT bool evb_iter_hole(const evb_iter_t *it, uint64_t *from, uint64_t *to);
/* After a hole: go on with the events after it (the next evb_iter_next reads
 * from *to + 1). True when it does; false for a stream read (its versions
 * after the hole are unknown), when nothing of the read lies after the
 * hole, or when there was no hole. */
EVB_EXPORT bool evb_iter_resume(evb_iter_t *it);

/* Per-category heads: calls fn for every category known to the indexes
 * and the unindexed tail, in name order. */
typedef struct evb_category_info {
    const char *name;
    uint64_t head;  /* seq of its last event */
    uint64_t count; /* events in it */
} evb_category_info;
typedef int (*evb_category_fn)(const evb_category_info *ci, void *ctx);
EVB_EXPORT int evb_store_categories(evb_store_t *st, evb_category_fn fn, void *ctx,
                                    evb_err *err);
EVB_EXPORT int evb_store_category_head(evb_store_t *st, const char *category,
                                       uint64_t *head, evb_err *err);

/* ---- consumer transactions ----
 * A transaction gathers the caller's key/values, checkpoints, snapshots and
 * own appends and commits them in one WriteBatch: all or nothing. This is what
 * makes a consumer's effects exactly-once. One transaction at a time per store
 * (EVB_EBUSY otherwise); its appends see each other's versions. */
EVB_EXPORT evb_txn_t *evb_txn_begin(evb_store_t *st, evb_err *err);
EVB_EXPORT int evb_txn_put(evb_txn_t *tx, const void *key, size_t klen, const void *val,
                           size_t vlen, evb_err *err);
EVB_EXPORT int evb_txn_delete(evb_txn_t *tx, const void *key, size_t klen, evb_err *err);
/* Checkpoint of consumer for (source log, category): the last applied seq.
 * category EVB_ALL_CATEGORIES is the checkpoint of a feed of every category
 * in log order (no category is spelt "*"). */
#define EVB_ALL_CATEGORIES "*"
EVB_EXPORT int evb_txn_checkpoint(evb_txn_t *tx, const char *consumer,
                                  const evb_id *source_log, const char *category,
                                  uint64_t seq, evb_err *err);
EVB_EXPORT int evb_txn_append(evb_txn_t *tx, const char *stream, int64_t expected_version,
                              evb_event_t *events, size_t n, evb_append_result *res,
                              evb_err *err);
EVB_EXPORT int evb_txn_snapshot(evb_txn_t *tx, const char *stream, uint64_t version,
                                const void *state, size_t len, evb_err *err);
/* Commit and free; *txp becomes NULL whatever the outcome (a failed commit
 * wrote nothing). */
EVB_EXPORT int evb_txn_commit(evb_txn_t **txp, evb_err *err);
/* Abort (nothing written) and free. */
EVB_EXPORT void evb_txn_destroy(evb_txn_t **txp);
/* Call fn(ctx, committed) once when the transaction ends: committed is true
 * after a commit that wrote, false after an abort or a failed commit. Lets a
 * caller keep in-memory state (an aggregate cache) in step with what was
 * really written when someone else (the subscriber) commits. At most
 * EVB_TXN_MAX_HOOKS per transaction (EVB_EINVAL after that). */
#define EVB_TXN_MAX_HOOKS 4u
typedef void (*evb_txn_end_fn)(void *ctx, bool committed);
EVB_EXPORT int evb_txn_on_end(evb_txn_t *tx, evb_txn_end_fn fn, void *ctx, evb_err *err);

/* Read a consumer key: value copied into out (replacing its contents).
 * EVB_ENOTFOUND if absent. */
EVB_EXPORT int evb_store_get(evb_store_t *st, const void *key, size_t klen, evb_buf *out,
                             evb_err *err);
/* Every consumer key starting with prefix[0..plen) (plen 0: all), in key
 * order, with its value (both lent for the call). fn returning non-zero stops
 * the scan and is returned. Reads a consistent snapshot of the store. */
typedef int (*evb_kv_fn)(const void *key, size_t klen, const void *val, size_t vlen,
                         void *ctx);
EVB_EXPORT int evb_store_scan(evb_store_t *st, const void *prefix, size_t plen,
                              evb_kv_fn fn, void *ctx, evb_err *err);
/* The same from the first key >= start (start[0..slen), within the prefix;
 * NULL: the prefix's first key): the next page after a key k starts at k
 * followed by one zero byte. */
EVB_EXPORT int evb_store_scan_from(evb_store_t *st, const void *prefix, size_t plen,
                                   const void *start, size_t slen, evb_kv_fn fn, void *ctx,
                                   evb_err *err);
/* Last checkpoint; *seq = 0 and EVB_OK when none was ever committed. */
EVB_EXPORT int evb_store_checkpoint_get(evb_store_t *st, const char *consumer,
                                        const evb_id *source_log, const char *category,
                                        uint64_t *seq, evb_err *err);
typedef int (*evb_checkpoint_fn)(const char *consumer, const evb_id *source_log,
                                 const char *category, uint64_t seq, void *ctx);
EVB_EXPORT int evb_store_checkpoints(evb_store_t *st, evb_checkpoint_fn fn, void *ctx,
                                     evb_err *err);

/* ---- snapshots ----
 * Save the state of stream's aggregate as of version (outside a transaction;
 * see evb_txn_snapshot for inside one). Load the latest snapshot: state
 * copied into out, *version set; *version = 0 and out empty when there is
 * none. Loading an aggregate = evb_store_snapshot_load + evb_store_read_stream
 * from *version + 1. */
EVB_EXPORT int evb_store_snapshot_save(evb_store_t *st, const char *stream,
                                       uint64_t version, const void *state, size_t len,
                                       evb_err *err);
EVB_EXPORT int evb_store_snapshot_load(evb_store_t *st, const char *stream,
                                       uint64_t *version, evb_buf *out, evb_err *err);

/* ---- verify ----
 * Checks: the sequence is contiguous from 1 to the head; every event decodes
 * and names this log and its own sequence; stream versions are contiguous;
 * every index entry points at a real event of the right stream / category /
 * id; every event up to the indexer's position is indexed. fn (may be NULL)
 * gets each problem as a sentence; progress (may be NULL) gets the sequence
 * reached every 65536 events. Returns EVB_OK when clean, EVB_ECORRUPT with the
 * number of problems in *problems otherwise. */
typedef void (*evb_problem_fn)(const char *problem, void *ctx);
typedef void (*evb_progress_fn)(uint64_t done, uint64_t total, void *ctx);
EVB_EXPORT int evb_store_verify(evb_store_t *st, evb_problem_fn fn,
                                evb_progress_fn progress, void *ctx, uint64_t *problems,
                                evb_err *err);

#ifdef __cplusplus
}
#endif
#endif
