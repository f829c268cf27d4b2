/*
 * ops.c: both sides of the command socket for the evbus program (ops.h).
 *
 * Requests are read with the codec's bounded map readers (evb_map_*), which
 * check the bytes as they walk them; only the keys are walked here, with
 * msgpack-c, to refuse unknown fields (a typo must not be dropped silently,
 * as in `evbus append`). Replies come from our own services but cross a
 * socket, so they are decoded with msgpack-c into a zone whose size is
 * bounded by the reply (evb_cmd_call caps it at EVB_BUS_MAX_MSG_BYTES) and
 * every field is read through ops_get, which tolerates missing or mistyped
 * values instead of trusting them.
 */
#include "ops.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include <evbus/evbus_bus.h>
#include <evbus/evbus_http.h>

/* ---- writing ---- */

static int s_write(void *data, const char *buf, size_t len)
{
    ops_w *w = data;
    if (w->rc == EVB_OK) w->rc = evb_buf_append(w->b, buf, len, NULL);
    return w->rc == EVB_OK ? 0 : -1;
}

void ops_w_init(ops_w *w, evb_buf *b)
{
    w->b = b;
    w->rc = EVB_OK;
    msgpack_packer_init(&w->pk, w, s_write);
}

void ops_w_str(ops_w *w, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(&w->pk, n);
    msgpack_pack_str_body(&w->pk, s, n);
}

void ops_w_kv_str(ops_w *w, const char *key, const char *val)
{
    ops_w_str(w, key);
    ops_w_str(w, val);
}

void ops_w_kv_u64(ops_w *w, const char *key, uint64_t v)
{
    ops_w_str(w, key);
    msgpack_pack_uint64(&w->pk, v);
}

void ops_w_kv_i64(ops_w *w, const char *key, int64_t v)
{
    ops_w_str(w, key);
    msgpack_pack_int64(&w->pk, v);
}

void ops_w_kv_bool(ops_w *w, const char *key, bool v)
{
    ops_w_str(w, key);
    if (v)
        msgpack_pack_true(&w->pk);
    else
        msgpack_pack_false(&w->pk);
}

void ops_w_kv_id(ops_w *w, const char *key, const evb_id *id)
{
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(id, hex);
    ops_w_kv_str(w, key, hex);
}

/* ---- request arguments ---- */

/* The value of key, or *present = false when absent or nil. */
static int s_arg(const void *args, size_t len, const char *key, bool required,
                 const void **val, size_t *vlen, bool *present, evb_err *err)
{
    *present = false;
    evb_err e2 = {0};
    int rc = evb_map_find(args, len, key, val, vlen, &e2);
    if (rc == EVB_ENOTFOUND ||
        (rc == EVB_OK && *vlen == 1 && *(const unsigned char *)*val == 0xc0)) {
        if (required) return evb_err_set(err, EVB_EINVAL, "field \"%s\" is missing", key);
        return EVB_OK;
    }
    if (rc != EVB_OK) return evb_err_set(err, EVB_EINVAL, "%s", e2.msg);
    *present = true;
    return EVB_OK;
}

int ops_arg_str(const void *args, size_t len, const char *key, bool required, char *out,
                size_t cap, bool *present, evb_err *err)
{
    const void *v;
    size_t vl;
    int rc = s_arg(args, len, key, required, &v, &vl, present, err);
    if (rc != EVB_OK || !*present) return rc;
    evb_err e2 = {0};
    rc = evb_map_str(args, len, key, out, cap, &e2);
    if (rc == EVB_EDECODE)
        return evb_err_set(err, EVB_EINVAL, "field \"%s\": expected a string", key);
    if (rc != EVB_OK)
        return evb_err_set(err, EVB_EINVAL,
                           "field \"%s\": longer than %zu bytes or holds a NUL", key,
                           cap - 1);
    return EVB_OK;
}

int ops_arg_u64(const void *args, size_t len, const char *key, bool required,
                uint64_t *out, bool *present, evb_err *err)
{
    const void *v;
    size_t vl;
    int rc = s_arg(args, len, key, required, &v, &vl, present, err);
    if (rc != EVB_OK || !*present) return rc;
    if (evb_map_uint(args, len, key, out, NULL) != EVB_OK)
        return evb_err_set(err, EVB_EINVAL,
                           "field \"%s\": expected a non-negative integer", key);
    return EVB_OK;
}

