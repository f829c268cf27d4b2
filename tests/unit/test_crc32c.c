/*
 * test_crc32c: the store's hardware CRC-32C (store/crc32c.c) against a
 * bitwise reference, at every length around its lane sizes and at odd
 * alignments, plus the standard check values. The store's tables are read
 * with this checksum on: a wrong one would make every block look damaged.
 * Built from the module's source with its private header (CMakeLists.txt).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crc32c.h"

static uint32_t s_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    }
    return c ^ 0xffffffffu;
}

static void test_check_values(void **state)
{
    (void)state;
    if (!st_crc32c_fast()) skip();
    assert_int_equal(st_crc32c("123456789", 9), 0xe3069283u);
    assert_int_equal(st_crc32c("", 0), 0);
    unsigned char z[32] = {0};
    assert_int_equal(st_crc32c(z, sizeof z), 0x8a9136aau); /* RFC 3720, B.4 */
}

static void test_matches_reference(void **state)
{
    (void)state;
    if (!st_crc32c_fast()) skip();
    enum { MAX = 20000 };
    unsigned char *buf = malloc(MAX + 8);
    assert_non_null(buf);
    uint32_t x = 12345;
    for (size_t i = 0; i < MAX + 8; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
    /* every length up to 3 lanes of 2048 and a little past, then a stride */
    for (size_t n = 0; n <= MAX; n += n < 6400 ? 1 : 97)
        for (size_t off = 0; off < 8; off += n % 7 == 0 ? 1 : 8)
            assert_int_equal(st_crc32c(buf + off, n), s_ref(buf + off, n));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_values),
        cmocka_unit_test(test_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
