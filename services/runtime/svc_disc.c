/*
 * svc_disc.c: discovery in the service runtime: --announce broadcasts the
 * service's beacon; --follow-service NAME follows a service found by name and
 * follows it again when it moves.
 *
 * Key decisions:
 *  - Beacons are off unless asked for, and the interface is always named
 *    (--beacon-iface; "*" deliberately): --announce and --follow-service
 *    without it are usage errors, never an interface picked for the user.
 *  - A followed name is pinned to the log id of the first beacon heard. A
 *    beacon of the same log at other endpoints (a restart elsewhere, a move)
 *    switches the subscriber: unfollow the old endpoints, follow the new.
 *    Checkpoints are keyed by the log id, so the new connection resumes at
 *    the checkpoint: nothing lost, nothing applied twice. A name that now
 *    announces another log id (its log was recreated) is not followed; the
 *    log says so, as the subscriber's stop policy does for static endpoints.
 *  - Everything runs in the service's zloop: the listener's actor socket is
 *    a zloop reader, and a 1 s timer expires entries and warns about names
 *    not heard of yet.
 */
#include "svc_disc.h"

#include <czmq.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WARN_AFTER_MS 10000 /* a followed name not heard of: say so after this */

typedef struct tracked {
    char name[EVB_MAX_SERVICE_LEN + 1];
    bool pinned; /* log_id is known */
    evb_id log_id;
    char pub[EVB_BUS_MAX_ENDPOINT], catchup[EVB_BUS_MAX_ENDPOINT]; /* followed now */
    bool warned_missing, warned_log, warned_nopub;
} tracked;

struct svc_disc {
    svc_disc_config cfg;
    zloop_t *loop;
    evb_announce_t *ann;
    evb_discover_t *disc;
    evb_sub_t *sub;
    char **cats;
    size_t ncats;
    tracked t[EVB_SVC_MAX_FOLLOW];
    size_t nt;
    int64_t started_ms;
    int timer;
};

bool svc_disc_owns(const char *name)
{
    static const char *const names[] = {"beacon-iface", "beacon-port", "beacon-host",
                                        "announce", "follow-service"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0) return true;
    return false;
}

