/*
 * evbus_http.h: what a long-running program shows over HTTP (libmicrohttpd):
 * /metrics in Prometheus' text format, /status.json, and at / the live bus
 * page (one self-contained HTML document that polls /status.json).
 *
 * The HTTP server runs in a thread of its own and never touches the store
 * or the sockets: the thread that owns them renders both documents now and
 * then (evb_http_publish, e.g. every 500 ms) and the server hands out copies
 * of the last ones published. A scrape therefore costs the owner nothing and
 * cannot race with it.
 */
#ifndef EVBUS_HTTP_H
#define EVBUS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "evbus_bus.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evb_http evb_http_t;

/* Listen on addr: "HOST:PORT" with HOST an IPv4 address or "localhost",
 * "[IPV6]:PORT", or ":PORT" for every interface; PORT 0 picks a free one
 * (evb_http_port says which). Serves GET /, /metrics, /status.json; 404
 * otherwise. Until the first evb_http_publish the last two answer 503.
 * EVB_EINVAL names a malformed addr, EVB_EIO one that cannot be bound. */
EVB_EXPORT evb_http_t *evb_http_new(const char *addr, evb_err *err);
EVB_EXPORT void evb_http_destroy(evb_http_t **hp);
EVB_EXPORT uint16_t evb_http_port(const evb_http_t *h);
/* Does addr bind to loopback only (127.0.0.0/8, ::1, localhost)? */
EVB_EXPORT bool evb_http_addr_is_loopback(const char *addr);

/* With --http-events: /status.json also carries "events", the last n events
 * of st (n <= 200) as evb_event_to_json shows them, read by evb_http_tick on
 * the owner's thread. Payloads and metadata then go to whoever can reach the
 * endpoint: off unless asked for. st NULL: none (the default). */
EVB_EXPORT void evb_http_show_events(evb_http_t *h, evb_store_t *st, unsigned n);

/* Replace the documents served (copied). EVB_ENOMEM keeps the old ones. */
EVB_EXPORT int evb_http_publish(evb_http_t *h, const char *metrics, size_t mlen,
                                const char *status_json, size_t slen, evb_err *err);

/* Render the documents and publish them, at most every interval_ms (call
 * it on every turn of the owner's loop; it returns at once when not due).
 * fn appends the metrics (Prometheus text) to metrics and the status (a
 * msgpack map, as the program's "status" command answers) to status; the
 * status is served as JSON. h NULL: nothing. */
typedef int (*evb_http_render_fn)(void *ctx, evb_buf *metrics, evb_buf *status,
                                  evb_err *err);
EVB_EXPORT int evb_http_tick(evb_http_t *h, unsigned interval_ms, evb_http_render_fn fn,
                             void *ctx, evb_err *err);

/* ---- writing Prometheus' text format (version 0.0.4) into a buffer ---- */

/* "# HELP name help\n# TYPE name type\n" (type: counter, gauge, ...). */
EVB_EXPORT int evb_prom_family(evb_buf *b, const char *name, const char *type,
                               const char *help, evb_err *err);
/* One sample: name{labels} value\n. labels: NULL, or pairs of key and value
 * strings ended by a NULL key; values are escaped as the format asks. */
EVB_EXPORT int evb_prom_sample(evb_buf *b, const char *name, const char *const *labels,
                               double value, evb_err *err);

/* ---- a subscriber's feeds in a status document ---- */

#define EVB_FEED_PACK_HISTORY 1u /* with "history": [{at_ms, what, why}] */
/* One feed as a msgpack map (appended to b): publisher, publisher_service,
 * publisher_up, category, log_id (hex), state, reason, applied,
 * applied_events, head, lag, lag_seconds (nil while unknown), duplicates,
 * gaps, pages, bad_frames, refusals, handshake_refusals, heartbeat_age_ms,
 * hole ([from, to], only when stalled at one) and, with the flag, history. */
EVB_EXPORT int evb_feed_status_pack(evb_buf *b, const evb_feed_status *fs, unsigned flags,
                                    evb_err *err);
/* Every feed of sub (NULL: none) as a msgpack array of those maps. */
EVB_EXPORT int evb_sub_status_pack(evb_buf *b, evb_sub_t *sub, unsigned flags,
                                   evb_err *err);

/* ---- the families of evbus's parts, appended to b ---- */

/* A log: evbus_log_head, _synced, _indexed, _streams, evbus_index_lag_events,
 * evbus_index_lag_max_events, evbus_store_bytes; labelled by service. */
EVB_EXPORT int evb_metrics_store(evb_buf *b, evb_store_t *st, evb_err *err);
/* A publisher: evbus_published_seq and its counters (events published,
 * heartbeats, catch-up requests, pages, bad requests, unroutable replies,
 * holes); labelled by service. */
EVB_EXPORT int evb_metrics_pub(evb_buf *b, evb_pub_t *pub, const char *service,
                               evb_err *err);
/* A subscriber, per feed (publisher, category): applied, head, lag in
 * events and in seconds (evb_feed_status.lag_seconds), counters (applied, duplicates, gaps, pages, refusals, bad frames,
 * CURVE refusals), state (one series per state, 1 for the current one),
 * heartbeat age; and evbus_publisher_up per publisher: a heartbeat within
 * up_within_ms (two heartbeat intervals, say). */
EVB_EXPORT int evb_metrics_sub(evb_buf *b, evb_sub_t *sub, unsigned up_within_ms,
                               evb_err *err);

#ifdef __cplusplus
}
#endif

#endif
