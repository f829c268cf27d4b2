/*
 * busmsg.c: the bus's control messages (PROTOCOL.md). Every message is one
 * msgpack array whose first element is the protocol version and whose second
 * names the message ("hello", "fetch", "page", "error", "hb"); the live
 * header is the short form [version, prev].
 */
#include "busmsg.h"
#include "mpread.h"

#include <czmq.h>
#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

size_t evb_wire_topic_event(char out[EVB_WIRE_TOPIC_MAX], const char *category)
{
    size_t n = strnlen(category, EVB_MAX_CATEGORY_LEN + 1);
    if (n == 0 || n > EVB_MAX_CATEGORY_LEN) return 0;
    out[0] = 'E';
    memcpy(out + 1, category, n);
    out[1 + n] = '\0';
    return n + 2;
}

/* ---- writing ---- */

int bm_write(void *data, const char *buf, size_t len)
{
    bm_writer *w = data;
    if (w->rc == EVB_OK) w->rc = evb_buf_append(w->b, buf, len, NULL);
    return w->rc == EVB_OK ? 0 : -1;
}

void bm_packer_init(msgpack_packer *pk, bm_writer *w, evb_buf *b)
{
    w->b = b;
    w->rc = EVB_OK;
    msgpack_packer_init(pk, w, bm_write);
}

void bm_str(msgpack_packer *pk, const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, n ? s : "", n);
}

#define PACK_BEGIN(b)                                                                    \
    bm_writer w_;                                                                        \
    msgpack_packer pk_;                                                                  \
    bm_packer_init(&pk_, &w_, (b))
#define PK (&pk_)
#define PACK_END(err)                                                                    \
    (w_.rc == EVB_OK ? EVB_OK : evb_err_set((err), w_.rc, "bus message: out of memory"))

static void s_id(msgpack_packer *pk, const evb_id *id)
{
    msgpack_pack_bin(pk, EVB_ID_LEN);
    msgpack_pack_bin_body(pk, id->b, EVB_ID_LEN);
}

int bm_live_header(evb_buf *b, uint64_t prev, evb_err *err)
{
    PACK_BEGIN(b);
    msgpack_pack_array(PK, 2);
    msgpack_pack_uint32(PK, EVB_BUS_PROTOCOL);
    msgpack_pack_uint64(PK, prev);
    return PACK_END(err);
}

int bm_heartbeat(evb_buf *b, const evb_id *log_id, uint64_t head, const char *service,
                 const evb_wire_cat_head *heads, size_t n, evb_err *err)
{
    PACK_BEGIN(b);
    msgpack_pack_array(PK, 6);
    msgpack_pack_uint32(PK, EVB_BUS_PROTOCOL);
    bm_str(PK, "hb");
    s_id(PK, log_id);
    msgpack_pack_uint64(PK, head);
    bm_str(PK, service);
    msgpack_pack_array(PK, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_array(PK, 2);
        bm_str(PK, heads[i].name);
        msgpack_pack_uint64(PK, heads[i].head);
    }
    return PACK_END(err);
}

int evb_wire_hello(evb_buf *b, uint64_t req_id, evb_err *err)
{
    PACK_BEGIN(b);
    msgpack_pack_array(PK, 3);
    msgpack_pack_uint32(PK, EVB_BUS_PROTOCOL);
    bm_str(PK, "hello");
    msgpack_pack_uint64(PK, req_id);
    return PACK_END(err);
}

int evb_wire_fetch(evb_buf *b, uint64_t req_id, const char *category, uint64_t after,
                   unsigned max_events, evb_err *err)
{
    PACK_BEGIN(b);
    msgpack_pack_array(PK, 6);
    msgpack_pack_uint32(PK, EVB_BUS_PROTOCOL);
    bm_str(PK, "fetch");
    msgpack_pack_uint64(PK, req_id);
    if (category == NULL || category[0] == '\0')
        msgpack_pack_nil(PK);
    else
        bm_str(PK, category);
    msgpack_pack_uint64(PK, after);
    msgpack_pack_uint32(PK, max_events);
    return PACK_END(err);
}

