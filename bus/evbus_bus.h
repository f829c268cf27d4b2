/*
 * evbus_bus.h: publishing a log on the bus, and following publishers with
 * exactly-once effects. The wire protocol is specified in bus/PROTOCOL.md.
 *
 * Publisher (evb_pub_t): serves one store's log on a PUB socket (live, in log
 * order, only what the store has made durable under its sync policy) and a
 * ROUTER socket (catch-up pages read from the log). It runs in the thread that
 * owns the store: call evb_pub_poll in that thread's loop, after appends.
 *
 * Subscriber (evb_sub_t): follows publishers, each named by its pair of
 * endpoints; keeps one feed per (publisher, category); detects gaps, fetches
 * what is missing, drops duplicates, and calls the handler with a store
 * transaction in which the feed's checkpoint is committed together with the
 * handler's writes. It runs in the thread that owns its store: call
 * evb_sub_poll in that thread's loop.
 *
 * Both objects own their ZeroMQ sockets and a ZeroMQ context; neither is
 * thread-safe. Sockets bound by a publisher accept at most
 * EVB_BUS_MAX_MSG_BYTES per message (ZMQ_MAXMSGSIZE).
 */
#ifndef EVBUS_BUS_H
#define EVBUS_BUS_H

#include "evbus_store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_BUS_PROTOCOL 1u
#define EVB_BUS_MAX_MSG_BYTES (EVB_MAX_EVENT_BYTES + 4096u)
#define EVB_BUS_MAX_PAGE_EVENTS 4096u
#define EVB_BUS_MAX_PAGE_BYTES (4u * 1024u * 1024u)
#define EVB_BUS_MAX_ENDPOINT 256u

/* ---- security (PROTOCOL.md, "Security") ----
 * Plain (no encryption, no authentication) unless a CURVE configuration is
 * given. Binders (publisher, command socket) are CURVE servers: they accept
 * only clients whose public keys are in allow_dir, a directory of public
 * certificate files (CZMQ zcert format, as `evbus cert new` writes them),
 * re-read when it changes, without a restart; their own public key is always
 * accepted. Connecters (subscriber, command client) are CURVE clients: they
 * need their own certificate and the server's public key. A client whose
 * handshake is refused learns it from a socket monitor: the command client
 * returns EVB_EAUTH, a subscriber's feeds say why in their status. Secret
 * keys are read from cert_file and never logged. The strings are borrowed
 * for the call that takes them. */
#define EVB_CURVE_KEY_LEN 40u /* a key in Z85 text */

typedef struct evb_curve {
    const char *cert_file;  /* own certificate: "NAME_secret" (or "NAME" next to it) */
    const char *allow_dir;  /* servers: directory of allowed clients' public certs */
    const char *server_key; /* clients: the server's public key (40 Z85 characters)
                               or its public certificate file */
} evb_curve;

/* Make a certificate: DIR/NAME, the public one (give it to servers' allow-
 * lists and to clients), and DIR/NAME_secret, both keys, created with mode
 * 0600. name: 1..64 of [A-Za-z0-9_.@-], not starting with '.' or '-'.
 * Existing files are never overwritten (EVB_EINVAL naming the file); EVB_EIO
 * when a file cannot be written (nothing is left behind). public_key (may
 * be NULL; EVB_CURVE_KEY_LEN + 1 bytes) receives the public key in Z85. */
EVB_EXPORT int evb_curve_cert_new(const char *dir, const char *name, char *public_key,
                                  evb_err *err);
/* The public key (Z85, EVB_CURVE_KEY_LEN + 1 bytes) of a certificate file,
 * public or secret. EVB_EINVAL when it is not one. */
EVB_EXPORT int evb_curve_public_key(const char *cert_file, char *public_key,
                                    evb_err *err);

/* ---- publisher ---- */

typedef struct evb_pub evb_pub_t;

