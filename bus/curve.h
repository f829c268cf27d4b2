/*
 * curve.h (private): CURVE security for the bus's sockets (PROTOCOL.md,
 * "Security"): certificates, the ZAP handler a server's context needs, and
 * the socket monitor that tells a client its handshake was refused.
 *
 * Thread rules: a curve_zap runs a thread of its own, on sockets of the
 * context it guards; everything else belongs to the caller's thread. Secret
 * keys live in evb_curve_keys only, are wiped by evb_curve_keys_wipe and never go
 * into a message or a log line.
 */
#if !defined(EVB_BUILDING_BUS)
#error                                                                                   \
    "bus/curve.h is private to libevbus's bus module; programs include <evbus/evbus_wire.h>"
#endif
#ifndef EVB_CURVE_H
#define EVB_CURVE_H

#include "evbus_wire.h"

/* Whether this libzmq was built with CURVE (EVB_EINVAL and why, if not). */
int curve_available(evb_err *err);

/* Make sock a CURVE server with our keys (before bind). */
int curve_make_server(void *sock, const evb_curve_keys *k, evb_err *err);

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

/* ---- handshake monitor (client side; evb_curve_link is built on it) ---- */

/* Watch sock's handshakes (call before connecting it). k: our keys (plain
 * when !k->on), for the messages. */
evb_curve_mon *curve_mon_new(void *zctx, void *sock, const evb_curve_keys *k,
                             evb_err *err);
void curve_mon_destroy(evb_curve_mon **mp);
/* The inproc socket events arrive on (poll it for ZMQ_POLLIN). */
void *curve_mon_socket(evb_curve_mon *m);
/* Read the events that arrived (never waits): the last that matters, and
 * for a failure why ("handshake refused by EP: ..."). *refusals (may be
 * NULL) grows by the number of failed handshakes read. */
evb_curve_ev curve_mon_read(evb_curve_mon *m, char *why, size_t cap, uint64_t *refusals);

#endif
