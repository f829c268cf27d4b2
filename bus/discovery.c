/*
 * discovery.c: UDP beacons that name services (evbus_discovery.h;
 * PROTOCOL.md, "Discovery").
 *
 * Key decisions:
 *  - The beacon is a small binary record, not msgpack: it has to fit CZMQ's
 *    255-byte UDP frame with three endpoints, so a tcp endpoint with an IPv4
 *    address takes 7 bytes; anything else travels as text. The size is
 *    checked before anything reaches the network (zbeacon asserts on a frame
 *    over 255 bytes; we must never hand it one).
 *  - Beacons carry full endpoints. An endpoint bound to a wildcard host is
 *    advertised with the beacon interface's address (what zbeacon's
 *    CONFIGURE answers), never left for the listener to guess from the UDP
 *    source address, which is wrong on hosts with several interfaces.
 *  - The interface is CZMQ's per-process setting (zsys_set_interface); a
 *    reference count keeps every beacon of the process on one interface.
 *  - A listener keys entries by (service, log id) and prefers the newest
 *    incarnation (started_us): a late beacon of a process that was replaced
 *    cannot flip an entry back to the old endpoints while the entry is live.
 *  - Listeners accept every datagram (no zbeacon prefix filter) so that
 *    foreign and malformed ones are counted, not silently lost.
 */
#include "evbus_discovery.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "EVB"
#define MAGIC_LEN 3u
#define HDR_LEN 31u /* magic, version, interval, started_us, log id, name length */
#define EP_NONE 0u
#define EP_TCP4 1u        /* 4 address bytes, 2 port bytes */
#define EP_TEXT 2u        /* 1 length byte (1..255), the endpoint's bytes */
#define MAX_PER_POLL 1000 /* datagrams taken per poll, so a flood cannot wedge a loop */

/* ---- the process's beacon interface ---- */

static pthread_mutex_t s_mu = PTHREAD_MUTEX_INITIALIZER;
static char s_iface[EVB_DISC_MAX_IFACE + 1];
static unsigned s_users;

static int s_check_iface(const char *iface, evb_err *err)
{
    size_t n = iface ? strlen(iface) : 0;
    if (n == 0)
        return evb_err_set(err, EVB_EINVAL,
                           "beacon interface: name one (e.g. eth0), or \"*\" for every "
                           "interface");
    if (n > EVB_DISC_MAX_IFACE)
        return evb_err_set(err, EVB_EINVAL,
                           "beacon interface '%.80s': longer than %u bytes", iface,
                           EVB_DISC_MAX_IFACE);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)iface[i] <= 0x20 || (unsigned char)iface[i] >= 0x7f)
            return evb_err_set(err, EVB_EINVAL,
                               "beacon interface '%.80s': not a printable name", iface);
    return EVB_OK;
}

/* Take the process's beacon interface (CZMQ keeps one per process). CZMQ's
 * first initialisation installs its own SIGINT/SIGTERM handlers; the
 * program's are put back, so this library does not change how it stops. */
static int s_iface_acquire(const char *iface, evb_err *err)
{
    int rc = s_check_iface(iface, err);
    if (rc != EVB_OK) return rc;
    pthread_mutex_lock(&s_mu);
    if (s_users > 0 && strcmp(s_iface, iface) != 0) {
        rc = evb_err_set(err, EVB_EINVAL,
                         "beacon interface '%s': this process already uses '%s' (CZMQ "
                         "keeps one beacon interface per process)",
                         iface, s_iface);
    } else {
        if (s_users == 0) {
            struct sigaction oint, oterm;
            sigaction(SIGINT, NULL, &oint);
            sigaction(SIGTERM, NULL, &oterm);
            zsys_init();
            sigaction(SIGINT, &oint, NULL);
            sigaction(SIGTERM, &oterm, NULL);
            /* CZMQ's own log lines (stdout by default: "No broadcast
             * interface found") would land in a program's output before
             * evbus's own message about the same failure; evbus reports
             * every failure itself. */
            zsys_set_logstream(NULL);
            snprintf(s_iface, sizeof s_iface, "%s", iface);
            zsys_set_interface(iface);
        }
        s_users++;
    }
    pthread_mutex_unlock(&s_mu);
    return rc;
}

