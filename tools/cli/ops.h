/*
 * ops.h (private to the evbus program): what the operator commands share:
 * both sides of a service's command socket (bus/evbus_bus.h, evb_cmd_*).
 *
 * Server side (serve --cmd, mirror --cmd): a msgpack writer into an evb_buf
 * for reply bodies, and readers of request arguments whose errors name the
 * field. Client side (status, feed, append --to): a checked endpoint, a call
 * whose failure maps to an exit code, and a decoded reply to walk.
 *
 * Ownership: ops_reply owns a msgpack zone (ops_reply_free); the objects
 * ops_get returns borrow from it. Thread rules: none shared; reentrant.
 */
#ifndef EVB_TOOLS_OPS_H
#define EVB_TOOLS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "cli.h"

/* Default wait for a reply, in ms (--timeout overrides). */
#define OPS_DEFAULT_TIMEOUT_MS 3000u
#define OPS_MAX_TIMEOUT_MS 600000u

/* ---- writing msgpack into an evb_buf ---- */

typedef struct ops_w {
    evb_buf *b;
    int rc; /* first error; once set, nothing more is written */
    msgpack_packer pk;
} ops_w;

/* Start writing at the end of b. Check w->rc when done. */
void ops_w_init(ops_w *w, evb_buf *b);
void ops_w_str(ops_w *w, const char *s);
/* Key then value, inside a map the caller opened with msgpack_pack_map. */
void ops_w_kv_str(ops_w *w, const char *key, const char *val);
void ops_w_kv_u64(ops_w *w, const char *key, uint64_t v);
void ops_w_kv_i64(ops_w *w, const char *key, int64_t v);
void ops_w_kv_bool(ops_w *w, const char *key, bool v);
void ops_w_kv_id(ops_w *w, const char *key, const evb_id *id); /* 32 hex */

/* ---- reading request arguments (server side) ----
 * Each returns EVB_OK, or EVB_EINVAL with a message naming the field
 * ("field \"stream\": expected a string"). Optional ones leave *present
 * false (and the output untouched) when the key is absent or nil. */
int ops_arg_str(const void *args, size_t len, const char *key, bool required, char *out,
                size_t cap, bool *present, evb_err *err);
int ops_arg_u64(const void *args, size_t len, const char *key, bool required,
                uint64_t *out, bool *present, evb_err *err);
/* A map value (payload, metadata), lent from args; checked with
 * evb_check_map. */
int ops_arg_map(const void *args, size_t len, const char *key, const void **val,
                size_t *vlen, bool *present, evb_err *err);
int ops_arg_id(const void *args, size_t len, const char *key, evb_id *out,
               evb_err *err); /* optional; zero when absent */

/* True when args (a map) has only keys from known (NULL-terminated);
 * otherwise EVB_EINVAL naming the first unknown key. */
int ops_arg_known(const void *args, size_t len, const char *const *known, evb_err *err);

/* ---- client ---- */

/* Check that ep can be connected to (its syntax: a bad one is a usage
 * error, exit 2, naming it). Returns -1 to go on, or the exit code. */
int ops_check_endpoint(cli_t *cli, const char *ep);

/* Exit code for the result of a call: 0, 4 for EVB_ETIMEDOUT and other
 * transport failures, 1 for a service's rejection (EVB_EINVAL,
 * EVB_ENOTFOUND, EVB_ECONFLICT, EVB_EREJECTED, EVB_EPARTIAL). */
int ops_exit_for(int code);

/* A decoded reply body (a msgpack map). */
typedef struct ops_reply {
    msgpack_unpacked up;
    const msgpack_object *root;
} ops_reply;

/* Decode body[0..len) (one map). EVB_EDECODE otherwise. Call
 * ops_reply_free in both cases. */
int ops_reply_parse(ops_reply *r, const void *body, size_t len, evb_err *err);
void ops_reply_free(ops_reply *r);

/* Value of key in map obj, or NULL (also when obj is not a map). */
const msgpack_object *ops_get(const msgpack_object *map, const char *key);
/* A str value as a NUL-terminated copy in out (cut to cap - 1 bytes), or
 * dflt when absent or not a str. */
const char *ops_str(const msgpack_object *map, const char *key, char *out, size_t cap,
                    const char *dflt);
/* An integer value (negative ones as int64), or dflt. */
uint64_t ops_u64(const msgpack_object *map, const char *key, uint64_t dflt);
int64_t ops_i64(const msgpack_object *map, const char *key, int64_t dflt);

/* "[PUBLISHER/]CATEGORY": split at the last '/', since endpoints hold "//".
 * pub is "" when there is no publisher. EVB_EINVAL when a part is too long
 * or the category is empty. */
int ops_split_feed(const char *arg, char *pub, size_t pub_cap, char *cat, size_t cat_cap);

/* ---- --http ADDR:PORT (bus/evbus_http.h) ---- */

struct evb_http;
/* Check --http against the security rule (README.md, "Security"): with
 * CURVE on, an address other than loopback needs --http-public, and then a
 * warning is logged; --http-public and --http-events need --http. -1 when
 * fine (usage errors give their exit code). */
int ops_http_check(cli_t *cli, const char *addr, bool curve_on, bool public_ok,
                   bool events);
/* Listen (addr NULL: *out NULL, nothing done), showing the tail of events
 * (--http-events; NULL: not shown); -1 when fine, else the exit code after
 * naming the address. Says where it listens on stderr. */
int ops_http_open(cli_t *cli, const char *addr, evb_store_t *events,
                  struct evb_http **out);

#endif