int bm_hello_reply(evb_buf *b, uint64_t req_id, const evb_id *log_id, uint64_t head,
                   const char *service, evb_err *err)
{
    PACK_BEGIN(b);
    msgpack_pack_array(PK, 6);
    msgpack_pack_uint32(PK, EVB_BUS_PROTOCOL);
    bm_str(PK, "hello");
    msgpack_pack_uint64(PK, req_id);
    s_id(PK, log_id);
    msgpack_pack_uint64(PK, head);
    bm_str(PK, service);
    return PACK_END(err);
}

int bm_page(evb_buf *b, uint64_t req_id, const evb_id *log_id, uint64_t head,
            uint64_t position, bool more, size_t count, evb_err *err)
{
    PACK_BEGIN(b);
    msgpack_pack_array(PK, 8);
    msgpack_pack_uint32(PK, EVB_BUS_PROTOCOL);
    bm_str(PK, "page");
    msgpack_pack_uint64(PK, req_id);
    s_id(PK, log_id);
    msgpack_pack_uint64(PK, head);
    msgpack_pack_uint64(PK, position);
    if (more)
        msgpack_pack_true(PK);
    else
        msgpack_pack_false(PK);
    msgpack_pack_uint64(PK, count);
    return PACK_END(err);
}

int bm_error(evb_buf *b, uint64_t req_id, const char *code, const char *msg, evb_err *err)
{
    PACK_BEGIN(b);
    msgpack_pack_array(PK, 5);
    msgpack_pack_uint32(PK, EVB_BUS_PROTOCOL);
    bm_str(PK, "error");
    msgpack_pack_uint64(PK, req_id);
    bm_str(PK, code);
    bm_str(PK, msg);
    return PACK_END(err);
}

int bm_hole(evb_buf *b, uint64_t req_id, const evb_id *log_id, uint64_t head,
            uint64_t from, uint64_t to, evb_err *err)
{
    PACK_BEGIN(b);
    msgpack_pack_array(PK, 7);
    msgpack_pack_uint32(PK, EVB_BUS_PROTOCOL);
    bm_str(PK, "hole");
    msgpack_pack_uint64(PK, req_id);
    s_id(PK, log_id);
    msgpack_pack_uint64(PK, head);
    msgpack_pack_uint64(PK, from);
    msgpack_pack_uint64(PK, to);
    return PACK_END(err);
}

/* ---- parsing ---- */

typedef struct {
    mp_cur c;
    const char *what;
    evb_err *err;
} rd;

/* Returns EVB_EDECODE itself, not evb_err_set's result: evb_err_set lives in
 * another file, so the compiler could not tell that a failure is never EVB_OK,
 * and it would think the caller may go on to read an output never written. */
static int s_fail(rd *r, const char *field, const char *why)
{
    evb_err_set(r->err, EVB_EDECODE, "%s: %s: %s", r->what, field, why);
    return EVB_EDECODE;
}

static int s_uint(rd *r, const char *field, uint64_t *out)
{
    mp_val v;
    int rc = mp_next(&r->c, &v);
    if (rc != MP_OK) return s_fail(r, field, mp_rc_str(rc));
    if (v.type != MP_UINT) return s_fail(r, field, "want an unsigned integer");
    *out = v.v.u;
    return EVB_OK;
}

static int s_sval(rd *r, const char *field, mp_val *v)
{
    int rc = mp_next(&r->c, v);
    if (rc != MP_OK) return s_fail(r, field, mp_rc_str(rc));
    if (v->type != MP_STR) return s_fail(r, field, "want a string");
    return EVB_OK;
}