static void s_iface_release(void)
{
    pthread_mutex_lock(&s_mu);
    if (s_users > 0) s_users--;
    pthread_mutex_unlock(&s_mu);
}

/* Interfaces zbeacon can use, for the error message of a wrong name. */
static void s_iface_names(char *out, size_t cap)
{
    out[0] = '\0';
    ziflist_t *l = ziflist_new();
    size_t n = 0;
    for (const char *name = l ? ziflist_first(l) : NULL; name; name = ziflist_next(l)) {
        int w = snprintf(out + n, cap - n, "%s%s (%s)", n ? ", " : "", name,
                         ziflist_address(l));
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
    ziflist_destroy(&l);
    if (n == 0) snprintf(out, cap, "none");
}

/* Start a zbeacon actor on the process's interface and port; *addr gets the
 * interface's address ("0.0.0.0" for "*"). NULL with err when zbeacon finds
 * no such broadcast interface. */
static zactor_t *s_beacon_start(const char *iface, unsigned port, char *addr, size_t cap,
                                evb_err *err)
{
    zactor_t *a = zactor_new(zbeacon, NULL);
    if (a == NULL) {
        evb_err_set(err, EVB_EIO, "cannot start the beacon actor");
        return NULL;
    }
    zsock_send(a, "si", "CONFIGURE", (int)port);
    char *host = zstr_recv(a);
    if (host == NULL || host[0] == '\0') {
        char names[400];
        s_iface_names(names, sizeof names);
        evb_err_set(err, EVB_EIO,
                    "beacon interface '%s': no such interface with an IPv4 broadcast "
                    "address (UDP port %u); interfaces that can beacon: %s",
                    iface, port, names);
        zstr_free(&host);
        zactor_destroy(&a);
        return NULL;
    }
    snprintf(addr, cap, "%s", host);
    zstr_free(&host);
    return a;
}

/* ---- endpoints ---- */

static void s_put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static unsigned s_get16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* "tcp://A.B.C.D:PORT" exactly as the compact form prints it back: the
 * address and port, else false (sent as text). */
static bool s_tcp4(const char *ep, uint8_t addr[4], unsigned *port)
{
    if (strncmp(ep, "tcp://", 6) != 0) return false;
    const char *host = ep + 6, *colon = strrchr(host, ':');
    if (colon == NULL || colon - host > 15) return false;
    char h[16];
    memcpy(h, host, (size_t)(colon - host));
    h[colon - host] = '\0';
    struct in_addr ia;
    if (inet_pton(AF_INET, h, &ia) != 1) return false;
    unsigned long p = 0;
    const char *d = colon + 1;
    if (*d == '\0' || (*d == '0' && d[1] != '\0')) return false;
    for (; *d; d++) {
        if (*d < '0' || *d > '9') return false;
        p = p * 10 + (unsigned long)(*d - '0');
        if (p > 65535) return false;
    }
    if (p == 0) return false;
    memcpy(addr, &ia.s_addr, 4);
    *port = (unsigned)p;
    char back[32];
    snprintf(back, sizeof back, "tcp://%u.%u.%u.%u:%u", addr[0], addr[1], addr[2],
             addr[3], *port);
    return strcmp(back, ep) == 0;
}

/* A wildcard host or port: bound, but not connectable as written. */
static bool s_wild_host(const char *ep)
{
    return strncmp(ep, "tcp://*:", 8) == 0 || strncmp(ep, "tcp://0.0.0.0:", 14) == 0;
}

static bool s_wild_port(const char *ep)
{
    const char *colon = strrchr(ep, ':');
    return strncmp(ep, "tcp://", 6) == 0 && colon != NULL && strcmp(colon, ":*") == 0;
}

static bool s_ep_text_ok(const char *p, size_t n)
{
    if (n == 0 || n >= EVB_BUS_MAX_ENDPOINT) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f) return false;
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(p + i, "://", 3) == 0) return i > 0 && i + 3 < n;
    return false;
}

/* Bytes an endpoint takes in the beacon. */
static size_t s_ep_size(const char *ep)
{
    uint8_t a[4];
    unsigned port;
    if (ep == NULL || ep[0] == '\0') return 1;
    if (s_tcp4(ep, a, &port)) return 7;
    return 2 + strlen(ep);
}

