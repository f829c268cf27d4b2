/*
 * pub.c: the publisher (PROTOCOL.md, "Live", "Heartbeat", "Catch-up").
 *
 * Publishing follows from the log: every turn reads the events after the last
 * one sent, up to what the store reports durable, and sends them in log
 * order. Nothing is sent from the append path, so "appended but never sent"
 * cannot be silent: a subscriber that misses an event (PUB dropped it, the
 * publisher died before sending it) learns the head from a heartbeat and
 * fetches it. Catch-up is stateless on this side: each request names where to
 * start, and one reply page is read, sent and forgotten, so memory is one
 * page whatever subscribers ask for and however many there are.
 */
#include "evbus_bus.h"
#include "busmsg.h"
#include "codec_int.h"
#include "curve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define PUB_MAX_PER_TURN 20000 /* live events per turn: keeps requests answered */
#define PUB_MAX_REQ_PER_TURN 64
#define HB_CATS_PER_PAGE 64

typedef struct cat_entry {
    char name[EVB_MAX_CATEGORY_LEN + 1];
    /* seq of its last event sent live (or in the log at start), or the end
     * of a hole met live after it: the prev of its next live event and its
     * head in heartbeats */
    uint64_t last;
} cat_entry;

struct evb_pub {
    evb_store_t *st;
    void *zctx, *pub, *router;
    char pub_ep[EVB_BUS_MAX_ENDPOINT], cu_ep[EVB_BUS_MAX_ENDPOINT];
    evb_id log_id;
    char service[EVB_MAX_SERVICE_LEN + 1];
    uint64_t published;
    uint64_t hole_to; /* the end of the last hole met live (0: none) */
    cat_entry *cats; /* sorted by name */
    size_t ncats, capcats;
    size_t hb_cursor; /* next category for the rotating heartbeat pages */
    unsigned hb_ms;
    int64_t next_hb_us;
    evb_pub_stats stats;
    evb_buf hdr, page;
    zl_hook zl;
    bm_ratelog bad_log;  /* "bad catch-up request" lines */
    bm_ratelog hole_log; /* "events cannot be read" lines */
    bool paused;         /* the store is closed (a reopen failed): waiting for it */
    evb_curve_keys keys; /* CURVE server keys (keys.on), else plain */
    curve_zap *zap;  /* the allow-list, in this context */
};

static int s_cmp_cat(const void *a, const void *b)
{
    return strcmp(((const cat_entry *)a)->name, ((const cat_entry *)b)->name);
}

static cat_entry *s_cat(evb_pub_t *p, const char *name, bool create)
{
    cat_entry key;
    snprintf(key.name, sizeof key.name, "%s", name);
    cat_entry *c =
        p->ncats ? bsearch(&key, p->cats, p->ncats, sizeof *p->cats, s_cmp_cat) : NULL;
    if (c != NULL || !create) return c;
    if (p->ncats == p->capcats) {
        size_t nc = p->capcats ? p->capcats * 2 : 16;
        cat_entry *n = realloc(p->cats, nc * sizeof *n);
        if (n == NULL) return NULL;
        p->cats = n;
        p->capcats = nc;
    }
    key.last = p->hole_to; /* it may have had events in that hole */
    p->cats[p->ncats++] = key;
    qsort(p->cats, p->ncats, sizeof *p->cats, s_cmp_cat);
    return bsearch(&key, p->cats, p->ncats, sizeof *p->cats, s_cmp_cat);
}

static int s_on_category(const evb_category_info *ci, void *ctx)
{
    evb_pub_t *p = ctx;
    cat_entry *c = s_cat(p, ci->name, true);
    if (c == NULL) return EVB_ENOMEM;
    c->last = ci->head;
    return 0;
}

/* Options are set before the bind: libzmq gives each connection the options
 * the socket had when it was bound (a high-water mark set after the bind left
 * every subscriber with the default 1000 and ~1 in 10 events to catch up). */
