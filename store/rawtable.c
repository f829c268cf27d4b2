/*
 * rawtable.c: the data blocks of a LevelDB table whose footer or index block
 * is damaged, found by their checksums (store/FORMAT.md, "Holes and salvage").
 *
 * A table file (LevelDB's doc/table_format.md) is a sequence of blocks, each
 * its bytes and a 5-byte trailer: the compression type (0 none, 1 snappy)
 * and the masked CRC-32C of the bytes and that type byte; then the metaindex
 * and index blocks (where the blocks are) and a 48-byte footer (where those
 * two are). Without the index, the blocks are found from the start of the
 * file: a running CRC over the bytes from where the block starts; at each
 * byte that could be a trailer's type, the CRC up to and with it, masked,
 * equals the next 4 bytes only at the block's true end (a chance match once
 * in 2^32). A block is taken when its checksum holds, it decompresses and it
 * parses as a block: entries (shared, non-shared and value lengths as
 * varint32s, the key's new bytes, the value) up to an array of restart
 * offsets, each at an entry that shares nothing, and their count. The next
 * block starts right after its trailer.
 *
 * Where nothing checks out (damage), the scan moves on a byte at a time and
 * tries only where a data block could start: an entry sharing nothing with
 * an internal key (8 bytes of sequence and type 0 or 1 after the user key),
 * or snappy's length and a literal whose first byte is such an entry's 0.
 * From there it looks 1 MiB ahead (a snappy block: as far as its length
 * allows), so the cost of a damaged region is its plausible starts times
 * that, not its length times 1 MiB.
 *
 * The index block parses too (its keys are internal keys, the last of each
 * data block): it is told apart by its values, the handles (offset and size
 * as varint64s) of the data blocks, one after the other from offset 0 (each
 * block's offset is the one before's plus its size and trailer), all before
 * it. Its entries are not data.
 *
 * Every length read from the file is checked against the bytes there: the
 * input is damaged by definition.
 */
#include "rawtable.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <snappy-c.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RT_BLOCK_MAX (32u << 20)  /* a block's bytes, before or after snappy */
#define RT_RESYNC_MAX (1u << 20)  /* how far a start after damage looks */
#define RT_MASK_DELTA 0xa282ead8u /* LevelDB's crc32c::kMaskDelta */

/* CRC-32C a byte at a time (the store's crc32c.c does whole buffers in
 * hardware; the scan needs the register after every byte). */
static uint32_t s_tab[256];
static pthread_once_t s_tab_once = PTHREAD_ONCE_INIT;

static void s_tab_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        s_tab[i] = c;
    }
}

static inline uint32_t s_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint32_t s_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + RT_MASK_DELTA;
}

/* A varint32 in [p, end): the byte after it, or NULL (cut short, too long). */
static const uint8_t *s_v32(const uint8_t *p, const uint8_t *end, uint32_t *v)
{
    uint32_t r = 0;
    for (int shift = 0; shift <= 28 && p < end; shift += 7) {
        uint32_t b = *p++;
        if (shift == 28 && (b & 0xf0) != 0) return NULL;
        r |= (b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = r;
            return p;
        }
    }
    return NULL;
}

static const uint8_t *s_v64(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift <= 63 && p < end; shift += 7) {
        uint64_t b = *p++;
        if (shift == 63 && (b & 0xfe) != 0) return NULL;
        r |= (b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = r;
            return p;
        }
    }
    return NULL;
}

typedef struct scan {
    const uint8_t *buf;
    size_t n;
    rt_entry_fn fn;
    void *ctx;
    rt_stats st;
    uint8_t *ubuf; /* a block after snappy */
    size_t ucap;
    uint8_t *key; /* the key being rebuilt from its shared prefix */
    size_t kcap;
} scan;

static bool s_grow(uint8_t **p, size_t *cap, size_t want)
{
    if (want <= *cap) return true;
    size_t c = *cap ? *cap : 4096;
    while (c < want)
        c *= 2;
    uint8_t *q = realloc(*p, c);
    if (q == NULL) return false;
    *p = q;
    *cap = c;
    return true;
}

enum { S_BAD = -1, S_DATA = 0, S_INDEX = 1 };