static int s_ep_check(const char *what, const char *ep, evb_err *err)
{
    if (ep == NULL || ep[0] == '\0') return EVB_OK;
    if (s_wild_host(ep) || s_wild_port(ep))
        return evb_err_set(
            err, EVB_EINVAL,
            "%s endpoint '%.300s': a wildcard is not connectable; advertise "
            "an address and port",
            what, ep);
    if (!s_ep_text_ok(ep, strlen(ep)) || strlen(ep) > 255)
        return evb_err_set(err, EVB_EINVAL,
                           "%s endpoint '%.300s': not an endpoint (TRANSPORT://ADDRESS, "
                           "printable, 1..255 bytes)",
                           what, ep);
    return EVB_OK;
}

static size_t s_ep_put(uint8_t *p, const char *ep)
{
    uint8_t a[4];
    unsigned port;
    if (ep == NULL || ep[0] == '\0') {
        p[0] = EP_NONE;
        return 1;
    }
    if (s_tcp4(ep, a, &port)) {
        p[0] = EP_TCP4;
        memcpy(p + 1, a, 4);
        s_put16(p + 5, port);
        return 7;
    }
    size_t n = strlen(ep);
    p[0] = EP_TEXT;
    p[1] = (uint8_t)n;
    memcpy(p + 2, ep, n);
    return 2 + n;
}

/* ---- the beacon ---- */

int evb_beacon_encode(const evb_beacon *b, uint8_t out[EVB_BEACON_MAX_BYTES], size_t *len,
                      evb_err *err)
{
    int rc = evb_check_service(b->service, err);
    if (rc != EVB_OK) return rc;
    if (b->interval_ms == 0 || b->interval_ms > 65535)
        return evb_err_set(err, EVB_EINVAL, "beacon interval %u ms: expected 1..65535",
                           b->interval_ms);
    if ((b->pub[0] == '\0') != (b->catchup[0] == '\0'))
        return evb_err_set(err, EVB_EINVAL,
                           "beacon: the pub and catchup endpoints go together");
    if (b->pub[0] == '\0' && b->cmd[0] == '\0')
        return evb_err_set(err, EVB_EINVAL, "beacon: no endpoint to advertise");
    const char *names[3] = {"pub", "catchup", "cmd"};
    const char *eps[3] = {b->pub, b->catchup, b->cmd};
    for (int i = 0; i < 3; i++)
        if ((rc = s_ep_check(names[i], eps[i], err)) != EVB_OK) return rc;
    size_t nl = strlen(b->service), sizes[3], total = HDR_LEN + nl;
    int longest = 0;
    for (int i = 0; i < 3; i++) {
        sizes[i] = s_ep_size(eps[i]);
        total += sizes[i];
        if (sizes[i] > sizes[longest]) longest = i;
    }
    if (total > EVB_BEACON_MAX_BYTES)
        return evb_err_set(
            err, EVB_ETOOBIG,
            "beacon of service %s would be %zu bytes, over CZMQ's %u-byte limit: the %s "
            "endpoint takes %zu bytes ('%.60s%s'); shorten it (tcp://IPv4:PORT takes 7). "
            "Parts: header %u, service name %zu, pub %zu, catchup %zu, cmd %zu",
            b->service, total, EVB_BEACON_MAX_BYTES, names[longest], sizes[longest],
            eps[longest], strlen(eps[longest]) > 60 ? "..." : "", HDR_LEN, nl, sizes[0],
            sizes[1], sizes[2]);
    uint8_t *p = out;
    memcpy(p, MAGIC, MAGIC_LEN);
    p[3] = (uint8_t)EVB_BEACON_VERSION;
    s_put16(p + 4, b->interval_ms);
    uint64_t st = (uint64_t)b->started_us;
    for (int i = 0; i < 8; i++)
        p[6 + i] = (uint8_t)(st >> (56 - 8 * i));
    memcpy(p + 14, b->log_id.b, EVB_ID_LEN);
    p[30] = (uint8_t)nl;
    memcpy(p + HDR_LEN, b->service, nl);
    size_t n = HDR_LEN + nl;
    for (int i = 0; i < 3; i++)
        n += s_ep_put(p + n, eps[i]);
    *len = n;
    return EVB_OK;
}

