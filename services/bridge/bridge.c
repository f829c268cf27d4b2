/*
 * evbus-bridge: export the logs of evbus services into NATS JetStream,
 * exactly once (services/bridge/README.md).
 *
 * One link per followed publisher. A link probes the publisher (a hello on
 * its catch-up socket: log id, head, service), makes sure the JetStream
 * stream of that service exists, reads the stream's last message (its
 * Evbus-Log-Id and Evbus-Seq headers say which log and how far), and then
 * follows the publisher with a tap (bus/evbus_bus.h: history then live, in
 * log order, no store) from the next sequence. JetStream is the only record
 * of what was exported: the bridge keeps nothing on disk.
 *
 * Each event is published asynchronously with Nats-Msg-Id = the event's id
 * and Nats-Expected-Last-Sequence = the stream's sequence the message must
 * follow, so JetStream stores it only right after its predecessor: a second
 * bridge, a resend after a lost ack, or a message from before a reconnect
 * that arrives late is refused instead of stored twice or out of order.
 * Any refusal or timeout sends the link back to reading the stream's last
 * message, and it goes on from there.
 *
 * Backpressure: at most --max-pending publishes are in flight per link;
 * while JetStream is slower, the tap is not polled, the bus's high-water
 * marks drop live events and the tap fetches them later. Nothing grows
 * without bound.
 *
 * Threads: the main thread owns the taps, the command socket and every
 * decision; libnats calls the ack handler on its own thread, which only
 * records (under the link's mutex) the last stored sequence or the error.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <nats/nats.h>
#include <zmq.h>

#include <evbus/evbus_bus.h>
#include <evbus/evbus_http.h>
#include <evbus/evbus_notify.h>
#include <evbus/evbus_wire.h>

#include "cli.h"

#define MAX_LINKS 16
#define PROBE_TIMEOUT_MS 2000
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 5000

typedef enum {
    L_PROBE,     /* asking the publisher who it is */
    L_POSITION,  /* reading the stream's last message */
    L_EXPORTING, /* the tap runs, publishes go out */
    L_STOPPED    /* a condition an operator must resolve (reason) */
} lstate;

static const char *s_state_name(lstate s)
{
    static const char *names[] = {"probing", "positioning", "exporting", "stopped"};
    return names[s];
}

typedef struct link {
    struct bridge *b;
    char pub[EVB_BUS_MAX_ENDPOINT], cu[EVB_BUS_MAX_ENDPOINT];
    char follow[2 * EVB_BUS_MAX_ENDPOINT + 2];
    lstate state;
    char reason[512];
    int64_t retry_at_us;
    unsigned backoff_ms;
    /* learnt from the publisher */
    char service[EVB_MAX_SERVICE_LEN + 1];
    evb_id log_id;
    char log_hex[EVB_ID_HEX_LEN + 1];
    uint64_t head;
    /* JetStream */
    char stream[160];
    char subject_base[256]; /* PREFIX.SERVICE */
    jsCtx *js;
    uint64_t sent;      /* evbus seq of the last message handed to JetStream */
    uint64_t js_expect; /* the stream sequence the next message must follow */
    evb_tap_t *tap;
    int64_t behind_since_us; /* 0: caught up */
    uint64_t published, published_bytes, rewinds;
    /* written by libnats' thread, read by ours */
    pthread_mutex_t mu;
    uint64_t acked_seq;    /* evbus seq of the last message JetStream stored */
    uint64_t acked_js_seq; /* its stream sequence */
    uint64_t inflight;
    pthread_cond_t acked; /* signalled by the ack handler */
    bool fatal;           /* with failed: retrying cannot help (stop) */
    bool failed;
    char fail_why[256];
} link_t;

typedef struct bridge {
    cli_t *cli;
    natsConnection *nc;
    const char *prefix;
    const char *stream_override; /* --js-stream (one --follow only) */
    int replicas;
    jsStorageType storage;
    int64_t dedup_ns;
    bool json, create;
    int64_t max_pending;
    int64_t ack_wait_ms;
    link_t links[MAX_LINKS];
    size_t nlinks;
    evb_buf body, scratch;
    void *zctx;
} bridge_t;

static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_set_reason(link_t *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void s_set_reason(link_t *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->reason, sizeof l->reason, fmt, ap);
    va_end(ap);
}

/* A retry later, with a back-off that doubles to BACKOFF_MAX_MS. */
static void s_later(link_t *l, lstate st)
{
    l->state = st;
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (l->backoff_ms > BACKOFF_MAX_MS) l->backoff_ms = BACKOFF_MAX_MS;
    l->retry_at_us = evb_now_us() + (int64_t)l->backoff_ms * 1000;
}

static void s_stop_link(link_t *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void s_stop_link(link_t *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->reason, sizeof l->reason, fmt, ap);
    va_end(ap);
    l->state = L_STOPPED; /* the tap goes once its poll returns (we may be in it) */
    cli_error(l->b->cli, "%s: STOPPED: %s", l->follow, l->reason);
}

/* ---- the publisher: who is it ---- */

static int s_probe(link_t *l)
{
    bridge_t *b = l->b;
    void *d = zmq_socket(b->zctx, ZMQ_DEALER);
    if (d == NULL) return -1;
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    int rc = -1;
    evb_buf req = {0};
    evb_err err;
    if (zmq_connect(d, l->cu) != 0) {
        s_set_reason(l, "cannot connect to %s: %s", l->cu, zmq_strerror(zmq_errno()));
        goto out;
    }
    /* The DEALER does not queue before the connection is up: ask until
     * answered or PROBE_TIMEOUT_MS (PROTOCOL.md, "Catch-up"). */
    int64_t end = evb_now_us() + PROBE_TIMEOUT_MS * 1000LL;
    uint64_t req_id = 1;
    while (evb_now_us() < end && !s_stop) {
        req.len = 0;
        if (evb_wire_hello(&req, req_id, &err) != EVB_OK) goto out;
        zmq_send(d, req.data, req.len, ZMQ_DONTWAIT);
        zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0) {
            req_id++;
            continue;
        }
        char buf[4096];
        int n = zmq_recv(d, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n <= 0 || (size_t)n > sizeof buf) continue;
        evb_wire_reply *rp = malloc(sizeof *rp);
        if (rp == NULL) goto out;
        size_t used;
        int prc = evb_wire_parse_reply(buf, (size_t)n, rp, &used, &err);
        if (prc == EVB_OK && rp->kind == EVB_WIRE_HELLO) {
            l->log_id = rp->log_id;
            l->head = rp->head;
            snprintf(l->service, sizeof l->service, "%s", rp->service);
            evb_id_to_hex(&l->log_id, l->log_hex);
            rc = 0;
        } else {
            s_set_reason(l, "%s answered the hello with %s", l->cu,
                         prc != EVB_OK ? err.msg : rp->code);
        }
        free(rp);
        goto out;
    }
    s_set_reason(l, "no answer from %s within %d ms", l->cu, PROBE_TIMEOUT_MS);