static int s_cstr(rd *r, const char *field, char *out, size_t cap)
{
    mp_val v;
    int rc = s_sval(r, field, &v);
    if (rc != EVB_OK) return rc;
    if (v.v.s.len >= cap) return s_fail(r, field, "too long");
    if (memchr(v.v.s.p, '\0', v.v.s.len) != NULL) return s_fail(r, field, "contains NUL");
    memcpy(out, v.v.s.p, v.v.s.len);
    out[v.v.s.len] = '\0';
    return EVB_OK;
}

static int s_idv(rd *r, const char *field, evb_id *out)
{
    mp_val v;
    int rc = mp_next(&r->c, &v);
    if (rc != MP_OK) return s_fail(r, field, mp_rc_str(rc));
    if (v.type != MP_BIN || v.v.s.len != EVB_ID_LEN)
        return s_fail(r, field, "want a 16-byte bin");
    memcpy(out->b, v.v.s.p, EVB_ID_LEN);
    return EVB_OK;
}

static int s_bool(rd *r, const char *field, bool *out)
{
    mp_val v;
    int rc = mp_next(&r->c, &v);
    if (rc != MP_OK) return s_fail(r, field, mp_rc_str(rc));
    if (v.type != MP_BOOL) return s_fail(r, field, "want a boolean");
    *out = v.v.b;
    return EVB_OK;
}

/* [version, name, ...]: the array header, the version and the name. */
static int s_head(rd *r, const void *buf, size_t len, uint32_t *nfields, char *name,
                  size_t cap)
{
    if (buf == NULL) return s_fail(r, "frame", "empty");
    mp_init(&r->c, buf, len);
    mp_val v;
    int rc = mp_next(&r->c, &v);
    if (rc != MP_OK) return s_fail(r, "frame", mp_rc_str(rc));
    if (v.type != MP_ARRAY || v.v.n < 2)
        return s_fail(r, "frame", "want an array of at least 2 elements");
    *nfields = v.v.n;
    uint64_t ver;
    if ((rc = s_uint(r, "version", &ver)) != EVB_OK) return rc;
    if (ver != EVB_BUS_PROTOCOL)
        return evb_err_set(r->err, EVB_EVERSION,
                           "%s: protocol version %llu, this peer speaks %u", r->what,
                           (unsigned long long)ver, EVB_BUS_PROTOCOL);
    return s_cstr(r, "name", name, cap);
}

static int s_end(rd *r)
{
    if (mp_left(&r->c) != 0) return s_fail(r, "frame", "trailing bytes");
    return EVB_OK;
}

/* Revision 2 (PROTOCOL.md, "Versions"): a message may carry elements after
 * the ones this revision knows; they are skipped whole, so a later revision
 * can append fields without a new protocol version. n is the array's
 * length, known how many elements were read. */
static int s_skip_rest(rd *r, uint32_t n, uint32_t known)
{
    for (uint32_t i = known; i < n; i++) {
        int rc = mp_skip(&r->c, EVB_MAX_DEPTH);
        if (rc != MP_OK) return s_fail(r, "appended field", mp_rc_str(rc));
    }
    return EVB_OK;
}

int evb_wire_parse_live_header(const void *buf, size_t len, uint64_t *prev, size_t *hlen,
                               evb_err *err)
{
    rd r = {{0}, "live header", err};
    if (buf == NULL) return s_fail(&r, "frame", "empty");
    mp_init(&r.c, buf, len);
    mp_val v;
    int rc = mp_next(&r.c, &v);
    if (rc != MP_OK || v.type != MP_ARRAY || v.v.n < 2)
        return s_fail(&r, "frame", "want [version, prev]");
    uint64_t ver;
    if ((rc = s_uint(&r, "version", &ver)) != EVB_OK) return rc;
    if (ver != EVB_BUS_PROTOCOL)
        return evb_err_set(err, EVB_EVERSION,
                           "live header: protocol version %llu, this peer speaks %u",
                           (unsigned long long)ver, EVB_BUS_PROTOCOL);
    if ((rc = s_uint(&r, "prev", prev)) != EVB_OK ||
        (rc = s_skip_rest(&r, v.v.n, 2)) != EVB_OK)
        return rc;
    *hlen = len - mp_left(&r.c);
    return EVB_OK;
}