/* One endpoint at buf[*off..len) into out. */
static int s_ep_get(const uint8_t *buf, size_t len, size_t *off, const char *what,
                    char out[EVB_BUS_MAX_ENDPOINT], evb_err *err)
{
    if (*off >= len)
        return evb_err_set(err, EVB_EDECODE, "beacon: truncated before %s", what);
    unsigned tag = buf[(*off)++];
    out[0] = '\0';
    if (tag == EP_NONE) return EVB_OK;
    if (tag == EP_TCP4) {
        if (len - *off < 6)
            return evb_err_set(err, EVB_EDECODE, "beacon: %s endpoint truncated", what);
        const uint8_t *a = buf + *off;
        unsigned port = s_get16(a + 4);
        if (port == 0 || (a[0] | a[1] | a[2] | a[3]) == 0)
            return evb_err_set(err, EVB_EDECODE,
                               "beacon: %s endpoint has address 0 or port 0", what);
        snprintf(out, EVB_BUS_MAX_ENDPOINT, "tcp://%u.%u.%u.%u:%u", a[0], a[1], a[2],
                 a[3], port);
        *off += 6;
        return EVB_OK;
    }
    if (tag == EP_TEXT) {
        if (*off >= len)
            return evb_err_set(err, EVB_EDECODE, "beacon: %s endpoint truncated", what);
        size_t n = buf[(*off)++];
        if (n > len - *off)
            return evb_err_set(err, EVB_EDECODE, "beacon: %s endpoint truncated", what);
        if (!s_ep_text_ok((const char *)buf + *off, n))
            return evb_err_set(err, EVB_EDECODE, "beacon: %s endpoint is not an endpoint",
                               what);
        memcpy(out, buf + *off, n);
        out[n] = '\0';
        *off += n;
        if (s_wild_host(out) || s_wild_port(out))
            return evb_err_set(err, EVB_EDECODE, "beacon: %s endpoint is a wildcard",
                               what);
        return EVB_OK;
    }
    return evb_err_set(err, EVB_EDECODE, "beacon: %s endpoint has unknown kind %u", what,
                       tag);
}

int evb_beacon_decode(const void *data, size_t len, evb_beacon *out, evb_err *err)
{
    const uint8_t *buf = data;
    if (buf == NULL || len < MAGIC_LEN + 1 || memcmp(buf, MAGIC, MAGIC_LEN) != 0)
        return evb_err_set(err, EVB_EDECODE, "not an evbus beacon (%zu bytes)", len);
    if (buf[3] != EVB_BEACON_VERSION)
        return evb_err_set(err, EVB_EVERSION, "beacon version %u (this build reads %u)",
                           buf[3], EVB_BEACON_VERSION);
    if (len > EVB_BEACON_MAX_BYTES)
        return evb_err_set(err, EVB_EDECODE, "beacon of %zu bytes, over %u", len,
                           EVB_BEACON_MAX_BYTES);
    if (len < HDR_LEN)
        return evb_err_set(err, EVB_EDECODE, "beacon truncated in its header (%zu bytes)",
                           len);
    memset(out, 0, sizeof *out);
    out->version = buf[3];
    out->interval_ms = s_get16(buf + 4);
    if (out->interval_ms == 0) return evb_err_set(err, EVB_EDECODE, "beacon: interval 0");
    uint64_t st = 0;
    for (int i = 0; i < 8; i++)
        st = st << 8 | buf[6 + i];
    if (st == 0 || st > (uint64_t)INT64_MAX)
        return evb_err_set(err, EVB_EDECODE, "beacon: bad start time");
    out->started_us = (int64_t)st;
    memcpy(out->log_id.b, buf + 14, EVB_ID_LEN);
    size_t nl = buf[30];
    if (nl == 0 || nl > EVB_MAX_SERVICE_LEN || nl > len - HDR_LEN)
        return evb_err_set(err, EVB_EDECODE,
                           "beacon: service name of %zu bytes (%zu left)", nl,
                           len - HDR_LEN);
    memcpy(out->service, buf + HDR_LEN, nl);
    out->service[nl] = '\0';
    evb_err e;
    if (strlen(out->service) != nl || evb_check_service(out->service, &e) != EVB_OK)
        return evb_err_set(err, EVB_EDECODE, "beacon: bad service name");
    size_t off = HDR_LEN + nl;
    int rc;
    if ((rc = s_ep_get(buf, len, &off, "pub", out->pub, err)) != EVB_OK ||
        (rc = s_ep_get(buf, len, &off, "catchup", out->catchup, err)) != EVB_OK ||
        (rc = s_ep_get(buf, len, &off, "cmd", out->cmd, err)) != EVB_OK)
        return rc;
    if (off != len)
        return evb_err_set(err, EVB_EDECODE, "beacon: %zu bytes left over", len - off);
    if ((out->pub[0] == '\0') != (out->catchup[0] == '\0'))
        return evb_err_set(err, EVB_EDECODE,
                           "beacon: pub without catchup or the reverse");
    if (out->pub[0] == '\0' && out->cmd[0] == '\0')
        return evb_err_set(err, EVB_EDECODE, "beacon: no endpoint");
    return EVB_OK;
}

