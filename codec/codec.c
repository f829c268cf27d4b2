/*
 * codec.c: the event envelope <-> msgpack (format: codec/FORMAT.md).
 *
 * Encoding uses msgpack-c's packer writing into an evb_buf. Decoding uses the
 * bounds-checked reader of mpread.c in two passes: the first validates every
 * field and records views into the input; the second copies the strings
 * (NUL-terminated), the derived category, the payload and the metadata into
 * one block owned by the event. So a decoded event is freed with one free,
 * and its allocation is bounded by the input length (plus the category).
 */
#include "evbus_codec.h"
#include "codec_int.h"
#include "mpread.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const uint8_t evb_empty_map[1] = {0x80};

#define ENV_FIELDS 17

/* ---- names ---- */

enum name_kind { NAME_STREAM, NAME_CATEGORY, NAME_TYPE, NAME_SERVICE };

static const struct {
    const char *what;
    size_t max;
} s_names[] = {
    [NAME_STREAM] = {"stream id", EVB_MAX_STREAM_LEN},
    [NAME_CATEGORY] = {"category", EVB_MAX_CATEGORY_LEN},
    [NAME_TYPE] = {"event type", EVB_MAX_TYPE_LEN},
    [NAME_SERVICE] = {"service name", EVB_MAX_SERVICE_LEN},
};

/* Allowed bytes per kind, one bit per kind (bit k for enum name_kind k), as
 * a constant table: names are checked on every encode and decode. */
#define B_STREAM (1u << NAME_STREAM)
#define B_CATEGORY (1u << NAME_CATEGORY)
#define B_TYPE (1u << NAME_TYPE)
#define B_SERVICE (1u << NAME_SERVICE)
#define B_ALL (B_STREAM | B_CATEGORY | B_TYPE | B_SERVICE)
static const uint8_t s_allowed[256] = {
    ['a'] = B_ALL,
    ['b'] = B_ALL,
    ['c'] = B_ALL,
    ['d'] = B_ALL,
    ['e'] = B_ALL,
    ['f'] = B_ALL,
    ['g'] = B_ALL,
    ['h'] = B_ALL,
    ['i'] = B_ALL,
    ['j'] = B_ALL,
    ['k'] = B_ALL,
    ['l'] = B_ALL,
    ['m'] = B_ALL,
    ['n'] = B_ALL,
    ['o'] = B_ALL,
    ['p'] = B_ALL,
    ['q'] = B_ALL,
    ['r'] = B_ALL,
    ['s'] = B_ALL,
    ['t'] = B_ALL,
    ['u'] = B_ALL,
    ['v'] = B_ALL,
    ['w'] = B_ALL,
    ['x'] = B_ALL,
    ['y'] = B_ALL,
    ['z'] = B_ALL,
    ['0'] = B_ALL,
    ['1'] = B_ALL,
    ['2'] = B_ALL,
    ['3'] = B_ALL,
    ['4'] = B_ALL,
    ['5'] = B_ALL,
    ['6'] = B_ALL,
    ['7'] = B_ALL,
    ['8'] = B_ALL,
    ['9'] = B_ALL,
    ['_'] = B_ALL,
    ['.'] = B_ALL,
#define UP B_STREAM | B_CATEGORY | B_TYPE
    ['A'] = UP,
    ['B'] = UP,
    ['C'] = UP,
    ['D'] = UP,
    ['E'] = UP,
    ['F'] = UP,
    ['G'] = UP,
    ['H'] = UP,
    ['I'] = UP,
    ['J'] = UP,
    ['K'] = UP,
    ['L'] = UP,
    ['M'] = UP,
    ['N'] = UP,
    ['O'] = UP,
    ['P'] = UP,
    ['Q'] = UP,
    ['R'] = UP,
    ['S'] = UP,
    ['T'] = UP,
    ['U'] = UP,
    ['V'] = UP,
    ['W'] = UP,
    ['X'] = UP,
    ['Y'] = UP,
    ['Z'] = UP,
#undef UP
    [':'] = B_STREAM | B_CATEGORY | B_TYPE,
    ['@'] = B_STREAM | B_CATEGORY,
    ['-'] = B_STREAM | B_TYPE | B_SERVICE,
};

/* Check a name given as (p, len); field names the envelope field for the
 * message (NULL for argument checks). */
static int s_check_name(enum name_kind k, const char *p, size_t len, const char *field,
                        evb_err *err)
{
    const char *what = s_names[k].what;
    const char *pre = field ? field : what;
    if (len == 0) return evb_err_set(err, EVB_EINVAL, "%s: empty %s", pre, what);
    if (len > s_names[k].max)
        return evb_err_set(err, EVB_EINVAL, "%s: %s is %zu bytes, more than %zu", pre,
                           what, len, s_names[k].max);
    uint8_t bit = (uint8_t)(1u << k);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!(s_allowed[c] & bit))
            return evb_err_set(
                err, EVB_EINVAL,
                "%s: %s '%.*s' has a character not allowed (byte 0x%02x at "
                "%zu)",
                pre, what, (int)(len > 64 ? 64 : len), p, c, i);
    }
    if (k == NAME_STREAM && p[0] == '-')
        return evb_err_set(err, EVB_EINVAL, "%s: stream id '%.*s' starts with '-'", pre,
                           (int)(len > 64 ? 64 : len), p);
    return EVB_OK;
}

