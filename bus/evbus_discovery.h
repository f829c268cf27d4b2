/*
 * evbus_discovery.h: finding services on a LAN by name, with UDP beacons
 * (CZMQ zbeacon). Optional: static endpoints work without any of this.
 * The beacon's byte layout is specified in bus/PROTOCOL.md, "Discovery".
 *
 * Announcer (evb_announce_t): broadcasts one beacon (service name, log id,
 * the full endpoints of its publisher, catch-up and command sockets) every
 * interval on one named interface. Endpoints bound to tcp://\*:PORT or
 * tcp://0.0.0.0:PORT are advertised with the interface's address (or an
 * address the caller names): a beacon never relies on the UDP source address.
 *
 * Listener (evb_discover_t): receives beacons on one interface and keeps a
 * table of the services heard, one entry per (service, log id), each expiring
 * after EVB_DISC_EXPIRE_BEACONS of its sender's intervals without a beacon.
 * Beacons that do not decode are counted and ignored.
 *
 * Interfaces: the interface is always named ("*" deliberately: every
 * interface, sending to 255.255.255.255). CZMQ keeps the beacon interface per
 * process (zsys_set_interface), so all announcers and listeners of a process
 * use one interface; asking for another is EVB_EINVAL.
 *
 * Threads: each object runs a zbeacon actor (a thread of its own) and is used
 * from one thread of the caller's; none is thread-safe. The library restores
 * the program's SIGINT/SIGTERM handlers after CZMQ's initialisation.
 */
#ifndef EVBUS_DISCOVERY_H
#define EVBUS_DISCOVERY_H

#include "evbus_bus.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_BEACON_VERSION 1u
#define EVB_BEACON_MAX_BYTES 255u   /* CZMQ's UDP_FRAME_MAX */
#define EVB_DISC_DEFAULT_PORT 5670u /* UDP port */
#define EVB_DISC_DEFAULT_INTERVAL_MS 1000u
#define EVB_DISC_EXPIRE_BEACONS 5u /* an entry lives this many sender intervals */
#define EVB_DISC_MAX_ENTRIES                                                             \
    1024u                      /* a listener's table; beyond it, new ones are dropped */
#define EVB_DISC_MAX_IFACE 64u /* bytes of an interface name */

/* ---- the beacon: encode and decode (no sockets) ---- */

/* A decoded beacon. Endpoints are "" when not advertised (a service without
 * a publisher has neither pub nor catchup). */
typedef struct evb_beacon {
    unsigned version;     /* EVB_BEACON_VERSION */
    unsigned interval_ms; /* the sender's interval, 1..65535 */
    int64_t started_us;   /* when the sender started announcing (its incarnation) */
    evb_id log_id;
    char service[EVB_MAX_SERVICE_LEN + 1];
    char pub[EVB_BUS_MAX_ENDPOINT];
    char catchup[EVB_BUS_MAX_ENDPOINT];
    char cmd[EVB_BUS_MAX_ENDPOINT];
} evb_beacon;

/* Encode b into out[0..*len). Endpoints must be connectable as written (no
 * "*" or 0.0.0.0 host, no "*" port). EVB_ETOOBIG when the beacon would be
 * larger than EVB_BEACON_MAX_BYTES, with err naming the sizes and the longest
 * part; EVB_EINVAL for a bad service name, interval or endpoint (named). */
EVB_EXPORT int evb_beacon_encode(const evb_beacon *b, uint8_t out[EVB_BEACON_MAX_BYTES],
                                 size_t *len, evb_err *err);

/* Decode len bytes of buf (any bytes: a fuzz target) into out. EVB_OK, or
 * EVB_EDECODE (not a beacon of ours, truncated, a bad field, bytes left over;
 * err names the first problem) or EVB_EVERSION (another version). out is
 * unspecified after an error. Never reads outside buf[0..len). */
EVB_EXPORT int evb_beacon_decode(const void *buf, size_t len, evb_beacon *out,
                                 evb_err *err);

/* ---- announcer ---- */

typedef struct evb_announce evb_announce_t;

typedef struct evb_announce_opts {
    const char *iface;        /* required: an interface name, or "*" for all */
    unsigned port;            /* UDP port (0: EVB_DISC_DEFAULT_PORT) */
    unsigned interval_ms;     /* 0: EVB_DISC_DEFAULT_INTERVAL_MS; at most 65535 */
    const char *service;      /* the service name (evb_check_service) */
    evb_id log_id;            /* the service's log id */
    const char *pub_endpoint; /* as bound; NULL or "" for none (then no catchup) */
    const char *catchup_endpoint;
    const char *cmd_endpoint;   /* as bound; NULL or "" for none */
    const char *advertise_host; /* replaces a "*" or 0.0.0.0 host; NULL: the
                                   interface's address (required with iface "*") */
} evb_announce_opts;