/* ---- announcer ---- */

struct evb_announce {
    zactor_t *actor;
    evb_beacon b;
    char addr[64];
};

/* ep as advertised: a wildcard host replaced by host. */
static int s_advertise(const char *what, const char *ep, const char *host, char *out,
                       evb_err *err)
{
    out[0] = '\0';
    if (ep == NULL || ep[0] == '\0') return EVB_OK;
    if (strlen(ep) >= EVB_BUS_MAX_ENDPOINT)
        return evb_err_set(err, EVB_EINVAL, "%s endpoint longer than %u bytes", what,
                           EVB_BUS_MAX_ENDPOINT - 1);
    if (s_wild_port(ep))
        return evb_err_set(
            err, EVB_EINVAL,
            "%s endpoint '%s': an ephemeral port (*) cannot be advertised; "
            "bind a fixed port",
            what, ep);
    if (!s_wild_host(ep)) {
        snprintf(out, EVB_BUS_MAX_ENDPOINT, "%s", ep);
        return EVB_OK;
    }
    if (host == NULL || host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
        return evb_err_set(
            err, EVB_EINVAL,
            "%s endpoint '%s' is bound to every address: with beacon "
            "interface \"*\" name the address to advertise (--beacon-host)",
            what, ep);
    const char *port = strrchr(ep, ':');
    bool v6 = strchr(host, ':') != NULL;
    int n = snprintf(out, EVB_BUS_MAX_ENDPOINT, "tcp://%s%s%s%s", v6 ? "[" : "", host,
                     v6 ? "]" : "", port);
    if (n < 0 || n >= (int)EVB_BUS_MAX_ENDPOINT)
        return evb_err_set(err, EVB_EINVAL, "%s endpoint: advertised form too long",
                           what);
    return EVB_OK;
}

static int s_fill(evb_beacon *b, const evb_announce_opts *o, const char *host,
                  evb_err *err)
{
    int rc;
    if ((rc = s_advertise("pub", o->pub_endpoint, host, b->pub, err)) != EVB_OK ||
        (rc = s_advertise("catchup", o->catchup_endpoint, host, b->catchup, err)) !=
            EVB_OK ||
        (rc = s_advertise("cmd", o->cmd_endpoint, host, b->cmd, err)) != EVB_OK)
        return rc;
    return EVB_OK;
}

static bool s_local_only(const char *ep)
{
    return strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0 ||
           strncmp(ep, "tcp://127.", 10) == 0 || strncmp(ep, "tcp://localhost:", 16) == 0;
}

/* The beacon of o, checked whole (size included) without the network: a
 * wildcard host gets a stand-in of the size of any IPv4 address. */
static int s_prepare(const evb_announce_opts *o, evb_beacon *b, uint8_t *buf, size_t *len,
                     evb_err *err)
{
    if (o == NULL || o->service == NULL)
        return evb_err_set(err, EVB_EINVAL, "announce: options and service are required");
    int rc = s_check_iface(o->iface, err);
    if (rc != EVB_OK) return rc;
    memset(b, 0, sizeof *b);
    b->version = EVB_BEACON_VERSION;
    b->interval_ms = o->interval_ms ? o->interval_ms : EVB_DISC_DEFAULT_INTERVAL_MS;
    b->started_us = evb_now_us();
    b->log_id = o->log_id;
    if (strlen(o->service) > EVB_MAX_SERVICE_LEN)
        return evb_err_set(err, EVB_EINVAL, "announce: service name longer than %u bytes",
                           EVB_MAX_SERVICE_LEN);
    snprintf(b->service, sizeof b->service, "%s", o->service);
    if (o->port > 65535)
        return evb_err_set(err, EVB_EINVAL, "announce: UDP port %u out of range",
                           o->port);
    const char *host =
        o->advertise_host && o->advertise_host[0] ? o->advertise_host : "192.0.2.1";
    if (strcmp(o->iface, "*") == 0 && !(o->advertise_host && o->advertise_host[0]))
        host = NULL;
    if ((rc = s_fill(b, o, host, err)) != EVB_OK) return rc;
    return evb_beacon_encode(b, buf, len, err);
}

int evb_announce_check(const evb_announce_opts *o, evb_err *err)
{
    evb_beacon b;
    uint8_t buf[EVB_BEACON_MAX_BYTES];
    size_t len;
    return s_prepare(o, &b, buf, &len, err);
}

evb_announce_t *evb_announce_new(const evb_announce_opts *o, evb_err *err)
{
    evb_announce_t *a = calloc(1, sizeof *a);
    if (a == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        return NULL;
    }
    evb_beacon *b = &a->b;
    unsigned port = o && o->port ? o->port : EVB_DISC_DEFAULT_PORT;
    uint8_t buf[EVB_BEACON_MAX_BYTES];
    size_t len;
    const char *host;
    /* The whole beacon is checked before the network is touched. */
    if (s_prepare(o, b, buf, &len, err) != EVB_OK) goto fail;
    if (s_iface_acquire(o->iface, err) != EVB_OK) goto fail;
    a->actor = s_beacon_start(o->iface, port, a->addr, sizeof a->addr, err);
    if (a->actor == NULL) {
        s_iface_release();
        goto fail;
    }
    host = o->advertise_host && o->advertise_host[0] ? o->advertise_host : a->addr;
    if (s_fill(b, o, host, err) != EVB_OK ||
        evb_beacon_encode(b, buf, &len, err) != EVB_OK) {
        evb_announce_destroy(&a);
        return NULL;
    }
    const char *eps[3] = {b->pub, b->catchup, b->cmd};
    for (int i = 0; i < 3; i++)
        if (eps[i][0] && s_local_only(eps[i]))
            evb_log(EVB_LOG_WARN,
                    "announcing %s with endpoint %s, which other hosts cannot reach",
                    b->service, eps[i]);
    zsock_send(a->actor, "sbi", "PUBLISH", buf, len, (int)b->interval_ms);
    evb_log(
        EVB_LOG_INFO,
        "announcing %s on interface %s (%s), UDP port %u, every %u ms: pub %s, catchup "
        "%s, cmd %s (%zu-byte beacon)",
        b->service, o->iface, a->addr, port, b->interval_ms, b->pub[0] ? b->pub : "-",
        b->catchup[0] ? b->catchup : "-", b->cmd[0] ? b->cmd : "-", len);
    return a;
fail:
    free(a);
    return NULL;
}

void evb_announce_destroy(evb_announce_t **ap)
{
    if (ap == NULL || *ap == NULL) return;
    evb_announce_t *a = *ap;
    if (a->actor) {
        zstr_sendx(a->actor, "SILENCE", NULL);
        zactor_destroy(&a->actor);
        s_iface_release();
    }
    free(a);
    *ap = NULL;
}

const evb_beacon *evb_announce_beacon(const evb_announce_t *a)
{
    return &a->b;
}
const char *evb_announce_address(const evb_announce_t *a)
{
    return a->addr;
}

/* ---- listener ---- */

typedef struct ent {
    evb_disc_entry e;
    int64_t seen_ms; /* monotonic, for expiry */
} ent;

struct evb_discover {
    zactor_t *actor;
    char iface[EVB_DISC_MAX_IFACE + 1];
    char addr[64];
    unsigned port;
    ent *ents;
    size_t n, cap;
    evb_disc_stats st;
    int64_t last_bad_log_ms;
};

evb_discover_t *evb_discover_new(const char *iface, unsigned port, evb_err *err)
{
    if (port == 0) port = EVB_DISC_DEFAULT_PORT;
    if (port > 65535) {
        evb_err_set(err, EVB_EINVAL, "discover: UDP port %u out of range", port);
        return NULL;
    }
    if (s_iface_acquire(iface, err) != EVB_OK) return NULL;
    evb_discover_t *d = calloc(1, sizeof *d);
    if (d == NULL) {
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        s_iface_release();
        return NULL;
    }
    snprintf(d->iface, sizeof d->iface, "%s", iface);
    d->port = port;
    d->actor = s_beacon_start(iface, port, d->addr, sizeof d->addr, err);
    if (d->actor == NULL) {
        s_iface_release();
        free(d);
        return NULL;
    }
    /* Everything, so that foreign and broken datagrams are counted. */
    zsock_send(d->actor, "sb", "SUBSCRIBE", "", (size_t)0);
    return d;
}

void evb_discover_destroy(evb_discover_t **dp)
{
    if (dp == NULL || *dp == NULL) return;
    evb_discover_t *d = *dp;
    zactor_destroy(&d->actor);
    s_iface_release();
    free(d->ents);
    free(d);
    *dp = NULL;
}

static bool s_same_eps(const evb_beacon *a, const evb_beacon *b)
{
    return strcmp(a->pub, b->pub) == 0 && strcmp(a->catchup, b->catchup) == 0 &&
           strcmp(a->cmd, b->cmd) == 0;
}

static int64_t s_life_ms(const ent *x)
{
    return (int64_t)x->e.b.interval_ms * EVB_DISC_EXPIRE_BEACONS;
}

/* One datagram from from: decode, then add or refresh its entry. Returns 1
 * when an entry was added or its endpoints changed. */
static int s_take(evb_discover_t *d, const char *from, const uint8_t *p, size_t n)
{
    d->st.received++;
    evb_beacon b;
    evb_err e;
    evb_err_clear(&e);
    int rc = evb_beacon_decode(p, n, &b, &e);
    if (rc != EVB_OK) {
        if (n < MAGIC_LEN || memcmp(p, MAGIC, MAGIC_LEN) != 0) {
            d->st.foreign++;
            return 0;
        }
        if (rc == EVB_EVERSION)
            d->st.version++;
        else
            d->st.bad++;
        int64_t now = zclock_mono();
        if (now - d->last_bad_log_ms >= 1000) {
            d->last_bad_log_ms = now;
            evb_log(EVB_LOG_WARN, "beacon from %s ignored: %s (%llu bad so far)", from,
                    e.msg, (unsigned long long)(d->st.bad + d->st.version));
        }
        return 0;
    }
    d->st.accepted++;
    int64_t mono = zclock_mono(), now = evb_now_us();
    for (size_t i = 0; i < d->n; i++) {
        ent *x = &d->ents[i];
        if (strcmp(x->e.b.service, b.service) != 0 ||
            memcmp(&x->e.b.log_id, &b.log_id, sizeof b.log_id) != 0)
            continue;
        if (b.started_us < x->e.b.started_us && mono - x->seen_ms <= s_life_ms(x)) {
            d->st.stale++;
            return 0;
        }
        int changed = s_same_eps(&x->e.b, &b) ? 0 : 1;
        if (changed) {
            x->e.moves++;
            evb_log(EVB_LOG_INFO,
                    "service %s moved: pub %s, catchup %s, cmd %s (from %s)", b.service,
                    b.pub[0] ? b.pub : "-", b.catchup[0] ? b.catchup : "-",
                    b.cmd[0] ? b.cmd : "-", from);
        }
        x->e.b = b;
        snprintf(x->e.from, sizeof x->e.from, "%s", from);
        x->e.last_seen_us = now;
        x->e.beacons++;
        x->seen_ms = mono;
        return changed;
    }
    if (d->n >= EVB_DISC_MAX_ENTRIES) {
        d->st.full++;
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 16;
        ent *ne = realloc(d->ents, cap * sizeof *ne);
        if (ne == NULL) {
            d->st.full++;
            return 0;
        }
        d->ents = ne;
        d->cap = cap;
    }
    ent *x = &d->ents[d->n++];
    memset(x, 0, sizeof *x);
    x->e.b = b;
    snprintf(x->e.iface, sizeof x->e.iface, "%s", d->iface);
    snprintf(x->e.from, sizeof x->e.from, "%s", from);
    x->e.first_seen_us = x->e.last_seen_us = now;
    x->e.beacons = 1;
    x->seen_ms = mono;
    return 1;
}

static void s_expire(evb_discover_t *d)
{
    int64_t mono = zclock_mono();
    size_t k = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (mono - d->ents[i].seen_ms > s_life_ms(&d->ents[i])) {
            d->st.expired++;
            evb_log(EVB_LOG_INFO, "service %s: no beacon for %u intervals; forgotten",
                    d->ents[i].e.b.service, EVB_DISC_EXPIRE_BEACONS);
            continue;
        }
        if (k != i) d->ents[k] = d->ents[i];
        k++;
    }
    d->n = k;
}