/* Length of the category part of a valid stream id. */
static size_t s_category_len(const char *p, size_t len)
{
    const char *dash = memchr(p, '-', len);
    return dash ? (size_t)(dash - p) : len;
}

static int s_check_cstr(enum name_kind k, const char *s, evb_err *err)
{
    if (s == NULL) return evb_err_set(err, EVB_EINVAL, "%s is missing", s_names[k].what);
    size_t len = strnlen(s, s_names[k].max + 1);
    int rc = s_check_name(k, s, len, NULL, err);
    if (rc == EVB_OK && k == NAME_STREAM && s_category_len(s, len) > EVB_MAX_CATEGORY_LEN)
        return evb_err_set(err, EVB_EINVAL, "stream id '%.64s': category longer than %u",
                           s, EVB_MAX_CATEGORY_LEN);
    return rc;
}

int evb_check_stream(const char *stream, evb_err *err)
{
    return s_check_cstr(NAME_STREAM, stream, err);
}

int evb_check_category(const char *category, evb_err *err)
{
    return s_check_cstr(NAME_CATEGORY, category, err);
}

int evb_check_type(const char *type, evb_err *err)
{
    return s_check_cstr(NAME_TYPE, type, err);
}

int evb_check_service(const char *service, evb_err *err)
{
    return s_check_cstr(NAME_SERVICE, service, err);
}

int evb_stream_category(const char *stream, char *out, evb_err *err)
{
    int rc = evb_check_stream(stream, err);
    if (rc != EVB_OK) return rc;
    size_t n = s_category_len(stream, strlen(stream));
    memcpy(out, stream, n);
    out[n] = '\0';
    return EVB_OK;
}

/* ---- maps ---- */

static int s_check_map_view(const void *buf, size_t len, const char *what, evb_err *err)
{
    mp_cur c;
    mp_init(&c, buf, len);
    if (len == 0)
        return evb_err_set(err, EVB_EDECODE, "%s: empty (want a msgpack map)", what);
    uint8_t b = *(const uint8_t *)buf;
    if (!((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf))
        return evb_err_set(err, EVB_EDECODE, "%s: not a msgpack map (first byte 0x%02x)",
                           what, b);
    int rc = mp_skip(&c, EVB_MAX_DEPTH);
    if (rc != MP_OK)
        return evb_err_set(err, EVB_EDECODE, "%s: %s at byte %zu", what, mp_rc_str(rc),
                           len - mp_left(&c));
    if (mp_left(&c) != 0)
        return evb_err_set(err, EVB_EDECODE, "%s: %zu trailing bytes after the map", what,
                           mp_left(&c));
    return EVB_OK;
}

int evb_check_map(const void *buf, size_t len, const char *what, evb_err *err)
{
    if (buf == NULL) return evb_err_set(err, EVB_EINVAL, "%s: missing", what);
    if (len > EVB_MAX_PAYLOAD_BYTES)
        return evb_err_set(err, EVB_ETOOBIG, "%s: %zu bytes, more than %u", what, len,
                           EVB_MAX_PAYLOAD_BYTES);
    return s_check_map_view(buf, len, what, err);
}

int evb_check_content_size(size_t payload_len, size_t metadata_len, evb_err *err)
{
    if (payload_len <= EVB_MAX_PAYLOAD_BYTES &&
        metadata_len <= EVB_MAX_PAYLOAD_BYTES - payload_len)
        return EVB_OK;
    if (metadata_len == 0)
        return evb_err_set(err, EVB_ETOOBIG,
                           "payload: %zu bytes, over the limit of %u for payload and "
                           "metadata", payload_len, EVB_MAX_PAYLOAD_BYTES);
    return evb_err_set(err, EVB_ETOOBIG,
                       "payload + metadata: %zu + %zu bytes, over the limit of %u for "
                       "payload and metadata", payload_len, metadata_len,
                       EVB_MAX_PAYLOAD_BYTES);
}

/* ---- encode ---- */

static int s_validate_for_encode(const evb_event_t *ev, evb_err *err)
{
    int rc;
    if (evb_id_is_zero(&ev->id))
        return evb_err_set(err, EVB_EINVAL, "id: zero (every event needs an id)");
    if ((rc = evb_check_service(ev->service, err)) != EVB_OK) return rc;
    if (evb_id_is_zero(&ev->log_id)) return evb_err_set(err, EVB_EINVAL, "log_id: zero");
    if (ev->seq == 0)
        return evb_err_set(err, EVB_EINVAL, "seq: 0 (sequences count from 1)");
    if ((rc = evb_check_stream(ev->stream, err)) != EVB_OK) return rc;
    if (ev->version == 0)
        return evb_err_set(err, EVB_EINVAL, "version: 0 (versions count from 1)");
    if ((rc = evb_check_type(ev->type, err)) != EVB_OK) return rc;
    if (ev->schema == 0)
        return evb_err_set(err, EVB_EINVAL, "schema: 0 (schemas count from 1)");
    if (ev->payload != NULL &&
        (rc = evb_check_content_size(ev->payload_len,
                                     ev->metadata != NULL ? ev->metadata_len : 0, err)) !=
            EVB_OK)
        return rc;
    if ((rc = evb_check_map(ev->payload, ev->payload_len, "payload", err)) != EVB_OK)
        return rc;
    if (ev->metadata != NULL &&
        (rc = evb_check_map(ev->metadata, ev->metadata_len, "metadata", err)) != EVB_OK)
        return rc;
    if ((ev->origin_seq != 0) == evb_id_is_zero(&ev->origin_log_id))
        return evb_err_set(err, EVB_EINVAL,
                           "origin_log_id/origin_seq: set both (a copy) or neither");
    return EVB_OK;
}

int evb_event_encode(const evb_event_t *ev, evb_buf *out, evb_err *err)
{
    int rc = s_validate_for_encode(ev, err);
    if (rc != EVB_OK) return rc;
    return evb__event_encode_checked(ev, out, err);
}

/* The envelope writer. The envelope has a fixed shape and bounded fields, so
 * it is written straight into reserved room: msgpack-c's packer calls its
 * write callback once per piece (~30 per envelope), which measured at a
 * quarter of an append's own instructions (callgrind). The choices of format
 * are msgpack's smallest, the same as msgpack-c's. */
static uint8_t *s_w_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = n; i-- > 0;) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
    return p + n;
}

