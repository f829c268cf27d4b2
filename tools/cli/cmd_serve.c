/*
 * cmd_serve.c: `evbus serve`: serve a log on the bus (live on PUB, catch-up
 * on ROUTER) with no service around it, until SIGINT or SIGTERM.
 *
 * The store is opened by this process (EVB_INDEX_THREAD: catch-up reads the
 * category index) and the publisher polls in the main thread, which owns
 * both. A signal only sets a flag; the loop sees it within one poll
 * interval, destroys the publisher, then the store (a pending group fsync is
 * done first), and exits 0.
 *
 * --cmd binds a command socket served by the same thread (the store and the
 * publisher are not thread-safe): "status" and "append". The loop polls the
 * catch-up ROUTER and the command ROUTER together; after an append it
 * publishes at once, and while the publisher is behind the head (events
 * waiting for the group fsync) it polls with a short timeout so that they
 * go out as soon as they are durable rather than at the next heartbeat.
 */
#include "cli.h"
#include "ops.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include <evbus/evbus_bus.h>
#include <evbus/evbus_http.h>
#include <evbus/evbus_notify.h>

typedef struct serve {
    evb_store_t *st;
    evb_pub_t *pub;
    const char *sync_name;
    bool appended; /* an append since the last publish */
} serve_t;

typedef struct cat_acc {
    ops_w *w;
    uint32_t n;
} cat_acc;

static int s_on_category(const evb_category_info *ci, void *ctx)
{
    cat_acc *a = ctx;
    msgpack_pack_map(&a->w->pk, 3);
    ops_w_kv_str(a->w, "name", ci->name);
    ops_w_kv_u64(a->w, "head", ci->head);
    ops_w_kv_u64(a->w, "count", ci->count);
    a->n++;
    return a->w->rc;
}

/* "status": {service, log_id, head, synced, indexed, published, sync,
 * categories: [{name, head, count}]}. */
static int s_cmd_status(const void *args, size_t args_len, evb_buf *out, void *ctx,
                        evb_err *err)
{
    (void)args;
    (void)args_len;
    serve_t *sv = ctx;
    evb_store_info in;
    evb_store_get_info(sv->st, &in);
    evb_pub_stats ps;
    evb_pub_get_stats(sv->pub, &ps);
    /* The category count is known only after the walk: write the entries
     * into their own buffer, then the array header and the entries. */
    evb_buf cats = {0};
    ops_w cw;
    ops_w_init(&cw, &cats);
    cat_acc acc = {&cw, 0};
    int rc = evb_store_categories(sv->st, s_on_category, &acc, err);
    if (rc == EVB_OK && cw.rc != EVB_OK)
        rc = evb_err_set(err, cw.rc, "status: out of memory");
    if (rc == EVB_OK) {
        ops_w w;
        ops_w_init(&w, out);
        msgpack_pack_map(&w.pk, 9);
        ops_w_kv_str(&w, "program", "serve");
        ops_w_kv_str(&w, "service", in.service);
        ops_w_kv_id(&w, "log_id", &in.log_id);
        ops_w_kv_u64(&w, "head", in.head);
        ops_w_kv_u64(&w, "synced", in.synced);
        ops_w_kv_u64(&w, "indexed", in.indexed);
        ops_w_kv_u64(&w, "published", ps.published);
        ops_w_kv_str(&w, "sync", sv->sync_name);
        ops_w_str(&w, "categories");
        msgpack_pack_array(&w.pk, acc.n);
        if (w.rc == EVB_OK) w.rc = evb_buf_append(out, cats.data, cats.len, NULL);
        if (w.rc != EVB_OK) rc = evb_err_set(err, w.rc, "status: out of memory");
    }
    evb_buf_free(&cats);
    return rc;
}

/* systemd's STATUS= line (evbus_notify.h): "head 1,234; published 1,234". */
static void s_notify_line(evb_buf *line, void *ctx)
{
    serve_t *sv = ctx;
    evb_pub_stats ps;
    evb_pub_get_stats(sv->pub, &ps);
    evb_notify_add_num(line, "head", evb_store_head(sv->st));
    evb_notify_add_num(line, "published", ps.published);
    if (evb_store_unwritable(sv->st))
        evb_notify_add(line, "appends refused (unwritable)");
}

/* The HTTP documents: the log's and the publisher's metrics; the status
 * command's answer. */
static int s_http_render(void *ctx, evb_buf *metrics, evb_buf *status, evb_err *err)
{
    serve_t *sv = ctx;
    evb_store_info in;
    evb_store_get_info(sv->st, &in);
    int rc = evb_metrics_store(metrics, sv->st, err);
    if (rc == EVB_OK) rc = evb_metrics_pub(metrics, sv->pub, in.service, err);
    if (rc == EVB_OK) rc = s_cmd_status(NULL, 0, status, sv, err);
    return rc;
}

