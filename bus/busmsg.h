/*
 * busmsg.h (private): encoding and parsing of the bus's control messages
 * (PROTOCOL.md). Writers use msgpack-c's packer; parsers use the codec's
 * bounds-checked reader, so a hostile frame costs a rejection, never a read
 * past the buffer or an allocation.
 */
#if !defined(EVB_BUILDING_BUS)
#error                                                                                   \
    "bus/busmsg.h is private to libevbus's bus module; programs include <evbus/evbus_wire.h>"
#endif
#ifndef EVB_BUSMSG_H
#define EVB_BUSMSG_H

#include "evbus_wire.h"

#include <msgpack.h>
#include <zmq.h>

/* msgpack-c's packer appending to an evb_buf: bm_packer_init(&pk, &w, b),
 * pack, then w.rc is EVB_OK or the first error (nothing written after it). */
typedef struct bm_writer {
    evb_buf *b;
    int rc;
} bm_writer;
void bm_packer_init(msgpack_packer *pk, bm_writer *w, evb_buf *b);
int bm_write(void *data, const char *buf, size_t len); /* the packer's callback */
void bm_str(msgpack_packer *pk, const char *s);        /* NULL packs "" */

#define BM_TOPIC_HEARTBEAT "H"
#define BM_TOPIC_HEARTBEAT_LEN 2 /* with its NUL */

typedef struct bm_request {
    evb_wire_kind kind; /* EVB_WIRE_HELLO or EVB_WIRE_FETCH */
    uint64_t req_id;
    char category[EVB_MAX_CATEGORY_LEN + 1]; /* "" = every category */
    uint64_t after;
    unsigned max_events;
} bm_request;

int bm_live_header(evb_buf *b, uint64_t prev, evb_err *err);
int bm_heartbeat(evb_buf *b, const evb_id *log_id, uint64_t head, const char *service,
                 const evb_wire_cat_head *heads, size_t n, evb_err *err);
int bm_parse_request(const void *buf, size_t len, bm_request *rq, evb_err *err);
int bm_hello_reply(evb_buf *b, uint64_t req_id, const evb_id *log_id, uint64_t head,
                   const char *service, evb_err *err);
int bm_page(evb_buf *b, uint64_t req_id, const evb_id *log_id, uint64_t head,
            uint64_t position, bool more, size_t count, evb_err *err);
int bm_error(evb_buf *b, uint64_t req_id, const char *code, const char *msg,
             evb_err *err);
int bm_hole(evb_buf *b, uint64_t req_id, const evb_id *log_id, uint64_t head,
            uint64_t from, uint64_t to, evb_err *err);

/* ---- warnings a peer can cause ----
 * Anything a remote peer can trigger at will (garbage requests, replies to
 * clients that left) is logged at most once a second per kind and socket;
 * the next line says how many were left out. */
typedef struct bm_ratelog {
    int64_t last_us;   /* when the last line was logged; 0: never */
    uint64_t unlogged; /* left out since then */
} bm_ratelog;

/* True when a line may be logged now; then *skipped gets the number left
 * out before it. False (and one more left out) otherwise. */
bool bm_ratelog_ok(bm_ratelog *r, uint64_t *skipped);

/* ---- binding ----
 * zmq_bind(sock, ep) with one check first: an ipc:// path that a running
 * process still serves (a connect to it succeeds) is refused, EVB_EIO
 * "in use", where libzmq would unlink it and take it over, leaving that
 * process bound to nothing. A socket file nobody serves (left by a process
 * that died) is taken over as before. The check and the bind are two steps:
 * two processes that bind the same path at the same instant can both pass
 * it. Other transports fail on their own (tcp: "Address already in use"). */
int bm_bind(void *sock, const char *ep, evb_err *err);

/* ---- CZMQ ----
 * The zloop glue shared by the publisher, the subscriber and the command
 * socket: a hook (lives in the object) names the object's poll function;
 * readable sockets and timers call it with timeout 0, and a failure is
 * logged and ends the loop. */
typedef struct _zloop_t zloop_t;
typedef struct zl_hook {
    int (*poll)(void *obj, int timeout_ms, evb_err *err);
    void *obj;
    const char *what; /* names the object in the log line */
} zl_hook;

int zl_add_socket(zloop_t *loop, void *sock, zl_hook *h);
int zl_add_timer(zloop_t *loop, size_t ms, zl_hook *h);
/* Stop polling sock (before it is closed); safe inside a zloop handler. */
void zl_remove_socket(zloop_t *loop, void *sock);

#endif