static uint8_t *s_w_uint(uint8_t *p, uint64_t v)
{
    if (v < 128) {
        *p++ = (uint8_t)v;
        return p;
    }
    if (v <= 0xff) {
        *p++ = 0xcc;
        return s_w_be(p, v, 1);
    }
    if (v <= 0xffff) {
        *p++ = 0xcd;
        return s_w_be(p, v, 2);
    }
    if (v <= 0xffffffffull) {
        *p++ = 0xce;
        return s_w_be(p, v, 4);
    }
    *p++ = 0xcf;
    return s_w_be(p, v, 8);
}

static uint8_t *s_w_int(uint8_t *p, int64_t v)
{
    if (v >= 0) return s_w_uint(p, (uint64_t)v);
    if (v >= -32) {
        *p++ = (uint8_t)(int8_t)v;
        return p;
    }
    if (v >= INT8_MIN) {
        *p++ = 0xd0;
        return s_w_be(p, (uint64_t)v, 1);
    }
    if (v >= INT16_MIN) {
        *p++ = 0xd1;
        return s_w_be(p, (uint64_t)v, 2);
    }
    if (v >= INT32_MIN) {
        *p++ = 0xd2;
        return s_w_be(p, (uint64_t)v, 4);
    }
    *p++ = 0xd3;
    return s_w_be(p, (uint64_t)v, 8);
}

static uint8_t *s_w_str(uint8_t *p, const char *s, size_t n)
{
    if (n < 32) {
        *p++ = (uint8_t)(0xa0 | n);
    } else if (n < 256) {
        *p++ = 0xd9;
        *p++ = (uint8_t)n;
    } else {
        *p++ = 0xda;
        p = s_w_be(p, n, 2);
    }
    memcpy(p, s, n);
    return p + n;
}

static uint8_t *s_w_id(uint8_t *p, const evb_id *id, bool nil_if_zero)
{
    if (nil_if_zero && evb_id_is_zero(id)) {
        *p++ = 0xc0;
        return p;
    }
    *p++ = 0xc4;
    *p++ = EVB_ID_LEN;
    memcpy(p, id->b, EVB_ID_LEN);
    return p + EVB_ID_LEN;
}