/* Check the beacon (size included) before anything goes on the network, then
 * start the actor and broadcast. Errors: EVB_ETOOBIG (over 255 bytes; err
 * names what is too long), EVB_EINVAL (bad option, endpoint or interface
 * name, another interface already in use by this process), EVB_EIO (no
 * broadcast interface of that name, or the actor could not start). */
EVB_EXPORT evb_announce_t *evb_announce_new(const evb_announce_opts *opts, evb_err *err);
EVB_EXPORT void evb_announce_destroy(evb_announce_t **ap);
/* The checks of evb_announce_new (options, endpoints, the beacon's size)
 * without the network: for a program to refuse a bad configuration before it
 * binds or opens anything. The interface's address is not known yet: a
 * wildcard endpoint is sized as an IPv4 address. */
EVB_EXPORT int evb_announce_check(const evb_announce_opts *opts, evb_err *err);
/* What is being broadcast (decoded; lent), and the interface's address. */
EVB_EXPORT const evb_beacon *evb_announce_beacon(const evb_announce_t *a);
EVB_EXPORT const char *evb_announce_address(const evb_announce_t *a);

/* ---- listener ---- */

typedef struct evb_discover evb_discover_t;

typedef struct evb_disc_entry {
    evb_beacon b;                       /* the newest beacon of this (service, log id) */
    char iface[EVB_DISC_MAX_IFACE + 1]; /* the listener's interface */
    char from[48];                      /* the UDP source address of the last beacon */
    int64_t first_seen_us, last_seen_us;
    uint64_t beacons; /* beacons received for this entry */
    uint64_t moves;   /* times its endpoints changed */
} evb_disc_entry;

typedef struct evb_disc_stats {
    uint64_t received; /* every datagram the actor passed on */
    uint64_t accepted;
    uint64_t foreign; /* not an evbus beacon (another magic: zyre, ...) */
    uint64_t bad;     /* evbus magic but malformed (truncated, garbage) */
    uint64_t version; /* evbus beacons of another version */
    uint64_t stale;   /* from an older incarnation than the entry's (ignored) */
    uint64_t expired; /* entries dropped after EVB_DISC_EXPIRE_BEACONS intervals */
    uint64_t full;    /* new entries dropped: EVB_DISC_MAX_ENTRIES reached */
} evb_disc_stats;

/* Listen on iface ("*": all) and UDP port (0: default). Errors: EVB_EINVAL,
 * EVB_EIO (no broadcast interface of that name: err says so). */
EVB_EXPORT evb_discover_t *evb_discover_new(const char *iface, unsigned port,
                                            evb_err *err);
EVB_EXPORT void evb_discover_destroy(evb_discover_t **dp);

/* Take in the beacons that arrived (waiting up to timeout_ms for the first:
 * 0 none, -1 forever) and drop expired entries. Returns how many entries
 * were added or changed endpoints (>= 0), or -1 with err (the actor died). */
EVB_EXPORT int evb_discover_poll(evb_discover_t *d, int timeout_ms, evb_err *err);

/* Call fn for every live entry (lent for the call), oldest first; a non-zero
 * return stops and is returned. */
typedef int (*evb_disc_fn)(const evb_disc_entry *e, void *ctx);
EVB_EXPORT int evb_discover_list(evb_discover_t *d, evb_disc_fn fn, void *ctx);

/* The live entry of service name (the newest incarnation when several log
 * ids announce that name; log_id non-NULL: only that log). EVB_OK (copied to
 * *out) or EVB_ENOTFOUND. No waiting: see evb_discover_wait. */
EVB_EXPORT int evb_discover_find(evb_discover_t *d, const char *name,
                                 const evb_id *log_id, evb_disc_entry *out);

/* Poll until name is heard or timeout_ms passes: EVB_OK, or EVB_ETIMEDOUT
 * naming the service, interface and port. */
EVB_EXPORT int evb_discover_wait(evb_discover_t *d, const char *name, int timeout_ms,
                                 evb_disc_entry *out, evb_err *err);

EVB_EXPORT void evb_discover_get_stats(const evb_discover_t *d, evb_disc_stats *st);
/* The actor's socket, readable when beacons wait (a zsock_t *, for zloop_reader
 * or zpoller; borrowed), the interface and its address. */
EVB_EXPORT void *evb_discover_socket(evb_discover_t *d);
EVB_EXPORT const char *evb_discover_iface(const evb_discover_t *d);
EVB_EXPORT const char *evb_discover_address(const evb_discover_t *d);

/* One-shot: listen on iface/port until name is heard (evb_discover_new,
 * _wait, _destroy), with the errors of those. */
EVB_EXPORT int evb_resolve(const char *iface, unsigned port, const char *name,
                           int timeout_ms, evb_disc_entry *out, evb_err *err);

#ifdef __cplusplus
}
#endif
#endif