static void *s_socket(evb_pub_t *p, int type, const char *ep, int sndhwm, evb_err *err)
{
    void *s = zmq_socket(p->zctx, type);
    if (s == NULL) {
        evb_err_set(err, EVB_EIO, "socket for %s: %s", ep, zmq_strerror(errno));
        return NULL;
    }
    int zero = 0, one = 1;
    int64_t maxmsg = EVB_BUS_MAX_MSG_BYTES;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (type == ZMQ_ROUTER) zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    if (sndhwm > 0) zmq_setsockopt(s, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    if (p->keys.on && curve_make_server(s, &p->keys, err) != EVB_OK) {
        zmq_close(s);
        return NULL;
    }
    if (bm_bind(s, ep, err) != EVB_OK) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

evb_pub_t *evb_pub_new(const evb_pub_opts *o, evb_err *err)
{
    if (o == NULL || o->store == NULL || o->pub_endpoint == NULL ||
        o->catchup_endpoint == NULL) {
        evb_err_set(err, EVB_EINVAL, "publisher: store and both endpoints are required");
        return NULL;
    }
    if (strlen(o->pub_endpoint) >= EVB_BUS_MAX_ENDPOINT ||
        strlen(o->catchup_endpoint) >= EVB_BUS_MAX_ENDPOINT) {
        evb_err_set(err, EVB_EINVAL, "publisher: endpoint longer than %u bytes",
                    EVB_BUS_MAX_ENDPOINT - 1);
        return NULL;
    }
    evb_pub_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        return NULL;
    }
    p->st = o->store;
    snprintf(p->pub_ep, sizeof p->pub_ep, "%s", o->pub_endpoint);
    snprintf(p->cu_ep, sizeof p->cu_ep, "%s", o->catchup_endpoint);
    p->hb_ms = o->heartbeat_ms ? o->heartbeat_ms : 500;
    p->page.max_cap = EVB_BUS_MAX_PAGE_BYTES + EVB_BUS_MAX_MSG_BYTES;
    evb_store_info info;
    evb_store_get_info(p->st, &info);
    p->log_id = info.log_id;
    snprintf(p->service, sizeof p->service, "%s", info.service);
    p->published = info.synced;
    if (evb_store_categories(p->st, s_on_category, p, err) != EVB_OK) goto fail;
    p->zctx = zmq_ctx_new();
    if (p->zctx == NULL) {
        evb_err_set(err, EVB_EIO, "zmq_ctx_new: %s", zmq_strerror(errno));
        goto fail;
    }
    if (o->curve != NULL) {
        /* The ZAP handler must run in this context before the binds. */
        char who[2 * EVB_BUS_MAX_ENDPOINT + EVB_MAX_SERVICE_LEN + 32];
        snprintf(who, sizeof who, "%s: publisher %s,%s", p->service, p->pub_ep, p->cu_ep);
        if (evb_curve_keys_load(o->curve->cert_file, &p->keys, err) != EVB_OK ||
            (p->zap = curve_zap_start(p->zctx, o->curve->allow_dir, p->keys.pub, who,
                                      err)) == NULL)
            goto fail;
    }
    if ((p->pub = s_socket(p, ZMQ_PUB, p->pub_ep, o->sndhwm > 0 ? o->sndhwm : 100000,
                           err)) == NULL)
        goto fail;
    if ((p->router = s_socket(p, ZMQ_ROUTER, p->cu_ep, 0, err)) == NULL) goto fail;
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&p->log_id, hex);
    evb_log(EVB_LOG_INFO, "%s: publishing log %s on %s, catch-up on %s, from seq %llu",
            p->service, hex, p->pub_ep, p->cu_ep, (unsigned long long)p->published + 1);
    return p;
fail:
    evb_pub_destroy(&p);
    return NULL;
}

void evb_pub_destroy(evb_pub_t **pp)
{
    if (pp == NULL || *pp == NULL) return;
    evb_pub_t *p = *pp;
    if (p->pub) zmq_close(p->pub);
    if (p->router) zmq_close(p->router);
    curve_zap_stop(&p->zap);
    evb_curve_keys_wipe(&p->keys);
    if (p->zctx) zmq_ctx_term(p->zctx);
    free(p->cats);
    evb_buf_free(&p->hdr);
    evb_buf_free(&p->page);
    free(p);
    *pp = NULL;
}