typedef struct evb_pub_opts {
    evb_store_t *store;           /* borrowed; must outlive the publisher */
    const char *pub_endpoint;     /* bound, e.g. "tcp://127.0.0.1:5601" */
    const char *catchup_endpoint; /* bound, e.g. "tcp://127.0.0.1:5602" */
    unsigned heartbeat_ms;        /* default 500 */
    int sndhwm;                   /* PUB high-water mark (default 100000) */
    const evb_curve *curve;       /* NULL: plain; else cert_file and allow_dir */
} evb_pub_opts;

typedef struct evb_pub_stats {
    uint64_t published;   /* last seq sent live */
    uint64_t events_sent; /* live events sent */
    uint64_t heartbeats;
    uint64_t fetches; /* catch-up requests answered */
    uint64_t pages_sent;
    uint64_t bad_requests; /* malformed or unknown, answered with an error */
    uint64_t unroutable;   /* replies ROUTER could not deliver (peer gone/full) */
    uint64_t holes; /* reads that met events the log cannot read (damage) */
} evb_pub_stats;

/* Bind both sockets. Errors name the endpoint (EVB_EINVAL bad endpoint,
 * EVB_EIO cannot bind). Events already in the log are not re-sent live:
 * subscribers learn the head from heartbeats and fetch what they miss. */
EVB_EXPORT evb_pub_t *evb_pub_new(const evb_pub_opts *opts, evb_err *err);
EVB_EXPORT void evb_pub_destroy(evb_pub_t **pubp);

/* One turn of the publisher: send live every durable event not sent yet (in
 * log order), answer pending catch-up requests, send a heartbeat when due.
 * Waits up to timeout_ms (0: do not wait, -1: until a request arrives) for a
 * request. Bad requests are answered with an error and counted; they never
 * fail the call. Returns EVB_OK, or an error reading the log. */
EVB_EXPORT int evb_pub_poll(evb_pub_t *pub, int timeout_ms, evb_err *err);

/* The catch-up ROUTER socket, to poll it in the caller's own loop (readable:
 * call evb_pub_poll(pub, 0, ...)). Borrowed. */
EVB_EXPORT void *evb_pub_socket(evb_pub_t *pub);

EVB_EXPORT void evb_pub_get_stats(const evb_pub_t *pub, evb_pub_stats *stats);
/* CURVE clients the publisher's allow-list refused (0 in plain mode). */
EVB_EXPORT uint64_t evb_pub_auth_refused(const evb_pub_t *pub);

/* ---- subscriber ---- */

typedef struct evb_sub evb_sub_t;

/* Called once per event, in log order per (publisher, category). Add the
 * event's effects to tx (evb_txn_put, evb_txn_append, ...); the subscriber
 * adds the feed's checkpoint and commits. Return EVB_OK to apply, anything
 * else to refuse: nothing of tx is committed and the event is offered again
 * later. ev and tx are lent for the call. Events are applied in batches (a
 * catch-up page, one transaction): when one is refused the batch is undone
 * and applied again one event at a time, so the handler can be called more
 * than once for an event whose effects were never committed. Effects kept in
 * tx happen exactly once; anything else the handler does (a message, a file)
 * is at-least-once: use (publisher log id, seq) as its idempotency key. */
typedef int (*evb_handler_fn)(const evb_event_t *ev, evb_txn_t *tx, void *ctx,
                              evb_err *err);

typedef enum evb_log_id_policy {
    EVB_LOGID_STOP = 0, /* a publisher whose log id changed: stop that feed, say why */
    EVB_LOGID_RESTART   /* start over from 1 with the new log */
} evb_log_id_policy;