out:
    evb_buf_free(&req);
    zmq_close(d);
    return rc;
}

/* ---- JetStream: the stream and where it ends ---- */

static void s_stream_name(const bridge_t *b, link_t *l)
{
    if (b->stream_override != NULL) {
        snprintf(l->stream, sizeof l->stream, "%s", b->stream_override);
    } else {
        /* EVBUS_<SERVICE>: stream names may not hold '.', so '.' and '-' -> '_' */
        size_t n = (size_t)snprintf(l->stream, sizeof l->stream, "EVBUS_");
        for (const char *p = l->service; *p && n + 1 < sizeof l->stream; p++)
            l->stream[n++] = (*p == '.' || *p == '-')   ? '_'
                             : (*p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A')
                                                        : *p;
        l->stream[n] = '\0';
    }
    /* PREFIX.SERVICE, a '.' of the service name as %2E (one token) */
    size_t n =
        (size_t)snprintf(l->subject_base, sizeof l->subject_base, "%s.", b->prefix);
    for (const char *p = l->service; *p && n + 4 < sizeof l->subject_base; p++) {
        if (*p == '.') {
            memcpy(l->subject_base + n, "%2E", 3);
            n += 3;
        } else {
            l->subject_base[n++] = *p;
        }
    }
    l->subject_base[n] = '\0';
}

static void s_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                     void *closure)
{
    (void)js;
    link_t *l = closure;
    const char *seqs = NULL;
    uint64_t seq = 0;
    if (natsMsgHeader_Get(msg, "Evbus-Seq", &seqs) == NATS_OK && seqs != NULL)
        seq = strtoull(seqs, NULL, 10);
    pthread_mutex_lock(&l->mu);
    if (l->inflight > 0) l->inflight--;
    pthread_cond_signal(&l->acked);
    if (pa != NULL && !pa->Duplicate) {
        if (seq > l->acked_seq) l->acked_seq = seq;
        if (pa->Sequence > l->acked_js_seq) l->acked_js_seq = pa->Sequence;
    } else if (pa != NULL) {
        /* A duplicate id inside the window: the event is already there. */
        if (seq > l->acked_seq) l->acked_seq = seq;
    } else if (pae != NULL && !l->failed) {
        l->failed = true;
        l->fatal = pae->ErrCode == JSStreamMessageExceedsMaximumErr;
        snprintf(l->fail_why, sizeof l->fail_why,
                 "publish of seq %" PRIu64 " refused: %s%s%s", seq,
                 natsStatus_GetText(pae->Err), pae->ErrText ? ": " : "",
                 pae->ErrText ? pae->ErrText : "");
    }
    pthread_mutex_unlock(&l->mu);
    natsMsg_Destroy(msg);
}