int evb__event_encode_checked(const evb_event_t *ev, evb_buf *out, evb_err *err)
{
    size_t sl = strlen(ev->service), stl = strlen(ev->stream), tl = strlen(ev->type);
    size_t meta = ev->metadata ? ev->metadata_len : 1;
    /* 3 array + 1 version + 3*18 ids + 3*19 optional ids + 4*9 uints + 9 ts +
     * 3*3 string headers: under 256 bytes besides the variable parts. */
    size_t bound = 256 + sl + stl + tl + ev->payload_len + meta;
    int rc = evb_buf_reserve(out, bound, err);
    if (rc != EVB_OK) return rc;
    uint8_t *p = (uint8_t *)out->data + out->len;
    uint8_t *const start = p;
    *p++ = 0xdc; /* array16: the shape readers may peek at (store.c) */
    p = s_w_be(p, ENV_FIELDS, 2);
    p = s_w_uint(p, EVB_ENVELOPE_VERSION);
    p = s_w_id(p, &ev->id, false);
    p = s_w_str(p, ev->service, sl);
    p = s_w_id(p, &ev->log_id, false);
    p = s_w_uint(p, ev->seq);
    p = s_w_str(p, ev->stream, stl);
    p = s_w_uint(p, ev->version);
    p = s_w_str(p, ev->type, tl);
    p = s_w_uint(p, ev->schema);
    p = s_w_int(p, ev->ts_us);
    p = s_w_id(p, &ev->correlation_id, true);
    p = s_w_id(p, &ev->causation_id, true);
    memcpy(p, ev->payload, ev->payload_len);
    p += ev->payload_len;
    if (ev->metadata != NULL) {
        memcpy(p, ev->metadata, ev->metadata_len);
        p += ev->metadata_len;
    } else {
        *p++ = 0xc0;
    }
    p = s_w_id(p, &ev->origin_log_id, true);
    p = s_w_uint(p, ev->origin_seq);
    *p++ = 0xc0; /* extensions: none in envelope version 1 */
    out->len += (size_t)(p - start);
    return EVB_OK;
}

/* ---- decode ---- */

/* Views into the input gathered by the validating pass. */
typedef struct {
    const char *service, *stream, *type;
    uint32_t service_len, stream_len, type_len;
    const void *payload, *metadata;
    size_t payload_len, metadata_len;
} env_views;

static const char *s_field_names[ENV_FIELDS] = {
    "envelope_version", "id",           "service", "log_id",   "seq",
    "stream",           "version",      "type",    "schema",   "ts",
    "correlation_id",   "causation_id", "payload", "metadata", "origin_log_id",
    "origin_seq",       "extensions"};

static int s_bad(evb_err *err, unsigned field, const char *what, const char *detail)
{
    return evb_err_set(err, EVB_EDECODE, "envelope field %u (%s): %s%s", field,
                       s_field_names[field], what, detail);
}

static int s_read(mp_cur *c, mp_val *v, unsigned field, evb_err *err)
{
    int rc = mp_next(c, v);
    if (rc != MP_OK) return s_bad(err, field, "", mp_rc_str(rc));
    return EVB_OK;
}

static int s_want_uint(mp_cur *c, unsigned field, uint64_t min, uint64_t max,
                       uint64_t *out, evb_err *err)
{
    mp_val v;
    int rc = s_read(c, &v, field, err);
    if (rc != EVB_OK) return rc;
    if (v.type != MP_UINT)
        return s_bad(err, field, "want an unsigned integer, got ", mp_type_str(v.type));
    if (v.v.u < min || v.v.u > max)
        return evb_err_set(err, EVB_EDECODE, "envelope field %u (%s): %llu out of range",
                           field, s_field_names[field], (unsigned long long)v.v.u);
    *out = v.v.u;
    return EVB_OK;
}

static int s_want_id(mp_cur *c, unsigned field, bool nil_ok, evb_id *out, evb_err *err)
{
    mp_val v;
    int rc = s_read(c, &v, field, err);
    if (rc != EVB_OK) return rc;
    if (v.type == MP_NIL && nil_ok) {
        memset(out, 0, sizeof *out);
        return EVB_OK;
    }
    if (v.type != MP_BIN)
        return s_bad(err, field, "want 16-byte bin, got ", mp_type_str(v.type));
    if (v.v.s.len != EVB_ID_LEN) return s_bad(err, field, "bin is not 16 bytes", "");
    memcpy(out->b, v.v.s.p, EVB_ID_LEN);
    if (!nil_ok && evb_id_is_zero(out)) return s_bad(err, field, "zero id", "");
    return EVB_OK;
}

static int s_want_name(mp_cur *c, unsigned field, enum name_kind k, const char **p,
                       uint32_t *len, evb_err *err)
{
    mp_val v;
    int rc = s_read(c, &v, field, err);
    if (rc != EVB_OK) return rc;
    if (v.type != MP_STR) return s_bad(err, field, "want str, got ", mp_type_str(v.type));
    if (s_check_name(k, v.v.s.p, v.v.s.len, NULL, NULL) != EVB_OK) {
        /* Format the message only on failure: this runs for every decode. */
        char where[64];
        snprintf(where, sizeof where, "envelope field %u (%s)", field,
                 s_field_names[field]);
        s_check_name(k, v.v.s.p, v.v.s.len, where, err);
        if (err != NULL)
            err->code = EVB_EDECODE; /* a bad name on the wire is a decode error */
        return EVB_EDECODE;
    }
    if (k == NAME_STREAM && s_category_len(v.v.s.p, v.v.s.len) > EVB_MAX_CATEGORY_LEN)
        return s_bad(err, field, "category part too long", "");
    *p = v.v.s.p;
    *len = v.v.s.len;
    return EVB_OK;
}

