/*
 * idseal.c: ids that say where their event is (format 4).
 *
 * An id the store makes is a UUIDv7 whose 74 bits under the time are not
 * random but the event's seq (48 bits) and a 26-bit tag of zeros, enciphered
 * with a key of the log's own (a 6-round Feistel network over two 37-bit
 * halves, keyed by 16 random bytes kept in the log's metadata). Such an id
 * needs no id index entry, no Bloom filter bit and no tail set entry: a
 * lookup deciphers it, and when the tag is zero and the seq is stored, reads
 * that one event and compares the whole id. That is exact whatever the
 * cipher's strength: the comparison decides, the cipher only spares reads
 * (another log's id, or a caller's random one, passes the tag with odds
 * 2^-26 and then must also fall inside the log).
 *
 * Uniqueness, the property ids exist for, comes from the construction
 * (txn.c): a seq is sealed at most once per process (an aborted
 * transaction's seqs get random ids when they come round again), and an id
 * the Bloom filter of caller ids calls "maybe" is looked up first and, if
 * stored, replaced by a random one. Measured and argued in FORMAT.md
 * ("Sealed ids").
 */
#include "store_int.h"

#define SEAL_ROUNDS 6
#define HALF_BITS 37
#define HALF_MASK ((1ull << HALF_BITS) - 1)
#define TAG_BITS 26

void st_seal_init(evb_store_t *st, const uint8_t key[EVB_ID_LEN])
{
    uint64_t a = be64_get(key), b = be64_get(key + 8);
    for (int i = 0; i < SEAL_ROUNDS; i++)
        st->seal_rk[i] = st_mix64(a + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)) ^
                         st_mix64(b ^ (uint64_t)i);
    st->seal_on = true;
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
    /* seq (48 bits) then the tag (26 zero bits), as two 37-bit halves */
    uint64_t l = seq >> (HALF_BITS - TAG_BITS), r = (seq << TAG_BITS) & HALF_MASK;
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
    if ((r & ((1ull << TAG_BITS) - 1)) != 0) return 0;
    return (l << (HALF_BITS - TAG_BITS)) | (r >> TAG_BITS);
}
