/*
 * busmsg.h (private): encoding and parsing of the bus's control messages
 * (PROTOCOL.md). Writers use msgpack-c's packer; parsers use the codec's
 * bounds-checked reader, so a hostile frame costs a rejection, never a read
 * past the buffer or an allocation.
 */
#ifndef EVB_BUSMSG_H
#define EVB_BUSMSG_H

#include "evbus_bus.h"

#include <zmq.h>

#define BM_TOPIC_HEARTBEAT "H"
#define BM_TOPIC_HEARTBEAT_LEN 2 /* with its NUL */
#define BM_MAX_HB_CATS 256

/* "E" category "\0": the NUL ends the category, so no category's
 * subscription prefix matches another ("show" never gets "showtime"). */
size_t bm_topic_event(char *out, const char *category);

/* A msgpack value inside a received message. */
typedef struct bview {
    const void *p;
    size_t len;
} bview;

typedef enum bm_kind { BM_HELLO, BM_FETCH, BM_PAGE, BM_ERROR, BM_HB } bm_kind;

typedef struct bm_cat_head {
    const char *name;
    uint64_t head;
} bm_cat_head;

typedef struct bm_request {
    bm_kind kind; /* BM_HELLO or BM_FETCH */
    uint64_t req_id;
    char category[EVB_MAX_CATEGORY_LEN + 1]; /* "" = every category */
    uint64_t after;
    unsigned max_events;
} bm_request;

/* A reply from the catch-up socket, or a heartbeat. Strings point into the
 * parsed frame. */
typedef struct bm_reply {
    bm_kind kind;
    uint64_t req_id;
    evb_id log_id;
    uint64_t head, position;
    bool more;
    uint32_t count;
    char service[EVB_MAX_SERVICE_LEN + 1];
    char code[32];
    char message[256];
    bm_cat_head heads[BM_MAX_HB_CATS]; /* heartbeat: names point into the frame */
    size_t nheads;
    char names[BM_MAX_HB_CATS][EVB_MAX_CATEGORY_LEN + 1];
} bm_reply;

int bm_live_header(evb_buf *b, uint64_t prev, evb_err *err);
/* Parse the live header at the start of buf; *hlen gets its length (the
 * envelope follows it). */
int bm_parse_live_header(const void *buf, size_t len, uint64_t *prev, size_t *hlen,
                         evb_err *err);
int bm_heartbeat(evb_buf *b, const evb_id *log_id, uint64_t head, const char *service,
                 const bm_cat_head *heads, size_t n, evb_err *err);
int bm_hello(evb_buf *b, uint64_t req_id, evb_err *err);
int bm_fetch(evb_buf *b, uint64_t req_id, const char *category, uint64_t after,
             unsigned max_events, evb_err *err);
int bm_parse_request(const void *buf, size_t len, bm_request *rq, evb_err *err);
int bm_hello_reply(evb_buf *b, uint64_t req_id, const evb_id *log_id, uint64_t head,
                   const char *service, evb_err *err);
int bm_page(evb_buf *b, uint64_t req_id, const evb_id *log_id, uint64_t head,
            uint64_t position, bool more, size_t count, evb_err *err);
int bm_error(evb_buf *b, uint64_t req_id, const char *code, const char *msg,
             evb_err *err);
/* Parse a catch-up reply (hello, page, error) or a heartbeat body; *used
 * gets the header's length. Only a page may have bytes after its header:
 * its events. */
int bm_parse_reply(const void *buf, size_t len, bm_reply *r, size_t *used, evb_err *err);
/* Split up to max msgpack values laid end to end in buf into views; returns
 * how many were found, or (size_t)-1 when buf holds anything else (a value
 * too deep or truncated, bytes left over, more than max). */
size_t bm_split(const void *buf, size_t len, bview *views, size_t max);

/* ---- the subscriber's sockets (sub.c, and evbus sniff) ---- */

/* Socket options of a subscriber's connection to one publisher: both
 * sockets linger 0, ZMTP heartbeats (a dead or half-open connection is
 * noticed), a size cap (live messages are one event, catch-up replies one
 * page); sub gets rcvhwm and the heartbeat topic; dealer connects only when
 * ready and holds no queue (one outstanding fetch per feed bounds it).
 * Subscribing to events is the caller's. */
void bm_sub_sockopts(void *sub, void *dealer, int rcvhwm);

/* Connect sub to pub_ep and dealer to cu_ep. EVB_OK, or EVB_EINVAL naming
 * the endpoint that failed. */
int bm_sub_connect(void *sub, void *dealer, const char *pub_ep, const char *cu_ep,
                   evb_err *err);

/* Read and drop the rest of a multipart message: every message of this
 * protocol is one frame (PROTOCOL.md says why). Returns the frames dropped. */
size_t bm_drain_parts(void *sock, zmq_msg_t *first);

typedef enum bm_live_kind { BM_LIVE_BAD, BM_LIVE_HB, BM_LIVE_EVENT } bm_live_kind;

/* The topic of a message msg[0..len) from the live socket: "H\0" (a
 * heartbeat) or "E" category "\0" (an event; the category is copied into
 * cat and checked). *body and *blen get what follows the topic. BM_LIVE_BAD
 * with *why set when the topic is missing, unknown or not a category. */
bm_live_kind bm_live_topic(const void *msg, size_t len, char cat[EVB_MAX_CATEGORY_LEN + 1],
                           const uint8_t **body, size_t *blen, const char **why);

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
