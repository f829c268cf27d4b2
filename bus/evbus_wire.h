/*
 * evbus_wire.h: the bus protocol's messages (bus/PROTOCOL.md) for programs
 * that speak it on ZeroMQ sockets of their own (a tool, a bridge in another
 * runtime, a test that plays a hostile peer). Most programs want
 * evbus_bus.h's publisher, subscriber, or tap (a subscriber without a store,
 * which is what `evbus sniff` uses).
 *
 * What is here: the live topics and header, the catch-up requests a client
 * sends (hello, fetch) and the replies and heartbeats it parses, the socket
 * options and connect of a subscriber's pair of sockets, and CURVE on the
 * client side (our keys, a server's key, a watched connection that connects
 * again after a refused handshake).
 *
 * Conventions (as everywhere in evbus): calls return an evb_code and fill
 * the evb_err passed last (may be NULL). Parsers never read past the buffer
 * and never allocate: strings in a parsed reply point into the frame or are
 * copied into fixed arrays, so the frame must outlive the reply's use.
 * Sockets are void * ZeroMQ sockets that belong to the caller's thread; this
 * header includes no ZeroMQ header. Nothing here is thread-safe.
 *
 * Stability: this header follows the wire protocol (EVB_BUS_PROTOCOL); a
 * new protocol version may change it.
 */
#ifndef EVBUS_WIRE_H
#define EVBUS_WIRE_H

#include "evbus_bus.h"

