/*
 * cmd.c: the command socket (PROTOCOL.md, "Command socket").
 *
 * Request:  [1, req_id (uint), command (str), args (map)]
 * Reply:    [1, req_id, "ok", body (map)]  or  [1, req_id, code (str), message (str)]
 * One frame each way (the ROUTER adds the identity). The server is
 * stateless between requests. A client keeps one DEALER for many calls and
 * matches replies by req_id, so a late reply to a call that timed out is
 * dropped rather than taken for the next one.
 */
#include "evbus_bus.h"
#include "busmsg.h"
#include "mpread.h"
#include "curve.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define CMD_MAX 32
#define CMD_NAME_MAX 32

typedef struct cmd_entry {
    char name[CMD_NAME_MAX + 1];
    evb_cmd_fn fn;
    void *ctx;
} cmd_entry;

struct evb_cmd {
    void *zctx, *router;
    char endpoint[EVB_BUS_MAX_ENDPOINT];
    cmd_entry cmds[CMD_MAX];
    size_t ncmds;
    evb_buf body, reply;
    zl_hook zl;
    uint64_t bad;
    bm_ratelog bad_log;  /* "bad request" lines */
    bm_ratelog lost_log; /* "reply not delivered" lines */
    evb_curve_keys keys; /* CURVE server (keys.on), else plain */
    curve_zap *zap;
};

