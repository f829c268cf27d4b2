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

/* A page of a read model whose values are msgpack maps (copied verbatim):
 * reply {key: [values of the keys under prefix, in key order], next: a
 * cursor or nil}. The request may carry limit (1..SU_PAGE_MAX, default
 * SU_PAGE_DEFAULT) and after (the next of the page before); a page also
 * ends before SU_PAGE_BYTES of values, so a reply never outgrows the
 * message ceiling. */
#define SU_PAGE_DEFAULT 1000
#define SU_PAGE_MAX 10000
#define SU_PAGE_BYTES (512u * 1024u)
#define SU_PAGE_FULL (-2) /* a scan callback's "stop": not an evb_code */
typedef struct su_page_acc {
    evb_buf items;
    size_t plen;
    uint64_t limit, n;
    bool more;
    char last[EVB_MAX_KEY_LEN + 1];
    size_t lastlen;
} su_page_acc;

static inline int su_page_one(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    su_page_acc *a = ctx;
    if (a->n == a->limit || (a->n > 0 && a->items.len + vl > SU_PAGE_BYTES)) {
        a->more = true;
        return SU_PAGE_FULL;
    }
    if (evb_buf_append(&a->items, v, vl, NULL) != EVB_OK) return -1;
    a->n++;
    a->lastlen = kl - a->plen;
    memcpy(a->last, (const char *)k + a->plen, a->lastlen);
    return 0;
}

static inline int su_reply_scan(evb_store_t *views, const char *prefix, size_t plen,
                                const char *key, const void *args, size_t alen,
                                evb_buf *reply, evb_err *err)
{
    su_page_acc acc = {.plen = plen, .limit = SU_PAGE_DEFAULT};
    evb_err e = {0};
    const void *val;
    size_t vl;
    if (evb_map_find(args, alen, "limit", &val, &vl, &e) == EVB_OK) {
        int rc = su_uint(args, alen, "limit", 1, SU_PAGE_MAX, &acc.limit, err);
        if (rc != EVB_OK) return rc;
    }
    char after[EVB_MAX_KEY_LEN + 1], start[EVB_MAX_KEY_LEN + 2];
    size_t slen = 0;
    int rc = evb_map_str(args, alen, "after", after, sizeof after - plen, &e);
    if (rc == EVB_OK) {
        slen = plen + strlen(after) + 1; /* the first key after prefix+after */
        memcpy(start, prefix, plen);
        memcpy(start + plen, after, slen - plen);
    } else if (rc != EVB_ENOTFOUND) {
        return evb_err_set(err, EVB_EINVAL, "after: must be the \"next\" of a page");
    }
    rc = evb_store_scan_from(views, prefix, plen, slen ? start : NULL, slen, su_page_one,
                             &acc, err);
    if (rc == SU_PAGE_FULL) rc = EVB_OK;
    if (rc < 0) rc = evb_err_set(err, EVB_ENOMEM, "out of memory for a page");
    if (rc == EVB_OK) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, reply, evb_svc_pack_write);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, key, strlen(key));
        msgpack_pack_array(&pk, (uint32_t)acc.n);
        msgpack_pack_bin_body(&pk, acc.items.data, acc.items.len);
        su_key(&pk, "next");
        if (acc.more)
            msgpack_pack_str_with_body(&pk, acc.last, acc.lastlen);
        else
            msgpack_pack_nil(&pk);
    }
    evb_buf_free(&acc.items);
    return rc;
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