int evb_discover_poll(evb_discover_t *d, int timeout_ms, evb_err *err)
{
    void *sock = zsock_resolve(d->actor);
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    int changes = 0;
    for (int k = 0; k < MAX_PER_POLL; k++) {
        int rc = zmq_poll(&it, 1, k == 0 ? timeout_ms : 0);
        if (rc < 0) {
            if (zmq_errno() == EINTR) break;
            evb_err_set(err, EVB_EIO, "beacon listener: %s", zmq_strerror(zmq_errno()));
            return -1;
        }
        if (rc == 0) break;
        zmsg_t *m = zmsg_recv(d->actor);
        if (m == NULL) break;
        char *from = zmsg_popstr(m);
        zframe_t *f = zmsg_pop(m);
        if (from != NULL && f != NULL)
            changes += s_take(d, from, zframe_data(f), zframe_size(f));
        zframe_destroy(&f);
        zstr_free(&from);
        zmsg_destroy(&m);
    }
    s_expire(d);
    return changes;
}

int evb_discover_list(evb_discover_t *d, evb_disc_fn fn, void *ctx)
{
    for (size_t i = 0; i < d->n; i++) {
        int rc = fn(&d->ents[i].e, ctx);
        if (rc != 0) return rc;
    }
    return 0;
}

