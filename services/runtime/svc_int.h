/*
 * svc_int.h (private): the service runtime's configuration (flags,
 * environment, config file) and its structured log sink.
 */
#if !defined(EVB_BUILDING_SVC)
#error "services/runtime/svc_int.h is private to libevbus's service runtime module; programs include <evbus/evbus_svc.h>"
#endif
#ifndef EVB_SVC_INT_H
#define EVB_SVC_INT_H

#include "evbus_svc.h"
#include "svc_disc.h"

#include <limits.h>

typedef struct svc_follow {
    char pub[EVB_BUS_MAX_ENDPOINT];
    char catchup[EVB_BUS_MAX_ENDPOINT];
    char key[PATH_MAX]; /* CURVE: the publisher's public key or cert file; "" plain */
} svc_follow;

#define SVC_MAX_RCVHWM 100000000 /* as `evbus mirror --rcvhwm` */

typedef struct svc_config {
    char store[PATH_MAX];
    char views[PATH_MAX];
    char pub[EVB_BUS_MAX_ENDPOINT];
    char catchup[EVB_BUS_MAX_ENDPOINT];
    char cmd[EVB_BUS_MAX_ENDPOINT];
    char cert[PATH_MAX];  /* CURVE: our certificate (NAME_secret); "" plain */
    char allow[PATH_MAX]; /* CURVE: allowed clients' public certificates */
    char http[256];       /* --http ADDR:PORT: /metrics and /status.json; "" off */
    bool http_events;     /* --http: the last events (payloads) too */
    bool http_public;     /* --http off loopback while CURVE is on: meant */
    svc_follow follow[EVB_SVC_MAX_FOLLOW];
    size_t nfollow;
    bool rebuild_views;
    evb_sync sync;
    evb_log_level log_level;
    bool log_json;
    unsigned command_ttl_s;
    unsigned aggregate_cache_mb; /* the aggregate cache's bound */
    int rcvhwm; /* followed publishers' SUB queue, messages; 0: the library's */
    svc_disc_config disc; /* beacons: svc_disc.c */
} svc_config;

/* Fill cfg from defaults, the config file, the environment and argv (in
 * that order of precedence, last wins). Returns -1 to go on, or the exit
 * code to return now (0 after --help, 2 after a usage error on stderr). */
int svc_config_parse(const evb_svc_def *def, int argc, char **argv, svc_config *cfg);

/* Install the structured log sink (text or JSON lines on stderr). */
void svc_log_start(const char *service, const svc_config *cfg);

#endif
