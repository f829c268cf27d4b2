/*
 * evbus_svc.h: the service runtime. A service is one process that owns one
 * event log (its store), publishes it on the bus, answers commands and
 * queries on a ROUTER socket, consumes other services' logs with
 * exactly-once effects, and keeps read models (projections) in a store of
 * their own. This header is what a service is written against; see
 * examples/counter_service.c for a whole service in one file, and
 * services/README.md for the model.
 *
 * Threads: everything runs in the thread that calls evb_svc_run (one CZMQ
 * zloop): commands, consumed events, projections and timers are handled one
 * at a time, each in its own store transaction. Nothing here is thread-safe.
 *
 * Aggregates. A command handler loads an aggregate (evb_svc_load: cached
 * state, else the latest snapshot plus the stream's events after it),
 * decides, and emits events (evb_svc_emit) with the version it loaded as the
 * expected version; the events are applied to the cached state at once. The
 * transaction commits when the handler returns EVB_OK; if it fails or aborts,
 * every aggregate it touched is dropped from the cache and loaded again next
 * time, so the cache never holds what was not written.
 *
 * Command ids. Every command request carries "cmd_id" (a string of 1..64
 * bytes chosen by the client). The first outcome (the reply of an accepted
 * command, or an EVB_EREJECTED refusal) is stored under that id in the same
 * write as the command's events and returned again to any retry, for
 * --command-ttl seconds (default 86400). Bad requests (EVB_EINVAL) are not
 * remembered: the client may fix the request and send it again.
 */
#ifndef EVBUS_SVC_H
#define EVBUS_SVC_H

#include "evbus_bus.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_SVC_MAX_CMD_ID 64u
#define EVB_SVC_MAX_FOLLOW 16u

typedef struct evb_svc evb_svc_t;
typedef struct evb_svc_ctx evb_svc_ctx; /* one operation: its transaction */

/* A flag of the service's own (besides the common ones). The value is
 * written as a string into value[0..cap), which holds the default on entry.
 * Also read from the environment (EVBUS_ + NAME upper-cased, '-' -> '_') and
 * from the config file (NAME = VALUE); flags win over the environment, the
 * environment over the file. */
typedef struct evb_svc_flag {
    const char *name; /* "hold-timeout" for --hold-timeout */
    const char *arg;  /* "MS" in the help */
    const char *help;
    char *value;
    size_t cap;
} evb_svc_flag;

typedef struct evb_svc_def {
    const char *name;    /* service name: the log's service, the consumer name */
    const char *summary; /* one line for --help */
    const evb_svc_flag *flags;
    size_t nflags;
    bool views; /* the service keeps read models: it has a view store */
} evb_svc_def;

/* Parse argv (flags, environment, config file), open the store (and view
 * store), bind the publisher and command socket. On NULL, *exit_code says
 * why: 0 after --help, 2 bad usage, 3 the store cannot be opened, 4 other;
 * the message went to stderr. Common flags (see --help): --store DIR, --pub
 * EP, --catchup EP, --cmd EP, --follow PUB_EP,CATCHUP_EP (repeatable),
 * --views DIR, --rebuild-views, --sync every|group|none, --log-level
 * debug|info|warn|error, --log-format text|json, --config FILE,
 * --command-ttl (a duration, whole seconds). */
EVB_EXPORT evb_svc_t *evb_svc_new(const evb_svc_def *def, int argc, char **argv,
                                  int *exit_code);
EVB_EXPORT void evb_svc_destroy(evb_svc_t **svcp);

/* Run until SIGTERM or SIGINT (the write in progress finishes first) or a
 * fatal store error. Returns the process exit code (0 clean). */
EVB_EXPORT int evb_svc_run(evb_svc_t *svc);

EVB_EXPORT evb_store_t *evb_svc_store(evb_svc_t *svc);
EVB_EXPORT evb_store_t *evb_svc_view_store(evb_svc_t *svc); /* NULL without views */
EVB_EXPORT const char *evb_svc_name(const evb_svc_t *svc);

/* ---- aggregates ---- */
typedef struct evb_agg_def {
    const char *category; /* streams "category-ID" */
    size_t state_size;
    void (*init)(void *state);
    void (*release)(void *state); /* frees what the state owns; may be NULL */
    int (*apply)(void *state, const evb_event_t *ev, evb_err *err);
    /* Snapshots (optional, both or neither): every snapshot_every versions
     * the state is saved in the transaction that reaches that version. */
    int (*save)(const void *state, evb_buf *out, evb_err *err);
    int (*load)(void *state, const void *buf, size_t len, evb_err *err);
    unsigned snapshot_every;
    /* Bytes the state owns beyond state_size (arrays, maps), for the bound
     * of the aggregate cache (--aggregate-cache-mb); NULL: none. */
    size_t (*heap_size)(const void *state);
} evb_agg_def;