#ifdef __cplusplus
extern "C" {
#endif

/* At most this many categories in one heartbeat (PROTOCOL.md, "Heartbeat"). */
#define EVB_WIRE_MAX_HB_CATS 256

/* ---- topics and the live header ---- */

/* The longest live topic: "E", a category, its NUL. */
#define EVB_WIRE_TOPIC_MAX (EVB_MAX_CATEGORY_LEN + 2)

/* Write the live topic of category into out: "E" category "\0" (the NUL
 * ends the category, so no category's subscription prefix matches another:
 * "show" never gets "showtime"). Returns the topic's length, its NUL
 * included, or 0 (out untouched) when category is empty or longer than
 * EVB_MAX_CATEGORY_LEN. Its characters are not checked: evb_check_category
 * does that. */
EVB_EXPORT size_t evb_wire_topic_event(char out[EVB_WIRE_TOPIC_MAX], const char *category);

typedef enum evb_wire_live_kind {
    EVB_WIRE_LIVE_BAD,  /* not a topic of this protocol: see why */
    EVB_WIRE_LIVE_HB,   /* "H\0": a heartbeat */
    EVB_WIRE_LIVE_EVENT /* "E" category "\0": an event */
} evb_wire_live_kind;

/* The topic of a message msg[0..len) from the live socket. For an event the
 * category is copied into cat and checked. *body and *blen get what follows
 * the topic. EVB_WIRE_LIVE_BAD with *why (a static string) set when the
 * topic is missing, unknown or not a category. */
EVB_EXPORT evb_wire_live_kind evb_wire_live_topic(const void *msg, size_t len,
                                                  char cat[EVB_MAX_CATEGORY_LEN + 1],
                                                  const uint8_t **body, size_t *blen,
                                                  const char **why);

/* Parse the live header at the start of an event's body: *prev gets the
 * sequence of the previous event of the category in the publisher's log (0:
 * none), *hlen the header's length (the event's envelope follows it).
 * EVB_EDECODE naming what was wrong, EVB_EVERSION for another protocol
 * version. */
EVB_EXPORT int evb_wire_parse_live_header(const void *buf, size_t len, uint64_t *prev,
                                          size_t *hlen, evb_err *err);

/* ---- catch-up (DEALER -> ROUTER) ---- */

typedef enum evb_wire_kind {
    EVB_WIRE_HELLO,
    EVB_WIRE_FETCH,
    EVB_WIRE_PAGE,
    EVB_WIRE_ERROR,
    EVB_WIRE_HB,
    EVB_WIRE_HOLE /* events the publisher's log cannot read (damage) */
} evb_wire_kind;

/* A category and its head, in a heartbeat. */
typedef struct evb_wire_cat_head {
    const char *name;
    uint64_t head;
} evb_wire_cat_head;

/* A reply from the catch-up socket, or a heartbeat. Strings point into the
 * parsed frame or into names[]. */
typedef struct evb_wire_reply {
    evb_wire_kind kind;
    uint64_t req_id;
    evb_id log_id;
    uint64_t head, position;
    bool more;
    uint32_t count;
    uint64_t hole_from, hole_to; /* hole: the sequences that cannot be read */
    char service[EVB_MAX_SERVICE_LEN + 1];
    char code[32];
    char message[256];
    evb_wire_cat_head heads[EVB_WIRE_MAX_HB_CATS]; /* heartbeat */
    size_t nheads;
    char names[EVB_WIRE_MAX_HB_CATS][EVB_MAX_CATEGORY_LEN + 1];
} evb_wire_reply;

/* Requests, appended to b. EVB_ENOMEM when b cannot grow. Nothing is
 * checked here: category ("" or NULL asks for every category) must pass
 * evb_check_category, and max_events be at most EVB_BUS_MAX_PAGE_EVENTS, or
 * the publisher answers with an error reply. */
EVB_EXPORT int evb_wire_hello(evb_buf *b, uint64_t req_id, evb_err *err);
EVB_EXPORT int evb_wire_fetch(evb_buf *b, uint64_t req_id, const char *category,
                              uint64_t after, unsigned max_events, evb_err *err);

/* Parse a catch-up reply (hello, page, hole, error) or a heartbeat body; *used
 * gets the header's length. Only a page may have bytes after its header: its
 * events (split them with evb_wire_split). EVB_EDECODE naming the field,
 * EVB_EVERSION for another protocol version, EVB_EINVAL for a message this
 * version does not know. */
EVB_EXPORT int evb_wire_parse_reply(const void *buf, size_t len, evb_wire_reply *r,
                                    size_t *used, evb_err *err);

/* A msgpack value inside a received message. */
typedef struct evb_wire_view {
    const void *p;
    size_t len;
} evb_wire_view;

/* Split the msgpack values laid end to end in buf (a page's events) into at
 * most max views; *count gets how many. EVB_EDECODE when buf holds more than
 * max values, or a value that is truncated or nested too deep. The views
 * point into buf; each value is still to be decoded. */
EVB_EXPORT int evb_wire_split(const void *buf, size_t len, evb_wire_view *views, size_t max,
                              size_t *count, evb_err *err);

/* ---- a subscriber's pair of sockets ---- */

/* Socket options of a subscriber's connection to one publisher: both
 * sockets linger 0 and have a size cap (live messages are one event,
 * catch-up replies one page); sub gets rcvhwm and the heartbeat topic;
 * dealer connects only when ready, holds no queue (one outstanding fetch per
 * feed bounds it) and has ZMTP heartbeats (a dead or half-open connection is
 * dropped and made again). sub has none: libzmq 4.3.4 aborts a process whose
 * SUB queue is full when one times out (libzmq #3937); see
 * evb_wire_sub_redial. Subscribing to events is the caller's. Call before
 * connecting. */
EVB_EXPORT void evb_wire_sub_sockopts(void *sub, void *dealer, int rcvhwm);

/* A publisher sent no heartbeat for the caller's dead-after time: unless
 * messages wait in sub (the reader is behind, not the link dead), drop sub's
 * connection to pub_ep and dial again, so a half-open link (the publisher's
 * host gone without a word) is replaced, as ZMTP heartbeats would have done.
 * Subscriptions and security options stay with the socket. True when it
 * dialled again. */
EVB_EXPORT bool evb_wire_sub_redial(void *sub, const char *pub_ep);

/* Connect sub to pub_ep and dealer to cu_ep. EVB_OK, or EVB_EINVAL naming
 * the endpoint that failed. */
EVB_EXPORT int evb_wire_sub_connect(void *sub, void *dealer, const char *pub_ep,
                                    const char *cu_ep, evb_err *err);

/* After receiving a frame with "more" set (zmq_msg_more), read and drop the
 * rest of that multipart message: every message of this protocol is one
 * frame (PROTOCOL.md says why). more false does nothing. Returns the frames
 * dropped. */
EVB_EXPORT size_t evb_wire_drain(void *sock, bool more);

/* ---- CURVE, client side (PROTOCOL.md, "Security") ---- */

#define EVB_CURVE_Z85 (EVB_CURVE_KEY_LEN + 1) /* a Z85 key and its NUL */

/* Our keys. The secret lives here only: it never goes into a message or a
 * log line, and evb_curve_keys_wipe clears it. */
typedef struct evb_curve_keys {
    bool on;                 /* false: plain */
    char pub[EVB_CURVE_Z85]; /* ours */
    char sec[EVB_CURVE_Z85]; /* ours; never logged */
} evb_curve_keys;

/* Load our certificate (the "NAME_secret" file, or "NAME" with NAME_secret
 * beside it) and set k->on. EVB_EINVAL naming the file when it cannot be
 * read or holds no secret key. Warns (evb_log) when the secret file is
 * readable by others. */
EVB_EXPORT int evb_curve_keys_load(const char *cert_file, evb_curve_keys *k,
                                   evb_err *err);
EVB_EXPORT void evb_curve_keys_wipe(evb_curve_keys *k);

/* A server's public key: 40 Z85 characters, or a certificate file whose
 * public key is taken. EVB_EINVAL naming it otherwise. */
EVB_EXPORT int evb_curve_server_key(const char *key_or_file, char out[EVB_CURVE_Z85],
                                    evb_err *err);

/* Make sock a CURVE client of the server whose public key is server_key
 * (before connecting). EVB_EINVAL naming the option libzmq refused. */
EVB_EXPORT int evb_curve_make_client(void *sock, const evb_curve_keys *k,
                                     const char *server_key, evb_err *err);

typedef enum evb_curve_ev {
    EVB_CURVE_EV_NONE = 0,
    EVB_CURVE_EV_OK,      /* a handshake succeeded */
    EVB_CURVE_EV_REFUSED, /* the server said no (allow-list, plain vs CURVE): see why */
    EVB_CURVE_EV_FAILED,  /* a CURVE handshake broke off (wrong server key?): see why */
} evb_curve_ev;

/* The socket monitor behind a link (opaque). */
typedef struct evb_curve_mon evb_curve_mon;

/* A watched client connection. libzmq 4.3 does not reconnect after a
 * refused handshake (it is a protocol error: the connection is dropped for
 * good). A link watches one connecting socket and connects it again after a
 * back-off (1 s, doubling up to 8 s), so a client whose key is added to the
 * allow-list gets in without a restart. Programs read bad, why and failures
 * and leave the fields to the calls below. */
typedef struct evb_curve_link {
    evb_curve_mon *mon;
    void *sock;
    char ep[EVB_BUS_MAX_ENDPOINT];
    bool bad;          /* the last handshake failed */
    char why[256];     /* why, while bad */
    uint64_t failures; /* failed handshakes */
    int64_t retry_us;  /* connect again at (0: not planned) */
    unsigned backoff_ms;
} evb_curve_link;

/* Watch sock (call before zmq_connect(sock, ep), which the caller does), a
 * socket of ZeroMQ context zctx. k: our keys, or NULL for a plain socket.
 * EVB_EIO naming the monitor that could not be set up (EVB_ENOMEM when out
 * of memory). */
EVB_EXPORT int evb_curve_link_open(evb_curve_link *l, void *zctx, void *sock,
                                   const char *ep, const evb_curve_keys *k, evb_err *err);
EVB_EXPORT void evb_curve_link_close(evb_curve_link *l);
/* Read the events and connect again when due (never waits). Returns a
 * change: EVB_CURVE_EV_OK (a handshake passed after failures), a failure
 * that is new or has a new reason (l->why), or EVB_CURVE_EV_NONE. */
EVB_EXPORT evb_curve_ev evb_curve_link_check(evb_curve_link *l, int64_t now_us);
/* Connect again now (a client about to make a request after a refusal). */
EVB_EXPORT void evb_curve_link_retry(evb_curve_link *l);

#ifdef __cplusplus
}
#endif

#endif
