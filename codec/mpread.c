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

/* Bytes of the scalar at c whose size its first one or two bytes tell
 * (ints, floats, nil, bools, str up to 255 bytes: what payloads are mostly
 * made of), when they are all there; 0 for anything else, which mp_next
 * reads (and names the error of). */
static inline size_t s_scalar_size(const mp_cur *c)
{
    size_t left = mp_left(c), n;
    if (left == 0) return 0;
    uint8_t b = c->p[0];
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        n = 1;
    else if ((b & 0xe0) == 0xa0)
        n = 1 + (size_t)(b & 0x1f);
    else if (b >= 0xcc && b <= 0xcf)
        n = 1 + ((size_t)1 << (b - 0xcc));
    else if (b >= 0xd0 && b <= 0xd3)
        n = 1 + ((size_t)1 << (b - 0xd0));
    else if (b == 0xca || b == 0xcb)
        n = b == 0xca ? 5 : 9;
    else if (b == 0xd9 && left >= 2)
        n = 2 + (size_t)c->p[1];
    else
        return 0;
    return n <= left ? n : 0;
}

/* Iterative skip: a small stack of "elements still to read" per level, so a
 * hostile nesting cannot exhaust the C stack. Scalars are stepped over
 * without decoding them (about 18% of a store read went to mp_next). */
int mp_skip(mp_cur *c, unsigned max_depth)
{
    uint64_t pending[64];
    if (max_depth > 63) max_depth = 63;
    unsigned depth = 0;
    pending[0] = 1;
    while (1) {
        while (depth > 0 && pending[depth] == 0)
            depth--;
        if (pending[depth] == 0) return MP_OK;
        pending[depth]--;
        size_t n = s_scalar_size(c);
        if (n > 0) {
            c->p += n;
            if (depth == 0 && pending[0] == 0) return MP_OK;
            continue;
        }
        mp_val v;
        int rc = mp_next(c, &v);
        if (rc != MP_OK) return rc;
        if ((v.type == MP_ARRAY || v.type == MP_MAP) && v.v.n > 0) {
            if (depth + 1 > max_depth) return MP_TOO_DEEP;
            depth++;
            pending[depth] = (v.type == MP_MAP) ? 2ull * v.v.n : v.v.n;
        } else if ((v.type == MP_ARRAY || v.type == MP_MAP) && depth + 1 > max_depth) {
            return MP_TOO_DEEP;
        }
        if (depth == 0 && pending[0] == 0) return MP_OK;
    }
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