/* cmd_id: the caller's command id (evbus call sends one); appends are
 * deduplicated by the event's id, so it is accepted and not used. */
static const char *const s_append_fields[] = {
    "stream", "type",           "payload",      "id",       "expected_version",
    "schema", "correlation_id", "causation_id", "metadata", "cmd_id",
    NULL};

/* expected_version: an integer >= 0, "any" or "none"; absent or nil: any. */
static int s_arg_expected(const void *args, size_t len, int64_t *exp, evb_err *err)
{
    char s[8];
    bool present;
    *exp = EVB_EXPECT_ANY;
    const void *v;
    size_t vl;
    if (evb_map_find(args, len, "expected_version", &v, &vl, NULL) != EVB_OK ||
        (vl == 1 && *(const unsigned char *)v == 0xc0))
        return EVB_OK;
    if (ops_arg_str(args, len, "expected_version", false, s, sizeof s, &present, NULL) ==
        EVB_OK) {
        if (strcmp(s, "any") == 0) return EVB_OK;
        if (strcmp(s, "none") == 0) {
            *exp = EVB_EXPECT_NONE;
            return EVB_OK;
        }
    } else if (evb_map_int(args, len, "expected_version", exp, NULL) == EVB_OK &&
               *exp >= 0) {
        return EVB_OK;
    }
    *exp = EVB_EXPECT_ANY;
    return evb_err_set(err, EVB_EINVAL,
                       "field \"expected_version\": expected \"any\", \"none\" or a "
                       "version >= 0");
}

/* Prefix a name check's message with the field it came from. */
static int s_field_err(evb_err *err, const char *field)
{
    char msg[EVB_ERR_MSG_LEN];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return evb_err_set(err, EVB_EINVAL, "field \"%s\": %s", field, msg);
}

/* "append": {stream, type, payload?, id?, expected_version?, schema?,
 * correlation_id?, causation_id?, metadata?} -> {seq, version, duplicate,
 * id, stream}. The store's own errors (EVB_ECONFLICT naming the current
 * version, EVB_EPARTIAL, EVB_EUNWRITABLE, ...) pass through. */
static int s_cmd_append(const void *args, size_t len, evb_buf *out, void *ctx,
                        evb_err *err)
{
    serve_t *sv = ctx;
    char stream[EVB_MAX_STREAM_LEN + 1], type[EVB_MAX_TYPE_LEN + 1];
    bool present, has_payload = false, has_meta = false;
    evb_event_t ev = {0};
    int64_t expected = EVB_EXPECT_ANY;
    uint64_t schema = 1;
    const void *payload = NULL, *meta = NULL;
    size_t payload_len = 0, meta_len = 0;
    int rc = ops_arg_known(args, len, s_append_fields, err);
    if (rc == EVB_OK)
        rc = ops_arg_str(args, len, "stream", true, stream, sizeof stream, &present, err);
    if (rc == EVB_OK && evb_check_stream(stream, err) != EVB_OK)
        rc = s_field_err(err, "stream");
    if (rc == EVB_OK)
        rc = ops_arg_str(args, len, "type", true, type, sizeof type, &present, err);
    if (rc == EVB_OK && evb_check_type(type, err) != EVB_OK)
        rc = s_field_err(err, "type");
    if (rc == EVB_OK) rc = ops_arg_id(args, len, "id", &ev.id, err);
    if (rc == EVB_OK)
        rc = ops_arg_id(args, len, "correlation_id", &ev.correlation_id, err);
    if (rc == EVB_OK) rc = ops_arg_id(args, len, "causation_id", &ev.causation_id, err);
    if (rc == EVB_OK) rc = s_arg_expected(args, len, &expected, err);
    if (rc == EVB_OK)
        rc = ops_arg_map(args, len, "payload", &payload, &payload_len, &has_payload, err);
    if (rc == EVB_OK)
        rc = ops_arg_map(args, len, "metadata", &meta, &meta_len, &has_meta, err);
    if (rc == EVB_OK)
        rc = ops_arg_u64(args, len, "schema", false, &schema, &present, err);
    if (rc == EVB_OK && (schema < 1 || schema > UINT32_MAX))
        rc = evb_err_set(err, EVB_EINVAL,
                         "field \"schema\": expected an integer from 1 to %" PRIu32,
                         UINT32_MAX);
    if (rc != EVB_OK) return rc;
    ev.type = type;
    ev.schema = (uint32_t)schema;
    ev.payload = has_payload ? payload : (const void *)evb_empty_map;
    ev.payload_len = has_payload ? payload_len : sizeof evb_empty_map;
    ev.metadata = has_meta ? meta : NULL;
    ev.metadata_len = has_meta ? meta_len : 0;
    /* After a failed write (disk full) the log takes writes again only once
     * reopened: try that first; it refuses while space is still short. */
    if (evb_store_unwritable(sv->st) && (rc = evb_store_reopen(sv->st, err)) != EVB_OK)
        return rc;
    evb_append_result res;
    rc = evb_store_append(sv->st, stream, expected, &ev, 1, &res, err);
    if (rc != EVB_OK) return rc;
    sv->appended = !res.duplicate;
    ops_w w;
    ops_w_init(&w, out);
    msgpack_pack_map(&w.pk, 5);
    ops_w_kv_u64(&w, "seq", res.first_seq);
    ops_w_kv_u64(&w, "version", res.first_version);
    ops_w_kv_bool(&w, "duplicate", res.duplicate);
    ops_w_kv_id(&w, "id", &ev.id);
    ops_w_kv_str(&w, "stream", stream);
    /* The event is stored: a reply that cannot be built is still a failure
     * for the client, which retries with the same id and gets a duplicate. */
    if (w.rc != EVB_OK)
        return evb_err_set(err, w.rc, "append: out of memory for the reply");
    return EVB_OK;
}

