/*
 * busmsg.h (private): encoding and parsing of the bus's control messages
 * (PROTOCOL.md). Writers use msgpack-c's packer; parsers use the codec's
 * bounds-checked reader, so a hostile frame costs a rejection, never a read
 * past the buffer or an allocation.
 */
#ifndef EVB_BUSMSG_H
#define EVB_BUSMSG_H

#include "evbus_bus.h"

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
