/*
 * crc32c.c: CRC-32C (Castagnoli) with the SSE 4.2 instruction, for the
 * block checksums of the store's tables (bgenv.cc). Debian's LevelDB is
 * built without a CRC library and checks blocks with its portable code,
 * about an eighth of a read of the log (store/FORMAT.md, "Block checksums").
 */
#include "crc32c.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#include <string.h>

bool st_crc32c_fast(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2"))) uint32_t st_crc32c(const void *buf, size_t n)
{
    const unsigned char *p = buf;
    uint64_t crc = 0xffffffffu;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        crc = _mm_crc32_u64(crc, w);
        p += 8;
        n -= 8;
    }
    uint32_t c = (uint32_t)crc;
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
