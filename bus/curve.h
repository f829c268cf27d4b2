/*
 * curve.h (private): CURVE security for the bus's sockets (PROTOCOL.md,
 * "Security"): certificates, the ZAP handler a server's context needs, and
 * the socket monitor that tells a client its handshake was refused.
 *
 * Thread rules: a curve_zap runs a thread of its own, on sockets of the
 * context it guards; everything else belongs to the caller's thread. Secret
 * keys live in curve_keys only, are wiped by curve_keys_wipe and never go
 * into a message or a log line.
 */
#ifndef EVB_CURVE_H
#define EVB_CURVE_H

#include "evbus_bus.h"

#define CURVE_Z85 (EVB_CURVE_KEY_LEN + 1) /* a Z85 key and its NUL */

typedef struct curve_keys {
    bool on;                    /* false: plain */
    char pub[CURVE_Z85];        /* ours */
    char sec[CURVE_Z85];        /* ours; never logged */
} curve_keys;

/* Whether this libzmq was built with CURVE (EVB_EINVAL and why, if not). */
int curve_available(evb_err *err);

/* Load our certificate (the "NAME_secret" file, or "NAME" with NAME_secret
 * beside it). EVB_EINVAL naming the file when it cannot be read or holds no
 * secret key. Warns (evb_log) when the secret file is readable by others. */
int curve_keys_load(const char *cert_file, curve_keys *k, evb_err *err);
void curve_keys_wipe(curve_keys *k);

/* A server's public key: 40 Z85 characters, or a certificate file whose
 * public key is taken. EVB_EINVAL naming it otherwise. */
int curve_server_key(const char *key_or_file, char out[CURVE_Z85], evb_err *err);

/* Socket options, before bind/connect. */
int curve_make_server(void *sock, const curve_keys *k, evb_err *err);
int curve_make_client(void *sock, const curve_keys *k, const char *server_key,
                      evb_err *err);

/* ---- ZAP handler (RFC 27) ----
 * One per ZeroMQ context that holds CURVE servers, started before they bind:
 * libzmq asks inproc://zeromq.zap.01 of the socket's own context. Accepts the
 * keys of the certificates in allow_dir (re-read whenever the directory or a
 * file in it changed) and own_pub; logs refusals at most once a second,
 * naming `who`. */
typedef struct curve_zap curve_zap;
curve_zap *curve_zap_start(void *zctx, const char *allow_dir, const char *own_pub,
                           const char *who, evb_err *err);
void curve_zap_stop(curve_zap **zp);
uint64_t curve_zap_refused(const curve_zap *z);

/* ---- handshake monitor (client side) ---- */
typedef struct curve_mon curve_mon;

typedef enum curve_ev {
    CURVE_EV_NONE = 0,
    CURVE_EV_OK,      /* a handshake succeeded */
    CURVE_EV_REFUSED, /* the server said no (allow-list, plain vs CURVE): see why */
    CURVE_EV_FAILED,  /* a CURVE handshake broke off (wrong server key?): see why */
} curve_ev;

/* Watch sock's handshakes (call before connecting it). k: our keys (plain
 * when !k->on), for the messages. */
curve_mon *curve_mon_new(void *zctx, void *sock, const curve_keys *k, evb_err *err);
void curve_mon_destroy(curve_mon **mp);
/* The inproc socket events arrive on (poll it for ZMQ_POLLIN). */
void *curve_mon_socket(curve_mon *m);
/* Read the events that arrived (never waits): the last that matters, and
 * for a failure why ("handshake refused by EP: ..."). *refusals (may be
 * NULL) grows by the number of failed handshakes read. */
curve_ev curve_mon_read(curve_mon *m, char *why, size_t cap, uint64_t *refusals);

/* ---- a watched client connection ----
 * libzmq 4.3 does not reconnect after a refused handshake (it is a protocol
 * error: the connection is dropped for good). A link watches one connecting
 * socket and connects it again after a back-off (1 s, doubling up to 8 s),
 * so a client whose key is added to the allow-list gets in without a
 * restart. */
typedef struct curve_link {
    curve_mon *mon;
    void *sock;
    char ep[EVB_BUS_MAX_ENDPOINT];
    bool bad;             /* the last handshake failed */
    char why[256];        /* why, while bad */
    uint64_t failures;    /* failed handshakes */
    int64_t retry_us;     /* connect again at (0: not planned) */
    unsigned backoff_ms;
} curve_link;

/* Watch sock (before zmq_connect(sock, ep), which the caller does). k: our
 * keys, or NULL for a plain socket. */
int curve_link_open(curve_link *l, void *zctx, void *sock, const char *ep,
                    const curve_keys *k, evb_err *err);
void curve_link_close(curve_link *l);
/* Read the events and connect again when due (never waits). Returns a change:
 * CURVE_EV_OK (a handshake passed after failures), a failure that is new or
 * has a new reason (l->why), or CURVE_EV_NONE. */
curve_ev curve_link_check(curve_link *l, int64_t now_us);
/* Connect again now (a client about to make a request after a refusal). */
void curve_link_retry(curve_link *l);

#endif