static int s_js_context(link_t *l)
{
    if (l->js != NULL) return 0;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = l->b->ack_wait_ms;
    jo.PublishAsync.MaxPending = l->b->max_pending + 1; /* we stop at max_pending */
    jo.PublishAsync.AckHandler = s_on_ack;
    jo.PublishAsync.AckHandlerClosure = l;
    jo.PublishAsync.StallWait = 1000;
    natsStatus s = natsConnection_JetStream(&l->js, l->b->nc, &jo);
    if (s != NATS_OK) {
        s_set_reason(l, "JetStream context: %s", natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

/* Make sure the stream exists (created when allowed) and read its last
 * message: 1 positioned, 0 try again later, -1 stopped. */
static int s_position(link_t *l)
{
    bridge_t *b = l->b;
    if (s_js_context(l) != 0) return 0;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, l->js, l->stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND) {
        if (!b->create) {
            s_stop_link(l, "JetStream stream %s does not exist (and --no-create)",
                        l->stream);
            return -1;
        }
        char subj[300];
        snprintf(subj, sizeof subj, "%s.>", l->subject_base);
        const char *subjects[1] = {subj};
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        cfg.Name = l->stream;
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.Storage = b->storage;
        cfg.Replicas = b->replicas;
        cfg.Duplicates = b->dedup_ns;
        cfg.MaxMsgSize = (int32_t)(EVB_MAX_EVENT_BYTES + 64 * 1024);
        s = js_AddStream(&si, l->js, &cfg, NULL, &jerr);
        if (s != NATS_OK) {
            s_set_reason(l,
                         "creating JetStream stream %s (subjects %s, %d replicas): %s "
                         "(JetStream error %d)",
                         l->stream, subj, b->replicas, natsStatus_GetText(s), (int)jerr);
            if (jerr == JSStreamNameExistErr || jerr == JSStreamSubjectOverlapErr) {
                s_stop_link(l, "%s", l->reason);
                return -1;
            }
            return 0;
        }
        fprintf(stderr,
                "evbus-bridge: %s: created JetStream stream %s (subjects %s, %d "
                "replicas)\n",
                l->follow, l->stream, subj, b->replicas);
    } else if (s != NATS_OK) {
        s_set_reason(l, "JetStream stream %s: %s", l->stream, natsStatus_GetText(s));
        return 0;
    }
    /* Its subjects must take ours (an incompatible stream is not ours to
     * change): PREFIX.SERVICE.>, or a wildcard above it. */
    char want[300], prefix_all[300];
    snprintf(want, sizeof want, "%s.>", l->subject_base);
    snprintf(prefix_all, sizeof prefix_all, "%s.>", b->prefix);
    bool takes = false;
    for (int i = 0; si->Config != NULL && i < si->Config->SubjectsLen; i++) {
        const char *sj = si->Config->Subjects[i];
        takes = takes || strcmp(sj, want) == 0 || strcmp(sj, prefix_all) == 0 ||
                strcmp(sj, ">") == 0;
    }
    if (!takes) {
        char have[300] = "";
        for (int i = 0; si->Config != NULL && i < si->Config->SubjectsLen; i++) {
            size_t hl = strlen(have);
            snprintf(have + hl, sizeof have - hl, "%s%s", i ? " " : "",
                     si->Config->Subjects[i]);
        }
        jsStreamInfo_Destroy(si);
        s_stop_link(l,
                    "JetStream stream %s takes subjects [%s], not %s: give the stream "
                    "another --js-stream or --subject-prefix, or add the subject to it",
                    l->stream, have, want);
        return -1;
    }
    uint64_t last = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    uint64_t exported = 0;
    if (last > 0 && msgs > 0) {
        natsMsg *m = NULL;
        s = js_GetMsg(&m, l->js, l->stream, last, NULL, &jerr);
        if (s != NATS_OK) {
            s_set_reason(l, "reading message %" PRIu64 " of JetStream stream %s: %s",
                         last, l->stream, natsStatus_GetText(s));
            return 0;
        }
        const char *lid = NULL, *seqs = NULL;
        natsMsgHeader_Get(m, "Evbus-Log-Id", &lid);
        natsMsgHeader_Get(m, "Evbus-Seq", &seqs);
        if (lid == NULL || seqs == NULL) {
            natsMsg_Destroy(m);
            s_stop_link(l,
                        "JetStream stream %s: its last message (%" PRIu64
                        ") has no Evbus-Log-Id/Evbus-Seq headers: not written by "
                        "evbus-bridge; give another --js-stream",
                        l->stream, last);
            return -1;
        }
        if (strcmp(lid, l->log_hex) != 0) {
            s_stop_link(l,
                        "JetStream stream %s holds log %s, but %s now serves log %s (its "
                        "log was recreated): export it to another stream (--js-stream) "
                        "or delete the old one",
                        l->stream, lid, l->follow, l->log_hex);
            natsMsg_Destroy(m);
            return -1;
        }
        exported = strtoull(seqs, NULL, 10);
        natsMsg_Destroy(m);
    }
    /* JetStream has only what the publisher published: a stream ahead of
     * the log means the log went back (restored from an older backup) and
     * its new events reuse sequences the stream holds other events at.
     * Exporting on would drop them without a word. The head heard at the
     * probe may be older than the stream's end (another bridge exported
     * since): ask again, after the stream was read, before judging. */
    if (exported > l->head) {
        evb_id known = l->log_id;
        char keep[sizeof l->reason];
        memcpy(keep, l->reason, sizeof keep);
        if (s_probe(l) != 0) return 0; /* no answer: position again later */
        memcpy(l->reason, keep, sizeof keep);
        if (memcmp(&known, &l->log_id, sizeof known) != 0) return 0; /* recreated */
    }
    if (exported > l->head) {
        s_stop_link(l,
                    "JetStream stream %s holds log %s up to seq %" PRIu64
                    ", but %s's head is %" PRIu64
                    ": the log went back (restored from an older backup?); its new "
                    "events would take sequences the stream already holds. Export it to "
                    "another stream (--js-stream)",
                    l->stream, l->log_hex, exported, l->follow, l->head);
        return -1;
    }
    pthread_mutex_lock(&l->mu);
    l->acked_seq = exported;
    l->acked_js_seq = last;
    l->inflight = 0;
    l->failed = false;
    l->fail_why[0] = '\0';
    pthread_mutex_unlock(&l->mu);
    l->sent = exported;
    l->js_expect = last;
    return 1;
}

/* ---- events ---- */

/* stream id -> one subject token: '.' (a subject separator) is "%2E" ('%'
 * never appears in a stream id, so the mapping is one to one). */
static int s_subject(link_t *l, const evb_event_t *ev, evb_buf *out, evb_err *err)
{
    out->len = 0;
    int rc = evb_buf_printf(out, err, "%s.%s.", l->subject_base, ev->category);
    for (const char *p = ev->stream; rc == EVB_OK && *p; p++)
        rc = *p == '.' ? evb_buf_append(out, "%2E", 3, err)
                       : evb_buf_append(out, p, 1, err);
    if (rc == EVB_OK) rc = evb_buf_append(out, "", 1, err);
    return rc;
}

static int s_on_event(const evb_tap_event *te, void *ctx, evb_err *err)
{
    link_t *l = ctx;
    bridge_t *b = l->b;
    const evb_event_t *ev = te->ev;
    if (memcmp(&ev->log_id, &l->log_id, sizeof ev->log_id) != 0) {
        char hex[EVB_ID_HEX_LEN + 1];
        evb_id_to_hex(&ev->log_id, hex);
        s_stop_link(l, "%s now serves log %s, not %s (its log was recreated)", l->follow,
                    hex, l->log_hex);
        return evb_err_set(err, EVB_ECONFLICT, "log changed");
    }
    if (ev->seq <= l->sent) return EVB_OK; /* already handed over */
    if (ev->seq != l->sent + 1) {
        s_stop_link(l,
                    "events %" PRIu64 "..%" PRIu64
                    " of log %s (%s) cannot be read from the "
                    "publisher (a damaged log): not exported. Serve a salvaged log "
                    "(evbus log salvage) to go on",
                    l->sent + 1, ev->seq - 1, l->log_hex, l->service);
        return evb_err_set(err, EVB_ECORRUPT, "hole");
    }
    /* Backpressure: with the window full, wait here for acks (the tap, and
     * so the bus, waits too; its queues and high-water marks hold or drop
     * what comes meanwhile, and what was dropped is fetched later). A
     * window that does not move within the ack wait is a failure. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(b->ack_wait_ms / 1000) + 1;
    pthread_mutex_lock(&l->mu);
    while (!l->failed && l->inflight >= (uint64_t)b->max_pending && !s_stop)
        if (pthread_cond_timedwait(&l->acked, &l->mu, &until) == ETIMEDOUT) break;
    bool failed = l->failed, full = l->inflight >= (uint64_t)b->max_pending;
    if (full && !failed) {
        l->failed = true;
        snprintf(l->fail_why, sizeof l->fail_why,
                 "%lld publishes unacknowledged for %lld ms", (long long)b->max_pending,
                 (long long)b->ack_wait_ms);
    }
    pthread_mutex_unlock(&l->mu);
    if (failed || full) return evb_err_set(err, EVB_EBUSY, "a publish failed: rewinding");
    int rc = s_subject(l, ev, &b->scratch, err);
    const void *data = te->raw;
    size_t dlen = te->raw_len;
    if (rc == EVB_OK && b->json) {
        b->body.len = 0;
        rc = evb_event_to_json(ev, &b->body, err);
        data = b->body.data;
        dlen = b->body.len;
    }
    if (rc != EVB_OK) return rc;
    natsMsg *m = NULL;
    natsStatus s =
        natsMsg_Create(&m, (const char *)b->scratch.data, NULL, data, (int)dlen);
    char idhex[EVB_ID_HEX_LEN + 1], num[32], ver[32];
    evb_id_to_hex(&ev->id, idhex);
    snprintf(num, sizeof num, "%" PRIu64, ev->seq);
    snprintf(ver, sizeof ver, "%" PRIu64, ev->version);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Evbus-Log-Id", l->log_hex);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Evbus-Seq", num);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Evbus-Stream", ev->stream);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Evbus-Version", ver);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Evbus-Type", ev->type);
    if (s == NATS_OK) s = natsMsgHeader_Set(m, "Evbus-Service", ev->service);
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        return evb_err_set(err, EVB_ENOMEM, "building the NATS message: %s",
                           natsStatus_GetText(s));
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = idhex;
    po.MaxWait = b->ack_wait_ms;
    /* 0 means "no expectation" to libnats: the first message of an empty
     * stream relies on the id window alone (README, "Exactly once"). */
    po.ExpectLastSeq = l->js_expect;
    pthread_mutex_lock(&l->mu);
    l->inflight++;
    pthread_mutex_unlock(&l->mu);
    s = js_PublishMsgAsync(l->js, &m, &po);
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        pthread_mutex_lock(&l->mu);
        if (l->inflight > 0) l->inflight--;
        if (!l->failed) {
            l->failed = true;
            l->fatal = s == NATS_MAX_PAYLOAD;
            snprintf(l->fail_why, sizeof l->fail_why, "publish of seq %" PRIu64 ": %s",
                     ev->seq, natsStatus_GetText(s));
        }
        pthread_mutex_unlock(&l->mu);
        return evb_err_set(err, EVB_EBUSY, "JetStream: %s", natsStatus_GetText(s));
    }
    l->sent = ev->seq;
    l->js_expect++;
    l->published++;
    l->published_bytes += dlen;
    return EVB_OK;
}

static int s_start_tap(link_t *l)
{
    evb_err err;
    evb_tap_opts to = {0};
    to.on_event = s_on_event;
    to.ctx = l;
    to.from = l->sent + 1;
    l->tap = evb_tap_new(&to, &err);
    if (l->tap == NULL ||
        evb_tap_follow(l->tap, l->pub, l->cu, &(evb_follow_opts){.log_order = true},
                       &err) != EVB_OK) {
        evb_tap_destroy(&l->tap);
        s_set_reason(l, "following %s: %s", l->follow, err.msg);
        return -1;
    }
    return 0;
}

/* After a refused or timed-out publish: let what is in flight finish (or
 * give up on it), then read the stream's end again. */
static void s_rewind(link_t *l)
{
    char why[256];
    pthread_mutex_lock(&l->mu);
    snprintf(why, sizeof why, "%s", l->fail_why);
    bool fatal = l->fatal;
    pthread_mutex_unlock(&l->mu);
    evb_tap_destroy(&l->tap);
    if (fatal) { /* a message NATS will never take: stop, naming it */
        s_stop_link(l,
                    "%s (stream %s; the server's max_payload or the stream's "
                    "max_msg_size is too small for this event)",
                    why, l->stream);
        return;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = l->b->ack_wait_ms;
    js_PublishAsyncComplete(l->js, &po);
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, l->js) == NATS_OK)
        natsMsgList_Destroy(&pending);
    l->rewinds++;
    s_set_reason(l, "%s; reading the stream's end again", why);
    evb_log(EVB_LOG_WARN, "%s -> %s: %s", l->follow, l->stream, l->reason);
    s_later(l, L_POSITION);
}

