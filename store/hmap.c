/*
 * hmap.c: linear-probing hash map (see hmap.h). Load factor stays under 1/2,
 * so probes are short and an empty slot always ends a search.
 */
#include "hmap.h"

#include <stdlib.h>
#include <string.h>

uint64_t hmap_hash(const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t h = 0x243f6a8885a308d3ull ^ (len * 0x9e3779b97f4a7c15ull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    h *= 0x9e3779b97f4a7c15ull;
    h ^= h >> 32;
    return h ? h : 1;
}

static hent *s_find(const hmap *m, const void *key, size_t klen, uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        hent *e = &m->slots[i];
        if (e->hash == 0) return e;
        if (e->hash == h && e->klen == klen && memcmp(hent_key(e), key, klen) == 0)
            return e;
    }
}

hent *hmap_get(const hmap *m, const void *key, size_t klen)
{
    if (m->cap == 0) return NULL;
    hent *e = s_find(m, key, klen, hmap_hash(key, klen));
    return e->hash ? e : NULL;
}

static int s_grow(hmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    hent *ns = calloc(ncap, sizeof *ns);
    if (ns == NULL) return -1;
    hmap nm = {ns, ncap, 0, m->spare, m->spare_cap};
    for (size_t i = 0; i < m->cap; i++) {
        hent *e = &m->slots[i];
        if (e->hash == 0) continue;
        hent *d = s_find(&nm, hent_key(e), e->klen, e->hash);
        *d = *e; /* moves the heap key pointer too */
        nm.len++;
    }
    free(m->slots);
    *m = nm;
    return 0;
}

hent *hmap_put(hmap *m, const void *key, size_t klen, uint64_t a, uint64_t b)
{
    if ((m->len + 1) * 2 > m->cap && s_grow(m) != 0) return NULL;
    uint64_t h = hmap_hash(key, klen);
    hent *e = s_find(m, key, klen, h);
    if (e->hash == 0) {
        if (klen > HMAP_INLINE) {
            char *k = malloc(klen);
            if (k == NULL) return NULL;
            memcpy(k, key, klen);
            e->k.heap = k;
        } else {
            memcpy(e->k.in, key, klen);
        }
        e->hash = h;
        e->klen = (uint32_t)klen;
        m->len++;
    }
    e->a = a;
    e->b = b;
    return e;
}

int hmap_filter(hmap *m, bool (*keep)(const hent *e, void *ctx), void *ctx)
{
    if (m->cap == 0) return 0;
    /* Rebuild into the spare table when it has the right size: sweeps repeat,
     * and a fresh calloc of a large table each time costs page faults. */
    hent *ns;
    if (m->spare != NULL && m->spare_cap == m->cap) {
        ns = m->spare;
        memset(ns, 0, m->cap * sizeof *ns);
    } else {
        free(m->spare);
        ns = calloc(m->cap, sizeof *ns);
        if (ns == NULL) {
            m->spare = NULL;
            m->spare_cap = 0;
            return -1;
        }
    }
    hmap nm = {ns, m->cap, 0, m->slots, m->cap};
    for (size_t i = 0; i < m->cap; i++) {
        hent *e = &m->slots[i];
        if (e->hash == 0) continue;
        if (keep(e, ctx)) {
            *s_find(&nm, hent_key(e), e->klen, e->hash) = *e;
            nm.len++;
        } else if (e->klen > HMAP_INLINE) {
            free(e->k.heap);
        }
    }
    *m = nm; /* the old table is now the spare */
    return 0;
}

void hmap_free(hmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].hash != 0 && m->slots[i].klen > HMAP_INLINE)
            free(m->slots[i].k.heap);
    free(m->slots);
    free(m->spare);
    memset(m, 0, sizeof *m);
}