evb_cmd_t *evb_cmd_new(const evb_cmd_opts *opts, evb_err *err)
{
    const char *endpoint = opts != NULL ? opts->endpoint : NULL;
    const evb_curve *curve = opts != NULL ? opts->curve : NULL;
    if (endpoint == NULL || strlen(endpoint) >= EVB_BUS_MAX_ENDPOINT) {
        evb_err_set(err, EVB_EINVAL, "command socket: bad endpoint");
        return NULL;
    }
    evb_cmd_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    c->zctx = zmq_ctx_new();
    c->router = c->zctx ? zmq_socket(c->zctx, ZMQ_ROUTER) : NULL;
    if (c->router == NULL) {
        evb_err_set(err, EVB_EIO, "command socket: %s", zmq_strerror(errno));
        evb_cmd_destroy(&c);
        return NULL;
    }
    int zero = 0, one = 1;
    int64_t maxmsg = EVB_BUS_MAX_MSG_BYTES;
    zmq_setsockopt(c->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(c->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    if (curve != NULL) {
        /* The ZAP handler must run in this context before the bind. */
        char who[EVB_BUS_MAX_ENDPOINT + 32];
        snprintf(who, sizeof who, "command socket %s", endpoint);
        if (evb_curve_keys_load(curve->cert_file, &c->keys, err) != EVB_OK ||
            (c->zap = curve_zap_start(c->zctx, curve->allow_dir, c->keys.pub, who,
                                      err)) == NULL ||
            curve_make_server(c->router, &c->keys, err) != EVB_OK) {
            evb_cmd_destroy(&c);
            return NULL;
        }
    }
    if (bm_bind(c->router, endpoint, err) != EVB_OK) {
        evb_cmd_destroy(&c);
        return NULL;
    }
    return c;
}

void evb_cmd_destroy(evb_cmd_t **cp)
{
    if (cp == NULL || *cp == NULL) return;
    evb_cmd_t *c = *cp;
    if (c->router) zmq_close(c->router);
    curve_zap_stop(&c->zap);
    evb_curve_keys_wipe(&c->keys);
    if (c->zctx) zmq_ctx_term(c->zctx);
    evb_buf_free(&c->body);
    evb_buf_free(&c->reply);
    free(c);
    *cp = NULL;
}

int evb_cmd_on(evb_cmd_t *c, const char *name, evb_cmd_fn fn, void *ctx, evb_err *err)
{
    if (name == NULL || strlen(name) == 0 || strlen(name) > CMD_NAME_MAX || fn == NULL)
        return evb_err_set(err, EVB_EINVAL, "command name must be 1..%d bytes",
                           CMD_NAME_MAX);
    if (c->ncmds == CMD_MAX)
        return evb_err_set(err, EVB_ETOOBIG, "more than %d commands", CMD_MAX);
    for (size_t i = 0; i < c->ncmds; i++)
        if (strcmp(c->cmds[i].name, name) == 0)
            return evb_err_set(err, EVB_EINVAL, "command %s registered twice", name);
    snprintf(c->cmds[c->ncmds].name, sizeof c->cmds[0].name, "%s", name);
    c->cmds[c->ncmds].fn = fn;
    c->cmds[c->ncmds].ctx = ctx;
    c->ncmds++;
    return EVB_OK;
}

void *evb_cmd_socket(evb_cmd_t *c)
{
    return c->router;
}

uint64_t evb_cmd_bad_requests(const evb_cmd_t *c)
{
    return c->bad;
}

uint64_t evb_cmd_auth_refused(const evb_cmd_t *c)
{
    return curve_zap_refused(c->zap);
}

/* Reply: [1, req_id, status, body-or-message]. body is a packed map. */
static void s_reply(evb_cmd_t *c, zmq_msg_t *idm, uint64_t req_id, const char *status,
                    const evb_buf *body, const char *message)
{
    c->reply.len = 0;
    bm_writer w;
    msgpack_packer pk;
    bm_packer_init(&pk, &w, &c->reply);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, EVB_BUS_PROTOCOL);
    msgpack_pack_uint64(&pk, req_id);
    bm_str(&pk, status);
    if (body != NULL)
        bm_write(&w, body->data, body->len);
    else
        bm_str(&pk, message);
    if (w.rc != EVB_OK || c->reply.len > EVB_BUS_MAX_MSG_BYTES) {
        /* Never silence: the client hears why (an error reply is small). */
        char why[160];
        snprintf(why, sizeof why,
                 w.rc != EVB_OK ? "the reply could not be made: out of memory"
                                : "the reply (%zu bytes) is larger than the message ceiling "
                                  "(%u bytes): ask for less (a query pages: limit, after)",
                 c->reply.len, EVB_BUS_MAX_MSG_BYTES);
        evb_log(EVB_LOG_ERROR, "command socket %s: request %llu: %s", c->endpoint,
                (unsigned long long)req_id, why);
        if (body == NULL) return; /* already an error that did not fit */
        s_reply(c, idm, req_id, w.rc != EVB_OK ? "EVB_ENOMEM" : "EVB_ETOOBIG", NULL, why);
        return;
    }
    if (zmq_send(c->router, zmq_msg_data(idm), zmq_msg_size(idm),
                 ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(c->router, c->reply.data, c->reply.len, ZMQ_DONTWAIT) < 0) {
        uint64_t skipped;
        if (bm_ratelog_ok(&c->lost_log, &skipped))
            evb_log(EVB_LOG_WARN,
                    "command socket %s: reply not delivered (client gone; %llu more "
                    "not logged)",
                    c->endpoint, (unsigned long long)skipped);
    }
}

static void s_bad(evb_cmd_t *c, zmq_msg_t *idm, uint64_t req_id, int code,
                  const char *why)
{
    c->bad++;
    uint64_t skipped;
    if (bm_ratelog_ok(&c->bad_log, &skipped))
        evb_log(EVB_LOG_WARN, "command socket %s: bad request: %s (%llu more not logged)",
                c->endpoint, why, (unsigned long long)skipped);
    s_reply(c, idm, req_id, evb_code_name(code), NULL, why);
}

static void s_handle(evb_cmd_t *c, zmq_msg_t *idm, const void *buf, size_t len)
{
    mp_cur cur;
    mp_init(&cur, buf, len);
    mp_val v;
    uint64_t req_id = 0;
    /* Revision 2 (PROTOCOL.md, "Versions"): elements after args are
     * skipped, so that a later revision may append some. */
    if (mp_next(&cur, &v) != MP_OK || v.type != MP_ARRAY || v.v.n < 4) {
        s_bad(c, idm, 0, EVB_EDECODE, "a request is [1, req_id, command, args]");
        return;
    }
    uint32_t nfields = v.v.n;
    if (mp_next(&cur, &v) != MP_OK || v.type != MP_UINT) {
        s_bad(c, idm, 0, EVB_EDECODE, "request: version is not an integer");
        return;
    }
    uint64_t version = v.v.u;
    bool has_id = mp_next(&cur, &v) == MP_OK && v.type == MP_UINT;
    if (has_id) req_id = v.v.u;
    if (version != EVB_BUS_PROTOCOL) { /* named by its req_id when it has one */
        char why[96];
        snprintf(why, sizeof why, "request: protocol version %llu, this peer speaks %u",
                 (unsigned long long)version, EVB_BUS_PROTOCOL);
        s_bad(c, idm, req_id, EVB_EVERSION, why);
        return;
    }
    if (!has_id) {
        s_bad(c, idm, 0, EVB_EDECODE, "request: req_id is not an unsigned integer");
        return;
    }
    if (mp_next(&cur, &v) != MP_OK || v.type != MP_STR || v.v.s.len == 0 ||
        v.v.s.len > CMD_NAME_MAX) {
        s_bad(c, idm, req_id, EVB_EDECODE, "request: command is not a short string");
        return;
    }
    char name[CMD_NAME_MAX + 1];
    memcpy(name, v.v.s.p, v.v.s.len);
    name[v.v.s.len] = '\0';
    const void *args = cur.p;
    mp_cur rest = cur;
    if (mp_skip(&rest, EVB_MAX_DEPTH + 1) != MP_OK) {
        s_bad(c, idm, req_id, EVB_EDECODE, "request args: not one msgpack value");
        return;
    }
    size_t args_len = (size_t)(rest.p - cur.p);
    for (uint32_t i = 4; i < nfields; i++)
        if (mp_skip(&rest, EVB_MAX_DEPTH + 1) != MP_OK) {
            s_bad(c, idm, req_id, EVB_EDECODE, "request: an appended field is malformed");
            return;
        }
    evb_err err;
    if (mp_left(&rest) != 0) {
        s_bad(c, idm, req_id, EVB_EDECODE, "request: trailing bytes after the array");
        return;
    }
    if (evb_check_map(args, args_len, "request args", &err) != EVB_OK) {
        s_bad(c, idm, req_id, EVB_EDECODE, err.msg);
        return;
    }
    const cmd_entry *e = NULL;
    for (size_t i = 0; i < c->ncmds && e == NULL; i++)
        if (strcmp(c->cmds[i].name, name) == 0) e = &c->cmds[i];
    if (e == NULL) {
        char why[128];
        snprintf(why, sizeof why, "unknown command \"%s\"", name);
        s_bad(c, idm, req_id, EVB_EINVAL, why);
        return;
    }
    c->body.len = 0;
    evb_err_clear(&err);
    int rc = e->fn(args, args_len, &c->body, e->ctx, &err);
    if (rc == EVB_OK) {
        if (c->body.len == 0)
            evb_buf_append(&c->body, evb_empty_map, sizeof evb_empty_map, NULL);
        s_reply(c, idm, req_id, "ok", &c->body, NULL);
    } else {
        s_reply(c, idm, req_id, evb_code_name(rc), NULL,
                err.msg[0] ? err.msg : evb_strerror(rc));
    }
}

int evb_cmd_poll(evb_cmd_t *c, int timeout_ms, evb_err *err)
{
    zmq_pollitem_t item = {c->router, 0, ZMQ_POLLIN, 0};
    int n = zmq_poll(&item, 1, timeout_ms);
    if (n < 0 && errno != EINTR)
        return evb_err_set(err, errno == ETERM ? EVB_ECLOSED : EVB_EIO,
                           "command socket %s: %s", c->endpoint, zmq_strerror(errno));
    if (n <= 0) return EVB_OK;
    for (int k = 0; k < 256; k++) {
        zmq_msg_t idm, body;
        zmq_msg_init(&idm);
        if (zmq_msg_recv(&idm, c->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&idm);
            break;
        }
        zmq_msg_init(&body);
        int frames = 0;
        bool more = zmq_msg_more(&idm);
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, c->router, 0) < 0) {
                zmq_msg_close(&part);
                break;
            }
            more = zmq_msg_more(&part);
            if (frames++ == 0) zmq_msg_move(&body, &part);
            zmq_msg_close(&part);
        }
        if (frames != 1)
            s_bad(c, &idm, 0, EVB_EDECODE, "a request is exactly one frame");
        else
            s_handle(c, &idm, zmq_msg_data(&body), zmq_msg_size(&body));
        zmq_msg_close(&body);
        zmq_msg_close(&idm);
    }
    return EVB_OK;
}

