/*
 * mapget.c: field access in a msgpack map for programs that do not want
 * msgpack-c objects (see evbus_codec.h). One pass over the map with the
 * bounded reader; the value found is returned as a view of its bytes.
 */
#include "evbus_codec.h"
#include "mpread.h"

#include <string.h>

int evb_map_find(const void *map, size_t len, const char *key, const void **val,
                 size_t *vlen, evb_err *err)
{
    mp_cur c;
    mp_init(&c, map, len);
    mp_val v;
    int rc = mp_next(&c, &v);
    if (rc != MP_OK || v.type != MP_MAP)
        return evb_err_set(err, EVB_EDECODE, "looking for \"%s\": not a msgpack map",
                           key);
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < v.v.n; i++) {
        mp_val k;
        if ((rc = mp_next(&c, &k)) != MP_OK)
            return evb_err_set(err, EVB_EDECODE, "looking for \"%s\": %s", key,
                               mp_rc_str(rc));
        bool match =
            (k.type == MP_STR && k.v.s.len == klen && memcmp(k.v.s.p, key, klen) == 0);
        if (k.type == MP_ARRAY || k.type == MP_MAP) { /* a container as key: skip it */
            uint64_t inner = k.type == MP_MAP ? 2ull * k.v.n : k.v.n;
            for (uint64_t j = 0; j < inner; j++)
                if ((rc = mp_skip(&c, EVB_MAX_DEPTH)) != MP_OK)
                    return evb_err_set(err, EVB_EDECODE, "looking for \"%s\": %s", key,
                                       mp_rc_str(rc));
        }
        const uint8_t *vstart = c.p;
        if ((rc = mp_skip(&c, EVB_MAX_DEPTH)) != MP_OK)
            return evb_err_set(err, EVB_EDECODE, "looking for \"%s\": %s", key,
                               mp_rc_str(rc));
        if (match) {
            *val = vstart;
            *vlen = (size_t)(c.p - vstart);
            return EVB_OK;
        }
    }
    return evb_err_set(err, EVB_ENOTFOUND, "field \"%s\" is missing", key);
}

static int s_value(const void *map, size_t len, const char *key, mp_val *v, evb_err *err)
{
    const void *p;
    size_t n;
    int rc = evb_map_find(map, len, key, &p, &n, err);
    if (rc != EVB_OK) return rc;
    mp_cur c;
    mp_init(&c, p, n);
    if (mp_next(&c, v) != MP_OK)
        return evb_err_set(err, EVB_EDECODE, "field \"%s\": malformed", key);
    return EVB_OK;
}

int evb_map_str(const void *map, size_t len, const char *key, char *out, size_t cap,
                evb_err *err)
{
    mp_val v;
    int rc = s_value(map, len, key, &v, err);
    if (rc != EVB_OK) return rc;
    if (v.type != MP_STR)
        return evb_err_set(err, EVB_EDECODE, "field \"%s\": want a string, got %s", key,
                           mp_type_str(v.type));
    if (memchr(v.v.s.p, '\0', v.v.s.len) != NULL)
        return evb_err_set(err, EVB_EDECODE, "field \"%s\": string holds a NUL byte",
                           key);
    if (v.v.s.len >= cap)
        return evb_err_set(err, EVB_ETOOBIG, "field \"%s\": string too long (max %zu)",
                           key, cap ? cap - 1 : 0);
    memcpy(out, v.v.s.p, v.v.s.len);
    out[v.v.s.len] = '\0';
    return EVB_OK;
}

int evb_map_uint(const void *map, size_t len, const char *key, uint64_t *out,
                 evb_err *err)
{
    mp_val v;
    int rc = s_value(map, len, key, &v, err);
    if (rc != EVB_OK) return rc;
    if (v.type != MP_UINT)
        return evb_err_set(err, EVB_EDECODE,
                           "field \"%s\": want an unsigned integer, got %s", key,
                           mp_type_str(v.type));
    *out = v.v.u;
    return EVB_OK;
}

int evb_map_int(const void *map, size_t len, const char *key, int64_t *out, evb_err *err)
{
    mp_val v;
    int rc = s_value(map, len, key, &v, err);
    if (rc != EVB_OK) return rc;
    if (v.type == MP_INT) {
        *out = v.v.i;
        return EVB_OK;
    }
    if (v.type == MP_UINT && v.v.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)v.v.u;
        return EVB_OK;
    }
    return evb_err_set(err, EVB_EDECODE, "field \"%s\": want an integer, got %s", key,
                       mp_type_str(v.type));
}