int evb_wire_split(const void *buf, size_t len, evb_wire_view *views, size_t max,
                   size_t *count, evb_err *err)
{
    mp_cur c;
    mp_init(&c, buf, len);
    size_t n = 0;
    *count = 0;
    while (mp_left(&c) > 0) {
        if (n == max) {
            evb_err_set(err, EVB_EDECODE, "events: more than %zu", max);
            return EVB_EDECODE;
        }
        const uint8_t *start = c.p;
        if (mp_skip(&c, EVB_MAX_DEPTH + 2) != MP_OK) {
            evb_err_set(err, EVB_EDECODE,
                        "events: value %zu is truncated or nested too deep", n + 1);
            return EVB_EDECODE;
        }
        views[n].p = start;
        views[n].len = (size_t)(c.p - start);
        n++;
    }
    *count = n;
    return EVB_OK;
}

int bm_parse_request(const void *buf, size_t len, bm_request *rq, evb_err *err)
{
    memset(rq, 0, sizeof *rq);
    rd r = {{0}, "request", err};
    uint32_t n;
    char name[16];
    int rc = s_head(&r, buf, len, &n, name, sizeof name);
    if (rc == EVB_EVERSION && n >= 3) {
        /* Another version: still read its req_id if it is where version 1
         * has it, so that the error names the request it answers. */
        evb_err ignored;
        rd r2 = {r.c, "request", &ignored};
        uint64_t id;
        if (s_cstr(&r2, "name", name, sizeof name) == EVB_OK &&
            s_uint(&r2, "req_id", &id) == EVB_OK)
            rq->req_id = id;
    }
    if (rc != EVB_OK) return rc;
    if (n >= 3 && (rc = s_uint(&r, "req_id", &rq->req_id)) != EVB_OK) return rc;
    if (strcmp(name, "hello") == 0) {
        if (n < 3) return s_fail(&r, "hello", "want [version, \"hello\", req_id]");
        rq->kind = EVB_WIRE_HELLO;
        if ((rc = s_skip_rest(&r, n, 3)) != EVB_OK) return rc;
        return s_end(&r);
    }
    if (strcmp(name, "fetch") != 0)
        return evb_err_set(err, EVB_EINVAL, "request: unknown command \"%s\"", name);
    if (n < 6)
        return s_fail(&r, "fetch",
                      "want [version, \"fetch\", req_id, category|nil, after, "
                      "max_events]");
    rq->kind = EVB_WIRE_FETCH;
    if (mp_left(&r.c) > 0 && *r.c.p == 0xc0) {
        r.c.p++;
    } else {
        if ((rc = s_cstr(&r, "category", rq->category, sizeof rq->category)) != EVB_OK)
            return rc;
        evb_err cerr;
        if (evb_check_category(rq->category, &cerr) != EVB_OK)
            return s_fail(&r, "category", cerr.msg);
    }
    uint64_t max;
    if ((rc = s_uint(&r, "after", &rq->after)) != EVB_OK ||
        (rc = s_uint(&r, "max_events", &max)) != EVB_OK)
        return rc;
    rq->max_events =
        max > EVB_BUS_MAX_PAGE_EVENTS ? EVB_BUS_MAX_PAGE_EVENTS : (unsigned)max;
    if ((rc = s_skip_rest(&r, n, 6)) != EVB_OK) return rc;
    return s_end(&r);
}