/* A map value (or nil when nil_ok): record its bytes. */
static int s_want_map(mp_cur *c, unsigned field, bool nil_ok, const void **p, size_t *len,
                      evb_err *err)
{
    const uint8_t *start = c->p;
    if (nil_ok && mp_left(c) > 0 && *c->p == 0xc0) {
        c->p++;
        *p = NULL;
        *len = 0;
        return EVB_OK;
    }
    if (mp_left(c) == 0) return s_bad(err, field, "truncated", "");
    uint8_t b = *c->p;
    if (!((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf))
        return s_bad(err, field, "want a map", "");
    int rc = mp_skip(c, EVB_MAX_DEPTH);
    if (rc != MP_OK) return s_bad(err, field, "", mp_rc_str(rc));
    *p = start;
    *len = (size_t)(c->p - start);
    if (*len > EVB_MAX_PAYLOAD_BYTES)
        return evb_err_set(err, EVB_ETOOBIG,
                           "envelope field %u (%s): %zu bytes, more than %u", field,
                           s_field_names[field], *len, EVB_MAX_PAYLOAD_BYTES);
    return EVB_OK;
}

/* Pass 1: validate buf and fill the scalar fields of ev plus the views. */
static int s_parse(const void *buf, size_t len, evb_event_t *ev, env_views *vw,
                   evb_err *err)
{
    if (len > EVB_MAX_EVENT_BYTES)
        return evb_err_set(err, EVB_ETOOBIG, "envelope: %zu bytes, more than %u", len,
                           EVB_MAX_EVENT_BYTES);
    mp_cur c;
    mp_init(&c, buf, len);
    mp_val v;
    int rc = mp_next(&c, &v);
    if (rc != MP_OK) return evb_err_set(err, EVB_EDECODE, "envelope: %s", mp_rc_str(rc));
    if (v.type != MP_ARRAY || v.v.n == 0)
        return evb_err_set(err, EVB_EDECODE, "envelope: want a non-empty array, got %s",
                           mp_type_str(v.type));
    uint32_t nfields = v.v.n;
    uint64_t u;
    if ((rc = s_want_uint(&c, 0, 0, UINT64_MAX, &u, err)) != EVB_OK) return rc;
    if (u != EVB_ENVELOPE_VERSION)
        return evb_err_set(err, EVB_EVERSION,
                           "envelope_version %llu is not supported (this build reads %u)",
                           (unsigned long long)u, EVB_ENVELOPE_VERSION);
    if (nfields != ENV_FIELDS)
        return evb_err_set(err, EVB_EDECODE, "envelope: %u fields, version 1 has %u",
                           nfields, ENV_FIELDS);
    if ((rc = s_want_id(&c, 1, false, &ev->id, err)) != EVB_OK ||
        (rc = s_want_name(&c, 2, NAME_SERVICE, &vw->service, &vw->service_len, err)) !=
            EVB_OK ||
        (rc = s_want_id(&c, 3, false, &ev->log_id, err)) != EVB_OK ||
        (rc = s_want_uint(&c, 4, 1, UINT64_MAX, &ev->seq, err)) != EVB_OK ||
        (rc = s_want_name(&c, 5, NAME_STREAM, &vw->stream, &vw->stream_len, err)) !=
            EVB_OK ||
        (rc = s_want_uint(&c, 6, 1, UINT64_MAX, &ev->version, err)) != EVB_OK ||
        (rc = s_want_name(&c, 7, NAME_TYPE, &vw->type, &vw->type_len, err)) != EVB_OK ||
        (rc = s_want_uint(&c, 8, 1, UINT32_MAX, &u, err)) != EVB_OK)
        return rc;
    ev->schema = (uint32_t)u;
    if ((rc = s_read(&c, &v, 9, err)) != EVB_OK) return rc;
    if (v.type == MP_UINT && v.v.u <= (uint64_t)INT64_MAX)
        ev->ts_us = (int64_t)v.v.u;
    else if (v.type == MP_INT)
        ev->ts_us = v.v.i;
    else
        return s_bad(err, 9, "want a 64-bit signed integer, got ", mp_type_str(v.type));
    if ((rc = s_want_id(&c, 10, true, &ev->correlation_id, err)) != EVB_OK ||
        (rc = s_want_id(&c, 11, true, &ev->causation_id, err)) != EVB_OK ||
        (rc = s_want_map(&c, 12, false, &vw->payload, &vw->payload_len, err)) != EVB_OK ||
        (rc = s_want_map(&c, 13, true, &vw->metadata, &vw->metadata_len, err)) !=
            EVB_OK ||
        (rc = s_want_id(&c, 14, true, &ev->origin_log_id, err)) != EVB_OK ||
        (rc = s_want_uint(&c, 15, 0, UINT64_MAX, &ev->origin_seq, err)) != EVB_OK)
        return rc;
    if (vw->metadata != NULL &&
        vw->payload_len + vw->metadata_len > EVB_MAX_PAYLOAD_BYTES)
        return evb_err_set(
            err, EVB_ETOOBIG,
            "envelope fields 12/13 (payload + metadata): %zu bytes, more than "
            "%u",
            vw->payload_len + vw->metadata_len, EVB_MAX_PAYLOAD_BYTES);
    if ((ev->origin_seq != 0) == evb_id_is_zero(&ev->origin_log_id))
        return evb_err_set(err, EVB_EDECODE,
                           "envelope fields 14/15 (origin_log_id/origin_seq): set both "
                           "or neither");
    /* Extensions: nil, or a map that version-1 readers validate and ignore. */
    const void *ext;
    size_t ext_len;
    if ((rc = s_want_map(&c, 16, true, &ext, &ext_len, err)) != EVB_OK) return rc;
    if (mp_left(&c) != 0)
        return evb_err_set(err, EVB_EDECODE, "envelope: %zu trailing bytes", mp_left(&c));
    return EVB_OK;
}

/* ---- the fast pass: the envelope as evb__event_encode_checked writes it ----
 *
 * Every envelope this library writes has one spelling: array16 of 17, the
 * smallest uint for each number, fixstr or str8 for names, bin8 of 16 for
 * ids, nil for what is absent. s_parse_fast reads that spelling with direct
 * byte tests instead of the general reader (whose per-field dispatch was
 * about half of a decode) and makes the same checks as s_parse. It says
 * "no" to anything else, valid or not, and s_parse then decides and names
 * what is wrong: so it can only be faster, never more lenient
 * (tests/unit/test_codec.c and fuzz_decode compare the two). */

static inline bool s_f_uint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    if (p == end) return false;
    uint8_t b = *p;
    if (b <= 0x7f) {
        *out = b;
        *pp = p + 1;
        return true;
    }
    if (b < 0xcc || b > 0xcf) return false;
    size_t n = (size_t)1 << (b - 0xcc);
    if ((size_t)(end - p) < 1 + n) return false;
    uint64_t v = 0;
    for (size_t i = 1; i <= n; i++)
        v = (v << 8) | p[i];
    *out = v;
    *pp = p + 1 + n;
    return true;
}

