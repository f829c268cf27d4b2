/*
 * mpread.c: the bounds-checked msgpack reader (see mpread.h for why it exists).
 * Every read checks the bytes left before touching them; lengths are 32-bit
 * at most by the msgpack spec, so no size arithmetic can overflow size_t.
 */
#include "mpread.h"

#include <string.h>

static uint64_t s_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Consume n bytes of header payload; NULL if they are not there. */
static const uint8_t *s_take(mp_cur *c, size_t n)
{
    if (mp_left(c) < n) return NULL;
    const uint8_t *q = c->p;
    c->p += n;
    return q;
}

static int s_body(mp_cur *c, mp_val *v, mp_type t, size_t lenbytes, int8_t ext_type,
                  bool has_ext_type)
{
    const uint8_t *q = s_take(c, lenbytes);
    if (q == NULL) return MP_TRUNCATED;
    uint32_t len = (uint32_t)s_be(q, (unsigned)lenbytes);
    if (has_ext_type) {
        const uint8_t *tq = s_take(c, 1);
        if (tq == NULL) return MP_TRUNCATED;
        ext_type = (int8_t)tq[0];
    }
    const uint8_t *body = s_take(c, len);
    if (body == NULL) return MP_TRUNCATED;
    v->type = t;
    v->v.s.p = (const char *)body;
    v->v.s.len = len;
    v->v.s.ext_type = ext_type;
    return MP_OK;
}

static int s_fixext(mp_cur *c, mp_val *v, uint32_t len)
{
    const uint8_t *q = s_take(c, 1 + (size_t)len);
    if (q == NULL) return MP_TRUNCATED;
    v->type = MP_EXT;
    v->v.s.ext_type = (int8_t)q[0];
    v->v.s.p = (const char *)q + 1;
    v->v.s.len = len;
    return MP_OK;
}

static int s_container(mp_cur *c, mp_val *v, mp_type t, uint32_t n)
{
    /* Each element needs at least one byte (a map entry two). */
    uint64_t need = (t == MP_MAP) ? 2ull * n : n;
    if (need > mp_left(c)) return MP_TOO_MANY;
    v->type = t;
    v->v.n = n;
    return MP_OK;
}

int mp_next(mp_cur *c, mp_val *v)
{
    const uint8_t *q = s_take(c, 1);
    if (q == NULL) return MP_TRUNCATED;
    uint8_t b = q[0];
    if (b <= 0x7f) {
        v->type = MP_UINT;
        v->v.u = b;
        return MP_OK;
    }
    if (b >= 0xe0) {
        v->type = MP_INT;
        v->v.i = (int8_t)b;
        return MP_OK;
    }
    if ((b & 0xf0) == 0x80) return s_container(c, v, MP_MAP, b & 0x0f);
    if ((b & 0xf0) == 0x90) return s_container(c, v, MP_ARRAY, b & 0x0f);
    if ((b & 0xe0) == 0xa0) {
        uint32_t len = b & 0x1f;
        const uint8_t *body = s_take(c, len);
        if (body == NULL) return MP_TRUNCATED;
        v->type = MP_STR;
        v->v.s.p = (const char *)body;
        v->v.s.len = len;
        return MP_OK;
    }
    switch (b) {
    case 0xc0:
        v->type = MP_NIL;
        return MP_OK;
    case 0xc2:
    case 0xc3:
        v->type = MP_BOOL;
        v->v.b = (b == 0xc3);
        return MP_OK;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return s_body(c, v, MP_BIN, (size_t)1 << (b - 0xc4), 0, false);
    case 0xc7:
    case 0xc8:
    case 0xc9:
        return s_body(c, v, MP_EXT, (size_t)1 << (b - 0xc7), 0, true);
    case 0xca: {
        const uint8_t *p = s_take(c, 4);
        if (p == NULL) return MP_TRUNCATED;
        uint32_t bits = (uint32_t)s_be(p, 4);
        float f;
        memcpy(&f, &bits, 4);
        v->type = MP_FLOAT;
        v->v.f = f;
        return MP_OK;
    }
    case 0xcb: {
        const uint8_t *p = s_take(c, 8);
        if (p == NULL) return MP_TRUNCATED;
        uint64_t bits = s_be(p, 8);
        double d;
        memcpy(&d, &bits, 8);
        v->type = MP_FLOAT;
        v->v.f = d;
        return MP_OK;
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: {
        unsigned n = 1u << (b - 0xcc);
        const uint8_t *p = s_take(c, n);
        if (p == NULL) return MP_TRUNCATED;
        v->type = MP_UINT;
        v->v.u = s_be(p, n);
        return MP_OK;
    }
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        unsigned n = 1u << (b - 0xd0);
        const uint8_t *p = s_take(c, n);
        if (p == NULL) return MP_TRUNCATED;
        uint64_t raw = s_be(p, n);
        int64_t i;
        if (n == 8) {
            memcpy(&i, &raw, 8);
        } else {
            uint64_t sign = 1ull << (8 * n - 1);
            i = (raw & sign) ? (int64_t)(raw | ~((sign << 1) - 1)) : (int64_t)raw;
        }
        if (i >= 0) {
            v->type = MP_UINT;
            v->v.u = (uint64_t)i;
        } else {
            v->type = MP_INT;
            v->v.i = i;
        }
        return MP_OK;
    }
    case 0xd4:
        return s_fixext(c, v, 1);
    case 0xd5:
        return s_fixext(c, v, 2);
    case 0xd6:
        return s_fixext(c, v, 4);
    case 0xd7:
        return s_fixext(c, v, 8);
    case 0xd8:
        return s_fixext(c, v, 16);
    case 0xd9:
    case 0xda:
    case 0xdb:
        return s_body(c, v, MP_STR, (size_t)1 << (b - 0xd9), 0, false);
    case 0xdc:
    case 0xdd: {
        unsigned n = (b == 0xdc) ? 2 : 4;
        const uint8_t *p = s_take(c, n);
        if (p == NULL) return MP_TRUNCATED;
        return s_container(c, v, MP_ARRAY, (uint32_t)s_be(p, n));
    }
    case 0xde:
    case 0xdf: {
        unsigned n = (b == 0xde) ? 2 : 4;
        const uint8_t *p = s_take(c, n);
        if (p == NULL) return MP_TRUNCATED;
        return s_container(c, v, MP_MAP, (uint32_t)s_be(p, n));
    }
    default: /* 0xc1: never used */
        return MP_INVALID;
    }
}