int ops_arg_map(const void *args, size_t len, const char *key, const void **val,
                size_t *vlen, bool *present, evb_err *err)
{
    int rc = s_arg(args, len, key, false, val, vlen, present, err);
    if (rc != EVB_OK || !*present) return rc;
    unsigned char t = *(const unsigned char *)*val;
    if (!((t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf))
        return evb_err_set(err, EVB_EINVAL,
                           "field \"%s\": expected a map (a JSON object)", key);
    evb_err e2 = {0};
    char what[48];
    snprintf(what, sizeof what, "field \"%.32s\"", key);
    if (evb_check_map(*val, *vlen, what, &e2) != EVB_OK)
        return evb_err_set(err, EVB_EINVAL, "%s", e2.msg);
    return EVB_OK;
}

int ops_arg_id(const void *args, size_t len, const char *key, evb_id *out, evb_err *err)
{
    char hex[EVB_ID_HEX_LEN + 2];
    bool present;
    memset(out, 0, sizeof *out);
    int rc = ops_arg_str(args, len, key, false, hex, sizeof hex, &present, err);
    if (rc != EVB_OK || !present) return rc;
    if (strlen(hex) != EVB_ID_HEX_LEN || evb_id_from_hex(hex, out, NULL) != EVB_OK ||
        evb_id_is_zero(out))
        return evb_err_set(err, EVB_EINVAL,
                           "field \"%s\": expected 32 hex characters (not all zero)",
                           key);
    return EVB_OK;
}

int ops_arg_known(const void *args, size_t len, const char *const *known, evb_err *err)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = EVB_OK;
    if (msgpack_unpack_next(&up, args, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        up.data.type != MSGPACK_OBJECT_MAP) {
        rc = evb_err_set(err, EVB_EINVAL, "arguments are not a msgpack map");
    } else {
        const msgpack_object_map *m = &up.data.via.map;
        for (uint32_t i = 0; i < m->size && rc == EVB_OK; i++) {
            const msgpack_object *k = &m->ptr[i].key;
            bool ok = false;
            if (k->type == MSGPACK_OBJECT_STR)
                for (const char *const *f = known; *f != NULL && !ok; f++)
                    ok = strlen(*f) == k->via.str.size &&
                         memcmp(*f, k->via.str.ptr, k->via.str.size) == 0;
            if (!ok) {
                if (k->type == MSGPACK_OBJECT_STR)
                    rc = evb_err_set(err, EVB_EINVAL, "unknown field \"%.*s\"",
                                     (int)(k->via.str.size > 64 ? 64 : k->via.str.size),
                                     k->via.str.ptr);
                else
                    rc = evb_err_set(err, EVB_EINVAL, "a field name is not a string");
            }
        }
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}

/* ---- client ---- */

int ops_check_endpoint(cli_t *cli, const char *ep)
{
    if (strlen(ep) >= EVB_BUS_MAX_ENDPOINT)
        return cli_usage_error(cli, "%s: endpoint longer than %u bytes", ep,
                               EVB_BUS_MAX_ENDPOINT - 1);
    /* A bad endpoint is a usage error (exit 2) for these commands; connecting
     * once here finds it before any call (evb_cmd_call would report it as
     * EVB_EUNREACHABLE, which ops_exit_for maps to 4). */
    void *zctx = zmq_ctx_new();
    void *s = zctx != NULL ? zmq_socket(zctx, ZMQ_DEALER) : NULL;
    int rc = -1;
    if (s == NULL) {
        cli_error(cli, "%s: %s", ep, zmq_strerror(errno));
        rc = CLI_EXIT_RUNTIME;
    } else {
        int zero = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_connect(s, ep) != 0)
            rc = cli_usage_error(cli, "%s: not a usable endpoint: %s", ep,
                                 zmq_strerror(errno));
    }
    if (s != NULL) zmq_close(s);
    if (zctx != NULL) zmq_ctx_term(zctx);
    return rc;
}

int ops_exit_for(int code)
{
    switch (code) {
    case EVB_OK:
        return CLI_EXIT_OK;
    case EVB_EINVAL:
    case EVB_ENOTFOUND:
    case EVB_ECONFLICT:
    case EVB_EREJECTED:
    case EVB_EPARTIAL:
        return CLI_EXIT_PROBLEMS;
    default:
        return CLI_EXIT_RUNTIME;
    }
}

int ops_reply_parse(ops_reply *r, const void *body, size_t len, evb_err *err)
{
    msgpack_unpacked_init(&r->up);
    r->root = NULL;
    size_t off = 0;
    if (msgpack_unpack_next(&r->up, body, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        r->up.data.type != MSGPACK_OBJECT_MAP || off != len)
        return evb_err_set(err, EVB_EDECODE, "the reply is not one msgpack map");
    r->root = &r->up.data;
    return EVB_OK;
}

void ops_reply_free(ops_reply *r)
{
    msgpack_unpacked_destroy(&r->up);
    r->root = NULL;
}

const msgpack_object *ops_get(const msgpack_object *map, const char *key)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
            memcmp(k->via.str.ptr, key, kl) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

const char *ops_str(const msgpack_object *map, const char *key, char *out, size_t cap,
                    const char *dflt)
{
    const msgpack_object *v = ops_get(map, key);
    if (v == NULL || v->type != MSGPACK_OBJECT_STR || cap == 0) return dflt;
    size_t n = v->via.str.size < cap - 1 ? v->via.str.size : cap - 1;
    memcpy(out, v->via.str.ptr, n);
    out[n] = '\0';
    return out;
}

uint64_t ops_u64(const msgpack_object *map, const char *key, uint64_t dflt)
{
    const msgpack_object *v = ops_get(map, key);
    if (v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return v->via.u64;
    return dflt;
}

int64_t ops_i64(const msgpack_object *map, const char *key, int64_t dflt)
{
    const msgpack_object *v = ops_get(map, key);
    if (v != NULL && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return v->via.i64;
    if (v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        v->via.u64 <= (uint64_t)INT64_MAX)
        return (int64_t)v->via.u64;
    return dflt;
}

int ops_split_feed(const char *arg, char *pub, size_t pub_cap, char *cat, size_t cat_cap)
{
    const char *slash = strrchr(arg, '/');
    const char *c = slash != NULL ? slash + 1 : arg;
    size_t pl = slash != NULL ? (size_t)(slash - arg) : 0;
    size_t cl = strlen(c);
    if (cl == 0 || cl >= cat_cap || pl >= pub_cap) return EVB_EINVAL;
    if (slash != NULL && pl == 0) return EVB_EINVAL;
    memcpy(pub, arg, pl);
    pub[pl] = '\0';
    memcpy(cat, c, cl + 1);
    return EVB_OK;
}

/* ---- --http ---- */

int ops_http_check(cli_t *cli, const char *addr, bool curve_on, bool public_ok,
                   bool events)
{
    if (addr == NULL) {
        if (public_ok) return cli_usage_error(cli, "--http-public goes with --http");
        if (events) return cli_usage_error(cli, "--http-events goes with --http");
        return -1;
    }
    if (!curve_on || evb_http_addr_is_loopback(addr)) return -1;
    if (!public_ok)
        return cli_usage_error(cli,
                               "--http %s is not a loopback address while CURVE is on: "
                               "HTTP is neither encrypted nor authenticated; add "
                               "--http-public if that is meant",
                               addr);
    cli_error(cli, "warning: --http %s: metrics and status go out unencrypted to anyone "
              "who can reach that address (CURVE covers the bus only)", addr);
    return -1;
}

int ops_http_open(cli_t *cli, const char *addr, evb_store_t *events,
                  struct evb_http **out)
{
    *out = NULL;
    if (addr == NULL) return -1;
    evb_err err = {0};
    if ((*out = evb_http_new(addr, &err)) == NULL) {
        cli_error(cli, "%s", err.msg);
        return err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    if (events != NULL) evb_http_show_events(*out, events, 50);
    fprintf(stderr, "%s: http on %s (port %u): the bus page at /, /metrics, /status.json%s\n",
            cli->name, addr, (unsigned)evb_http_port(*out),
            events != NULL ? "; events shown (--http-events)" : "");
    return -1;
}
