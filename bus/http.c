/*
 * http.c: the HTTP endpoint of long-running programs (evbus_http.h), on
 * libmicrohttpd with its own polling thread. The page at / is bus/page.html,
 * built in (bus/embed.cmake): it needs nothing from the internet.
 *
 * The documents are two malloc'd copies under a mutex: the owner thread
 * swaps in new ones, the HTTP thread copies the current ones into each
 * response (MHD_RESPMEM_MUST_COPY) while holding the mutex. Nothing else is
 * shared.
 */
#include "evbus_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

extern const char evb__http_page[];
extern const size_t evb__http_page_len;

struct evb_http {
    struct MHD_Daemon *d;
    uint16_t port;
    /* evb_http_tick's, the owner thread's only */
    int64_t next_us;
    evb_buf metrics_buf, status_mp, status_json, ev_json;
    evb_store_t *events; /* --http-events: the log whose tail is shown */
    unsigned nevents;
    pthread_mutex_t mu;
    char *metrics, *status;
    size_t mlen, slen;
    bool published;
};

/* ---- the address ---- */

/* Split addr into host (without brackets) and port. */
static int s_split(const char *addr, char *host, size_t hcap, char *port, size_t pcap,
                   evb_err *err)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon[1] == '\0')
        return evb_err_set(err, EVB_EINVAL, "--http %s: want HOST:PORT (e.g. 127.0.0.1:9464)",
                           addr);
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    } else if (memchr(h, ':', hl) != NULL) {
        return evb_err_set(err, EVB_EINVAL, "--http %s: an IPv6 address goes in brackets "
                           "([::1]:9464)", addr);
    }
    if (hl >= hcap || strlen(colon + 1) >= pcap)
        return evb_err_set(err, EVB_EINVAL, "--http %s: too long", addr);
    memcpy(host, h, hl);
    host[hl] = '\0';
    strcpy(port, colon + 1);
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (*end != '\0' || errno != 0 || p > 65535 || port[0] == '-' || port[0] == '+')
        return evb_err_set(err, EVB_EINVAL, "--http %s: port \"%s\" is not 0..65535", addr,
                           port);
    return EVB_OK;
}

bool evb_http_addr_is_loopback(const char *addr)
{
    char host[256], port[16];
    if (s_split(addr, host, sizeof host, port, sizeof port, NULL) != EVB_OK) return false;
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0) return true;
    struct in_addr a;
    return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* ---- serving ---- */

static enum MHD_Result s_reply(struct MHD_Connection *c, unsigned status, const char *type,
                               const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result s_handle(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version,
                                const char *upload, size_t *upload_size, void **req)
{
    (void)version;
    (void)upload;
    (void)req;
    evb_http_t *h = cls;
    if (*upload_size != 0) { /* a GET has no body: drop what comes */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char m[] = "only GET\n";
        return s_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", m, sizeof m - 1);
    }
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
        return s_reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", evb__http_page,
                       evb__http_page_len);
    bool metrics = strcmp(url, "/metrics") == 0;
    if (!metrics && strcmp(url, "/status.json") != 0) {
        static const char m[] = "not found: try /, /metrics or /status.json\n";
        return s_reply(c, MHD_HTTP_NOT_FOUND, "text/plain", m, sizeof m - 1);
    }
    pthread_mutex_lock(&h->mu);
    enum MHD_Result ret;
    if (!h->published) {
        static const char m[] = "starting\n";
        ret = s_reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain", m, sizeof m - 1);
    } else if (metrics) {
        ret = s_reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", h->metrics,
                      h->mlen);
    } else {
        ret = s_reply(c, MHD_HTTP_OK, "application/json", h->status, h->slen);
    }
    pthread_mutex_unlock(&h->mu);
    return ret;
}