static int s_msg(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_msg(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return -1;
}

static int s_add_follow(svc_disc_config *dc, const char *v, int src, char *msg,
                        size_t cap)
{
    if (src > dc->follow_src) {
        dc->nfollow = 0;
        dc->follow_src = src;
    }
    /* NAME or NAME,SERVER_KEY (a Z85 key or a public certificate file). */
    char name[EVB_MAX_SERVICE_LEN + 1];
    const char *key = strchr(v, ',');
    size_t nl = key ? (size_t)(key - v) : strlen(v);
    if (nl >= sizeof name)
        return s_msg(msg, cap, "--follow-service: '%s' is not a service name", v);
    memcpy(name, v, nl);
    name[nl] = '\0';
    if (key != NULL && (key[1] == '\0' || strlen(key + 1) >= sizeof dc->follow_key[0]))
        return s_msg(msg, cap, "--follow-service: '%s': the key after ',' is empty or "
                     "too long", v);
    v = name;
    evb_err e;
    if (evb_check_service(v, &e) != EVB_OK)
        return s_msg(msg, cap, "--follow-service: '%s' is not a service name (%s)", v,
                     e.msg);
    if (dc->nfollow == EVB_SVC_MAX_FOLLOW)
        return s_msg(msg, cap, "--follow-service: more than %u services",
                     EVB_SVC_MAX_FOLLOW);
    for (size_t i = 0; i < dc->nfollow; i++)
        if (strcmp(dc->follow[i], v) == 0)
            return s_msg(msg, cap, "--follow-service: '%s' given twice", v);
    snprintf(dc->follow_key[dc->nfollow], sizeof dc->follow_key[0], "%s",
             key ? key + 1 : "");
    snprintf(dc->follow[dc->nfollow++], sizeof dc->follow[0], "%s", v);
    return 0;
}

int svc_disc_set(svc_disc_config *dc, const char *name, const char *v, int src, char *msg,
                 size_t cap)
{
    if (strcmp(name, "beacon-iface") == 0) {
        if (strlen(v) > EVB_DISC_MAX_IFACE)
            return s_msg(msg, cap, "--beacon-iface: longer than %u bytes",
                         EVB_DISC_MAX_IFACE);
        snprintf(dc->iface, sizeof dc->iface, "%s", v);
        return 0;
    }
    if (strcmp(name, "beacon-host") == 0) {
        if (strlen(v) >= sizeof dc->host || strpbrk(v, " /*") != NULL)
            return s_msg(msg, cap, "--beacon-host: '%s' is not an address", v);
        snprintf(dc->host, sizeof dc->host, "%s", v);
        return 0;
    }
    if (strcmp(name, "beacon-port") == 0) {
        char *end;
        errno = 0;
        unsigned long n = strtoul(v, &end, 10);
        if (errno || *end || end == v || n == 0 || n > 65535)
            return s_msg(msg, cap, "--beacon-port: '%s' is not a UDP port (1..65535)", v);
        dc->port = (unsigned)n;
        return 0;
    }
    if (strcmp(name, "announce") == 0) {
        dc->announce = strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
                       strcasecmp(v, "yes") == 0;
        return 0;
    }
    if (strcmp(name, "follow-service") == 0) {
        /* Several names in one value (environment, file): spaces or ';'. */
        char buf[EVB_SVC_MAX_FOLLOW * (EVB_MAX_SERVICE_LEN + 2)];
        if (strlen(v) >= sizeof buf) return s_msg(msg, cap, "--follow-service: too long");
        snprintf(buf, sizeof buf, "%s", v);
        char *save = NULL;
        int any = 0;
        for (char *t = strtok_r(buf, " ;,", &save); t; t = strtok_r(NULL, " ;,", &save)) {
            if (s_add_follow(dc, t, src, msg, cap) != 0) return -1;
            any = 1;
        }
        return any ? 0 : s_msg(msg, cap, "--follow-service: a service name is needed");
    }
    return s_msg(msg, cap, "unknown option '%s'", name);
}

int svc_disc_check(const svc_disc_config *dc, const char *service, const char *pub,
                   const char *catchup, const char *cmd, char *msg, size_t cap)
{
    if (dc->iface[0] == '\0' && (dc->announce || dc->nfollow > 0))
        return s_msg(msg, cap,
                     "%s needs --beacon-iface NAME (the interface beacons go out on and "
                     "come in from; \"*\" for every interface)",
                     dc->announce ? "--announce" : "--follow-service");
    if (dc->announce) {
        evb_announce_opts ao = {.iface = dc->iface,
                                .port = dc->port,
                                .service = service,
                                .pub_endpoint = pub,
                                .catchup_endpoint = catchup,
                                .cmd_endpoint = cmd,
                                .advertise_host = dc->host[0] ? dc->host : NULL};
        evb_err err = {0};
        if (evb_announce_check(&ao, &err) != EVB_OK)
            return s_msg(msg, cap, "--announce: %s", err.msg);
    }
    return 0;
}

/* ---- runtime ---- */

static void s_sync(svc_disc *sd)
{
    if (sd->sub == NULL) return;
    for (size_t i = 0; i < sd->nt; i++) {
        tracked *t = &sd->t[i];
        evb_disc_entry e;
        if (evb_discover_find(sd->disc, t->name, t->pinned ? &t->log_id : NULL, &e) !=
            EVB_OK) {
            evb_disc_entry other;
            if (t->pinned && !t->warned_log &&
                evb_discover_find(sd->disc, t->name, NULL, &other) == EVB_OK) {
                char was[EVB_ID_HEX_LEN + 1], now[EVB_ID_HEX_LEN + 1];
                evb_id_to_hex(&t->log_id, was);
                evb_id_to_hex(&other.b.log_id, now);
                evb_log(
                    EVB_LOG_ERROR,
                    "service %s now announces log %s (was %s: its log was recreated?); "
                    "not following the new log. Restart this service to follow it",
                    t->name, now, was);
                t->warned_log = true;
            }
            continue;
        }
        if (e.b.pub[0] == '\0') {
            if (!t->warned_nopub)
                evb_log(EVB_LOG_WARN,
                        "service %s announces no publisher; nothing to follow", t->name);
            t->warned_nopub = true;
            continue;
        }
        if (t->pinned && strcmp(t->pub, e.b.pub) == 0 &&
            strcmp(t->catchup, e.b.catchup) == 0)
            continue;
        evb_err err = {0};
        if (t->pub[0] != '\0') {
            evb_log(EVB_LOG_INFO,
                    "service %s moved from %s,%s to %s,%s (seen from %s): "
                    "following it there",
                    t->name, t->pub, t->catchup, e.b.pub, e.b.catchup, e.from);
            if (evb_sub_unfollow(sd->sub, t->pub, t->catchup, &err) != EVB_OK)
                evb_log(EVB_LOG_WARN, "service %s: %s", t->name, err.msg);
        } else {
            evb_log(EVB_LOG_INFO, "service %s found at %s,%s (beacon from %s on %s)",
                    t->name, e.b.pub, e.b.catchup, e.from, e.iface);
        }
        t->pub[0] = t->catchup[0] = '\0';
        evb_follow_opts fo = {.categories = (const char *const *)sd->cats,
                              .ncategories = sd->ncats,
                              .server_key = sd->cfg.follow_key[i][0] ? sd->cfg.follow_key[i]
                                                                    : NULL};
        if (evb_sub_follow(sd->sub, e.b.pub, e.b.catchup, &fo, &err) != EVB_OK) {
            evb_log(EVB_LOG_ERROR, "service %s: cannot follow %s,%s: %s", t->name,
                    e.b.pub, e.b.catchup, err.msg);
            continue;
        }
        t->pinned = true;
        t->log_id = e.b.log_id;
        snprintf(t->pub, sizeof t->pub, "%s", e.b.pub);
        snprintf(t->catchup, sizeof t->catchup, "%s", e.b.catchup);
    }
}

static int s_on_beacon(zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    (void)sock;
    svc_disc *sd = arg;
    evb_err err = {0};
    if (evb_discover_poll(sd->disc, 0, &err) < 0)
        evb_log(EVB_LOG_WARN, "beacons: %s", err.msg);
    s_sync(sd);
    return 0;
}

static int s_on_timer(zloop_t *loop, int id, void *arg)
{
    (void)loop;
    (void)id;
    svc_disc *sd = arg;
    evb_err err = {0};
    if (evb_discover_poll(sd->disc, 0, &err) < 0)
        evb_log(EVB_LOG_WARN, "beacons: %s", err.msg);
    if (zclock_mono() - sd->started_ms < WARN_AFTER_MS || sd->sub == NULL) return 0;
    for (size_t i = 0; i < sd->nt; i++) {
        tracked *t = &sd->t[i];
        if (t->pinned || t->warned_missing) continue;
        evb_log(
            EVB_LOG_WARN,
            "service %s: no beacon heard on interface %s (%s), UDP port %u after %d s; "
            "still listening",
            t->name, evb_discover_iface(sd->disc), evb_discover_address(sd->disc),
            sd->cfg.port ? sd->cfg.port : EVB_DISC_DEFAULT_PORT, WARN_AFTER_MS / 1000);
        t->warned_missing = true;
    }
    return 0;
}

int svc_disc_start(svc_disc **out, const svc_disc_config *dc, zloop_t *loop,
                   const char *service, const evb_id *log_id, const char *pub,
                   const char *catchup, const char *cmd, evb_err *err)
{
    *out = NULL;
    if (dc->iface[0] == '\0' || (!dc->announce && dc->nfollow == 0)) return EVB_OK;
    svc_disc *sd = calloc(1, sizeof *sd);
    if (sd == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
    sd->cfg = *dc;
    sd->loop = loop;
    sd->timer = -1;
    sd->started_ms = zclock_mono();
    if (dc->announce) {
        evb_announce_opts ao = {.iface = dc->iface,
                                .port = dc->port,
                                .service = service,
                                .log_id = *log_id,
                                .pub_endpoint = pub,
                                .catchup_endpoint = catchup,
                                .cmd_endpoint = cmd,
                                .advertise_host = dc->host[0] ? dc->host : NULL};
        sd->ann = evb_announce_new(&ao, err);
        if (sd->ann == NULL) goto fail;
    }
    if (dc->nfollow > 0) {
        sd->disc = evb_discover_new(dc->iface, dc->port, err);
        if (sd->disc == NULL) goto fail;
        for (size_t i = 0; i < dc->nfollow; i++)
            snprintf(sd->t[i].name, sizeof sd->t[i].name, "%s", dc->follow[i]);
        sd->nt = dc->nfollow;
        if (zloop_reader(loop, evb_discover_socket(sd->disc), s_on_beacon, sd) != 0 ||
            (sd->timer = zloop_timer(loop, 1000, 0, s_on_timer, sd)) < 0) {
            evb_err_set(err, EVB_ENOMEM, "cannot add the beacon listener to the loop");
            goto fail;
        }
        evb_log(EVB_LOG_INFO, "listening for beacons on interface %s (%s), UDP port %u",
                dc->iface, evb_discover_address(sd->disc),
                dc->port ? dc->port : EVB_DISC_DEFAULT_PORT);
    }
    *out = sd;
    return EVB_OK;
fail:
    svc_disc_destroy(&sd);
    return err ? err->code : EVB_EIO;
}

int svc_disc_follow(svc_disc *sd, evb_sub_t *sub, const char *const *categories, size_t n,
                    evb_err *err)
{
    if (sd == NULL || sd->disc == NULL) return EVB_OK;
    if (n > 0) {
        sd->cats = calloc(n, sizeof *sd->cats);
        if (sd->cats == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            if ((sd->cats[i] = strdup(categories[i])) == NULL)
                return evb_err_set(err, EVB_ENOMEM, "out of memory");
            sd->ncats = i + 1;
        }
    }
    sd->sub = sub;
    s_sync(sd); /* beacons heard already */
    return EVB_OK;
}

void svc_disc_destroy(svc_disc **sdp)
{
    svc_disc *sd = *sdp;
    if (sd == NULL) return;
    if (sd->loop != NULL && sd->disc != NULL) {
        zloop_reader_end(sd->loop, evb_discover_socket(sd->disc));
        if (sd->timer >= 0) zloop_timer_end(sd->loop, sd->timer);
    }
    evb_discover_destroy(&sd->disc);
    evb_announce_destroy(&sd->ann);
    for (size_t i = 0; i < sd->ncats; i++)
        free(sd->cats[i]);
    free(sd->cats);
    free(sd);
    *sdp = NULL;
}

typedef struct found_acc {
    msgpack_packer *pk;
    uint32_t n;
    bool count_only;
    int64_t now;
} found_acc;

static void s_pk_str(msgpack_packer *pk, const char *k, const char *v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_str_with_body(pk, v, strlen(v));
}

static int s_found(const evb_disc_entry *e, void *ctx)
{
    found_acc *a = ctx;
    a->n++;
    if (a->count_only) return 0;
    msgpack_packer *pk = a->pk;
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&e->b.log_id, hex);
    msgpack_pack_map(pk, 8);
    s_pk_str(pk, "service", e->b.service);
    s_pk_str(pk, "log_id", hex);
    s_pk_str(pk, "pub", e->b.pub);
    s_pk_str(pk, "catchup", e->b.catchup);
    s_pk_str(pk, "cmd", e->b.cmd);
    s_pk_str(pk, "from", e->from);
    msgpack_pack_str_with_body(pk, "age_ms", 6);
    msgpack_pack_int64(pk, (a->now - e->last_seen_us) / 1000);
    msgpack_pack_str_with_body(pk, "beacons", 7);
    msgpack_pack_uint64(pk, e->beacons);
    return 0;
}

void svc_disc_pack(svc_disc *sd, msgpack_packer *pk)
{
    if (sd == NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    msgpack_pack_map(pk, 3);
    s_pk_str(pk, "iface", sd->cfg.iface);
    msgpack_pack_str_with_body(pk, "announcing", 10);
    if (sd->ann != NULL)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    msgpack_pack_str_with_body(pk, "found", 5);
    found_acc a = {pk, 0, true, evb_now_us()};
    if (sd->disc != NULL) evb_discover_list(sd->disc, s_found, &a);
    msgpack_pack_array(pk, a.n);
    a.count_only = false;
    if (sd->disc != NULL) evb_discover_list(sd->disc, s_found, &a);
}