/* ---- client ----
 * One DEALER per client, connected once and kept. Requests carry increasing
 * ids; a reply whose id is not the current request's is a late answer to a
 * request that timed out and is dropped, so a timeout never wedges the
 * client nor shifts the next call's answer. ZMQ_IMMEDIATE keeps requests
 * from queueing while there is no connection: a call to a service that is
 * down times out with nothing left behind to be delivered minutes later. */

struct evb_cmd_client {
    void *zctx, *dealer;
    char endpoint[EVB_BUS_MAX_ENDPOINT];
    uint64_t last_id; /* id of the latest request sent */
    evb_buf req;
    evb_curve_keys keys; /* CURVE client (keys.on), else plain */
    evb_curve_link link; /* handshake events of the DEALER */
    bool hard_refusal; /* the server said no (allow-list, mechanism), not just closed */
};

evb_cmd_client_t *evb_cmd_client_new(const evb_cmd_opts *opts, evb_err *err)
{
    const char *endpoint = opts != NULL ? opts->endpoint : NULL;
    const evb_curve *curve = opts != NULL ? opts->curve : NULL;
    if (endpoint == NULL) {
        evb_err_set(err, EVB_EINVAL, "command client: endpoint is required");
        return NULL;
    }
    if (strlen(endpoint) >= EVB_BUS_MAX_ENDPOINT) {
        evb_err_set(err, EVB_EUNREACHABLE, "%.64s...: endpoint longer than %u bytes",
                    endpoint, EVB_BUS_MAX_ENDPOINT - 1);
        return NULL;
    }
    evb_cmd_client_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    c->req.max_cap = EVB_BUS_MAX_MSG_BYTES;
    c->zctx = zmq_ctx_new();
    c->dealer = c->zctx ? zmq_socket(c->zctx, ZMQ_DEALER) : NULL;
    if (c->dealer == NULL) {
        evb_err_set(err, EVB_EIO, "command client: %s", zmq_strerror(errno));
        evb_cmd_client_destroy(&c);
        return NULL;
    }
    int zero = 0, one = 1;
    int64_t maxmsg = EVB_BUS_MAX_MSG_BYTES;
    zmq_setsockopt(c->dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->dealer, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(c->dealer, ZMQ_IMMEDIATE, &one, sizeof one);
    if (curve != NULL) {
        char server[EVB_CURVE_Z85];
        int rc = evb_curve_keys_load(curve->cert_file, &c->keys, err);
        if (rc == EVB_OK) rc = evb_curve_server_key(curve->server_key, server, err);
        if (rc == EVB_OK) rc = evb_curve_make_client(c->dealer, &c->keys, server, err);
        if (rc != EVB_OK) {
            evb_cmd_client_destroy(&c);
            return NULL;
        }
    }
    /* Watched in plain mode too: a plain client of a CURVE server is told. */
    if (evb_curve_link_open(&c->link, c->zctx, c->dealer, endpoint,
                            c->keys.on ? &c->keys : NULL, err) != EVB_OK) {
        evb_cmd_client_destroy(&c);
        return NULL;
    }
    if (zmq_connect(c->dealer, endpoint) != 0) {
        /* Not EVB_EINVAL: that is what a service answers for a bad request,
         * and a caller must tell "wrong address" from "wrong arguments". */
        evb_err_set(err, errno == ENOMEM ? EVB_ENOMEM : EVB_EUNREACHABLE,
                    "cannot connect to %s: %s", endpoint, zmq_strerror(errno));
        evb_cmd_client_destroy(&c);
        return NULL;
    }
    return c;
}

void evb_cmd_client_destroy(evb_cmd_client_t **cp)
{
    if (cp == NULL || *cp == NULL) return;
    evb_cmd_client_t *c = *cp;
    evb_curve_link_close(&c->link);
    if (c->dealer) zmq_close(c->dealer);
    evb_curve_keys_wipe(&c->keys);
    if (c->zctx) zmq_ctx_term(c->zctx);
    evb_buf_free(&c->req);
    free(c);
    *cp = NULL;
}

/* Receive one message (draining extra frames: a reply is one frame). */
static int s_recv_one(void *d, zmq_msg_t *m)
{
    zmq_msg_init(m);
    if (zmq_msg_recv(m, d, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(m);
        return -1;
    }
    bool more = zmq_msg_more(m);
    while (more) {
        zmq_msg_t x;
        zmq_msg_init(&x);
        if (zmq_msg_recv(&x, d, 0) < 0)
            more = false;
        else
            more = zmq_msg_more(&x);
        zmq_msg_close(&x);
    }
    return 0;
}

/* Milliseconds left until end_us, at least 0. */
static long s_left_ms(int64_t end_us)
{
    int64_t left = end_us - evb_now_us();
    return left <= 0 ? 0 : (long)((left + 999) / 1000);
}

/* Read the DEALER's handshake events; true when the server refused the
 * last handshake (c->link.why says why). A handshake that broke off without
 * a refusal (a wrong server key looks like that) is remembered for the
 * timeout's message. The link's own retries are not used: a client tries
 * again when it is asked to make a call. */
static bool s_watch(evb_cmd_client_t *c)
{
    evb_curve_ev ev = evb_curve_link_check(&c->link, 0);
    if (ev == EVB_CURVE_EV_REFUSED || ev == EVB_CURVE_EV_FAILED)
        c->hard_refusal = ev == EVB_CURVE_EV_REFUSED;
    c->link.retry_us = 0;
    return c->link.bad && c->hard_refusal;
}

/* Wait for the socket to be writable (a connection whose handshake passed)
 * or end_us: EVB_OK, EVB_ETIMEDOUT, or EVB_EAUTH when the server refused us
 * (or every handshake failed). */
static int s_wait_writable(evb_cmd_client_t *c, int64_t end_us)
{
    /* Refused before this call: libzmq gave the connection up; try again, the
     * server's allow-list may have changed since. */
    if (s_watch(c)) {
        evb_curve_link_retry(&c->link);
        c->link.bad = c->hard_refusal = false; /* only a new refusal counts */
    }
    for (;;) {
        zmq_pollitem_t items[2] = {{c->dealer, 0, ZMQ_POLLOUT, 0},
                                   {curve_mon_socket(c->link.mon), 0, ZMQ_POLLIN, 0}};
        long left = s_left_ms(end_us);
        int n = zmq_poll(items, 2, left);
        if (n > 0 && (items[0].revents & ZMQ_POLLOUT)) return EVB_OK;
        if (s_watch(c)) return EVB_EAUTH;
        if ((n < 0 && errno != EINTR) || left == 0) return c->link.bad ? EVB_EAUTH : EVB_ETIMEDOUT;
    }
}

/* One reply m: EVB_OK and *done when it answers req_id (out or err filled),
 * EVB_OK and !*done when it is someone else's (dropped), EVB_EDECODE when
 * it is not a command-socket reply. */
static int s_take_reply(evb_cmd_client_t *c, zmq_msg_t *m, uint64_t req_id,
                        const char *command, bool *done, evb_buf *out, evb_err *err)
{
    *done = false;
    mp_cur cur;
    mp_init(&cur, zmq_msg_data(m), zmq_msg_size(m));
    mp_val v;
    char status[32] = "";
    /* Elements after the fourth are skipped (revision 2). */
    bool ok = mp_next(&cur, &v) == MP_OK && v.type == MP_ARRAY && v.v.n >= 4;
    uint32_t nfields = ok ? v.v.n : 0;
    ok = ok && mp_next(&cur, &v) == MP_OK && v.type == MP_UINT;
    if (ok && v.v.u != EVB_BUS_PROTOCOL)
        return evb_err_set(err, EVB_EVERSION,
                           "%s: reply to %s in bus protocol version %llu, this peer "
                           "speaks %u",
                           c->endpoint, command, (unsigned long long)v.v.u,
                           EVB_BUS_PROTOCOL);
    ok = ok && mp_next(&cur, &v) == MP_OK && v.type == MP_UINT;
    uint64_t id = ok ? v.v.u : 0;
    if (ok)
        ok = mp_next(&cur, &v) == MP_OK && v.type == MP_STR && v.v.s.len > 0 &&
             v.v.s.len < sizeof status;
    if (!ok)
        return evb_err_set(err, EVB_EDECODE,
                           "%s: malformed reply to %s (not a command socket?)",
                           c->endpoint, command);
    if (id != req_id) return EVB_OK; /* a late reply to a request that timed out */
    *done = true;
    memcpy(status, v.v.s.p, v.v.s.len);
    status[v.v.s.len] = '\0';
    const void *rest = cur.p;
    mp_cur end = cur;
    bool whole = mp_skip(&end, EVB_MAX_DEPTH + 1) == MP_OK;
    size_t rest_len = (size_t)(end.p - cur.p);
    for (uint32_t i = 4; whole && i < nfields; i++)
        whole = mp_skip(&end, EVB_MAX_DEPTH + 1) == MP_OK;
    if (!whole || mp_left(&end) != 0)
        return evb_err_set(err, EVB_EDECODE, "%s: malformed reply to %s", c->endpoint,
                           command);
    if (strcmp(status, "ok") == 0) {
        int rc = evb_check_map(rest, rest_len, "reply body", err);
        if (rc != EVB_OK) return rc;
        out->len = 0;
        return evb_buf_append(out, rest, rest_len, err);
    }
    int code = evb_code_from_name(status);
    if (code <= 0) code = EVB_EIO;
    mp_val msg;
    if (mp_next(&cur, &msg) == MP_OK && msg.type == MP_STR)
        return evb_err_set(err, code, "%.*s",
                           (int)(msg.v.s.len > 400 ? 400 : msg.v.s.len), msg.v.s.p);
    return evb_err_set(err, code, "%s", evb_strerror(code));
}

int evb_cmd_client_call(evb_cmd_client_t *c, const char *command, const void *args,
                        size_t args_len, int timeout_ms, evb_buf *out, evb_err *err)
{
    if (c == NULL || command == NULL || out == NULL)
        return evb_err_set(err, EVB_EINVAL, "call: client, command and out are required");
    size_t cl = strlen(command);
    if (cl == 0 || cl > CMD_NAME_MAX)
        return evb_err_set(err, EVB_EINVAL, "call: command name must be 1..%d bytes",
                           CMD_NAME_MAX);
    if (timeout_ms < 0) timeout_ms = 0;
    if (args == NULL) {
        args = evb_empty_map;
        args_len = sizeof evb_empty_map;
    }
    if (evb_check_map(args, args_len, "call args", err) != EVB_OK) return EVB_EINVAL;
    uint64_t req_id = ++c->last_id;
    c->req.len = 0;
    bm_writer w;
    msgpack_packer pk;
    bm_packer_init(&pk, &w, &c->req);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, EVB_BUS_PROTOCOL);
    msgpack_pack_uint64(&pk, req_id);
    bm_str(&pk, command);
    bm_write(&w, args, args_len);
    if (w.rc == EVB_ETOOBIG)
        return evb_err_set(err, EVB_ETOOBIG, "call %s: request larger than %u bytes",
                           command, EVB_BUS_MAX_MSG_BYTES);
    if (w.rc != EVB_OK) return evb_err_set(err, w.rc, "out of memory");

    int64_t end = evb_now_us() + (int64_t)timeout_ms * 1000;
    int ready = s_wait_writable(c, end);
    if (ready == EVB_EAUTH)
        return evb_err_set(err, EVB_EAUTH, "%s: %s not sent: %s", c->endpoint, command,
                           c->link.why);
    if (ready != EVB_OK || zmq_send(c->dealer, c->req.data, c->req.len, ZMQ_DONTWAIT) < 0)
        return evb_err_set(err, EVB_ETIMEDOUT,
                           "%s: %s not sent: no connection within %d ms (nothing "
                           "listening?)",
                           c->endpoint, command, timeout_ms);
    for (;;) {
        zmq_msg_t m;
        while (s_recv_one(c->dealer, &m) == 0) {
            bool done;
            int rc = s_take_reply(c, &m, req_id, command, &done, out, err);
            zmq_msg_close(&m);
            if (rc != EVB_OK || done) return rc;
        }
        if (s_watch(c))
            return evb_err_set(err, EVB_EAUTH, "%s: no reply to %s: %s", c->endpoint,
                               command, c->link.why);
        long left = s_left_ms(end);
        if (left == 0) break;
        zmq_pollitem_t items[2] = {{c->dealer, 0, ZMQ_POLLIN, 0},
                                   {curve_mon_socket(c->link.mon), 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, left) < 0 && errno != EINTR) break;
    }
    return evb_err_set(err, EVB_ETIMEDOUT, "%s: no reply to %s within %d ms", c->endpoint,
                       command, timeout_ms);
}

int evb_cmd_call(const evb_cmd_opts *opts, const char *command, const void *args,
                 size_t args_len, int timeout_ms, evb_buf *out, evb_err *err)
{
    evb_err e = {0};
    evb_cmd_client_t *c = evb_cmd_client_new(opts, &e);
    if (c == NULL) {
        if (err != NULL) *err = e;
        return e.code;
    }
    int rc = evb_cmd_client_call(c, command, args, args_len, timeout_ms, out, err);
    evb_cmd_client_destroy(&c);
    return rc;
}

/* ---- CZMQ ---- */

static int s_poll_any(void *c, int timeout_ms, evb_err *err)
{
    return evb_cmd_poll(c, timeout_ms, err);
}

int evb_cmd_attach(evb_cmd_t *c, zloop_t *loop, evb_err *err)
{
    c->zl = (zl_hook){s_poll_any, c, "command socket"};
    if (zl_add_socket(loop, c->router, &c->zl) != 0)
        return evb_err_set(err, EVB_ENOMEM, "command socket %s: cannot attach to a zloop",
                           c->endpoint);
    return EVB_OK;
}