static void s_step(link_t *l)
{
    int64_t now = evb_now_us();
    if (l->state == L_STOPPED || now < l->retry_at_us) return;
    if (l->state == L_PROBE) {
        if (s_probe(l) != 0) {
            s_later(l, L_PROBE);
            return;
        }
        s_stream_name(l->b, l);
        l->state = L_POSITION;
        l->reason[0] = '\0';
    }
    if (l->state == L_POSITION) {
        /* Ask the publisher again (cheap): its head for the status while
         * JetStream is away, and its log id, should the log be recreated. */
        if (l->rewinds > 0) {
            char keep[sizeof l->reason];
            memcpy(keep, l->reason, sizeof keep);
            (void)s_probe(l);
            memcpy(l->reason, keep, sizeof keep);
        }
        int p = s_position(l);
        if (p <= 0) {
            if (p == 0) s_later(l, L_POSITION);
            return;
        }
        if (s_start_tap(l) != 0) {
            s_later(l, L_POSITION);
            return;
        }
        fprintf(
            stderr,
            "evbus-bridge: %s (service %s, log %s) -> JetStream stream %s: exported up "
            "to seq %" PRIu64 ", publisher head %" PRIu64 "\n",
            l->follow, l->service, l->log_hex, l->stream, l->sent, l->head);
        l->state = L_EXPORTING;
        l->reason[0] = '\0';
        l->backoff_ms = 0;
    }
}

/* ---- status ---- */

static int s_head_cb(const evb_feed_status *fs, void *ctx)
{
    uint64_t *head = ctx;
    if (fs->head > *head) *head = fs->head;
    return 0;
}

/* The publisher's head as the tap last heard it, kept in l->head (also
 * moved by the probe), and since when the link is behind. */
static void s_refresh_head(link_t *l, uint64_t acked)
{
    if (l->tap != NULL) evb_tap_status(l->tap, s_head_cb, &l->head, NULL);
    if (acked >= l->head)
        l->behind_since_us = 0;
    else if (l->behind_since_us == 0)
        l->behind_since_us = evb_now_us();
}

/* What the status and the metrics show of a link, read once. */
typedef struct figures {
    uint64_t acked, js_seq, inflight, lag;
    double lag_seconds;
} figures;