void *evb_pub_socket(evb_pub_t *p)
{
    return p->router;
}

uint64_t evb_pub_auth_refused(const evb_pub_t *p)
{
    return curve_zap_refused(p->zap);
}

void evb_pub_get_stats(const evb_pub_t *p, evb_pub_stats *s)
{
    *s = p->stats;
    s->published = p->published;
}

/* ---- live ---- */

static int s_publish(evb_pub_t *p, evb_err *err)
{
    uint64_t durable = evb_store_synced(p->st);
    if (durable <= p->published) return EVB_OK;
    uint64_t to = durable;
    if (to - p->published > PUB_MAX_PER_TURN) to = p->published + PUB_MAX_PER_TURN;
    evb_iter_t *it = evb_store_read_range(p->st, p->published + 1, to, NULL, err);
    if (it == NULL && err && err->code == EVB_ECLOSED) {
        /* Its owner reopens it once it can (disk full, see evb_store_reopen):
         * wait, serving heartbeats and requests, instead of stopping. */
        if (!p->paused)
            evb_log(EVB_LOG_WARN, "%s: publishing paused at %llu: %s", p->service,
                    (unsigned long long)p->published, err->msg);
        p->paused = true;
        evb_err_clear(err);
        return EVB_OK;
    }
    if (it == NULL) return err ? err->code : EVB_EIO;
    if (p->paused)
        evb_log(EVB_LOG_INFO, "%s: publishing again from %llu", p->service,
                (unsigned long long)p->published + 1);
    p->paused = false;
    /* Not decoded: the stored bytes are sent as they are (store/FORMAT.md,
     * "Reads without decoding"). */
    evb_raw_event re;
    while (evb_iter_next_raw(it, &re, err)) {
        const evb_raw_event *ev = &re;
        const void *raw = re.buf;
        size_t rawlen = re.len;
        cat_entry *c = s_cat(p, ev->category, true);
        uint64_t prev = c ? c->last : 0;
        /* One frame: topic, header, envelope (PROTOCOL.md, "Live"). */
        char topic[EVB_WIRE_TOPIC_MAX];
        size_t tl = evb_wire_topic_event(topic, ev->category);
        p->hdr.len = 0;
        if (tl == 0) { /* appended events have checked categories: our bug */
            evb_err_set(err, EVB_ECORRUPT, "event %llu: category '%s' is not one",
                        (unsigned long long)ev->seq, ev->category);
            break;
        }
        if (evb_buf_append(&p->hdr, topic, tl, err) != EVB_OK ||
            bm_live_header(&p->hdr, prev, err) != EVB_OK ||
            evb_buf_append(&p->hdr, raw, rawlen, err) != EVB_OK)
            break;
        /* Durable, not yet sent: a crash here loses nothing. */
        EVB_CRASH("pub.before_send");
        /* PUB never blocks: at the high-water mark it drops, and the
         * subscriber's gap detection fetches what was dropped. */
        zmq_send(p->pub, p->hdr.data, p->hdr.len, ZMQ_DONTWAIT);
        if (c) c->last = ev->seq;
        p->published = ev->seq;
        p->stats.events_sent++;
    }
    uint64_t hf, ht;
    if (err && err->code == EVB_ECORRUPT && evb_iter_hole(it, &hf, &ht)) {
        /* Not sent live: subscribers see the gap, fetch, and are told of the
         * hole by the catch-up socket. */
        evb_log(EVB_LOG_ERROR,
                "%s: events %llu..%llu of the log cannot be read, not "
                "published: %s",
                p->service, (unsigned long long)hf, (unsigned long long)ht, err->msg);
        p->published = ht;
        p->stats.holes++;
        /* Any category may have had events in the hole. Its next live event
         * (and its head in heartbeats) says the hole's end as its prev, so a
         * feed of one category asks for what it lacks and the catch-up names
         * the hole; with the category's last event sent as prev, a feed of
         * it went on past the hole without a word. */
        p->hole_to = ht;
        for (size_t i = 0; i < p->ncats; i++)
            if (p->cats[i].last < ht) p->cats[i].last = ht;
        evb_err_clear(err);
    }
    evb_iter_destroy(&it);
    if (err && err->code != EVB_OK) {
        evb_log(EVB_LOG_ERROR, "%s: publishing stopped at %llu: %s", p->service,
                (unsigned long long)p->published, err->msg);
        return err->code;
    }
    return EVB_OK;
}