typedef struct evb_sub_opts {
    evb_store_t *store;   /* the consumer's own store; borrowed */
    const char *consumer; /* checkpoint namespace, 1..EVB_MAX_CONSUMER_LEN bytes */
    evb_handler_fn handler;
    void *ctx;
    unsigned page_events;      /* events per catch-up page (default 2000) */
    unsigned fetch_timeout_ms; /* re-ask after this (default 3000) */
    unsigned dead_after_ms;    /* no heartbeat for this long: reconnect (default 5000) */
    /* Nothing heard (heartbeat or reply) for this long: the publisher is
     * lost (evb_feed_status.publisher_lost, a "publisher-lost" entry in each
     * feed's history); default 1000, two of the publishers' default
     * heartbeat intervals. When it is heard again, its live feeds catch up
     * once to fetch what went out while the link was down. */
    unsigned lost_after_ms;
    int rcvhwm;                /* SUB high-water mark (default 100000) */
    size_t live_buffer; /* live events kept per feed while catching up (default 10000) */
    evb_log_id_policy log_id_policy;
    /* NULL: plain. Else cert_file (our certificate) and, optionally,
     * server_key: the publishers' key for evb_sub_follow. */
    const evb_curve *curve;
} evb_sub_opts;

EVB_EXPORT evb_sub_t *evb_sub_new(const evb_sub_opts *opts, evb_err *err);
EVB_EXPORT void evb_sub_destroy(evb_sub_t **subp);

/* How to follow a publisher (evb_sub_follow). */
typedef struct evb_follow_opts {
    /* One feed per category in categories[0..ncategories); none: every
     * category the publisher has, each a feed of its own as it shows up. */
    const char *const *categories;
    size_t ncategories;
    /* Every category as one feed in the publisher's log order, with one
     * checkpoint (category EVB_ALL_CATEGORIES): what a replica or an export
     * that keeps the log's order needs. Not with categories. */
    bool log_order;
    /* CURVE: the publisher's public key (40 Z85 characters, or its public
     * certificate file); needs the subscriber's certificate
     * (evb_sub_opts.curve). NULL or "": evb_sub_opts.curve->server_key, or
     * plain without one. */
    const char *server_key;
} evb_follow_opts;

/* Follow a publisher: connect to its PUB and catch-up endpoints and keep its
 * feeds (opts NULL: every category, a feed each). EVB_EINVAL for a bad
 * endpoint, category or key, or categories with log_order. */
EVB_EXPORT int evb_sub_follow(evb_sub_t *sub, const char *pub_endpoint,
                              const char *catchup_endpoint, const evb_follow_opts *opts,
                              evb_err *err);

/* Stop following the publisher at pub_endpoint (and catchup_endpoint; NULL:
 * any): close its sockets and drop its feeds, in the owner thread, between
 * polls or from another handler of the same zloop. Checkpoints stay in the
 * store, keyed by the publisher's log id, so following the same log again
 * (at new endpoints: a publisher that moved) resumes where this left off,
 * without loss or duplicates. EVB_ENOTFOUND when not followed. */
EVB_EXPORT int evb_sub_unfollow(evb_sub_t *sub, const char *pub_endpoint,
                                const char *catchup_endpoint, evb_err *err);

/* One turn: receive and apply what arrived, fetch what is missing, re-ask
 * timed-out fetches. Waits up to timeout_ms for traffic. Malformed frames are
 * counted and dropped (logged at a limited rate, naming the peer); a failing
 * handler leaves its event for a later turn. Returns EVB_OK, or an error of
 * the consumer's store. */
EVB_EXPORT int evb_sub_poll(evb_sub_t *sub, int timeout_ms, evb_err *err);

typedef enum evb_feed_state {
    EVB_FEED_CATCHING_UP = 0,
    EVB_FEED_LIVE,
    EVB_FEED_STALLED, /* no progress after 5 attempts (refusals or crashes) */
    EVB_FEED_STOPPED  /* the publisher's log id changed (EVB_LOGID_STOP) */
} evb_feed_state;

/* A feed's recent history: what it entered and when. */
#define EVB_FEED_HISTORY 16
typedef struct evb_feed_change {
    int64_t at_ms;    /* wall clock, ms since 1970 */
    const char *what; /* a state's name (evb_feed_state_name), "publisher-lost"
                         (nothing heard for lost_after_ms) or "publisher-back" */
    const char *why;  /* "" when there is nothing more to say */
} evb_feed_change;