int evb_wire_parse_reply(const void *buf, size_t len, evb_wire_reply *rp, size_t *used,
                         evb_err *err)
{
    *used = 0;
    rp->kind = EVB_WIRE_ERROR;
    rp->nheads = 0;
    rp->service[0] = rp->code[0] = rp->message[0] = '\0';
    rd r = {{0}, "reply", err};
    uint32_t n;
    char name[16];
    int rc = s_head(&r, buf, len, &n, name, sizeof name);
    if (rc != EVB_OK) return rc;
    if (strcmp(name, "hb") == 0) {
        r.what = "heartbeat";
        if (n < 6) return s_fail(&r, "hb", "want 6 elements");
        rp->kind = EVB_WIRE_HB;
        rp->req_id = 0;
        if ((rc = s_idv(&r, "log_id", &rp->log_id)) != EVB_OK ||
            (rc = s_uint(&r, "head", &rp->head)) != EVB_OK ||
            (rc = s_cstr(&r, "service", rp->service, sizeof rp->service)) != EVB_OK)
            return rc;
        mp_val v;
        if ((rc = mp_next(&r.c, &v)) != MP_OK || v.type != MP_ARRAY)
            return s_fail(&r, "heads", "want an array");
        if (v.v.n > EVB_WIRE_MAX_HB_CATS)
            return s_fail(&r, "heads", "too many categories");
        for (uint32_t i = 0; i < v.v.n; i++) {
            mp_val pair;
            if ((rc = mp_next(&r.c, &pair)) != MP_OK || pair.type != MP_ARRAY ||
                pair.v.n != 2)
                return s_fail(&r, "heads", "want [category, head] pairs");
            if ((rc = s_cstr(&r, "heads.category", rp->names[i], sizeof rp->names[i])) !=
                    EVB_OK ||
                (rc = s_uint(&r, "heads.head", &rp->heads[i].head)) != EVB_OK)
                return rc;
            if (evb_check_category(rp->names[i], NULL) != EVB_OK)
                return s_fail(&r, "heads.category", "not a valid category");
            rp->heads[i].name = rp->names[i];
            rp->nheads++;
        }
        if ((rc = s_skip_rest(&r, n, 6)) != EVB_OK) return rc;
        return s_end(&r);
    }
    if (n < 3 || (rc = s_uint(&r, "req_id", &rp->req_id)) != EVB_OK)
        return n < 3 ? s_fail(&r, "reply", "too short") : rc;
    if (strcmp(name, "hello") == 0) {
        if (n < 6) return s_fail(&r, "hello", "want 6 elements");
        rp->kind = EVB_WIRE_HELLO;
        if ((rc = s_idv(&r, "log_id", &rp->log_id)) != EVB_OK ||
            (rc = s_uint(&r, "head", &rp->head)) != EVB_OK ||
            (rc = s_cstr(&r, "service", rp->service, sizeof rp->service)) != EVB_OK ||
            (rc = s_skip_rest(&r, n, 6)) != EVB_OK)
            return rc;
        return s_end(&r);
    }
    if (strcmp(name, "page") == 0) {
        if (n < 8) return s_fail(&r, "page", "want 8 elements");
        rp->kind = EVB_WIRE_PAGE;
        uint64_t count;
        if ((rc = s_idv(&r, "log_id", &rp->log_id)) != EVB_OK ||
            (rc = s_uint(&r, "head", &rp->head)) != EVB_OK ||
            (rc = s_uint(&r, "position", &rp->position)) != EVB_OK ||
            (rc = s_bool(&r, "more", &rp->more)) != EVB_OK ||
            (rc = s_uint(&r, "count", &count)) != EVB_OK ||
            (rc = s_skip_rest(&r, n, 8)) != EVB_OK)
            return rc;
        if (count > EVB_BUS_MAX_PAGE_EVENTS)
            return s_fail(&r, "count", "more than a page may hold");
        rp->count = (uint32_t)count;
        *used = len - mp_left(&r.c); /* the events follow */
        return EVB_OK;
    }
    if (strcmp(name, "hole") == 0) {
        if (n < 7) return s_fail(&r, "hole", "want 7 elements");
        rp->kind = EVB_WIRE_HOLE;
        if ((rc = s_idv(&r, "log_id", &rp->log_id)) != EVB_OK ||
            (rc = s_uint(&r, "head", &rp->head)) != EVB_OK ||
            (rc = s_uint(&r, "from", &rp->hole_from)) != EVB_OK ||
            (rc = s_uint(&r, "to", &rp->hole_to)) != EVB_OK ||
            (rc = s_skip_rest(&r, n, 7)) != EVB_OK)
            return rc;
        if (rp->hole_from == 0 || rp->hole_to < rp->hole_from)
            return s_fail(&r, "hole", "want 0 < from <= to");
        return s_end(&r);
    }
    if (strcmp(name, "error") == 0) {
        if (n < 5) return s_fail(&r, "error", "want 5 elements");
        rp->kind = EVB_WIRE_ERROR;
        mp_val v;
        if ((rc = s_cstr(&r, "code", rp->code, sizeof rp->code)) != EVB_OK ||
            (rc = s_sval(&r, "message", &v)) != EVB_OK)
            return rc;
        size_t l =
            v.v.s.len < sizeof rp->message - 1 ? v.v.s.len : sizeof rp->message - 1;
        memcpy(rp->message, v.v.s.p, l);
        rp->message[l] = '\0';
        if ((rc = s_skip_rest(&r, n, 5)) != EVB_OK) return rc;
        return s_end(&r);
    }
    return evb_err_set(err, EVB_EINVAL, "reply: unknown message \"%s\"", name);
}