static figures s_figures(link_t *l, int64_t now)
{
    figures f;
    pthread_mutex_lock(&l->mu);
    f.acked = l->acked_seq;
    f.js_seq = l->acked_js_seq;
    f.inflight = l->inflight;
    pthread_mutex_unlock(&l->mu);
    f.lag = l->head > f.acked ? l->head - f.acked : 0;
    f.lag_seconds =
        f.lag && l->behind_since_us ? (double)(now - l->behind_since_us) / 1e6 : 0.0;
    return f;
}

static void s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static int s_buf_write(void *data, const char *buf, size_t len)
{
    return evb_buf_append(data, buf, len, NULL) == EVB_OK ? 0 : -1;
}

static int s_status(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err)
{
    (void)args;
    (void)len;
    (void)err;
    bridge_t *b = ctx;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, s_buf_write);
    msgpack_pack_map(&pk, 2);
    s_pack_str(&pk, "nats");
    s_pack_str(&pk, natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED
                        ? "connected"
                        : "disconnected");
    s_pack_str(&pk, "links");
    msgpack_pack_array(&pk, b->nlinks);
    int64_t now = evb_now_us();
    for (size_t i = 0; i < b->nlinks; i++) {
        link_t *l = &b->links[i];
        figures f = s_figures(l, now);
        msgpack_pack_map(&pk, 15);
        s_pack_str(&pk, "publisher");
        s_pack_str(&pk, l->follow);
        s_pack_str(&pk, "service");
        s_pack_str(&pk, l->service);
        s_pack_str(&pk, "log_id");
        s_pack_str(&pk, l->log_hex);
        s_pack_str(&pk, "stream");
        s_pack_str(&pk, l->stream);
        s_pack_str(&pk, "state");
        s_pack_str(&pk, s_state_name(l->state));
        s_pack_str(&pk, "reason");
        s_pack_str(&pk, l->reason);
        s_pack_str(&pk, "exported_seq");
        msgpack_pack_uint64(&pk, f.acked);
        s_pack_str(&pk, "js_last_seq");
        msgpack_pack_uint64(&pk, f.js_seq);
        s_pack_str(&pk, "head");
        msgpack_pack_uint64(&pk, l->head);
        s_pack_str(&pk, "lag_events");
        msgpack_pack_uint64(&pk, f.lag);
        s_pack_str(&pk, "lag_seconds");
        msgpack_pack_double(&pk, f.lag_seconds);
        s_pack_str(&pk, "inflight");
        msgpack_pack_uint64(&pk, f.inflight);
        s_pack_str(&pk, "published");
        msgpack_pack_uint64(&pk, l->published);
        s_pack_str(&pk, "published_bytes"); /* message bodies */
        msgpack_pack_uint64(&pk, l->published_bytes);
        s_pack_str(&pk, "rewinds");
        msgpack_pack_uint64(&pk, l->rewinds);
    }
    return EVB_OK;
}

/* systemd's STATUS= line (evbus_notify.h): "nats connected; links:
 * reservation exporting 1,234/1,234, booking probing". */
static void s_notify_line(evb_buf *line, void *ctx)
{
    bridge_t *b = ctx;
    evb_notify_add(line, "nats %s",
                   natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED
                       ? "connected"
                       : "disconnected");
    evb_buf links = {0};
    links.max_cap = EVB_NOTIFY_MAX_STATUS;
    int64_t now = evb_now_us();
    for (size_t i = 0; i < b->nlinks; i++) {
        link_t *l = &b->links[i];
        figures f = s_figures(l, now);
        char a[32], h[32];
        /* Before the probe answers: the live endpoint, without its scheme. */
        const char *who = l->service[0] ? l->service : l->pub;
        if (!l->service[0] && strstr(who, "://")) who = strstr(who, "://") + 3;
        evb_buf_printf(&links, NULL, "%s%s %s", i > 0 ? ", " : "", who,
                       s_state_name(l->state));
        if (l->state == L_EXPORTING)
            evb_buf_printf(&links, NULL, " %s/%s", cli_group(f.acked, a),
                           cli_group(l->head, h));
    }
    evb_notify_add(line, "links: %.*s", (int)links.len, links.data ? links.data : "");
    evb_buf_free(&links);
}

/* --http: /metrics (Prometheus text) and /status.json (the status above),
 * rendered here on the owner's thread every 500 ms (evbus_http.h). */
static int s_render(void *ctx, evb_buf *m, evb_buf *status, evb_err *err)
{
    bridge_t *b = ctx;
    int rc = s_status(NULL, 0, status, b, err);
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"evbus_bridge_exported_seq", "gauge",
         "the last evbus sequence JetStream acknowledged, per log"},
        {"evbus_bridge_js_last_seq", "gauge", "its JetStream stream sequence"},
        {"evbus_bridge_head", "gauge", "the publisher's head"},
        {"evbus_bridge_lag_events", "gauge", "events of the log not yet in JetStream"},
        {"evbus_bridge_lag_seconds", "gauge", "how long the link has been behind"},
        {"evbus_bridge_inflight", "gauge", "publishes waiting for JetStream's ack"},
        {"evbus_bridge_published_total", "counter", "messages published this run"},
        {"evbus_bridge_published_bytes_total", "counter", "their bodies' bytes"},
        {"evbus_bridge_rewinds_total", "counter",
         "refusals or timeouts after which the stream's end was read again"},
        {"evbus_bridge_up", "gauge",
         "1 while the link exports (0: probing, "
         "positioning or stopped)"},
    };
    int64_t now = evb_now_us();
    for (size_t f = 0; f < sizeof fam / sizeof fam[0] && rc == EVB_OK; f++) {
        rc = evb_prom_family(m, fam[f].name, fam[f].type, fam[f].help, err);
        for (size_t i = 0; i < b->nlinks && rc == EVB_OK; i++) {
            link_t *l = &b->links[i];
            figures g = s_figures(l, now);
            double v[] = {(double)g.acked,      (double)g.js_seq,
                          (double)l->head,      (double)g.lag,
                          g.lag_seconds,        (double)g.inflight,
                          (double)l->published, (double)l->published_bytes,
                          (double)l->rewinds,   l->state == L_EXPORTING ? 1.0 : 0.0};
            const char *labels[] = {"publisher", l->follow, "service", l->service,
                                    "stream",    l->stream, NULL};
            rc = evb_prom_sample(m, fam[f].name, labels, v[f], err);
        }
    }
    if (rc == EVB_OK)
        rc = evb_prom_family(m, "evbus_bridge_nats_connected", "gauge",
                             "1 while the connection to NATS is up", err);
    if (rc == EVB_OK)
        rc = evb_prom_sample(
            m, "evbus_bridge_nats_connected", NULL,
            natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED ? 1.0 : 0.0, err);
    return rc;
}