typedef struct evb_feed_status {
    const char *publisher; /* "PUB_EP,CATCHUP_EP" */
    const char *category;
    evb_id log_id;    /* zero until learned */
    uint64_t applied; /* every event of the category <= this is applied */
    uint64_t head;    /* the publisher's head, as last heard */
    uint64_t lag;     /* events of the log after applied (head - applied) */
    evb_feed_state state;
    const char *reason; /* why stalled or stopped; "" otherwise */
    uint64_t applied_events, duplicates, gaps, pages, bad_frames, refusals;
    int64_t heartbeat_age_ms; /* -1: none yet */
    /* Handshakes the publisher refused (CURVE: our key is not in its
     * allow-list, or the security settings differ); while the last one
     * failed, reason says why. */
    uint64_t handshake_refusals;
    /* Stalled at a hole: events hole_from..hole_to of the publisher's log
     * cannot be read (it is damaged); 0 otherwise. */
    uint64_t hole_from, hole_to;
    /* Age of the oldest event of the category not applied yet (its time is
     * the publisher's clock): 0 when caught up, NaN while that event has
     * not been received (between catch-up pages). */
    double lag_seconds;
    const char *publisher_service; /* the name its heartbeats give; "" until heard */
    bool publisher_lost;           /* nothing heard from it for lost_after_ms */
    /* The last EVB_FEED_HISTORY changes, oldest first (lent for the call). */
    const evb_feed_change *history;
    size_t nhistory;
    /* Live events dropped while catching up (beyond the kept bound; fetched
     * instead), and events gone past in a hole (a tap's; a subscriber's feed
     * stalls there instead). */
    uint64_t dropped_live, unreadable;
} evb_feed_status;

typedef int (*evb_feed_fn)(const evb_feed_status *fs, void *ctx);
/* Call fn for every feed (lent for the call). A publisher followed for every
 * category whose handshake failed before any feed existed shows as one entry
 * of category "*" with the reason. */
EVB_EXPORT int evb_sub_status(evb_sub_t *sub, evb_feed_fn fn, void *ctx, evb_err *err);

EVB_EXPORT const char *evb_feed_state_name(evb_feed_state s);

/* Operator actions on a stalled feed, named by publisher ("PUB_EP,CATCHUP_EP"
 * or just PUB_EP; NULL: the first feed of that category) and category.
 * retry: forget the attempts and try again. skip: record that the events up
 * to seq are skipped (a key in the consumer's store, committed with the
 * checkpoint that passes them) and go on after seq. EVB_ENOTFOUND: no such
 * feed; EVB_EINVAL: the feed is not stalled, or seq is not ahead of it. */
EVB_EXPORT int evb_sub_retry(evb_sub_t *sub, const char *publisher, const char *category,
                             evb_err *err);
EVB_EXPORT int evb_sub_skip(evb_sub_t *sub, const char *publisher, const char *category,
                            uint64_t seq, evb_err *err);

/* ---- tap ----
 * Watching the bus without a store (a sniffer, a dashboard, a test): the
 * subscriber's feeds, gap filling and switch-over, but positions in memory
 * only and no handler transaction. Each event reaches on_event once, in log
 * order per feed (per category, or the whole log with log_order). A hole in
 * a publisher's log (events it cannot read) is logged and gone past. A
 * publisher whose log id changes is followed again from the start (from, or
 * its head). */
typedef struct evb_tap evb_tap_t;

typedef struct evb_tap_event {
    const evb_event_t *ev;   /* decoded; lent for the call, as are the others */
    const void *raw;         /* its envelope as it came */
    size_t raw_len;
    const char *publisher;   /* "PUB_EP,CATCHUP_EP" */
    const char *service;     /* the publisher's service as its heartbeats name it */
    int64_t rx_us;           /* when it was handed over (wall clock) */
} evb_tap_event;