static inline bool s_f_id(const uint8_t **pp, const uint8_t *end, bool nil_ok, evb_id *out)
{
    const uint8_t *p = *pp;
    if (p == end) return false;
    if (p[0] == 0xc0 && nil_ok) {
        memset(out, 0, sizeof *out);
        *pp = p + 1;
        return true;
    }
    if ((size_t)(end - p) < 2 + EVB_ID_LEN || p[0] != 0xc4 || p[1] != EVB_ID_LEN)
        return false;
    memcpy(out->b, p + 2, EVB_ID_LEN);
    if (!nil_ok && evb_id_is_zero(out)) return false;
    *pp = p + 2 + EVB_ID_LEN;
    return true;
}

/* A name; known (known_len bytes, 0 for none) is one already checked: the
 * same bytes need no check again. */
static inline bool s_f_name(const uint8_t **pp, const uint8_t *end, enum name_kind k,
                            const char *known, uint32_t known_len, const char **s,
                            uint32_t *len)
{
    const uint8_t *p = *pp;
    if (p == end) return false;
    size_t n, hdr;
    if ((p[0] & 0xe0) == 0xa0) {
        n = p[0] & 0x1f;
        hdr = 1;
    } else if (p[0] == 0xd9 && end - p >= 2) {
        n = p[1];
        hdr = 2;
    } else {
        return false;
    }
    if ((size_t)(end - p) < hdr + n) return false;
    const char *str = (const char *)p + hdr;
    if (known_len == 0 || n != known_len || memcmp(str, known, n) != 0) {
        if (s_check_name(k, str, n, NULL, NULL) != EVB_OK) return false;
        if (k == NAME_STREAM && s_category_len(str, n) > EVB_MAX_CATEGORY_LEN)
            return false;
    }
    *s = str;
    *len = (uint32_t)n;
    *pp = p + hdr + n;
    return true;
}

/* A map (or nil when nil_ok) of at most EVB_MAX_PAYLOAD_BYTES. */
static inline bool s_f_map(const uint8_t **pp, const uint8_t *end, bool nil_ok,
                           const void **view, size_t *len)
{
    const uint8_t *p = *pp;
    if (p == end) return false;
    if (p[0] == 0xc0 && nil_ok) {
        *view = NULL;
        *len = 0;
        *pp = p + 1;
        return true;
    }
    if ((p[0] & 0xf0) != 0x80 && p[0] != 0xde && p[0] != 0xdf) return false;
    mp_cur c = {p, end};
    if (mp_skip(&c, EVB_MAX_DEPTH) != MP_OK) return false;
    size_t n = (size_t)(c.p - p);
    if (n > EVB_MAX_PAYLOAD_BYTES) return false;
    *view = p;
    *len = n;
    *pp = c.p;
    return true;
}

