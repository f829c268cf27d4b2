/*
 * idseal.c: ids that say where their event is (format 4).
 *
 * An id the store makes is a UUIDv7 whose 74 bits under the time are not
 * random but the event's seq (48 bits) and a 26-bit nonce drawn once per
 * open store, enciphered with a key of the log's own (a 6-round Feistel
 * network over two 37-bit halves, keyed by 16 random bytes kept in the
 * log's metadata). Such an id needs no id index entry, no Bloom filter bit
 * and no tail set entry: a lookup deciphers it and, when the seq is in the
 * log, reads that one event and compares the whole id. That is exact
 * whatever the cipher's strength: the comparison decides, the cipher only
 * spares reads (another log's id, or a caller's random one, deciphers to a
 * seq inside the log with odds head / 2^48).
 *
 * Uniqueness, the property ids exist for, comes from the construction
 * (txn.c): an open store seals a seq at most once (an aborted
 * transaction's seqs get random ids when they come round again); two opens
 * that seal one seq in the same millisecond differ in their nonces; and a
 * sealed id that a caller stored first, or staged in the same transaction,
 * is replaced by a random one. Measured and argued in FORMAT.md ("Sealed
 * ids").
 */
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>

#define SEAL_ROUNDS 6
#define HALF_BITS 37
#define HALF_MASK ((1ull << HALF_BITS) - 1)
#define TAG_BITS 26

int st_seal_init(evb_store_t *st, const uint8_t key[EVB_ID_LEN], evb_err *err)
{
    evb_id nonce;
    int rc = evb_id_random(&nonce, err);
    if (rc != EVB_OK) return rc;
    st->seal_nonce = (uint32_t)be64_get(nonce.b) & ((1u << TAG_BITS) - 1);
#ifdef EVB_CRASH_POINTS
    if (st->test_id_ms != 0) st->seal_nonce = 0; /* sealed ids known in advance */
#endif
    uint64_t a = be64_get(key), b = be64_get(key + 8);
    for (int i = 0; i < SEAL_ROUNDS; i++)
        st->seal_rk[i] = st_mix64(a + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)) ^
                         st_mix64(b ^ (uint64_t)i);
    st->seal_on = true;
    return EVB_OK;
}

static uint64_t s_round(uint64_t half, uint64_t rk)
{
    return st_mix64(half ^ rk) & HALF_MASK;
}

/* The 74 free bits of a UUIDv7 (after the time, around the version and the
 * variant) as two 37-bit halves, and back. */
static void s_get74(const evb_id *id, uint64_t *l, uint64_t *r)
{
    const uint8_t *b = id->b;
    uint64_t hi18 = ((uint64_t)(b[6] & 0x0f) << 14) | ((uint64_t)b[7] << 6) | (b[8] & 0x3f);
    uint64_t lo56 = 0;
    for (int i = 9; i < 16; i++)
        lo56 = (lo56 << 8) | b[i];
    *l = (hi18 << 19) | (lo56 >> HALF_BITS);
    *r = lo56 & HALF_MASK;
}

static void s_put74(evb_id *id, uint64_t l, uint64_t r)
{
    uint8_t *b = id->b;
    uint64_t hi18 = l >> 19, lo56 = ((l & ((1ull << 19) - 1)) << HALF_BITS) | r;
    b[6] = (uint8_t)(0x70 | ((hi18 >> 14) & 0x0f)); /* version 7 */
    b[7] = (uint8_t)(hi18 >> 6);
    b[8] = (uint8_t)(0x80 | (hi18 & 0x3f)); /* variant 10 */
    for (int i = 15; i >= 9; i--) {
        b[i] = (uint8_t)lo56;
        lo56 >>= 8;
    }
}

bool st_id_seal(const evb_store_t *st, uint64_t seq, uint64_t ms, evb_id *id)
{
    if (!st->seal_on || seq == 0 || seq >= ST_SEAL_MAX_SEQ) return false;
    /* seq (48 bits) then the nonce (26 bits), as two 37-bit halves */
    uint64_t l = seq >> (HALF_BITS - TAG_BITS),
             r = ((seq << TAG_BITS) | st->seal_nonce) & HALF_MASK;
    for (int i = 0; i < SEAL_ROUNDS; i++) {
        uint64_t t = l ^ s_round(r, st->seal_rk[i]);
        l = r;
        r = t;
    }
    for (int k = 0; k < 6; k++)
        id->b[k] = (uint8_t)(ms >> (40 - 8 * k));
    s_put74(id, l, r);
    return true;
}

uint64_t st_id_unseal(const evb_store_t *st, const evb_id *id)
{
    if (!st->seal_on || (id->b[6] & 0xf0) != 0x70 || (id->b[8] & 0xc0) != 0x80) return 0;
    uint64_t l, r;
    s_get74(id, &l, &r);
    for (int i = SEAL_ROUNDS - 1; i >= 0; i--) {
        uint64_t t = r ^ s_round(l, st->seal_rk[i]);
        r = l;
        l = t;
    }
    return (l << (HALF_BITS - TAG_BITS)) | (r >> TAG_BITS); /* the nonce is not checked */
}

int st_id_random_v7(evb_store_t *st, uint64_t ms, evb_id *id, evb_err *err)
{
    /* A pool refilled 64 ids at a time: a getrandom call per id cost ~10%
     * of an append where every id was random (format 1 logs). */
    if (st->rnd_left < EVB_ID_LEN) {
        size_t got = 0;
        while (got < sizeof st->rnd) {
            ssize_t r = getrandom(st->rnd + got, sizeof st->rnd - got, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return evb_err_set(err, EVB_EIO, "getrandom: %s", strerror(errno));
            got += (size_t)r;
        }
        st->rnd_left = sizeof st->rnd;
    }
    st->rnd_left -= EVB_ID_LEN;
    memcpy(id->b, st->rnd + st->rnd_left, EVB_ID_LEN);
    for (int k = 0; k < 6; k++)
        id->b[k] = (uint8_t)(ms >> (40 - 8 * k));
    id->b[6] = (uint8_t)(0x70 | (id->b[6] & 0x0f)); /* version 7 */
    id->b[8] = (uint8_t)(0x80 | (id->b[8] & 0x3f)); /* variant 10 */
    return EVB_OK;
}