/* EVB_OK to go on; anything else ends evb_tap_poll with that code. */
typedef int (*evb_tap_fn)(const evb_tap_event *te, void *ctx, evb_err *err);

typedef struct evb_tap_opts {
    evb_tap_fn on_event;
    void *ctx;
    /* 0: what the publishers publish from the moment the tap meets them;
     * N: every event from seq N on (history, then live). */
    uint64_t from;
    /* N > 0 (with from 0): the last N events of each publisher's log, then
     * live: from its head when the tap meets its log, less N - 1 (from seq 1
     * when the log holds fewer). Per publisher, which one from cannot say. */
    uint64_t last;
    unsigned page_events, fetch_timeout_ms, dead_after_ms, lost_after_ms;
    int rcvhwm;          /* SUB high-water mark (default 100000) */
    size_t live_buffer;  /* live events kept per feed while catching up */
    const evb_curve *curve; /* NULL: plain */
} evb_tap_opts;

EVB_EXPORT evb_tap_t *evb_tap_new(const evb_tap_opts *opts, evb_err *err);
EVB_EXPORT void evb_tap_destroy(evb_tap_t **tapp);
/* As evb_sub_follow (log_order: every category in one feed). */
EVB_EXPORT int evb_tap_follow(evb_tap_t *tap, const char *pub_endpoint,
                              const char *catchup_endpoint, const evb_follow_opts *opts,
                              evb_err *err);
EVB_EXPORT int evb_tap_poll(evb_tap_t *tap, int timeout_ms, evb_err *err);
/* As evb_sub_status; heartbeat_age_ms >= 0 once a heartbeat came, which
 * proves the live subscription reached the publisher. */
EVB_EXPORT int evb_tap_status(evb_tap_t *tap, evb_feed_fn fn, void *ctx, evb_err *err);

/* ---- command socket ----
 * A service's requests and replies (PROTOCOL.md, "Command socket"): the
 * service binds a ROUTER, clients use a DEALER so that a request that times
 * out never wedges them. A request names a command and carries a msgpack map
 * of arguments; the reply is "ok" with a msgpack map, or an error code name
 * with a message. The server runs in its owner's thread (evb_cmd_poll). */
typedef struct evb_cmd evb_cmd_t;

/* A command handler: read args (a msgpack map, lent), write the reply body
 * (one msgpack map) into out, which is empty on entry. Return EVB_OK, or an
 * error code with err->msg: the client gets both (EVB_EREJECTED for "the
 * domain said no", EVB_EINVAL for a bad request, ...). */
typedef int (*evb_cmd_fn)(const void *args, size_t args_len, evb_buf *out, void *ctx,
                          evb_err *err);

/* Where a command socket is, and how it is secured: a server binds
 * endpoint, a client connects to it. curve NULL: plain; a server's curve
 * gives cert_file and allow_dir, a client's cert_file and server_key. */
typedef struct evb_cmd_opts {
    const char *endpoint;
    const evb_curve *curve;
} evb_cmd_opts;

/* A command socket bound at opts->endpoint. evb_cmd_auth_refused counts the
 * clients a CURVE server's allow-list refused. */
EVB_EXPORT evb_cmd_t *evb_cmd_new(const evb_cmd_opts *opts, evb_err *err);
EVB_EXPORT uint64_t evb_cmd_auth_refused(const evb_cmd_t *cmd);
EVB_EXPORT void evb_cmd_destroy(evb_cmd_t **cmdp);
/* Register fn for command `name` (copied; at most 32 commands). */
EVB_EXPORT int evb_cmd_on(evb_cmd_t *cmd, const char *name, evb_cmd_fn fn, void *ctx,
                          evb_err *err);
/* Answer the requests that arrived; wait up to timeout_ms for one. Bad and
 * unknown requests get an error reply and are counted; the call does not
 * fail for them. */
