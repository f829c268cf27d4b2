/*
 * rawtable.h (private): the data blocks of a LevelDB table file read without
 * its index block or footer, for salvage (store/FORMAT.md, "Holes and
 * salvage"; rawtable.c says how the blocks are found).
 */
#if !defined(EVB_BUILDING_STORE)
#error "store/rawtable.h is private to libevbus's store module; programs include <evbus/evbus_store.h>"
#endif
#ifndef EVB_STORE_RAWTABLE_H
#define EVB_STORE_RAWTABLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One entry of a data block: the user key of its internal key, the sequence
 * and type LevelDB gave it (1 a value, 0 a deletion) and the value. The
 * pointers are good during the call only. */
typedef struct rt_entry {
    const uint8_t *key;
    size_t klen;
    uint64_t seq;
    unsigned type;
    const uint8_t *val;
    size_t vlen;
} rt_entry;

/* Called for each entry, in file order; a non-zero return stops the scan and
 * is returned by it. */
typedef int (*rt_entry_fn)(void *ctx, const rt_entry *e);

typedef struct rt_stats {
    uint64_t blocks;  /* data blocks found (checksum, decompression, layout) */
    uint64_t entries; /* entries in them */
    uint64_t other;   /* blocks found that index others (the index block) */
    uint64_t skipped; /* bytes in no block found: damage, the footer */
} rt_stats;

/* Scan buf[0..n), a table file's bytes, for blocks (stats may be NULL).
 * Returns 0 or what fn returned. A block that needs more memory than there
 * is counts as not found. */
int rt_scan(const uint8_t *buf, size_t n, rt_entry_fn fn, void *ctx, rt_stats *stats);

/* The same for the file at path (mapped read-only). Returns 0, -1 with
 * errno set when it cannot be read, or what fn returned (make it positive). */
int rt_scan_file(const char *path, rt_entry_fn fn, void *ctx, rt_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
