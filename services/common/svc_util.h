/*
 * svc_util.h: small helpers the evbus services share: reading typed fields
 * of a request or payload with errors that name the field, and writing
 * msgpack maps. Header-only; a user's service can copy the idea.
 */
#ifndef EVB_SVC_UTIL_H
#define EVB_SVC_UTIL_H

#include <evbus/evbus_svc.h>

#include <msgpack.h>
#include <string.h>

/* A required string field: EVB_EINVAL "FIELD: missing" / "must be a string". */
static inline int su_str(const void *m, size_t len, const char *field, char *out,
                         size_t cap, evb_err *err)
{
    evb_err e = {0};
    int rc = evb_map_str(m, len, field, out, cap, &e);
    if (rc == EVB_OK && out[0] != '\0') return EVB_OK;
    if (rc == EVB_ENOTFOUND) return evb_err_set(err, EVB_EINVAL, "%s: missing", field);
    if (rc == EVB_ETOOBIG)
        return evb_err_set(err, EVB_EINVAL, "%s: longer than %zu bytes", field, cap - 1);
    return evb_err_set(err, EVB_EINVAL, "%s: must be a non-empty string", field);
}

/* A required id usable in a stream name ("show-ID"). */
static inline int su_id(const void *m, size_t len, const char *field, const char *cat,
                        char *out, size_t cap, evb_err *err)
{
    int rc = su_str(m, len, field, out, cap, err);
    if (rc != EVB_OK) return rc;
    char stream[256];
    snprintf(stream, sizeof stream, "%s-%s", cat, out);
    if (evb_check_stream(stream, NULL) != EVB_OK)
        return evb_err_set(err, EVB_EINVAL,
                           "%s: '%s' is not an id (letters, digits and _.:@- only)", field,
                           out);
    return EVB_OK;
}

/* A required unsigned integer field in [lo, hi]. */
static inline int su_uint(const void *m, size_t len, const char *field, uint64_t lo,
                          uint64_t hi, uint64_t *out, evb_err *err)
{
    evb_err e = {0};
    int rc = evb_map_uint(m, len, field, out, &e);
    if (rc == EVB_ENOTFOUND) return evb_err_set(err, EVB_EINVAL, "%s: missing", field);
    if (rc != EVB_OK || *out < lo || *out > hi)
        return evb_err_set(err, EVB_EINVAL, "%s: must be an integer in %llu..%llu", field,
                           (unsigned long long)lo, (unsigned long long)hi);
    return EVB_OK;
}

static inline void su_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}
static inline void su_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    su_key(pk, k);
    msgpack_pack_str_with_body(pk, v, strlen(v));
}
static inline void su_kv_uint(msgpack_packer *pk, const char *k, uint64_t v)
{
    su_key(pk, k);
    msgpack_pack_uint64(pk, v);
}
static inline void su_kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    su_key(pk, k);
    msgpack_pack_int64(pk, v);
}

/* Reply {key: [every stored value under prefix]} from a read model whose
 * values are msgpack maps (copied verbatim). Two passes: count, then pack. */
typedef struct su_scan_acc {
    msgpack_packer *pk;
    uint32_t n;
} su_scan_acc;

static inline int su_scan_one(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)k;
    (void)kl;
    su_scan_acc *a = ctx;
    a->n++;
    if (a->pk) msgpack_pack_bin_body(a->pk, v, vl);
    return 0;
}

static inline int su_reply_scan(evb_store_t *views, const char *prefix, size_t plen,
                                const char *key, evb_buf *reply, evb_err *err)
{
    su_scan_acc acc = {0};
    int rc = evb_store_scan(views, prefix, plen, su_scan_one, &acc, err);
    if (rc != EVB_OK) return rc;
    msgpack_packer pk;
    msgpack_packer_init(&pk, reply, evb_svc_pack_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    msgpack_pack_array(&pk, acc.n);
    acc.pk = &pk;
    acc.n = 0;
    return evb_store_scan(views, prefix, plen, su_scan_one, &acc, err);
}

/* An event whose payload is the map in buf (the caller keeps buf alive). */
static inline void su_event(evb_event_t *ev, const char *type, const evb_buf *payload)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->schema = 1;
    ev->payload = payload->data;
    ev->payload_len = payload->len;
}

#endif