static bool s_parse_fast(const void *buf, size_t len, evb_event_t *ev, env_views *vw,
                         const evb__names *nm)
{
    static const evb__names none; /* all lengths 0: nothing known */
    if (nm == NULL) nm = &none;
    const uint8_t *p = buf, *const end = p + len;
    uint64_t u;
    if (len > EVB_MAX_EVENT_BYTES || len < 4 || p[0] != 0xdc || p[1] != 0 ||
        p[2] != ENV_FIELDS || p[3] != EVB_ENVELOPE_VERSION)
        return false;
    p += 4;
    if (!s_f_id(&p, end, false, &ev->id) ||
        !s_f_name(&p, end, NAME_SERVICE, nm->service, nm->service_len, &vw->service,
                  &vw->service_len) ||
        !s_f_id(&p, end, false, &ev->log_id) || !s_f_uint(&p, end, &ev->seq) ||
        ev->seq == 0 ||
        !s_f_name(&p, end, NAME_STREAM, nm->stream, nm->stream_len, &vw->stream,
                  &vw->stream_len) ||
        !s_f_uint(&p, end, &ev->version) || ev->version == 0 ||
        !s_f_name(&p, end, NAME_TYPE, nm->type, nm->type_len, &vw->type, &vw->type_len) ||
        !s_f_uint(&p, end, &u) || u == 0 || u > UINT32_MAX)
        return false;
    ev->schema = (uint32_t)u;
    if (!s_f_uint(&p, end, &u) || u > (uint64_t)INT64_MAX) return false; /* ts >= 0 */
    ev->ts_us = (int64_t)u;
    if (!s_f_id(&p, end, true, &ev->correlation_id) ||
        !s_f_id(&p, end, true, &ev->causation_id) ||
        !s_f_map(&p, end, false, &vw->payload, &vw->payload_len) ||
        !s_f_map(&p, end, true, &vw->metadata, &vw->metadata_len) ||
        !s_f_id(&p, end, true, &ev->origin_log_id) ||
        !s_f_uint(&p, end, &ev->origin_seq))
        return false;
    if (vw->metadata != NULL && vw->payload_len + vw->metadata_len > EVB_MAX_PAYLOAD_BYTES)
        return false;
    if ((ev->origin_seq != 0) == evb_id_is_zero(&ev->origin_log_id)) return false;
    const void *ext;
    size_t ext_len;
    if (!s_f_map(&p, end, true, &ext, &ext_len)) return false;
    return p == end;
}

/* Pass 2: copy the views into ev's block (grown if needed); with lend, the
 * payload and metadata stay where they are (in the caller's buffer). */
static int s_fill_lend(evb_event_t *ev, const env_views *vw, bool lend, evb_err *err)
{
    size_t cat_len = s_category_len(vw->stream, vw->stream_len);
    size_t need = (size_t)vw->service_len + 1 + vw->stream_len + 1 + cat_len + 1 +
                  vw->type_len + 1 + (lend ? 0 : vw->payload_len + vw->metadata_len);
    if (need > ev->priv.cap) {
        void *nb = realloc(ev->priv.block, need);
        if (nb == NULL)
            return evb_err_set(err, EVB_ENOMEM, "out of memory decoding an event (%zu B)",
                               need);
        ev->priv.block = nb;
        ev->priv.cap = need;
    }
    char *w = ev->priv.block;
#define COPY_STR(field, p, n)                                                            \
    do {                                                                                 \
        memcpy(w, (p), (n));                                                             \
        w[(n)] = '\0';                                                                   \
        ev->field = w;                                                                   \
        w += (n) + 1;                                                                    \
    } while (0)
    COPY_STR(service, vw->service, vw->service_len);
    COPY_STR(stream, vw->stream, vw->stream_len);
    COPY_STR(category, vw->stream, cat_len);
    COPY_STR(type, vw->type, vw->type_len);
#undef COPY_STR
    ev->payload_len = vw->payload_len;
    ev->metadata_len = vw->metadata != NULL ? vw->metadata_len : 0;
    if (lend) {
        ev->payload = vw->payload;
        ev->metadata = vw->metadata;
        return EVB_OK;
    }
    memcpy(w, vw->payload, vw->payload_len);
    ev->payload = w;
    w += vw->payload_len;
    if (vw->metadata != NULL) {
        memcpy(w, vw->metadata, vw->metadata_len);
        ev->metadata = w;
    } else {
        ev->metadata = NULL;
    }
    return EVB_OK;
}

/* dst (*dlen bytes) becomes src[0..n) unless it is that already; true when
 * it changed. */
static inline bool s_take_name(char *dst, uint32_t *dlen, const char *src, uint32_t n)
{
    if (n == *dlen && memcmp(dst, src, n) == 0) return false;
    memcpy(dst, src, n);
    dst[n] = '\0';
    *dlen = n;
    return true;
}

