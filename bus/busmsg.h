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

#include <zmq.h>

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