static void s_heartbeat(evb_pub_t *p)
{
    size_t n = p->ncats < HB_CATS_PER_PAGE ? p->ncats : HB_CATS_PER_PAGE;
    if (p->hb_cursor >= p->ncats) p->hb_cursor = 0;
    evb_wire_cat_head heads[HB_CATS_PER_PAGE];
    for (size_t i = 0; i < n; i++) {
        const cat_entry *c = &p->cats[(p->hb_cursor + i) % p->ncats];
        heads[i].name = c->name;
        heads[i].head = c->last;
    }
    p->hb_cursor += n;
    p->hdr.len = 0;
    if (evb_buf_append(&p->hdr, BM_TOPIC_HEARTBEAT, BM_TOPIC_HEARTBEAT_LEN, NULL) !=
            EVB_OK ||
        bm_heartbeat(&p->hdr, &p->log_id, p->published, p->service, heads, n, NULL) !=
            EVB_OK)
        return;
    zmq_send(p->pub, p->hdr.data, p->hdr.len, ZMQ_DONTWAIT);
    p->stats.heartbeats++;
}

/* ---- catch-up ---- */

static void s_bad(evb_pub_t *p, const char *why)
{
    p->stats.bad_requests++;
    uint64_t skipped;
    if (bm_ratelog_ok(&p->bad_log, &skipped))
        evb_log(EVB_LOG_WARN, "%s: bad catch-up request on %s: %s (%llu more not logged)",
                p->service, p->cu_ep, why, (unsigned long long)skipped);
}