/* Parse the block d[0..n) that starts at offset at in the file: S_BAD when
 * it is not a block; S_INDEX when it has entries and its values are the
 * handles of blocks from offset 0 to before it, one after the other; else
 * S_DATA, and with emit, each entry is given to fn (*stop: its return). */
static int s_parse(scan *sc, const uint8_t *d, size_t n, size_t at, bool emit, int *stop)
{
    if (n < 8) return S_BAD;
    uint32_t nr = s_u32(d + n - 4);
    if (nr == 0 || nr > (n - 4) / 4) return S_BAD;
    size_t roff = n - 4 - 4 * (size_t)nr; /* where the restart array starts */
    const uint8_t *ra = d + roff;
    if (s_u32(ra) != 0 || (roff == 0 && nr != 1)) return S_BAD;
    for (uint32_t i = 1; i < nr; i++) {
        uint32_t r = s_u32(ra + 4 * (size_t)i);
        if (r <= s_u32(ra + 4 * (size_t)(i - 1)) || r >= roff) return S_BAD;
    }
    if (!s_grow(&sc->key, &sc->kcap, roff + 1)) return S_BAD;
    const uint8_t *end = d + roff;
    size_t pos = 0, klen = 0, ri = 0, count = 0;
    bool handles = true;
    uint64_t next = 0; /* where the next block an index names must start */
    while (pos < roff) {
        uint32_t restart = ri < nr ? s_u32(ra + 4 * ri) : UINT32_MAX;
        if (restart < pos) return S_BAD; /* a restart inside an entry */
        bool at_restart = restart == pos;
        uint32_t shared, non, vlen;
        const uint8_t *p = d + pos;
        if ((p = s_v32(p, end, &shared)) == NULL || (p = s_v32(p, end, &non)) == NULL ||
            (p = s_v32(p, end, &vlen)) == NULL)
            return S_BAD;
        if ((at_restart && shared != 0) || shared > klen || non > (size_t)(end - p) ||
            vlen > (size_t)(end - p) - non)
            return S_BAD;
        klen = (size_t)shared + non; /* <= roff: each key byte came from an entry */
        if (klen > roff) return S_BAD;
        memcpy(sc->key + shared, p, non);
        if (klen < 8 || sc->key[klen - 8] > 1) return S_BAD; /* not an internal key */
        const uint8_t *val = p + non;
        if (handles) {
            uint64_t off = 0, len = 0;
            const uint8_t *q = s_v64(val, val + vlen, &off);
            q = q ? s_v64(q, val + vlen, &len) : NULL;
            handles = q == val + vlen && off == next && len <= at && off <= at - len &&
                      at - len - off >= 5;
            next = off + len + 5;
        }
        if (emit) {
            uint64_t tag = 0;
            for (int b = 7; b >= 0; b--)
                tag = tag << 8 | sc->key[klen - 8 + (size_t)b];
            rt_entry e = {sc->key, klen - 8, tag >> 8, (unsigned)(tag & 0xff), val, vlen};
            sc->st.entries++;
            if ((*stop = sc->fn(sc->ctx, &e)) != 0) return S_DATA;
        }
        pos = (size_t)(val + vlen - d);
        count++;
        if (at_restart) ri++;
    }
    if (roff > 0 && ri != nr) return S_BAD; /* a restart past the entries */
    return count > 0 && handles ? S_INDEX : S_DATA;
}

/* The bytes of the block [s, p) whose type byte is at p: the block itself,
 * or snappy's output; NULL when it does not decompress. */
static const uint8_t *s_content(scan *sc, size_t s, size_t p, size_t *len)
{
    const uint8_t *d = sc->buf + s;
    if (sc->buf[p] == 0) {
        *len = p - s;
        return d;
    }
    size_t ul;
    if (snappy_uncompressed_length((const char *)d, p - s, &ul) != SNAPPY_OK ||
        ul > RT_BLOCK_MAX || !s_grow(&sc->ubuf, &sc->ucap, ul ? ul : 1) ||
        snappy_uncompress((const char *)d, p - s, (char *)sc->ubuf, &ul) != SNAPPY_OK)
        return NULL;
    *len = ul;
    return sc->ubuf;
}

