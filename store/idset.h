/*
 * idset.h (private): the ids of recent events, for the append path's
 * duplicate check. Open addressing over 24-byte slots (id, seq), sized once
 * and rebuilt in place of a spare table, so appends allocate nothing and take
 * one cache miss per id. An entry whose seq the indexer covers is stale: it
 * stays correct (the seq is still right) but may be dropped at the next
 * rebuild, which is what bounds the set by the indexer's lag.
 */
#if !defined(EVB_BUILDING_STORE)
#error "store/idset.h is private to libevbus's store module; programs include <evbus/evbus_store.h>"
#endif
#ifndef EVB_IDSET_H
#define EVB_IDSET_H

#include "evbus_common.h"

typedef struct idslot {
    evb_id id;
    uint64_t seq; /* 0 = empty */
} idslot;

typedef struct idset {
    idslot *slots;
    idslot *spare;
    size_t cap;  /* power of two */
    size_t used; /* non-empty slots */
} idset;

/* Make an empty set of cap slots (rounded up to a power of two). */
int idset_init(idset *s, size_t cap);
void idset_free(idset *s);
/* seq of id, or 0 when the set does not hold it. */
uint64_t idset_get(const idset *s, const evb_id *id);
/* Start loading the slot where id goes (see st_id_prefetch). */
void idset_prefetch(const idset *s, const evb_id *id);
/* Add id at seq. When the table is 3/4 full it is rebuilt without the
 * entries whose seq <= floor, and doubled if still over half full.
 * -1 when out of memory (the set is unchanged). */
int idset_put(idset *s, const evb_id *id, uint64_t seq, uint64_t floor);

#endif