/* Send frames to a peer; false (counted) when ROUTER cannot deliver. */
static bool s_reply(evb_pub_t *p, const zmq_msg_t *idm, const void *a, size_t alen,
                    bool more)
{
    if (zmq_send(p->router, zmq_msg_data((zmq_msg_t *)idm),
                 zmq_msg_size((zmq_msg_t *)idm), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(p->router, a, alen, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0) {
        p->stats.unroutable++;
        return false;
    }
    return true;
}

static void s_error_reply(evb_pub_t *p, const zmq_msg_t *idm, uint64_t req_id,
                          const char *code, const char *msg)
{
    p->hdr.len = 0;
    if (bm_error(&p->hdr, req_id, code, msg, NULL) == EVB_OK)
        s_reply(p, idm, p->hdr.data, p->hdr.len, false);
}

/* Read the page a fetch asks for into p->page: *count events, the last one
 * *last, *more when the page is full. 1 when the read stopped at a hole
 * with no event before it ([*hf, *ht] cannot be read); -1 when it failed
 * otherwise (err says why); 0 otherwise. */
static int s_gather(evb_pub_t *p, const bm_request *rq, uint64_t durable, unsigned max,
                    size_t *count, uint64_t *last, bool *more, uint64_t *hf, uint64_t *ht,
                    evb_err *err)
{
    evb_iter_t *it = rq->category[0] != '\0'
                         ? evb_store_read_category(p->st, rq->category, rq->after, NULL, err)
                         : evb_store_read_range(p->st, rq->after + 1, durable, NULL, err);
    if (it == NULL) return -1;
    evb_raw_event ev;
    while (evb_iter_next_raw(it, &ev, err)) {
        if (ev.seq > durable) break;
        const void *raw = ev.buf;
        size_t rawlen = ev.len;
        if (*count == max ||
            (*count > 0 && p->page.len + rawlen > EVB_BUS_MAX_PAGE_BYTES) ||
            evb_buf_append(&p->page, raw, rawlen, NULL) != EVB_OK) {
            *more = true;
            break;
        }
        (*count)++;
        *last = ev.seq;
    }
    bool failed = err && err->code != EVB_OK;
    bool hole = failed && err->code == EVB_ECORRUPT && evb_iter_hole(it, hf, ht);
    evb_iter_destroy(&it);
    if (!failed || (hole && *hf > durable)) return 0; /* a hole past the page: later */
    if (!hole) return -1;
    /* A category read meets a hole in the events not indexed yet: a scan of
     * the log cannot tell whether the hole held events of the category. The
     * index can (the indexer got them when they were appended, before the
     * damage) once it is past the hole, so ask to be asked again; a feed of a
     * category with nothing there then goes on instead of stalling. Without
     * an indexer that will get there, it is a hole. */
    if (rq->category[0] != '\0' && evb_store_indexing(p->st)) {
        evb_store_info info;
        evb_store_get_info(p->st, &info);
        if (*hf > info.indexed) {
            if (*count > 0) {
                *more = true;
                return 0;
            }
            return 2;
        }
    }
    if (*count > 0) { /* the events before the hole; it comes next */
        *more = true;
        return 0;
    }
    if (*ht > durable) *ht = durable;
    return 1;
}

static void s_fetch(evb_pub_t *p, const zmq_msg_t *idm, const bm_request *rq,
                    evb_err *err)
{
    uint64_t durable = p->published; /* only what subscribers may see live */
    unsigned max = rq->max_events;
    if (max == 0 || max > EVB_BUS_MAX_PAGE_EVENTS) max = EVB_BUS_MAX_PAGE_EVENTS;
    p->page.len = 0;
    size_t count = 0;
    uint64_t last = rq->after, hf = 0, ht = 0;
    bool more = false;
    /* At or past the head nothing is read (after + 1 would wrap at 2^64-1). */
    int g = rq->after < durable
                ? s_gather(p, rq, durable, max, &count, &last, &more, &hf, &ht, err)
                : 0;
    if (g == 2) {
        char m[400];
        snprintf(m, sizeof m,
                 "events %llu..%llu cannot be read and are not indexed yet: whether they "
                 "hold events of %s is known once they are; ask again",
                 (unsigned long long)hf, (unsigned long long)ht, rq->category);
        s_error_reply(p, idm, rq->req_id, "EVB_EBUSY", m);
        return;
    }
    if (g < 0) {
        s_error_reply(p, idm, rq->req_id,
                      err && err->code != EVB_OK ? evb_code_name(err->code) : "EVB_EIO",
                      err ? err->msg : "the log cannot be read");
        return;
    }
    if (g > 0) {
        p->stats.holes++;
        uint64_t skipped;
        if (bm_ratelog_ok(&p->hole_log, &skipped))
            evb_log(EVB_LOG_ERROR,
                    "%s: catch-up met events %llu..%llu that cannot be read (the log "
                    "is damaged; `evbus log salvage` copies what is readable): %s (%llu "
                    "more not logged)",
                    p->service, (unsigned long long)hf, (unsigned long long)ht, err->msg,
                    (unsigned long long)skipped);
        p->hdr.len = 0;
        if (bm_hole(&p->hdr, rq->req_id, &p->log_id, durable, hf, ht, NULL) == EVB_OK)
            s_reply(p, idm, p->hdr.data, p->hdr.len, false);
        return;
    }
    /* Without more, every event of the request up to the head was read (or
     * there was none after `after`): the position is the head, never past
     * it, so that a subscriber ahead of the publisher (a log restored from
     * an older backup) does not advance to a position the log lacks. */
    uint64_t position = more ? last : durable;
    p->hdr.len = 0;
    if (bm_page(&p->hdr, rq->req_id, &p->log_id, durable, position, more, count, NULL) !=
        EVB_OK)
        return;
    /* One frame: the page header, then the envelopes end to end. */
    if (evb_buf_append(&p->hdr, p->page.data, p->page.len, NULL) != EVB_OK) return;
    EVB_CRASH("pub.mid_page");
    if (!s_reply(p, idm, p->hdr.data, p->hdr.len, false)) return;
    p->stats.fetches++;
    p->stats.pages_sent++;
}

/* Receive one request (all its frames) and answer it. */
static void s_request(evb_pub_t *p, evb_err *err)
{
    zmq_msg_t idm, body;
    zmq_msg_init(&idm);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&idm, p->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&idm);
        zmq_msg_close(&body);
        return;
    }
    int nframes = 0;
    bool more = zmq_msg_more(&idm);
    while (more) { /* read every frame of the message, keep the first */
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, p->router, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        more = zmq_msg_more(&part);
        if (nframes++ == 0) zmq_msg_move(&body, &part);
        zmq_msg_close(&part);
    }
    if (nframes != 1) {
        s_bad(p, nframes == 0 ? "no request frame" : "more than one request frame");
        s_error_reply(p, &idm, 0, "EVB_EDECODE", "a request is exactly one frame");
        goto done;
    }
    bm_request rq;
    evb_err perr;
    if (bm_parse_request(zmq_msg_data(&body), zmq_msg_size(&body), &rq, &perr) !=
        EVB_OK) {
        s_bad(p, perr.msg);
        /* EVB_EVERSION another version, EVB_EINVAL an unknown message name,
         * EVB_EDECODE a malformed one (PROTOCOL.md, "Errors"). */
        s_error_reply(p, &idm, rq.req_id,
                      perr.code == EVB_EVERSION || perr.code == EVB_EINVAL
                          ? evb_code_name(perr.code)
                          : "EVB_EDECODE",
                      perr.msg);
        goto done;
    }
    if (rq.kind == EVB_WIRE_HELLO) {
        p->hdr.len = 0;
        if (bm_hello_reply(&p->hdr, rq.req_id, &p->log_id, p->published, p->service,
                           NULL) == EVB_OK)
            s_reply(p, &idm, p->hdr.data, p->hdr.len, false);
    } else {
        s_fetch(p, &idm, &rq, err);
    }
done:
    zmq_msg_close(&idm);
    zmq_msg_close(&body);
}

