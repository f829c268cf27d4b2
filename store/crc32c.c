/*
 * crc32c.c: CRC-32C (Castagnoli) with the SSE 4.2 instruction, for the
 * block checksums of the store's tables (bgenv.cc). Debian's LevelDB is
 * built without a CRC library and checks blocks with its portable code,
 * about an eighth of a read of the log (store/FORMAT.md, "Block checksums").
 *
 * The instruction takes 3 cycles to give its result and can start one a
 * cycle: one running CRC waits on itself. So a long buffer is cut into
 * three lanes of L bytes, each CRC'd from zero at once in one loop, and the
 * lanes are joined after: CRC arithmetic is linear, so the register after
 * A then B is the register after A moved over |B| zero bytes, xor the
 * register of B alone. Moving over L zero bytes is a multiplication by
 * x^(8L) modulo the polynomial; being linear too, it is four lookups of a
 * table per L (one per byte of the register), made once by s_init.
 */
#include "crc32c.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#include <pthread.h>
#include <string.h>

#define S_POLY 0x82f63b78u /* CRC-32C, bit-reflected */

/* a * b modulo the polynomial, both bit-reflected (x^0 is bit 31). */
static uint32_t s_mulmod(uint32_t a, uint32_t b)
{
    uint32_t p = 0;
    for (uint32_t m = 1u << 31; m != 0; m >>= 1) {
        if (a & m) p ^= b;
        b = (b & 1) ? (b >> 1) ^ S_POLY : b >> 1;
    }
    return p;
}

/* x^(8n) modulo the polynomial. */
static uint32_t s_x8n(size_t n)
{
    uint32_t r = 1u << 31, e = 1u << 30; /* x^0, x^1 */
    for (uint64_t k = (uint64_t)n * 8; k != 0; k >>= 1) {
        if (k & 1) r = s_mulmod(r, e);
        e = s_mulmod(e, e);
    }
    return r;
}

/* Lane lengths, longest first: a block of the log's tables is a few KiB. */
static const size_t s_lane[3] = {2048, 512, 128};
static uint32_t s_shift[3][4][256]; /* register moved over s_lane[i] zero bytes */
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static void s_init(void)
{
    for (int i = 0; i < 3; i++) {
        uint32_t k = s_x8n(s_lane[i]);
        for (int byte = 0; byte < 4; byte++)
            for (uint32_t v = 0; v < 256; v++)
                s_shift[i][byte][v] = s_mulmod(v << (8 * byte), k);
    }
}

static inline uint32_t s_move(int i, uint32_t c)
{
    return s_shift[i][0][c & 0xff] ^ s_shift[i][1][(c >> 8) & 0xff] ^
           s_shift[i][2][(c >> 16) & 0xff] ^ s_shift[i][3][c >> 24];
}

bool st_crc32c_fast(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("sse4.2")) return false;
    pthread_once(&s_once, s_init);
    return true;
}

__attribute__((target("sse4.2"))) static inline uint64_t s_word(uint64_t crc,
                                                                 const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return _mm_crc32_u64(crc, w);
}

__attribute__((target("sse4.2"))) uint32_t st_crc32c(const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint32_t c = 0xffffffffu;
    for (int i = 0; i < 3; i++) {
        size_t l = s_lane[i];
        while (n >= 3 * l) {
            uint64_t a = c, b = 0, d = 0;
            for (size_t k = 0; k < l; k += 8) {
                a = s_word(a, p + k);
                b = s_word(b, p + l + k);
                d = s_word(d, p + 2 * l + k);
            }
            c = s_move(i, s_move(i, (uint32_t)a) ^ (uint32_t)b) ^ (uint32_t)d;
            p += 3 * l;
            n -= 3 * l;
        }
    }
    uint64_t crc = c;
    for (; n >= 8; p += 8, n -= 8)
        crc = s_word(crc, p);
    c = (uint32_t)crc;
    while (n-- > 0)
        c = _mm_crc32_u8(c, *p++);
    return c ^ 0xffffffffu;
}

#else

bool st_crc32c_fast(void)
{
    return false;
}

uint32_t st_crc32c(const void *buf, size_t n)
{
    (void)buf;
    (void)n;
    return 0; /* never called: st_crc32c_fast() is false */
}

#endif