/* The state of stream (lent: valid until the operation ends) and its
 * version (0: no events yet; state is then init'ed). */
EVB_EXPORT int evb_svc_load(evb_svc_ctx *c, const evb_agg_def *def, const char *stream,
                            void **state, uint64_t *version, evb_err *err);
/* Append events to stream expecting expected_version (what evb_svc_load
 * said), in this operation's transaction, and apply them to the state.
 * Sets correlation and causation ids from the event being handled (or the
 * command id) when the caller left them zero. EVB_ECONFLICT when the
 * version moved: the runtime retries a command from the start (3 times). */
EVB_EXPORT int evb_svc_emit(evb_svc_ctx *c, const evb_agg_def *def, const char *stream,
                            uint64_t expected_version, evb_event_t *events, size_t n,
                            evb_err *err);
/* The operation's transaction (for key/values of projections). */
EVB_EXPORT evb_txn_t *evb_svc_txn(evb_svc_ctx *c);
/* The event being handled (consumers, projections) or NULL (commands). */
EVB_EXPORT const evb_event_t *evb_svc_event(const evb_svc_ctx *c);
EVB_EXPORT evb_svc_t *evb_svc_of(evb_svc_ctx *c);

/* ---- handlers ---- */

/* A command: args is the request's msgpack map (lent), reply receives one
 * msgpack map (empty: {} is sent). EVB_OK commits; EVB_EREJECTED (the domain
 * said no, err->msg says why) is remembered under the command id; any other
 * code aborts and is sent back. */
typedef int (*evb_svc_cmd_fn)(evb_svc_ctx *c, const void *args, size_t len,
                              evb_buf *reply, void *ctx, evb_err *err);
EVB_EXPORT int evb_svc_command(evb_svc_t *svc, const char *name, evb_svc_cmd_fn fn,
                               void *ctx, evb_err *err);
/* A query: no transaction and no command id; evb_svc_load works (it reads
 * committed state), evb_svc_emit refuses. */
EVB_EXPORT int evb_svc_query(evb_svc_t *svc, const char *name, evb_svc_cmd_fn fn,
                             void *ctx, evb_err *err);

/* An event of a followed log. Return EVB_OK to apply (the checkpoint commits
 * with the effects); another code refuses it (offered again later). */
typedef int (*evb_svc_event_fn)(evb_svc_ctx *c, const evb_event_t *ev, void *ctx,
                                evb_err *err);
/* Consume categories (n = 0: all) of every --follow publisher, with effects
 * in the service's store. One call per service. */
EVB_EXPORT int evb_svc_consume(evb_svc_t *svc, const char *const *categories, size_t n,
                               evb_svc_event_fn fn, void *ctx, evb_err *err);
/* A read model: follow the service's own log (categories) through its own
 * publisher, with effects and checkpoint in the view store. evb_svc_ctx's
 * transaction is then the view store's. One call per service. */
EVB_EXPORT int evb_svc_project(evb_svc_t *svc, const char *const *categories, size_t n,
                               evb_svc_event_fn fn, void *ctx, evb_err *err);
/* Call fn every ms milliseconds in a transaction of the service's store
 * (timers: expiries). Deadlines must live in events; fn re-derives them. */
typedef int (*evb_svc_tick_fn)(evb_svc_ctx *c, void *ctx, evb_err *err);
EVB_EXPORT int evb_svc_every(evb_svc_t *svc, unsigned ms, evb_svc_tick_fn fn, void *ctx,
                             evb_err *err);

/* ---- helpers ---- */

/* A msgpack-c packer write callback appending to an evb_buf (data):
 * msgpack_packer_init(&pk, buf, evb_svc_pack_write). */
EVB_EXPORT int evb_svc_pack_write(void *data, const char *buf, size_t len);
/* True when every feed of evb_svc_consume is live (caught up with what its
 * publisher last announced). Timers that decide from the absence of an
 * answer (expiry) wait for this after a restart, so that they do not time
 * out what the followed log already answered. True without a consumer. */
EVB_EXPORT bool evb_svc_consumers_live(evb_svc_t *svc);
/* Read the request's "cmd_id" (or "" when there is none). */
EVB_EXPORT const char *evb_svc_cmd_id(const evb_svc_ctx *c);

#ifdef __cplusplus
}
#endif
#endif
