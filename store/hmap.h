/*
 * hmap.h (private): a small open-addressing hash map from byte keys to two
 * uint64 values, used for the store's in-memory state (stream versions, the
 * unindexed tail's ids, category heads). Keys up to HMAP_INLINE bytes live in
 * the slot; longer ones are malloc'd. Removal is by rebuilding (hmap_filter),
 * which is how the store sweeps entries the indexes now cover.
 */
#if !defined(EVB_BUILDING_STORE) && !defined(EVB_BUILDING_SVC)
#error "store/hmap.h is private to libevbus's store and service runtime modules; programs include <evbus/evbus_store.h>"
#endif
#ifndef EVB_HMAP_H
#define EVB_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HMAP_INLINE 24

typedef struct hent {
    uint64_t hash; /* 0 = empty slot */
    uint32_t klen;
    union {
        char in[HMAP_INLINE];
        char *heap;
    } k;
    uint64_t a, b;
} hent;

typedef struct hmap {
    hent *slots;
    size_t cap; /* power of two, or 0 */
    size_t len;
    hent *spare; /* the previous table, reused by the next hmap_filter */
    size_t spare_cap;
} hmap;

static inline const char *hent_key(const hent *e)
{
    return e->klen <= HMAP_INLINE ? e->k.in : e->k.heap;
}

uint64_t hmap_hash(const void *key, size_t len);
/* Entry for key, or NULL. */
hent *hmap_get(const hmap *m, const void *key, size_t klen);
/* Insert or update; returns the entry or NULL when out of memory. */
hent *hmap_put(hmap *m, const void *key, size_t klen, uint64_t a, uint64_t b);
/* Keep only the entries for which keep() is true. 0 or -1 (out of memory:
 * the map is unchanged). */
int hmap_filter(hmap *m, bool (*keep)(const hent *e, void *ctx), void *ctx);
void hmap_free(hmap *m);

#endif
