/*
 * mpread.h (private to libevbus): a bounds-checked msgpack reader over one
 * buffer. Why not msgpack_unpack_next: msgpack-c allocates the element array
 * of a container from its declared count before reading any element, so five
 * hostile bytes (0xdd 0xff 0xff 0xff 0xff) ask for 64 GiB, and it has no depth
 * limit. This reader allocates nothing, rejects a count larger than the bytes
 * left (every element takes at least one byte), and its skip is depth-bounded.
 * Strings and binaries are returned as views into the buffer.
 */
#if !defined(EVB_BUILDING_CODEC) && !defined(EVB_BUILDING_BUS)
#error "codec/mpread.h is private to libevbus's codec and bus modules; programs include <evbus/evbus_codec.h>"
#endif
#ifndef EVB_MPREAD_H
#define EVB_MPREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum mp_type {
    MP_NIL,
    MP_BOOL,
    MP_UINT,  /* non-negative integer (any width) */
    MP_INT,   /* negative integer */
    MP_FLOAT, /* float32 or float64, widened */
    MP_STR,
    MP_BIN,
    MP_ARRAY, /* v.n elements follow */
    MP_MAP,   /* v.n key/value pairs follow */
    MP_EXT
} mp_type;

typedef struct mp_val {
    mp_type type;
    union {
        bool b;
        uint64_t u;
        int64_t i;
        double f;
        uint32_t n;
        struct {
            const char *p;
            uint32_t len;
            int8_t ext_type; /* MP_EXT only */
        } s;
    } v;
} mp_val;

typedef struct mp_cur {
    const uint8_t *p;
    const uint8_t *end;
} mp_cur;

typedef enum mp_rc {
    MP_OK = 0,
    MP_TRUNCATED = -1, /* a header or body runs past the buffer */
    MP_INVALID = -2,   /* the reserved byte 0xc1 */
    MP_TOO_DEEP = -3,  /* nesting past the limit (skip only) */
    MP_TOO_MANY = -4   /* a container count larger than the bytes left */
} mp_rc;

static inline void mp_init(mp_cur *c, const void *buf, size_t len)
{
    c->p = (const uint8_t *)buf;
    c->end = buf ? c->p + len : c->p; /* NULL + 0 is undefined behaviour */
}

static inline size_t mp_left(const mp_cur *c)
{
    return (size_t)(c->end - c->p);
}

/* Read one value's header. Scalars, strings, binaries and exts are consumed
 * whole; for arrays and maps only the header is consumed and the elements
 * follow. */
int mp_next(mp_cur *c, mp_val *v);

/* Skip one whole value, nesting at most max_depth containers deep. */
int mp_skip(mp_cur *c, unsigned max_depth);

/* A short name for an mp_rc, for error messages. */
const char *mp_rc_str(int rc);

/* A short name of a type ("str", "map", ...). */
const char *mp_type_str(mp_type t);

#endif