/* ---- settings: flags, environment, config file ---- */

/* The services' conventions (services/README.md): every flag also as
 * EVBUS_<NAME> ('-' as '_', upper case) and as a `name = value` line of
 * --config FILE; the command line wins over the environment, the
 * environment over the file. A list (--follow) comes whole from the
 * strongest source that gives it: whitespace-separated in the environment,
 * one line each in the file. Each source is parsed on its own, so an error
 * names where the value came from (FILE:LINE, the variable). */
typedef struct argvec {
    char *v[4 * CLI_MAX_LIST + 64];
    char dashes[4 * CLI_MAX_LIST + 64][48]; /* "--name" strings v points to */
    int n;
} argvec;

/* The environment's settings, as argv (they live as long as the program).
 * The file's are read by cli_config_apply (evb_conf_read's grammar,
 * services/README.md "Config files"). */
static argvec s_env_args;

static bool s_push(argvec *a, char *s)
{
    if (a->n >= (int)(sizeof a->v / sizeof a->v[0])) return false;
    a->v[a->n++] = s;
    return true;
}

static const cli_opt *s_opt(const cli_opt *opts, const char *name)
{
    for (const cli_opt *o = opts; o->name != NULL; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

static bool s_truthy(const char *v)
{
    return strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0;
}

/* name = value -> "--name" ["value"] into a (a flag only when truthy). */
static int s_add_setting(cli_t *cli, argvec *a, const cli_opt *opts, const char *name,
                         char *value, const char *where)
{
    const cli_opt *o = s_opt(opts, name);
    if (o == NULL || strcmp(name, "config") == 0)
        return cli_usage_error(cli, "%s: unknown setting '%s'", where, name);
    if (a->n >= (int)(sizeof a->dashes / sizeof a->dashes[0]))
        return cli_usage_error(cli, "%s: too many settings", where);
    char *dash = a->dashes[a->n];
    snprintf(dash, sizeof a->dashes[0], "--%s", name);
    if (o->kind == CLI_FLAG) {
        if (s_truthy(value)) s_push(a, dash);
        return -1;
    }
    if (!s_push(a, dash) || !s_push(a, value))
        return cli_usage_error(cli, "%s: too many settings", where);
    return -1;
}

static int s_from_env(cli_t *cli, const cli_opt *opts, argvec *a, char *store)
{
    int rc = -1;
    size_t used = 0;
    for (const cli_opt *o = opts; o->name != NULL && rc < 0; o++) {
        char env[80];
        size_t n = (size_t)snprintf(env, sizeof env, "EVBUS_%s", o->name);
        for (size_t i = 6; i < n && i < sizeof env; i++)
            env[i] = env[i] == '-' ? '_' : (char)toupper((unsigned char)env[i]);
        const char *v = getenv(env);
        if (v == NULL || *v == '\0' || strcmp(o->name, "config") == 0) continue;
        size_t vl = strlen(v);
        if (used + vl + 1 > 16384) return cli_usage_error(cli, "%s: too long", env);
        char *copy = store + used;
        memcpy(copy, v, vl + 1);
        used += vl + 1;
        if (o->kind == CLI_LIST) { /* whitespace-separated */
            for (char *save = NULL, *t = strtok_r(copy, " \t\n", &save); t && rc < 0;
                 t = strtok_r(NULL, " \t\n", &save))
                rc = s_add_setting(cli, a, opts, o->name, t, env);
        } else {
            rc = s_add_setting(cli, a, opts, o->name, copy, env);
        }
    }
    return rc;
}

static bool s_gives_list(const argvec *a, const char *name)
{
    for (int i = 0; i < a->n; i++)
        if (strncmp(a->v[i], "--", 2) == 0 && strcmp(a->v[i] + 2, name) == 0) return true;
    return false;
}

static int s_settings(cli_t *cli, int argc, char **argv, const cli_opt *opts,
                      const cli_usage *usage, cli_list *follows,
                      const char *const *config_flag)
{
    const char *pos[1];
    size_t npos = 0;
    /* The command line first, alone: --help, and where --config is. */
    int rc = cli_parse(cli, argc, argv, opts, usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    const char *config = *config_flag; /* only the command line names a file */
    bool cmd_follow = follows->n > 0;
    argvec *env = &s_env_args;
    static char env_store[16384];
    env->v[env->n++] = argv[0];
    cli_t ecli = *cli;
    snprintf(ecli.name, sizeof ecli.name, "%.40s (environment)", cli->name);
    rc = s_from_env(cli, opts, env, env_store);
    if (rc >= 0) return rc;
    /* Weakest first; each later source overrides; a list from the
     * strongest source that gives one. */
    follows->n = 0;
    if (config != NULL && (rc = cli_config_apply(cli, config, opts)) >= 0) return rc;
    if (s_gives_list(env, "follow")) follows->n = 0;
    rc = cli_parse(&ecli, env->n, env->v, opts, usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    if (cmd_follow) follows->n = 0;
    return cli_parse(cli, argc, argv, opts, usage, 0, 0, pos, &npos);
}

/* ---- main ---- */

static int s_connect(bridge_t *b, const char *urls, const char *creds, const char *ca,
                     const char *user, const char *password)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    const char *list[16];
    char copy[2048];
    int n = 0;
    snprintf(copy, sizeof copy, "%s", urls);
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && n < 16;
         t = strtok_r(NULL, ",", &save))
        list[n++] = t;
    if (s == NATS_OK) s = natsOptions_SetServers(o, list, n);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, NULL, NULL);
    if (s == NATS_OK && creds)
        s = natsOptions_SetUserCredentialsFromFiles(o, creds, NULL);
    if (s == NATS_OK && ca) s = natsOptions_LoadCATrustedCertificates(o, ca);
    if (s == NATS_OK && user) s = natsOptions_SetUserInfo(o, user, password);
    if (s != NATS_OK) {
        cli_error(b->cli, "NATS options (%s): %s", urls, nats_GetLastError(NULL));
        natsOptions_Destroy(o);
        return -1;
    }
    s = natsConnection_Connect(&b->nc, o);
    natsOptions_Destroy(o);
    /* With retry on a failed connect, NATS_NOT_YET_CONNECTED means "connecting
     * in the background": the links wait for it. */
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        cli_error(b->cli, "cannot connect to NATS at %s: %s", urls,
                  nats_GetLastError(NULL));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus-bridge");
    cli.version = EVBUS_VERSION;
    cli_list follows = {0};
    const char *nats_url = "nats://127.0.0.1:4222", *prefix = "evbus", *stream = NULL;
    const char *storage = "file", *creds = NULL, *ca = NULL, *cmd_ep = NULL;
    const char *user = NULL, *password = NULL, *config = NULL, *http_addr = NULL;
    bool http_public = false;
    uint64_t replicas = 1, dedup_ms = 120000, max_pending = 4096, ack_wait_ms = 5000;
    bool json = false, no_create = false;
    const cli_opt opts[] = {
        {"follow", CLI_LIST, &follows, NULL, "PUB,CATCHUP",
         "a publisher to export (repeatable, one JetStream stream each)"},
        {"nats", CLI_STR, &nats_url, NULL, "URLS",
         "NATS servers, comma-separated (default nats://127.0.0.1:4222)"},
        {"subject-prefix", CLI_STR, &prefix, NULL, "P",
         "subjects are P.SERVICE.CATEGORY.STREAM (default evbus)"},
        {"js-stream", CLI_STR, &stream, NULL, "NAME",
         "JetStream stream name (one --follow only; default EVBUS_<SERVICE>)"},
        {"replicas", CLI_U64, &replicas, NULL, "N",
         "replicas of a stream we create (default 1)"},
        {"storage", CLI_STR, &storage, NULL, "file|memory",
         "storage of a stream we create (default file)"},
        {"dedup-window", CLI_DUR_MS, &dedup_ms, NULL, "DURATION",
         "duplicate window of a stream we create (default 2m)"},
        {"no-create", CLI_FLAG, &no_create, NULL, NULL,
         "stop when the stream does not exist instead of creating it"},
        {"json", CLI_FLAG, &json, NULL, NULL,
         "message bodies as `evbus log cat --json` prints events (default: the "
         "envelope)"},
        {"max-pending", CLI_U64, &max_pending, NULL, "N",
         "publishes in flight per publisher (default 4096)"},
        {"ack-wait", CLI_DUR_MS, &ack_wait_ms, NULL, "DURATION",
         "how long a publish waits for JetStream's ack (default 5s)"},
        {"nats-creds", CLI_STR, &creds, NULL, "FILE", "NATS user credentials file"},
        {"nats-tls-ca", CLI_STR, &ca, NULL, "FILE", "CA certificates to trust for TLS"},
        {"nats-user", CLI_STR, &user, NULL, "USER", "NATS user (with --nats-password)"},
        {"nats-password", CLI_STR, &password, NULL, "PASS", "NATS password"},
        {"cmd", CLI_STR, &cmd_ep, NULL, "EP",
         "command endpoint to bind: `evbus status EP` shows every link"},
        {"http", CLI_STR, &http_addr, NULL, "HOST:PORT",
         "serve /metrics and /status.json (loopback unless --http-public)"},
        {"http-public", CLI_FLAG, &http_public, NULL, NULL,
         "allow --http on an address other than loopback"},
        {"config", CLI_STR, &config, NULL, "FILE",
         "settings as `name = value` lines (names as the flags')"},
        {NULL, CLI_FLAG, NULL, NULL, NULL, NULL},
    };
    cli_usage usage = {
        CLI_EXITS_BASE,
        "--follow PUB,CATCHUP [--follow ...] [--nats URLS] [options]",
        "Export every event of the followed publishers' logs into NATS JetStream, in\n"
        "log order, exactly once. One JetStream stream per service log; subjects\n"
        "PREFIX.SERVICE.CATEGORY.STREAM ('.' inside a name is %2E); the event id as\n"
        "Nats-Msg-Id; headers Evbus-Log-Id, Evbus-Seq, Evbus-Stream, Evbus-Version,\n"
        "Evbus-Type, Evbus-Service. Where it stopped is read from JetStream itself\n"
        "(the stream's last message): nothing is kept on disk.",
        "Runs until SIGINT or SIGTERM (exit 0); exit 2 on a usage error, 4 when NATS\n"
        "cannot be set up. NATS unreachable or refusing is retried (0.2 s doubling\n"
        "to 5 s). A link that meets what it must not pass (its publisher's log\n"
        "recreated, a hole in a damaged log, a stream that does not take its\n"
        "subjects, an event too large for NATS) stops, says why on stderr and in\n"
        "`evbus status EP`, and the others go on.\n"
        "Guide: services/bridge/README.md."};
    int rc = s_settings(&cli, argc, argv, opts, &usage, &follows, &config);
    if (rc >= 0) return rc;
    if (follows.n == 0) return cli_usage_error(&cli, "--follow PUB,CATCHUP is required");
    if (follows.n > MAX_LINKS)
        return cli_usage_error(&cli, "at most %d --follow", MAX_LINKS);
    if (stream != NULL && follows.n > 1)
        return cli_usage_error(&cli, "--js-stream names one stream: give one --follow");
    if (strcmp(storage, "file") != 0 && strcmp(storage, "memory") != 0)
        return cli_usage_error(&cli, "--storage %s: want file or memory", storage);
    if (replicas < 1 || replicas > 5)
        return cli_usage_error(&cli, "--replicas %" PRIu64 ": want 1..5", replicas);
    if (dedup_ms == 0 || dedup_ms > 365 * 86400000ull)
        return cli_usage_error(&cli, "--dedup-window: want 1ms..365d");
    if (ack_wait_ms == 0 || ack_wait_ms > 3600000)
        return cli_usage_error(&cli, "--ack-wait: want 1ms..1h");
    if (max_pending < 1 || max_pending > 1000000)
        return cli_usage_error(&cli, "--max-pending: want 1..1000000");
    if (http_addr != NULL && !http_public && !evb_http_addr_is_loopback(http_addr))
        return cli_usage_error(
            &cli,
            "--http %s is not loopback: the status names "
            "publishers and streams; add --http-public to serve it there",
            http_addr);
    if ((user == NULL) != (password == NULL))
        return cli_usage_error(&cli, "--nats-user and --nats-password go together");
    if (prefix[0] == '\0' || strpbrk(prefix, " \t*>") != NULL)
        return cli_usage_error(&cli, "--subject-prefix '%s': no spaces, '*' or '>'",
                               prefix);
    for (const char *p = stream; p && *p; p++)
        if (*p == '.' || *p == '*' || *p == '>' || *p <= ' ')
            return cli_usage_error(&cli, "--js-stream '%s': no '.', '*', '>' or spaces",
                                   stream);

    static bridge_t b; /* large (links): not on the stack */
    b.cli = &cli;
    b.prefix = prefix;
    b.stream_override = stream;
    b.replicas = (int)replicas;
    b.storage = strcmp(storage, "memory") == 0 ? js_MemoryStorage : js_FileStorage;
    b.dedup_ns = (int64_t)dedup_ms * 1000000;
    b.json = json;
    b.create = !no_create;
    b.max_pending = (int64_t)max_pending;
    b.ack_wait_ms = (int64_t)ack_wait_ms;
    for (size_t i = 0; i < follows.n; i++) {
        link_t *l = &b.links[b.nlinks++];
        l->b = &b;
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->acked, NULL);
        const char *comma = strchr(follows.v[i], ',');
        size_t pl = comma ? (size_t)(comma - follows.v[i]) : 0;
        if (comma == NULL || pl == 0 || pl >= sizeof l->pub || strlen(comma + 1) == 0 ||
            strlen(comma + 1) >= sizeof l->cu || strchr(comma + 1, ',') != NULL)
            return cli_usage_error(&cli, "--follow %s: want PUB_EP,CATCHUP_EP",
                                   follows.v[i]);
        memcpy(l->pub, follows.v[i], pl);
        snprintf(l->cu, sizeof l->cu, "%s", comma + 1);
        snprintf(l->follow, sizeof l->follow, "%s", follows.v[i]);
        l->state = L_PROBE;
    }
    cli_install_log_sink(&cli);
    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    signal(SIGPIPE, SIG_IGN);
    b.zctx = zmq_ctx_new();
    if (s_connect(&b, nats_url, creds, ca, user, password) != 0) {
        zmq_ctx_term(b.zctx);
        return CLI_EXIT_RUNTIME;
    }
    evb_cmd_t *cmd = NULL;
    evb_http_t *http = NULL;
    evb_err err;
    if (cmd_ep != NULL) {
        cmd = evb_cmd_new(&(evb_cmd_opts){.endpoint = cmd_ep}, &err);
        if (cmd == NULL || evb_cmd_on(cmd, "status", s_status, &b, &err) != EVB_OK) {
            cli_error(&cli, "command socket %s: %s", cmd_ep, err.msg);
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
    }
    if (http_addr != NULL) {
        http = evb_http_new(http_addr, &err);
        if (http == NULL) {
            cli_error(&cli, "--http %s: %s", http_addr, err.msg);
            rc = CLI_EXIT_RUNTIME;
            goto done;
        }
        fprintf(stderr, "evbus-bridge: http on port %u\n", (unsigned)evb_http_port(http));
    }
    fprintf(stderr, "evbus-bridge: exporting %zu publisher(s) to NATS %s%s%s\n", b.nlinks,
            nats_url, cmd_ep ? ", commands on " : "", cmd_ep ? cmd_ep : "");
    evb_notify_ready(s_notify_line, &b); /* NATS set up, the sockets bound */
    rc = CLI_EXIT_OK;
    while (!s_stop) {
        evb_notify_tick(s_notify_line, &b);
        bool busy = false;
        for (size_t i = 0; i < b.nlinks; i++) {
            link_t *l = &b.links[i];
            s_step(l);
            if (l->state != L_EXPORTING) continue;
            pthread_mutex_lock(&l->mu);
            bool failed = l->failed;
            uint64_t acked = l->acked_seq;
            pthread_mutex_unlock(&l->mu);
            if (failed) {
                s_rewind(l);
                continue;
            }
            evb_err perr;
            evb_err_clear(&perr);
            int prc = evb_tap_poll(l->tap, 0, &perr);
            if (l->state == L_STOPPED) {
                evb_tap_destroy(&l->tap);
                continue;
            }
            pthread_mutex_lock(&l->mu);
            if (prc != EVB_OK && !l->failed) {
                l->failed = true;
                snprintf(l->fail_why, sizeof l->fail_why, "%.200s", perr.msg);
            }
            pthread_mutex_unlock(&l->mu);
            if (l->sent > acked || prc != EVB_OK) busy = true;
            s_refresh_head(l, acked);
        }
        if (cmd != NULL) evb_cmd_poll(cmd, 0, &err);
        if (http != NULL) evb_http_tick(http, 500, s_render, &b, NULL);
        /* Idle: a short nap (the bus's queues hold what comes meanwhile). */
        if (!busy) {
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    fprintf(stderr, "evbus-bridge: stopping: waiting for JetStream's acks\n");
    evb_notify_stopping("stopping: waiting for JetStream's acks");
    for (size_t i = 0; i < b.nlinks; i++) {
        link_t *l = &b.links[i];
        evb_tap_destroy(&l->tap);
        if (l->js != NULL) {
            jsPubOptions po;
            jsPubOptions_Init(&po);
            po.MaxWait = b.ack_wait_ms;
            js_PublishAsyncComplete(l->js, &po);
            fprintf(stderr,
                    "evbus-bridge: %s -> %s: exported up to seq %" PRIu64 " (%" PRIu64
                    " published this run)\n",
                    l->follow, l->stream, l->acked_seq, l->published);
        }
    }
done:
    evb_cmd_destroy(&cmd);
    evb_http_destroy(&http);
    for (size_t i = 0; i < b.nlinks; i++) {
        evb_tap_destroy(&b.links[i].tap);
        jsCtx_Destroy(b.links[i].js);
    }
    natsConnection_Destroy(b.nc);
    nats_Close();
    zmq_ctx_term(b.zctx);
    evb_buf_free(&b.body);
    evb_buf_free(&b.scratch);
    return cli_finish(&cli, rc);
}