int evb_pub_poll(evb_pub_t *p, int timeout_ms, evb_err *err)
{
    evb_err_clear(err);
    int rc = s_publish(p, err);
    if (rc != EVB_OK) return rc;
    int64_t now = evb_now_us();
    if (now >= p->next_hb_us) {
        s_heartbeat(p);
        p->next_hb_us = now + (int64_t)p->hb_ms * 1000;
    }
    /* Never wait past the next heartbeat. */
    int64_t until_hb = (p->next_hb_us - now) / 1000;
    if (timeout_ms < 0 || timeout_ms > until_hb)
        timeout_ms = until_hb < 0 ? 0 : (int)until_hb;
    zmq_pollitem_t item = {p->router, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout_ms) <= 0) return EVB_OK;
    for (int i = 0; i < PUB_MAX_REQ_PER_TURN; i++) {
        int events = 0;
        size_t sz = sizeof events;
        if (zmq_getsockopt(p->router, ZMQ_EVENTS, &events, &sz) != 0 ||
            !(events & ZMQ_POLLIN))
            break;
        evb_err rerr;
        s_request(p, &rerr);
    }
    return EVB_OK;
}

/* ---- CZMQ ---- */

static int s_poll_any(void *p, int timeout_ms, evb_err *err)
{
    return evb_pub_poll(p, timeout_ms, err);
}

int evb_pub_attach(evb_pub_t *p, zloop_t *loop, evb_err *err)
{
    p->zl = (zl_hook){s_poll_any, p, "publisher"};
    /* The timer publishes what the owner appended and sends heartbeats. */
    if (zl_add_socket(loop, p->router, &p->zl) != 0 || zl_add_timer(loop, 5, &p->zl) != 0)
        return evb_err_set(err, EVB_ENOMEM, "%s: cannot attach the publisher to a zloop",
                           p->service);
    return EVB_OK;
}