int evb_discover_find(evb_discover_t *d, const char *name, const evb_id *log_id,
                      evb_disc_entry *out)
{
    const ent *best = NULL;
    for (size_t i = 0; i < d->n; i++) {
        const ent *x = &d->ents[i];
        if (strcmp(x->e.b.service, name) != 0) continue;
        if (log_id && memcmp(&x->e.b.log_id, log_id, sizeof *log_id) != 0) continue;
        if (best == NULL || x->e.b.started_us > best->e.b.started_us) best = x;
    }
    if (best == NULL) return EVB_ENOTFOUND;
    *out = best->e;
    return EVB_OK;
}

int evb_discover_wait(evb_discover_t *d, const char *name, int timeout_ms,
                      evb_disc_entry *out, evb_err *err)
{
    int64_t deadline = zclock_mono() + (timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        if (evb_discover_find(d, name, NULL, out) == EVB_OK) return EVB_OK;
        int64_t left = deadline - zclock_mono();
        if (left <= 0) break;
        if (evb_discover_poll(d, (int)(left > 100 ? 100 : left), err) < 0)
            return err ? err->code : EVB_EIO;
    }
    return evb_err_set(
        err, EVB_ETIMEDOUT,
        "no beacon of service %s within %d ms on interface %s (%s), UDP port "
        "%u (is it running with --announce on this network?)",
        name, timeout_ms, d->iface, d->addr, d->port);
}

void evb_discover_get_stats(const evb_discover_t *d, evb_disc_stats *st)
{
    *st = d->st;
}
void *evb_discover_socket(evb_discover_t *d)
{
    return zactor_sock(d->actor);
}
const char *evb_discover_iface(const evb_discover_t *d)
{
    return d->iface;
}
const char *evb_discover_address(const evb_discover_t *d)
{
    return d->addr;
}

int evb_resolve(const char *iface, unsigned port, const char *name, int timeout_ms,
                evb_disc_entry *out, evb_err *err)
{
    evb_discover_t *d = evb_discover_new(iface, port, err);
    if (d == NULL) return err ? err->code : EVB_EIO;
    int rc = evb_discover_wait(d, name, timeout_ms, out, err);
    evb_discover_destroy(&d);
    return rc;
}