evb_http_t *evb_http_new(const char *addr, evb_err *err)
{
    char host[256], port[16];
    if (addr == NULL) {
        evb_err_set(err, EVB_EINVAL, "--http: no address");
        return NULL;
    }
    if (s_split(addr, host, sizeof host, port, sizeof port, err) != EVB_OK) return NULL;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    hints.ai_family = host[0] == '\0' ? AF_INET : AF_UNSPEC;
    int gr = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (gr != 0 || ai == NULL) {
        evb_err_set(err, EVB_EINVAL, "--http %s: %s", addr, gai_strerror(gr));
        return NULL;
    }
    evb_http_t *h = calloc(1, sizeof *h);
    if (h == NULL) {
        freeaddrinfo(ai);
        evb_err_set(err, EVB_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    uint16_t want = (uint16_t)strtoul(port, NULL, 10);
    h->d = MHD_start_daemon(flags, want, NULL, NULL, s_handle, h, MHD_OPTION_SOCK_ADDR,
                            ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (h->d == NULL) {
        evb_err_set(err, EVB_EIO, "--http %s: cannot listen there (in use, or not an "
                    "address of this host?)", addr);
        pthread_mutex_destroy(&h->mu);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di != NULL ? di->port : want;
    return h;
}

void evb_http_destroy(evb_http_t **hp)
{
    if (hp == NULL || *hp == NULL) return;
    evb_http_t *h = *hp;
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    free(h->metrics);
    free(h->status);
    evb_buf_free(&h->metrics_buf);
    evb_buf_free(&h->status_mp);
    evb_buf_free(&h->status_json);
    evb_buf_free(&h->ev_json);
    free(h);
    *hp = NULL;
}

uint16_t evb_http_port(const evb_http_t *h)
{
    return h->port;
}

int evb_http_publish(evb_http_t *h, const char *metrics, size_t mlen,
                     const char *status_json, size_t slen, evb_err *err)
{
    char *m = malloc(mlen ? mlen : 1), *s = malloc(slen ? slen : 1);
    if (m == NULL || s == NULL) {
        free(m);
        free(s);
        return evb_err_set(err, EVB_ENOMEM, "out of memory for the HTTP documents");
    }
    if (mlen) memcpy(m, metrics, mlen);
    if (slen) memcpy(s, status_json, slen);
    pthread_mutex_lock(&h->mu);
    char *om = h->metrics, *os = h->status;
    h->metrics = m;
    h->mlen = mlen;
    h->status = s;
    h->slen = slen;
    h->published = true;
    pthread_mutex_unlock(&h->mu);
    free(om);
    free(os);
    return EVB_OK;
}

void evb_http_show_events(evb_http_t *h, evb_store_t *st, unsigned n)
{
    if (h == NULL) return;
    h->events = st;
    h->nevents = n > 200 ? 200 : n;
}

/* The last h->nevents events of the log as a JSON array in h->ev_json. A
 * hole or a read error ends the list early: the page shows what it can. */
static int s_events_json(evb_http_t *h, evb_err *err)
{
    evb_buf *b = &h->ev_json;
    b->len = 0;
    uint64_t head = evb_store_head(h->events);
    uint64_t from = head > h->nevents ? head - h->nevents + 1 : 1;
    int rc = evb_buf_append(b, "[", 1, err);
    evb_iter_t *it = head > 0 ? evb_store_read_range(h->events, from, head, NULL, NULL) : NULL;
    const evb_event_t *ev;
    bool first = true;
    while (rc == EVB_OK && it != NULL && evb_iter_next(it, &ev, NULL)) {
        if (!first) rc = evb_buf_append(b, ",", 1, err);
        first = false;
        if (rc == EVB_OK) rc = evb_event_to_json(ev, b, err);
    }
    evb_iter_destroy(&it);
    return rc == EVB_OK ? evb_buf_append(b, "]", 1, err) : rc;
}

int evb_http_tick(evb_http_t *h, unsigned interval_ms, evb_http_render_fn fn, void *ctx,
                  evb_err *err)
{
    int64_t now = evb_now_us();
    if (h == NULL || now < h->next_us) return EVB_OK;
    h->next_us = now + (int64_t)interval_ms * 1000;
    h->metrics_buf.len = h->status_mp.len = h->status_json.len = 0;
    int rc = fn(ctx, &h->metrics_buf, &h->status_mp, err);
    if (rc == EVB_OK && h->status_mp.len > 0)
        rc = evb_msgpack_to_json(h->status_mp.data, h->status_mp.len, &h->status_json, err);
    /* The events go in as the object's last member: {...,"events":[...]}. */
    evb_buf *sj = &h->status_json;
    if (rc == EVB_OK && h->events != NULL && sj->len > 1 && sj->data[sj->len - 1] == '}' &&
        (rc = s_events_json(h, err)) == EVB_OK) {
        sj->len--;
        if (sj->len > 1) rc = evb_buf_append(sj, ",", 1, err);
        if (rc == EVB_OK) rc = evb_buf_append(sj, "\"events\":", 9, err);
        if (rc == EVB_OK) rc = evb_buf_append(sj, h->ev_json.data, h->ev_json.len, err);
        if (rc == EVB_OK) rc = evb_buf_append(sj, "}", 1, err);
    }
    if (rc == EVB_OK) rc = evb_buf_append(&h->status_json, "\n", 1, err);
    if (rc != EVB_OK) return rc;
    return evb_http_publish(h, h->metrics_buf.data ? h->metrics_buf.data : "",
                            h->metrics_buf.len, h->status_json.data, h->status_json.len, err);
}

/* ---- Prometheus' text format ---- */

int evb_prom_family(evb_buf *b, const char *name, const char *type, const char *help,
                    evb_err *err)
{
    return evb_buf_printf(b, err, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: \ " and newline escaped. */
static int s_label_value(evb_buf *b, const char *v, evb_err *err)
{
    int rc = EVB_OK;
    for (const char *p = v; rc == EVB_OK && *p; p++) {
        if (*p == '\\') rc = evb_buf_append(b, "\\\\", 2, err);
        else if (*p == '"') rc = evb_buf_append(b, "\\\"", 2, err);
        else if (*p == '\n') rc = evb_buf_append(b, "\\n", 2, err);
        else rc = evb_buf_append(b, p, 1, err);
    }
    return rc;
}

int evb_prom_sample(evb_buf *b, const char *name, const char *const *labels, double value,
                    evb_err *err)
{
    int rc = evb_buf_append(b, name, strlen(name), err);
    if (rc == EVB_OK && labels != NULL && labels[0] != NULL) {
        rc = evb_buf_append(b, "{", 1, err);
        for (size_t i = 0; rc == EVB_OK && labels[i] != NULL; i += 2) {
            rc = evb_buf_printf(b, err, "%s%s=\"", i ? "," : "", labels[i]);
            if (rc == EVB_OK) rc = s_label_value(b, labels[i + 1] ? labels[i + 1] : "", err);
            if (rc == EVB_OK) rc = evb_buf_append(b, "\"", 1, err);
        }
        if (rc == EVB_OK) rc = evb_buf_append(b, "}", 1, err);
    }
    if (rc != EVB_OK) return rc;
    if (value != value) return evb_buf_append(b, " NaN\n", 5, err);
    if (value > -9.0e15 && value < 9.0e15 && value == (double)(long long)value)
        return evb_buf_printf(b, err, " %lld\n", (long long)value); /* integers as such */
    return evb_buf_printf(b, err, " %.10g\n", value);
}