/* The block that starts at s and ends within limit bytes: where its
 * trailer is, or SIZE_MAX; *d and *len its content (s_content), *kind what
 * it is (s_parse). */
static size_t s_find(scan *sc, size_t s, size_t limit, const uint8_t **d, size_t *len,
                     int *kind)
{
    const uint8_t *b = sc->buf;
    size_t last = sc->n - 5; /* the last place a trailer fits */
    if (last - s > limit) last = s + limit;
    uint32_t c = 0xffffffffu;
    for (size_t p = s; p <= last; p++) {
        c = s_tab[(c ^ b[p]) & 0xff] ^ (c >> 8);
        if (b[p] > 1 || p == s || s_mask(~c) != s_u32(b + p + 1)) continue;
        int stop = 0;
        if ((*d = s_content(sc, s, p, len)) != NULL &&
            (*kind = s_parse(sc, *d, *len, s, false, &stop)) != S_BAD)
            return p;
    }
    return SIZE_MAX;
}

/* After damage: how far to look for a block starting at s (0: it cannot
 * start a data block). */
static size_t s_resync_limit(const scan *sc, size_t s)
{
    const uint8_t *p = sc->buf + s, *end = sc->buf + sc->n;
    size_t lim = 0;
    uint32_t non, vlen, ul;
    const uint8_t *q;
    if (*p == 0 && (q = s_v32(p + 1, end, &non)) != NULL && non >= 8 &&
        (q = s_v32(q, end, &vlen)) != NULL && non <= (size_t)(end - q) && q[non - 8] <= 1 &&
        vlen <= (size_t)(end - q) - non)
        lim = RT_RESYNC_MAX; /* an uncompressed block's first entry */
    if ((q = s_v32(p, end, &ul)) != NULL && ul >= 8 && ul <= RT_BLOCK_MAX && q < end &&
        (*q & 3) == 0) { /* snappy: the length, then a literal */
        uint32_t tl = (uint32_t)(*q >> 2);
        size_t lit = (size_t)(q - p) + 1 + (tl >= 60 ? tl - 59 : 0); /* 1-4 length bytes */
        size_t most = snappy_max_compressed_length(ul) + 5;
        if (lit < sc->n - s && p[lit] == 0 && most > lim) lim = most;
    }
    return lim;
}

int rt_scan(const uint8_t *buf, size_t n, rt_entry_fn fn, void *ctx, rt_stats *stats)
{
    pthread_once(&s_tab_once, s_tab_init);
    scan sc = {.buf = buf, .n = n, .fn = fn, .ctx = ctx};
    int rc = 0;
    size_t s = 0, covered = 0;
    bool known = true; /* s is where a block starts (the file's start, after a block) */
    while (rc == 0 && n >= 5 && s <= n - 5) {
        size_t limit = known ? RT_BLOCK_MAX : s_resync_limit(&sc, s);
        int kind = S_BAD;
        const uint8_t *d = NULL;
        size_t len = 0;
        size_t p = limit > 0 ? s_find(&sc, s, limit, &d, &len, &kind) : SIZE_MAX;
        if (p == SIZE_MAX) {
            s++;
            known = false;
            continue;
        }
        if (kind == S_INDEX) {
            sc.st.other++;
        } else {
            int stop = 0;
            s_parse(&sc, d, len, s, true, &stop);
            sc.st.blocks++;
            rc = stop;
        }
        covered += p + 5 - s;
        s = p + 5;
        known = true;
    }
    sc.st.skipped = n - covered;
    if (stats != NULL) *stats = sc.st;
    free(sc.ubuf);
    free(sc.key);
    return rc;
}

int rt_scan_file(const char *path, rt_entry_fn fn, void *ctx, rt_stats *stats)
{
    if (stats != NULL) memset(stats, 0, sizeof *stats);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (sb.st_size <= 0) {
        close(fd);
        return 0;
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        errno = e;
        return -1;
    }
    int rc = rt_scan(m, (size_t)sb.st_size, fn, ctx, stats);
    munmap(m, (size_t)sb.st_size);
    return rc;
}
