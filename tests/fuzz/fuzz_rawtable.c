/*
 * fuzz_rawtable.c: the salvage's scan of a table file without its index
 * (store/rawtable.c) reads damaged bytes by design: any input must scan
 * without reading out of bounds, and every entry it hands over must be
 * whole (its key and value readable to the last byte, a type of 0 or 1).
 * Seeds: two tables of a small log written by `evbus append` (one of
 * metadata, one of 40 events).
 */
#define EVB_BUILDING_STORE
#include "../../store/rawtable.h"

#include <stdlib.h>

static int s_entry(void *ctx, const rt_entry *e)
{
    unsigned *sum = ctx;
    if (e->type > 1 || (e->klen > 0 && e->key == NULL) || (e->vlen > 0 && e->val == NULL))
        abort();
    for (size_t i = 0; i < e->klen; i++) /* ASan: the key is readable */
        *sum += e->key[i];
    for (size_t i = 0; i < e->vlen; i++)
        *sum += e->val[i];
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned sum = 0;
    rt_stats st = {0};
    if (rt_scan(data, size, s_entry, &sum, &st) != 0) abort(); /* s_entry returns 0 */
    if (st.skipped > size) abort();
    return (int)(sum & 0);
}