/* ---- CZMQ ---- */

static int s_zl_turn(zl_hook *h)
{
    evb_err e;
    if (h->poll(h->obj, 0, &e) != EVB_OK) {
        evb_log(EVB_LOG_ERROR, "%s stopped its loop: %s", h->what, e.msg);
        return -1;
    }
    return 0;
}

static int s_zl_ready(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    return s_zl_turn(arg);
}

static int s_zl_timer(zloop_t *loop, int id, void *arg)
{
    (void)loop;
    (void)id;
    return s_zl_turn(arg);
}

int zl_add_socket(zloop_t *loop, void *sock, zl_hook *h)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    return zloop_poller(loop, &item, s_zl_ready, h) == 0 ? 0 : -1;
}

int zl_add_timer(zloop_t *loop, size_t ms, zl_hook *h)
{
    return zloop_timer(loop, ms, 0, s_zl_timer, h) < 0 ? -1 : 0;
}

void zl_remove_socket(zloop_t *loop, void *sock)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    zloop_poller_end(loop, &item);
}

/* ---- warnings a peer can cause ---- */

bool bm_ratelog_ok(bm_ratelog *r, uint64_t *skipped)
{
    int64_t now = evb_now_us();
    if (r->last_us != 0 && now - r->last_us < 1000000) {
        r->unlogged++;
        return false;
    }
    *skipped = r->unlogged;
    r->unlogged = 0;
    r->last_us = now;
    return true;
}

/* ---- binding ---- */

/* True when a process accepts connections on the unix socket at path. */
static bool s_ipc_served(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (path[0] == '@' || strlen(path) >= sizeof sa.sun_path) return false;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    bool served = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return served; /* ECONNREFUSED: a file nobody serves; ENOENT: no file */
}

int bm_bind(void *sock, const char *ep, evb_err *err)
{
    if (strncmp(ep, "ipc://", 6) == 0 && s_ipc_served(ep + 6))
        return evb_err_set(err, EVB_EIO,
                           "cannot bind %s: in use by a running process (another "
                           "service or evbus serve?); choose another path", ep);
    if (zmq_bind(sock, ep) == 0) return EVB_OK;
    return evb_err_set(err, errno == EINVAL || errno == EPROTONOSUPPORT ? EVB_EINVAL : EVB_EIO,
                       "cannot bind %s: %s", ep, zmq_strerror(errno));
}

/* ---- the subscriber's sockets ---- */