EVB_EXPORT int evb_cmd_poll(evb_cmd_t *cmd, int timeout_ms, evb_err *err);
EVB_EXPORT void *evb_cmd_socket(evb_cmd_t *cmd);
EVB_EXPORT uint64_t evb_cmd_bad_requests(const evb_cmd_t *cmd);

/* Client: a DEALER connected to one command socket, kept for many calls, one
 * at a time (not thread-safe; one ZeroMQ context per client). Request ids
 * increase; a reply to an earlier request that timed out is dropped when it
 * arrives late, so the client stays usable after a timeout. While there is no
 * connection, requests are not queued (ZMQ_IMMEDIATE): a call to a service
 * that is down times out and leaves nothing behind. A request that timed out
 * after it was sent may still be carried out: give state-changing commands
 * an id the service deduplicates by (the `cmd_id` of PROTOCOL.md).
 *
 * evb_cmd_client_new connects (asynchronously; nobody need listen yet).
 * Errors: EVB_EUNREACHABLE naming the endpoint when it cannot be connected
 * to (malformed, unknown transport, longer than EVB_BUS_MAX_ENDPOINT - 1),
 * EVB_EINVAL for a NULL endpoint, or a certificate or key that cannot be
 * read, EVB_ENOMEM, EVB_EIO. Over CURVE, a call whose handshake the server
 * refuses (our key is not in its allow-list, or one side is plain) fails
 * with EVB_EAUTH, naming the endpoint, instead of timing out. */
typedef struct evb_cmd_client evb_cmd_client_t;
EVB_EXPORT evb_cmd_client_t *evb_cmd_client_new(const evb_cmd_opts *opts, evb_err *err);
EVB_EXPORT void evb_cmd_client_destroy(evb_cmd_client_t **clientp);

/* Send command (1..32 bytes) with args (a msgpack map, lent; NULL for none)
 * and wait up to timeout_ms for its reply. EVB_OK: the reply body (a msgpack
 * map) replaces out's contents. An error reply: its code (EVB_EIO for a name
 * this build does not know), with the service's message in err.
 * Local errors: EVB_ETIMEDOUT (no connection or no reply in time: service
 * down, busy, or not listening there; err names the endpoint), EVB_EINVAL
 * (bad command name or args not one map), EVB_ETOOBIG (request larger than
 * EVB_BUS_MAX_MSG_BYTES), EVB_EDECODE (a reply that is not a command-socket
 * reply: the endpoint is some other socket), EVB_ENOMEM. */
EVB_EXPORT int evb_cmd_client_call(evb_cmd_client_t *client, const char *command,
                                   const void *args, size_t args_len, int timeout_ms,
                                   evb_buf *out, evb_err *err);

/* One call on a client of its own (new, call, destroy), with the errors of
 * both. */
EVB_EXPORT int evb_cmd_call(const evb_cmd_opts *opts, const char *command,
                            const void *args, size_t args_len, int timeout_ms,
                            evb_buf *out, evb_err *err);

/* ---- CZMQ ----
 * Run a publisher, subscriber or command socket inside a CZMQ zloop, in the
 * thread that runs the loop (the objects' owner thread): readable sockets
 * and a short timer (for live publishing, heartbeats, fetch timeouts) call the
 * poll functions. A handler error ends the loop (zloop_start returns -1) and
 * is logged. A subscriber attached before evb_sub_follow gets the new
 * publisher's sockets added. Detach by destroying the loop before the
 * objects. */
typedef struct _zloop_t zloop_t;
EVB_EXPORT int evb_pub_attach(evb_pub_t *pub, zloop_t *loop, evb_err *err);
EVB_EXPORT int evb_sub_attach(evb_sub_t *sub, zloop_t *loop, evb_err *err);
EVB_EXPORT int evb_cmd_attach(evb_cmd_t *cmd, zloop_t *loop, evb_err *err);

#ifdef __cplusplus
}
#endif
#endif
