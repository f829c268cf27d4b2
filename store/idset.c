/*
 * idset.c: see idset.h. Linear probing; the load factor is kept under 3/4 by
 * rebuilding, and there are no deletions between rebuilds, so an empty slot
 * always ends a search.
 */
#include "idset.h"

#include <stdlib.h>
#include <string.h>

static size_t s_slot(const evb_id *id, size_t mask)
{
    uint64_t a, b;
    memcpy(&a, id->b, 8);
    memcpy(&b, id->b + 8, 8);
    uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xbf58476d1ce4e5b9ull;
    return (size_t)(h ^ (h >> 31)) & mask;
}

int idset_init(idset *s, size_t cap)
{
    size_t c = 1024;
    while (c < cap)
        c <<= 1;
    memset(s, 0, sizeof *s);
    s->slots = calloc(c, sizeof *s->slots);
    if (s->slots == NULL) return -1;
    s->cap = c;
    return 0;
}

void idset_free(idset *s)
{
    free(s->slots);
    free(s->spare);
    memset(s, 0, sizeof *s);
}

uint64_t idset_get(const idset *s, const evb_id *id)
{
    if (s->cap == 0) return 0;
    size_t mask = s->cap - 1;
    for (size_t i = s_slot(id, mask);; i = (i + 1) & mask) {
        const idslot *e = &s->slots[i];
        if (e->seq == 0) return 0;
        if (memcmp(e->id.b, id->b, EVB_ID_LEN) == 0) return e->seq;
    }
}

void idset_prefetch(const idset *s, const evb_id *id)
{
    if (s->cap > 0) __builtin_prefetch(&s->slots[s_slot(id, s->cap - 1)], 1);
}

static void s_insert(idslot *slots, size_t mask, const evb_id *id, uint64_t seq)
{
    for (size_t i = s_slot(id, mask);; i = (i + 1) & mask) {
        idslot *e = &slots[i];
        if (e->seq == 0 || memcmp(e->id.b, id->b, EVB_ID_LEN) == 0) {
            e->id = *id;
            e->seq = seq;
            return;
        }
    }
}

/* Rebuild into a table of ncap slots keeping entries with seq > floor. */
static int s_rebuild(idset *s, size_t ncap, uint64_t floor)
{
    idslot *ns;
    if (ncap == s->cap && s->spare != NULL) {
        ns = s->spare;
        memset(ns, 0, ncap * sizeof *ns);
    } else {
        ns = calloc(ncap, sizeof *ns);
        if (ns == NULL) return -1;
        free(s->spare);
        s->spare = NULL;
    }
    size_t used = 0;
    for (size_t i = 0; i < s->cap; i++) {
        const idslot *e = &s->slots[i];
        if (e->seq > floor) {
            s_insert(ns, ncap - 1, &e->id, e->seq);
            used++;
        }
    }
    if (ncap == s->cap) {
        s->spare = s->slots;
    } else {
        free(s->slots);
    }
    s->slots = ns;
    s->cap = ncap;
    s->used = used;
    return 0;
}

int idset_put(idset *s, const evb_id *id, uint64_t seq, uint64_t floor)
{
    if (s->cap == 0 && idset_init(s, 1024) != 0) return -1;
    if ((s->used + 1) * 4 > s->cap * 3) {
        if (s_rebuild(s, s->cap, floor) != 0) return -1;
        if (s->used * 2 > s->cap && s_rebuild(s, s->cap * 2, floor) != 0) return -1;
    }
    size_t mask = s->cap - 1;
    for (size_t i = s_slot(id, mask);; i = (i + 1) & mask) {
        idslot *e = &s->slots[i];
        if (e->seq == 0) {
            e->id = *id;
            e->seq = seq;
            s->used++;
            return 0;
        }
        if (memcmp(e->id.b, id->b, EVB_ID_LEN) == 0) {
            e->seq = seq;
            return 0;
        }
    }
}