void evb_wire_sub_sockopts(void *sub, void *dealer, int rcvhwm)
{
    int zero = 0, one = 1, ivl = 1000, tmo = 3000;
    int64_t live_max = EVB_BUS_MAX_MSG_BYTES;
    int64_t page_max = (int64_t)EVB_BUS_MAX_PAGE_BYTES + EVB_BUS_MAX_MSG_BYTES;
    void *socks[2] = {sub, dealer};
    for (int i = 0; i < 2; i++) {
        zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(socks[i], ZMQ_MAXMSGSIZE, i == 0 ? &live_max : &page_max,
                       sizeof live_max);
    }
    /* ZMTP heartbeats on the DEALER only. On a SUB whose queue is full
     * (a reader slower than the publisher), libzmq 4.3.4 aborts the process
     * when the heartbeat times out (issue #3937: the timeout replaces the
     * engine while its input is stopped). The DEALER holds no limit
     * (RCVHWM 0), so its input never stops. A SUB's dead link is found by
     * evbus heartbeats instead (evb_wire_sub_redial). */
    zmq_setsockopt(dealer, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(dealer, ZMQ_HEARTBEAT_TIMEOUT, &tmo, sizeof tmo);
    zmq_setsockopt(sub, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    zmq_setsockopt(dealer, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(dealer, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, BM_TOPIC_HEARTBEAT, BM_TOPIC_HEARTBEAT_LEN);
}

bool evb_wire_sub_redial(void *sub, const char *pub_ep)
{
    int events = 0;
    size_t sz = sizeof events;
    if (zmq_getsockopt(sub, ZMQ_EVENTS, &events, &sz) == 0 && (events & ZMQ_POLLIN))
        return false; /* messages wait: the reader is behind, the link is alive */
    (void)zmq_disconnect(sub, pub_ep); /* fails only if it was never connected */
    return zmq_connect(sub, pub_ep) == 0;
}

int evb_wire_sub_connect(void *sub, void *dealer, const char *pub_ep, const char *cu_ep,
                         evb_err *err)
{
    if (zmq_connect(sub, pub_ep) != 0)
        return evb_err_set(err, EVB_EINVAL, "cannot connect to %s: %s", pub_ep,
                           zmq_strerror(errno));
    if (zmq_connect(dealer, cu_ep) != 0)
        return evb_err_set(err, EVB_EINVAL, "cannot connect to %s: %s", cu_ep,
                           zmq_strerror(errno));
    return EVB_OK;
}

size_t evb_wire_drain(void *sock, bool more)
{
    size_t n = 0;
    while (more) {
        zmq_msg_t x;
        zmq_msg_init(&x);
        if (zmq_msg_recv(&x, sock, 0) < 0) {
            zmq_msg_close(&x);
            break;
        }
        more = zmq_msg_more(&x);
        zmq_msg_close(&x);
        n++;
    }
    return n;
}

evb_wire_live_kind evb_wire_live_topic(const void *msg, size_t len,
                                       char cat[EVB_MAX_CATEGORY_LEN + 1],
                                       const uint8_t **body, size_t *blen,
                                       const char **why)
{
    /* topic: "H\0" or "E" category "\0", then the body */
    const uint8_t *p = msg;
    const uint8_t *nul =
        len > 0 ? memchr(p, '\0',
                         len < 2 + EVB_MAX_CATEGORY_LEN ? len : 2 + EVB_MAX_CATEGORY_LEN)
                : NULL;
    if (nul == NULL) {
        *why = "live socket: no topic";
        return EVB_WIRE_LIVE_BAD;
    }
    *body = nul + 1;
    *blen = len - (size_t)(nul + 1 - p);
    if (p[0] == 'H' && nul == p + 1) return EVB_WIRE_LIVE_HB;
    if (p[0] != 'E' || nul == p + 1) {
        *why = "unknown topic on the live socket";
        return EVB_WIRE_LIVE_BAD;
    }
    size_t cl = (size_t)(nul - p - 1);
    memcpy(cat, p + 1, cl);
    cat[cl] = '\0';
    if (evb_check_category(cat, NULL) != EVB_OK) {
        *why = "live socket: topic is not a category";
        return EVB_WIRE_LIVE_BAD;
    }
    return EVB_WIRE_LIVE_EVENT;
}
