/*
 * svc_disc.h (private): a service's discovery settings and runtime: the
 * announcer (--announce) and the followers by name (--follow-service), on the
 * beacon interface named by --beacon-iface (evbus_discovery.h).
 */
#if !defined(EVB_BUILDING_SVC)
#error "services/runtime/svc_disc.h is private to libevbus's service runtime module; programs include <evbus/evbus_svc.h>"
#endif
#ifndef EVB_SVC_DISC_H
#define EVB_SVC_DISC_H

#include "evbus_discovery.h"

#include <msgpack.h>
#include "evbus_svc.h"

typedef struct svc_disc_config {
    char iface[EVB_DISC_MAX_IFACE + 1]; /* "" : no beacons at all */
    char host[EVB_BUS_MAX_ENDPOINT];    /* advertised for wildcard binds; "" : iface's */
    unsigned port;                      /* 0: EVB_DISC_DEFAULT_PORT */
    bool announce;
    char follow[EVB_SVC_MAX_FOLLOW][EVB_MAX_SERVICE_LEN + 1];
    /* CURVE: the followed service's public key (Z85) or certificate file,
     * from --follow-service NAME,KEY. Never taken from a beacon: a beacon is
     * unauthenticated, and trusting the key it carried would let anyone on
     * the LAN stand in for the service. "" : plain. */
    char follow_key[EVB_SVC_MAX_FOLLOW][256];
    size_t nfollow;
    int follow_src; /* the source the follow list came from (config.c's SRC_*) */
} svc_disc_config;

/* True for the settings this module owns (beacon-iface, beacon-port,
 * beacon-host, announce, follow-service). */
bool svc_disc_owns(const char *name);

/* Apply setting name = v from source src (higher wins; a higher source
 * replaces the follow list). 0, or -1 with the problem in msg. */
int svc_disc_set(svc_disc_config *dc, const char *name, const char *v, int src, char *msg,
                 size_t cap);

/* The settings together, and with --announce the whole beacon (its size
 * included) for these endpoints, before anything is opened or bound: 0, or
 * -1 with msg. */
int svc_disc_check(const svc_disc_config *dc, const char *service, const char *pub,
                   const char *catchup, const char *cmd, char *msg, size_t cap);

typedef struct svc_disc svc_disc;

/* Start announcing (with --announce) and listening (with --follow-service)
 * inside loop. Nothing is made without a beacon interface (*out = NULL). */
int svc_disc_start(svc_disc **out, const svc_disc_config *dc, zloop_t *loop,
                   const char *service, const evb_id *log_id, const char *pub,
                   const char *catchup, const char *cmd, evb_err *err);

/* Follow every --follow-service through sub (categories copied): connected
 * once a beacon names the service, moved when its endpoints change. */
int svc_disc_follow(svc_disc *sd, evb_sub_t *sub, const char *const *categories, size_t n,
                    evb_err *err);

/* For the status: nil without beacons, else {iface, announcing, found:
 * [{service, log_id, pub, catchup, cmd, from, age_ms, beacons}]}. */
void svc_disc_pack(svc_disc *sd, msgpack_packer *pk);

void svc_disc_destroy(svc_disc **sdp);

#endif