/* Open the log to serve. A damaged one (events that cannot be read: a
 * writable open refuses to append after a hole) is still served, read-only:
 * subscribers get every readable event and are told where the hole is, and
 * appends are refused until it is salvaged. */
static evb_store_t *s_open(cli_t *cli, const char *dir, const char *service, bool create,
                           int sync, int *xc)
{
    evb_store_opts so = cli_log_opts(dir, service, create, sync);
    evb_err err;
    evb_store_t *st = evb_store_open(&so, &err);
    if (st != NULL) return st;
    if (err.code == EVB_ECORRUPT && !create) {
        so.read_only_intent = true;
        evb_err rerr;
        if ((st = evb_store_open(&so, &rerr)) != NULL) {
            cli_error(cli,
                      "%s is damaged (%s); serving it read-only: appends are refused. "
                      "`evbus log salvage %s DEST` copies every readable event into a "
                      "log that takes them",
                      dir, err.msg, dir);
            return st;
        }
    }
    return cli_open_log(cli, dir, service, create, sync, xc);
}

int cmd_serve(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus serve");
    const char *dir = NULL, *pub_ep = NULL, *cu_ep = NULL, *service = NULL;
    const char *sync_s = "group";
    const char *cmd_ep = NULL;
    const char *cert = NULL, *allow = NULL; /* CURVE (README.md, "Security") */
    const char *http_addr = NULL, *config = NULL; /* --config: services/README.md */
    bool create = false, http_public = false, http_events = false;
    uint64_t hb_ms = 500, sndhwm = 0;
    const cli_opt opts[] = {
        {"store", CLI_STR, &dir, NULL, "DIR", "the log to serve (required)"},
        {"pub", CLI_STR, &pub_ep, NULL, "EP", "PUB endpoint to bind (required)"},
        {"catchup", CLI_STR, &cu_ep, NULL, "EP",
         "catch-up ROUTER endpoint to bind (required)"},
        {"create", CLI_FLAG, &create, NULL, NULL,
         "create the log if DIR holds none (needs --service)"},
        {"service", CLI_STR, &service, NULL, "NAME", "service name of a new log"},
        {"sync", CLI_STR, &sync_s, NULL, "POLICY",
         "none, every or group (default): what counts as durable"},
        {"heartbeat", CLI_DUR_MS, &hb_ms, NULL, "DURATION",
         "heartbeat interval (default 500ms)"},
        {"sndhwm", CLI_U64, &sndhwm, NULL, "N",
         "PUB high-water mark in messages (default: the library's, 100000)"},
        {"cmd", CLI_STR, &cmd_ep, NULL, "EP",
         "command endpoint to bind: status and append requests"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "CURVE: our certificate (NAME_secret); needs --allow"},
        {"allow", CLI_STR, &allow, NULL, "DIR",
         "CURVE: accept only clients whose public certificates are in DIR"},
        {"http", CLI_STR, &http_addr, NULL, "ADDR:PORT",
         "serve the live bus page (/), /metrics (Prometheus) and /status.json over "
         "HTTP, e.g. 127.0.0.1:9464"},
        {"http-events", CLI_FLAG, &http_events, NULL, NULL,
         "with --http: show the last events (payloads) on the page and in /status.json"},
        {"http-public", CLI_FLAG, &http_public, NULL, NULL,
         "with CURVE on: allow --http on an address other than loopback"},
        {"config", CLI_STR, &config, NULL, "FILE",
         "settings as `name = value` lines, names as the flags' (the command line wins)"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_OPEN),
        "--store DIR --pub EP --catchup EP [--create --service NAME]\n"
        "       [--sync none|every|group] [--heartbeat DURATION] [--sndhwm N] [--cmd EP]\n"
        "       [--cert FILE --allow DIR] [--http ADDR:PORT [--http-events] [--http-public]]\n"
        "       [--config FILE]",
        "Serve the log in DIR on the bus until SIGINT or SIGTERM: events go out\n"
        "live on the PUB endpoint once durable, subscribers fetch what they miss\n"
        "from the catch-up endpoint. Endpoints are ZeroMQ addresses, e.g.\n"
        "tcp://127.0.0.1:5601 or ipc:///run/evbus/pub. The log stays locked\n"
        "while it is served (evbus log and evbus append fail with exit code 3).",
        "With --sync none, a power loss can take back events that subscribers\n"
        "have already applied; every and group publish only fsynced events.\n"
        "With --cmd EP, clients can ask for the log's status (evbus status EP)\n"
        "and append events (evbus append --to EP) while it is served.\n"
        "With --cert and --allow every socket (live, catch-up, commands) is a CURVE\n"
        "server that accepts only the keys in DIR, re-read when it changes; refused\n"
        "clients are logged on stderr (README.md, \"Security\").\n"
        "A start line goes to stderr. Exit code 0 after a signal, 3 when the log\n"
        "cannot be opened, 4 when an endpoint cannot be bound or reading fails.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse_config(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    if (dir == NULL) return cli_usage_error(&cli, "--store DIR is required");
    if (pub_ep == NULL) return cli_usage_error(&cli, "--pub EP is required");
    if (cu_ep == NULL) return cli_usage_error(&cli, "--catchup EP is required");
    if (strcmp(pub_ep, cu_ep) == 0)
        return cli_usage_error(&cli, "--pub and --catchup must be different endpoints");
    if (cmd_ep != NULL && (strcmp(cmd_ep, pub_ep) == 0 || strcmp(cmd_ep, cu_ep) == 0))
        return cli_usage_error(&cli, "--cmd must differ from --pub and --catchup");
    if ((cert == NULL) != (allow == NULL))
        return cli_usage_error(&cli, "--cert and --allow go together");
    const evb_curve curve = {.cert_file = cert, .allow_dir = allow};
    int sync;
    if (cli_parse_sync(sync_s, &sync) != EVB_OK)
        return cli_usage_error(&cli, "--sync: expected none, every or group, got '%s'",
                               sync_s);
    if (hb_ms == 0 || hb_ms > 60000)
        return cli_usage_error(&cli, "--heartbeat: expected 1ms..1m");
    if (sndhwm > 100000000) return cli_usage_error(&cli, "--sndhwm: at most 100000000");
    int hrc = ops_http_check(&cli, http_addr, cert != NULL, http_public, http_events);
    if (hrc >= 0) return hrc;
    evb_err err = {0};
    if (create && service == NULL)
        return cli_usage_error(&cli, "--create needs --service NAME");
    if (service != NULL && !create)
        return cli_usage_error(&cli, "--service only names a new log (with --create)");
    if (service != NULL && evb_check_service(service, &err) != EVB_OK)
        return cli_usage_error(&cli, "--service: %s", err.msg);

    cli_install_log_sink(&cli);
    cli_catch_stop_signals();
    int xc;
    evb_store_t *st = s_open(&cli, dir, service, create, sync, &xc);
    if (st == NULL) {
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return xc;
    }
    evb_pub_opts po = {0};
    po.store = st;
    po.pub_endpoint = pub_ep;
    po.catchup_endpoint = cu_ep;
    po.heartbeat_ms = (unsigned)hb_ms;
    po.sndhwm = (int)sndhwm;
    po.curve = cert != NULL ? &curve : NULL;
    evb_pub_t *pub = evb_pub_new(&po, &err);
    if (pub == NULL) {
        cli_error(&cli, "%s", err.msg); /* names the endpoint */
        evb_store_destroy(&st);
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    serve_t sv = {st, pub, sync_s, false};
    evb_cmd_t *cmd = NULL;
    if (cmd_ep != NULL) {
        cmd = evb_cmd_new(
            &(evb_cmd_opts){.endpoint = cmd_ep, .curve = cert != NULL ? &curve : NULL},
            &err);
        if (cmd != NULL &&
            (evb_cmd_on(cmd, "status", s_cmd_status, &sv, &err) != EVB_OK ||
             evb_cmd_on(cmd, "append", s_cmd_append, &sv, &err) != EVB_OK))
            evb_cmd_destroy(&cmd);
        if (cmd == NULL) {
            if (strstr(err.msg, cmd_ep) != NULL)
                cli_error(&cli, "--cmd: %s", err.msg);
            else
                cli_error(&cli, "--cmd %s: %s", cmd_ep, err.msg);
            evb_pub_destroy(&pub);
            evb_store_destroy(&st);
            evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
            return err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
        }
    }
    evb_http_t *http = NULL;
    if ((hrc = ops_http_open(&cli, http_addr, http_events ? st : NULL, &http)) >= 0) {
        evb_cmd_destroy(&cmd);
        evb_pub_destroy(&pub);
        evb_store_destroy(&st);
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return hrc;
    }
    evb_store_info in;
    evb_store_get_info(st, &in);
    char id[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&in.log_id, id);
    fprintf(stderr,
            "evbus serve: serving %s (service %s, log %s, head %" PRIu64
            ") live on %s, catch-up on %s, sync %s\n",
            dir, in.service, id, in.head, pub_ep, cu_ep, sync_s);
    if (cmd_ep != NULL) fprintf(stderr, "evbus serve: commands on %s\n", cmd_ep);
    if (cert != NULL)
        fprintf(stderr, "evbus serve: CURVE on, clients allowed by %s\n", allow);
    if (sync == EVB_SYNC_NONE)
        fprintf(stderr, "evbus serve: warning: --sync none: a power loss can take back "
                        "events subscribers have already applied\n");
    fflush(stderr);
    evb_notify_ready(s_notify_line, &sv); /* bound, and the log open */

    rc = CLI_EXIT_OK;
    /* Idle wait: short enough for the heartbeat, and systemd's watchdog, to
     * be on time. */
    long idle_ms = hb_ms / 2 < 100 ? (long)(hb_ms / 2) : 100;
    long pub_ms = 200;
    long notify_ms = (long)evb_notify_tick_ms();
    if (notify_ms > 0 && notify_ms < idle_ms) idle_ms = notify_ms;
    if (notify_ms > 0 && notify_ms < pub_ms) pub_ms = notify_ms;
    if (idle_ms < 1) idle_ms = 1;
    bool failed = false;
    while (!failed && !cli_stop_requested()) {
        evb_notify_tick(s_notify_line, &sv);
        evb_err herr;
        if (evb_http_tick(http, 500, s_http_render, &sv, &herr) != EVB_OK)
            evb_log(EVB_LOG_WARN, "http: %s", herr.msg);
        if (cmd == NULL) {
            failed = evb_pub_poll(pub, (int)pub_ms, &err) != EVB_OK;
            continue;
        }
        evb_pub_stats ps;
        evb_pub_get_stats(pub, &ps);
        zmq_pollitem_t items[2] = {{evb_pub_socket(pub), 0, ZMQ_POLLIN, 0},
                                   {evb_cmd_socket(cmd), 0, ZMQ_POLLIN, 0}};
        /* Events not yet published (waiting for their fsync): look again
         * soon instead of after the idle wait. */
        zmq_poll(items, 2, evb_store_head(st) > ps.published ? 1 : idle_ms);
        failed = evb_pub_poll(pub, 0, &err) != EVB_OK;
        if (!failed) evb_cmd_poll(cmd, 0, NULL);
        if (!failed && sv.appended) {
            sv.appended = false;
            failed = evb_pub_poll(pub, 0, &err) != EVB_OK;
        }
    }
    if (failed) {
        cli_error(&cli, "%s: publishing stopped: %s", dir, err.msg);
        rc = CLI_EXIT_RUNTIME;
    }
    /* Before the store's close, which does the last group fsync. */
    evb_notify_stopping(failed ? "stopping after an error" : "stopping: final sync");
    evb_http_destroy(&http);
    evb_cmd_destroy(&cmd);
    evb_pub_stats ps;
    evb_pub_get_stats(pub, &ps);
    evb_pub_destroy(&pub);
    evb_store_destroy(&st);
    if (rc == CLI_EXIT_OK)
        fprintf(stderr,
                "evbus serve: stopped (published up to %" PRIu64 ", %" PRIu64
                " catch-up pages, %" PRIu64 " bad requests)\n",
                ps.published, ps.pages_sent, ps.bad_requests);
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
    return cli_finish(&cli, rc);
}