/* Total bytes of a value that its first byte alone sizes: ints, nil, bools,
 * floats, fixstr, fixext. 0 for the rest (containers, str8..32, bin, ext8..32,
 * the reserved 0xc1), which need a look past the first byte. */
static const uint8_t s_fixed_size[256] = {
    /* 0x00-0x7f positive fixint */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x70 */
    /* 0x80-0x9f fixmap, fixarray: containers */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x90 */
    /* 0xa0-0xbf fixstr: 1 + length */
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,          /* 0xa0 */
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, /* 0xb0 */
    /* c0 nil, c1 -, c2 c3 bools, c4-c9 bin/ext, ca cb floats, cc-cf uints */
    1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 5, 9, 2, 3, 5, 9, /* 0xc0 */
    /* d0-d3 ints, d4-d8 fixext, d9-db str, dc dd array, de df map */
    2, 3, 5, 9, 3, 4, 6, 10, 18, 0, 0, 0, 0, 0, 0, 0, /* 0xd0 */
    /* 0xe0-0xff negative fixint */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xe0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xf0 */
};

/* Iterative skip: a small stack of "elements still to read" per enclosing
 * level, so a hostile nesting cannot exhaust the C stack. A value that its
 * first bytes size (the table above, plus str8 and bin8: what payloads are
 * mostly made of) is stepped over without decoding it; the rest go through
 * mp_next, which also names any error. The position stays in a register:
 * with it in *c every element waited on a store and a reload, and that
 * chain, not the tests, was most of a skip's time. */
int mp_skip(mp_cur *c, unsigned max_depth)
{
    uint64_t outer[64]; /* elements left at each enclosing level */
    if (max_depth > 63) max_depth = 63;
    unsigned depth = 0;
    uint64_t left_here = 1; /* elements left at this level */
    const uint8_t *p = c->p;
    const uint8_t *const end = c->end;
    while (1) {
        if (left_here == 0) {
            if (depth == 0) break;
            left_here = outer[--depth];
            continue;
        }
        left_here--;
        size_t avail = (size_t)(end - p);
        if (avail > 0) {
            uint8_t b = p[0];
            size_t n = s_fixed_size[b];
            if (n == 0 && (b == 0xd9 || b == 0xc4) && avail >= 2) n = 2 + (size_t)p[1];
            if (n != 0 && n <= avail) {
                p += n;
                continue;
            }
            /* fixmap, fixarray: as mp_next reads them, without the call */
            uint64_t count = (b & 0x10) ? (b & 0x0fu) : 2ull * (b & 0x0fu);
            if ((b & 0xe0) == 0x80 && count <= avail - 1) {
                p++;
                if (depth + 1 > max_depth) {
                    c->p = p;
                    return MP_TOO_DEEP;
                }
                if (count > 0) {
                    outer[depth++] = left_here;
                    left_here = count;
                }
                continue;
            }
        }
        c->p = p;
        mp_val v;
        int rc = mp_next(c, &v);
        if (rc != MP_OK) return rc;
        p = c->p;
        if (v.type == MP_ARRAY || v.type == MP_MAP) {
            if (depth + 1 > max_depth) return MP_TOO_DEEP;
            if (v.v.n > 0) {
                outer[depth++] = left_here;
                left_here = (v.type == MP_MAP) ? 2ull * v.v.n : v.v.n;
            }
        }
    }
    c->p = p;
    return MP_OK;
}

const char *mp_rc_str(int rc)
{
    switch (rc) {
    case MP_OK:
        return "ok";
    case MP_TRUNCATED:
        return "truncated";
    case MP_INVALID:
        return "invalid byte 0xc1";
    case MP_TOO_DEEP:
        return "nested too deep";
    case MP_TOO_MANY:
        return "container count larger than the bytes left";
    default:
        return "unknown error";
    }
}

const char *mp_type_str(mp_type t)
{
    static const char *names[] = {"nil", "bool", "uint",  "int", "float",
                                  "str", "bin",  "array", "map", "ext"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}