/* Pass 2 with names kept in nm: only a name that changed is copied. */
static void s_fill_names(evb_event_t *ev, const env_views *vw, evb__names *nm)
{
    s_take_name(nm->service, &nm->service_len, vw->service, vw->service_len);
    if (s_take_name(nm->stream, &nm->stream_len, vw->stream, vw->stream_len)) {
        size_t cl = s_category_len(nm->stream, nm->stream_len);
        memcpy(nm->category, nm->stream, cl);
        nm->category[cl] = '\0';
    }
    s_take_name(nm->type, &nm->type_len, vw->type, vw->type_len);
    ev->service = nm->service;
    ev->stream = nm->stream;
    ev->category = nm->category;
    ev->type = nm->type;
    ev->payload = vw->payload;
    ev->payload_len = vw->payload_len;
    ev->metadata = vw->metadata;
    ev->metadata_len = vw->metadata != NULL ? vw->metadata_len : 0;
}

static int s_fill(evb_event_t *ev, const env_views *vw, evb_err *err)
{
    return s_fill_lend(ev, vw, false, err);
}

static int s_decode_into(const void *buf, size_t len, evb_event_t *ev, bool fast,
                         bool lend, evb__names *nm, evb_err *err)
{
    if (buf == NULL) /* also for len 0: NULL + 0 is undefined in C */
        return evb_err_set(err, EVB_EDECODE, "envelope: no bytes (NULL buffer)");
    void *block = ev->priv.block;
    size_t cap = ev->priv.cap;
    memset(ev, 0, sizeof *ev);
    ev->priv.block = block;
    ev->priv.cap = cap;
    env_views vw;
    memset(&vw, 0, sizeof vw);
    int rc = EVB_OK;
    if (!fast || !s_parse_fast(buf, len, ev, &vw, nm)) {
        memset(ev, 0, offsetof(evb_event_t, priv)); /* what the fast pass left */
        memset(&vw, 0, sizeof vw);
        rc = s_parse(buf, len, ev, &vw, err);
    }
    if (rc == EVB_OK && nm != NULL)
        s_fill_names(ev, &vw, nm);
    else if (rc == EVB_OK)
        rc = s_fill_lend(ev, &vw, lend, err);
    if (rc != EVB_OK) { /* s_fill only replaces the block when it succeeds */
        block = ev->priv.block;
        cap = ev->priv.cap;
        memset(ev, 0, sizeof *ev);
        ev->priv.block = block;
        ev->priv.cap = cap;
    }
    return rc;
}

int evb_event_decode_into(const void *buf, size_t len, evb_event_t *ev, evb_err *err)
{
    return s_decode_into(buf, len, ev, true, false, NULL, err);
}

int evb__event_decode_lent(const void *buf, size_t len, evb_event_t *ev, evb_err *err)
{
    return s_decode_into(buf, len, ev, true, true, NULL, err);
}

int evb__event_decode_names(const void *buf, size_t len, evb_event_t *ev, evb__names *nm,
                            evb_err *err)
{
    return s_decode_into(buf, len, ev, true, true, nm, err);
}

int evb__event_decode_general(const void *buf, size_t len, evb_event_t *ev, evb_err *err)
{
    return s_decode_into(buf, len, ev, false, false, NULL, err);
}

int evb_event_decode(const void *buf, size_t len, evb_event_t **out, evb_err *err)
{
    *out = NULL;
    evb_event_t *ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return evb_err_set(err, EVB_ENOMEM, "out of memory decoding an event");
    int rc = evb_event_decode_into(buf, len, ev, err);
    if (rc != EVB_OK) {
        evb_event_destroy(&ev);
        return rc;
    }
    *out = ev;
    return EVB_OK;
}

evb_event_t *evb_event_dup(const evb_event_t *src, evb_err *err)
{
    evb_event_t *ev = calloc(1, sizeof *ev);
    if (ev == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory copying an event");
        return NULL;
    }
    *ev = *src;
    ev->priv.block = NULL;
    ev->priv.cap = 0;
    env_views vw = {0};
    vw.service = src->service ? src->service : "";
    vw.service_len = (uint32_t)strlen(vw.service);
    vw.stream = src->stream ? src->stream : "";
    vw.stream_len = (uint32_t)strlen(vw.stream);
    vw.type = src->type ? src->type : "";
    vw.type_len = (uint32_t)strlen(vw.type);
    vw.payload = src->payload ? src->payload : evb_empty_map;
    vw.payload_len = src->payload ? src->payload_len : sizeof evb_empty_map;
    vw.metadata = src->metadata;
    vw.metadata_len = src->metadata ? src->metadata_len : 0;
    if (s_fill(ev, &vw, err) != EVB_OK) {
        free(ev);
        return NULL;
    }
    return ev;
}

void evb_event_clear(evb_event_t *ev)
{
    if (ev == NULL) return;
    free(ev->priv.block);
    memset(ev, 0, sizeof *ev);
}

void evb_event_destroy(evb_event_t **evp)
{
    if (evp == NULL || *evp == NULL) return;
    evb_event_clear(*evp);
    free(*evp);
    *evp = NULL;
}
