/*
 * cmd_mirror.c: `evbus mirror`: a durable subscriber that keeps a copy of a
 * publisher's events (all categories, or some) in its own log.
 *
 * The handler appends each event to the mirror's log inside the transaction
 * the subscriber gives it, so the copy and the feed's checkpoint are one
 * LevelDB WriteBatch: a crash leaves both or neither, and the event is
 * copied exactly once. The copy keeps the event's id, type, schema, time,
 * correlation, causation, payload and metadata; its origin_log_id/origin_seq
 * name the log and sequence it was first written at (a copy of a copy keeps
 * the first origin). The stream is the same, the sequence and version are
 * the mirror's own.
 *
 * --until-caught-up turns the mirror into a one-shot sync for scripts and
 * tests: it exits 0 once every feed is live with no lag (4 after --timeout).
 *
 * --cmd binds a command socket served between subscriber turns in the same
 * thread (the subscriber is not thread-safe): "status" (every feed),
 * "retry" and "skip" (operator actions on a stalled feed). --refuse-type is
 * for tests: the handler refuses events of that type, which is the only way
 * to stall a mirror, whose handler otherwise refuses nothing.
 */
#include "cli.h"
#include "context.h"
#include "ops.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <evbus/evbus_bus.h>
#include <evbus/evbus_http.h>
#include <evbus/evbus_notify.h>

typedef struct mirror {
    cli_t *cli;
    uint64_t copied;
    evb_buf line, mp;
    evb_sub_t *sub;          /* for the command handlers */
    evb_store_t *st;         /* for the HTTP documents */
    const char *refuse_type; /* --refuse-type, or NULL */
    bool fresh_ids;          /* --fresh-ids: copies get new ids (tests) */
} mirror_t;

static int s_copy(const evb_event_t *ev, evb_txn_t *tx, void *ctx, evb_err *err)
{
    mirror_t *m = ctx;
    if (m->refuse_type != NULL && strcmp(ev->type, m->refuse_type) == 0)
        return evb_err_set(err, EVB_EREJECTED, "event type %s refused (--refuse-type)",
                           ev->type);
    evb_event_t copy = {0};
    /* Same id: a copy applied twice would be stored once (a retry). With
     * --fresh-ids every application makes a new event, so a test can see a
     * double application instead of having it hidden. */
    if (!m->fresh_ids)
        copy.id = ev->id;
    copy.type = ev->type;
    copy.schema = ev->schema;
    copy.ts_us = ev->ts_us;
    copy.correlation_id = ev->correlation_id;
    copy.causation_id = ev->causation_id;
    copy.payload = ev->payload;
    copy.payload_len = ev->payload_len;
    copy.metadata = ev->metadata;
    copy.metadata_len = ev->metadata_len;
    copy.origin_log_id = ev->origin_seq != 0 ? ev->origin_log_id : ev->log_id;
    copy.origin_seq = ev->origin_seq != 0 ? ev->origin_seq : ev->seq;
    evb_append_result res;
    int rc = evb_txn_append(tx, ev->stream, EVB_EXPECT_ANY, &copy, 1, &res, err);
    if (rc == EVB_OK) m->copied++;
    return rc;
}

/* ---- status ---- */

typedef struct status_acc {
    mirror_t *m;
    size_t feeds, caught_up, stopped;
    bool json, final, want_text;
    evb_buf text;
    int rc;
} status_acc;

/* One JSON line: the feed as the status command shows it (without its
 * history) plus "final". */
static int s_status_json(status_acc *a, const evb_feed_status *fs)
{
    evb_buf *b = &a->m->line;
    evb_err err = {0};
    a->m->mp.len = b->len = 0;
    int rc = evb_feed_status_pack(&a->m->mp, fs, 0, &err);
    if (rc == EVB_OK) rc = evb_msgpack_to_json(a->m->mp.data, a->m->mp.len, b, &err);
    if (rc == EVB_OK && (b->len < 2 || b->data[b->len - 1] != '}')) rc = EVB_EIO;
    if (rc == EVB_OK) {
        b->len--;
        rc = evb_buf_printf(b, &err, ",\"final\":%s}\n", a->final ? "true" : "false");
    }
    if (rc != EVB_OK) return rc;
    return cli_write(a->m->cli, b->data, b->len) == 0 ? EVB_OK : EVB_EIO;
}

static int s_on_feed(const evb_feed_status *fs, void *ctx)
{
    status_acc *a = ctx;
    a->feeds++;
    if (fs->state == EVB_FEED_LIVE && fs->lag == 0 && !evb_id_is_zero(&fs->log_id))
        a->caught_up++;
    if (fs->state == EVB_FEED_STOPPED) a->stopped++;
    if (a->json && s_status_json(a, fs) != EVB_OK) a->rc = EVB_EIO;
    if (a->want_text)
        evb_buf_printf(&a->text, NULL, "%s%s %s %" PRIu64 "/%" PRIu64,
                       a->feeds > 1 ? ", " : "", fs->category,
                       evb_feed_state_name(fs->state), fs->applied, fs->head);
    return 0;
}

/* Walk the feeds: count those caught up, print JSON lines and/or a
 * progress line. */
static void s_status(mirror_t *m, evb_sub_t *sub, bool json, bool final, bool text,
                     status_acc *a)
{
    memset(a, 0, sizeof *a);
    a->m = m;
    a->json = json;
    a->final = final;
    a->want_text = text;
    a->text.max_cap = 64 * 1024;
    evb_err err = {0};
    evb_sub_status(sub, s_on_feed, a, &err);
    if (text && a->text.len > 0)
        cli_progress(m->cli, "evbus mirror: %" PRIu64 " copied; %.*s", m->copied,
                     (int)a->text.len, a->text.data);
    evb_buf_free(&a->text);
    if (json) fflush(stdout);
}

/* ---- command socket ---- */

/* "status": {program: "mirror", service, log_id, head, feeds: [each feed as
 * evb_feed_status_pack shows it, with its history]}. */
static int s_cmd_status(const void *args, size_t len, evb_buf *out, void *ctx,
                        evb_err *err)
{
    (void)args;
    (void)len;
    mirror_t *m = ctx;
    evb_store_info in;
    evb_store_get_info(m->st, &in);
    ops_w w;
    ops_w_init(&w, out);
    msgpack_pack_map(&w.pk, 5);
    ops_w_kv_str(&w, "program", "mirror");
    ops_w_kv_str(&w, "service", in.service);
    ops_w_kv_id(&w, "log_id", &in.log_id);
    ops_w_kv_u64(&w, "head", in.head);
    ops_w_str(&w, "feeds");
    if (w.rc != EVB_OK) return evb_err_set(err, w.rc, "status: out of memory");
    return evb_sub_status_pack(out, m->sub, EVB_FEED_PACK_HISTORY, err);
}

/* The HTTP documents: the mirror's log and its feeds; the status command's
 * answer. A publisher is "up" with a heartbeat in the last second (two of
 * the default intervals). */
static int s_http_render(void *ctx, evb_buf *metrics, evb_buf *status, evb_err *err)
{
    mirror_t *m = ctx;
    int rc = evb_metrics_store(metrics, m->st, err);
    if (rc == EVB_OK) rc = evb_metrics_sub(metrics, m->sub, 1000, err);
    if (rc == EVB_OK) rc = s_cmd_status(NULL, 0, status, m, err);
    return rc;
}

/* systemd's STATUS= line (evbus_notify.h): "head 1,234; feeds:
 * reservation/show live". */
static void s_notify_line(evb_buf *line, void *ctx)
{
    mirror_t *m = ctx;
    evb_notify_add_num(line, "head", evb_store_head(m->st));
    evb_notify_add_feeds(line, "feeds", m->sub);
}

/* The feed named by a retry or skip: category, and publisher if given. */
static int s_arg_feed(const void *args, size_t len, const char *const *known, char *cat,
                      size_t cat_cap, char *pub, size_t pub_cap, bool *has_pub,
                      evb_err *err)
{
    bool present;
    int rc = ops_arg_known(args, len, known, err);
    if (rc == EVB_OK)
        rc = ops_arg_str(args, len, "category", true, cat, cat_cap, &present, err);
    if (rc == EVB_OK)
        rc = ops_arg_str(args, len, "publisher", false, pub, pub_cap, has_pub, err);
    return rc;
}

#define S_PUB_CAP (2 * EVB_BUS_MAX_ENDPOINT + 2)

/* "retry": {category, publisher?} -> {}. */
static int s_cmd_retry(const void *args, size_t len, evb_buf *out, void *ctx,
                       evb_err *err)
{
    (void)out;
    mirror_t *m = ctx;
    static const char *const known[] = {"category", "publisher", "cmd_id", NULL};
    char cat[EVB_MAX_CATEGORY_LEN + 1], pub[S_PUB_CAP];
    bool has_pub;
    int rc =
        s_arg_feed(args, len, known, cat, sizeof cat, pub, sizeof pub, &has_pub, err);
    if (rc != EVB_OK) return rc;
    return evb_sub_retry(m->sub, has_pub ? pub : NULL, cat, err);
}

/* "skip": {category, seq, publisher?} -> {}. */
static int s_cmd_skip(const void *args, size_t len, evb_buf *out, void *ctx, evb_err *err)
{
    (void)out;
    mirror_t *m = ctx;
    static const char *const known[] = {"category", "publisher", "seq", "cmd_id", NULL};
    char cat[EVB_MAX_CATEGORY_LEN + 1], pub[S_PUB_CAP];
    bool has_pub, present;
    uint64_t seq = 0;
    int rc =
        s_arg_feed(args, len, known, cat, sizeof cat, pub, sizeof pub, &has_pub, err);
    if (rc == EVB_OK) rc = ops_arg_u64(args, len, "seq", true, &seq, &present, err);
    if (rc != EVB_OK) return rc;
    return evb_sub_skip(m->sub, has_pub ? pub : NULL, cat, seq, err);
}

int cmd_mirror(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus mirror");
    cli_list follow = {0}, cats = {0};
    const char *dir = NULL, *service = "mirror", *consumer = "mirror", *sync_s = "group";
    const char *cmd_ep = NULL, *refuse_type = NULL;
    const char *cert = NULL, *allow = NULL; /* CURVE (README.md, "Security") */
    const char *keys[CLI_MAX_LIST] = {0};   /* --follow's third element */
    const char *context = NULL;             /* context.h: --follow, --cert */
    const char *config = NULL;              /* --config: services/README.md */
    bool fresh_ids = false, http_public = false, http_events = false;
    const char *http_addr = NULL;
    bool until = false, stats_json = false, timeout_set = false, log_order = false;
    uint64_t timeout_ms = 0, rcvhwm = 0, status_ms = 0;
    const cli_opt opts[] = {
        {"follow", CLI_LIST, &follow, NULL, "PUB_EP,CATCHUP_EP",
         "a publisher's two endpoints (required; may repeat)"},
        {"store", CLI_STR, &dir, NULL, "DIR", "the mirror's own log (made if missing)"},
        {"category", CLI_LIST, &cats, NULL, "C", "copy only this category (may repeat)"},
        {"log-order", CLI_FLAG, &log_order, NULL, NULL,
         "copy every category as one feed, in the publisher's log order (one checkpoint, "
         "category *)"},
        {"service", CLI_STR, &service, NULL, "NAME",
         "service name of a new log (mirror)"},
        {"consumer", CLI_STR, &consumer, NULL, "NAME",
         "checkpoint namespace in DIR (default mirror)"},
        {"sync", CLI_STR, &sync_s, NULL, "POLICY", "none, every or group (default)"},
        {"rcvhwm", CLI_U64, &rcvhwm, NULL, "N",
         "SUB high-water mark in messages (default: the library's, 100000)"},
        {"until-caught-up", CLI_FLAG, &until, NULL, NULL,
         "exit 0 once every feed is live with no lag"},
        {"timeout", CLI_DUR_S, &timeout_ms, &timeout_set, "DURATION",
         "with --until-caught-up: give up after this long (exit 4)"},
        {"stats-json", CLI_FLAG, &stats_json, NULL, NULL,
         "at exit, print each feed's status as a JSON line on stdout"},
        {"status-every", CLI_DUR_MS, &status_ms, NULL, "DURATION",
         "print each feed's status as JSON lines on stdout this often (e.g. 1s)"},
        {"cmd", CLI_STR, &cmd_ep, NULL, "EP",
         "command endpoint to bind: status, retry and skip requests"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "CURVE: our certificate (NAME_secret), for keyed --follow and --cmd"},
        {"allow", CLI_STR, &allow, NULL, "DIR",
         "CURVE: --cmd accepts only clients whose public certificates are in DIR"},
        {"http", CLI_STR, &http_addr, NULL, "ADDR:PORT",
         "serve the live bus page (/), /metrics (Prometheus) and /status.json over "
         "HTTP, e.g. 127.0.0.1:9465"},
        {"http-events", CLI_FLAG, &http_events, NULL, NULL,
         "with --http: show the last events (payloads) on the page and in /status.json"},
        {"http-public", CLI_FLAG, &http_public, NULL, NULL,
         "with CURVE on: allow --http on an address other than loopback"},
        {"refuse-type", CLI_STR, &refuse_type, NULL, "TYPE",
         "for tests: refuse events of TYPE (the feed stalls)"},
        {"fresh-ids", CLI_FLAG, &fresh_ids, NULL, NULL,
         "for tests: give copies new ids, so a double application shows"},
        {"context", CLI_STR, &context, NULL, "NAME",
         "--follow (and --cert) from saved context NAME (default $EVBUS_CONTEXT)"},
        {"config", CLI_STR, &config, NULL, "FILE",
         "settings as `name = value` lines, names as the flags' (the command line wins)"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "--follow PUB_EP,CATCHUP_EP[,SERVER_KEY] --store DIR [--category C]... [--log-order]\n"
        "       [--service NAME] [--cert FILE [--allow DIR]]\n"
        "       [--until-caught-up [--timeout DURATION]] [--stats-json] [--status-every DURATION]\n"
        "       [--cmd EP] [--http ADDR:PORT [--http-events] [--http-public]]\n"
        "       [--refuse-type TYPE] [--context NAME] [--config FILE]",
        "Follow a publisher (evbus serve, or a service) and copy each event, once,\n"
        "into the log in DIR, with the feed's checkpoint in the same write: a live\n"
        "backup that survives crashes without losing or doubling an event. The\n"
        "copies keep id, type, schema, time, correlation and causation ids,\n"
        "payload and metadata, and name their origin (origin_log_id, origin_seq).\n"
        "Without --category every category is copied, a feed each; with --log-order\n"
        "as one feed in the publisher's order, so the copy keeps its log's order.\n"
        "Runs until SIGINT/SIGTERM;\n"
        "on a terminal, a status line on stderr shows each feed.",
        "Status JSON fields: publisher, category, log_id, state, reason, applied,\n"
        "head, lag, applied_events, duplicates, gaps, pages, bad_frames, refusals,\n"
        "heartbeat_age_ms, final.\n"
        "CURVE: a --follow with a third element (the publisher's public key or\n"
        "certificate file) connects with our --cert; with --cert and --allow the\n"
        "--cmd socket accepts only the keys in DIR.\n"
        "With --cmd EP: `evbus status EP` shows the feeds; `evbus feed retry EP\n"
        "CATEGORY` and `evbus feed skip EP CATEGORY SEQ` act on a stalled one.\n"
        "--refuse-type exists to test stalls: such events are never copied unless\n"
        "skipped.\n"
        "Exit code 0 after a signal or once caught up, 1 when a feed stopped (the\n"
        "publisher's log id changed; at once with --until-caught-up, else at the\n"
        "signal), 3 when DIR cannot be opened, 4 on a store error or when\n"
        "--timeout passed.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse_config(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    /* Only the context's publishers: its cmd is a service's socket, not one
     * for the mirror to bind (--cmd), and --service here names the log. */
    const ctx_entry *ctx;
    ctx_apply ca = {.follow = &follow, .cert = &cert};
    if (context == NULL && follow.n > 0) { /* EVBUS_CONTEXT would give nothing */
        ctx = NULL;
    } else if ((rc = ctx_open(&cli, context, &ctx)) >= 0 ||
               (rc = ctx_fill(&cli, ctx, &ca)) >= 0) {
        return rc;
    }
    if (ctx != NULL && follow.n == 0)
        return cli_usage_error(&cli,
                               "context %s has no follow values (file %s): give --follow",
                               ctx->name, ctx_used_path());
    if (follow.n == 0)
        return cli_usage_error(
            &cli, "--follow PUB_EP,CATCHUP_EP is required (or --context NAME)");
    if (dir == NULL) return cli_usage_error(&cli, "--store DIR is required");
    if (timeout_set && !until)
        return cli_usage_error(&cli, "--timeout only goes with --until-caught-up");
    if (timeout_set && (timeout_ms == 0 || timeout_ms > 86400000))
        return cli_usage_error(&cli, "--timeout: expected 1ms..1d");
    if (rcvhwm > 100000000) return cli_usage_error(&cli, "--rcvhwm: at most 100000000");
    if (status_ms > 0 && (status_ms < 10 || status_ms > 86400000))
        return cli_usage_error(&cli, "--status-every: expected 10ms..1d");
    int sync;
    if (cli_parse_sync(sync_s, &sync) != EVB_OK)
        return cli_usage_error(&cli, "--sync: expected none, every or group, got '%s'",
                               sync_s);
    evb_err err = {0};
    if (evb_check_service(service, &err) != EVB_OK)
        return cli_usage_error(&cli, "--service: %s", err.msg);
    if (strlen(consumer) > EVB_MAX_CONSUMER_LEN)
        return cli_usage_error(&cli, "--consumer: at most %u bytes",
                               EVB_MAX_CONSUMER_LEN);
    if (refuse_type != NULL && evb_check_type(refuse_type, &err) != EVB_OK)
        return cli_usage_error(&cli, "--refuse-type: %s", err.msg);
    if (log_order && cats.n > 0)
        return cli_usage_error(&cli, "--log-order copies every category: no --category");
    for (size_t i = 0; i < cats.n; i++)
        if (evb_check_category(cats.v[i], &err) != EVB_OK)
            return cli_usage_error(&cli, "--category '%s': %s", cats.v[i], err.msg);
    char eps[CLI_MAX_LIST][2][EVB_BUS_MAX_ENDPOINT];
    rc = cli_follow_keys(&cli, &follow, cert != NULL, keys);
    if (rc >= 0) return rc;
    if (allow != NULL && (cert == NULL || cmd_ep == NULL))
        return cli_usage_error(&cli, "--allow needs --cert and --cmd");
    if (cert != NULL && cmd_ep != NULL && allow == NULL)
        return cli_usage_error(&cli, "--cmd with --cert needs --allow DIR");
    rc = cli_follow_split(&cli, &follow, eps);
    if (rc >= 0) return rc;
    rc = ops_http_check(&cli, http_addr, cert != NULL, http_public, http_events);
    if (rc >= 0) return rc;

    cli_install_log_sink(&cli);
    cli_catch_stop_signals();
    int xc;
    evb_store_t *st = cli_open_log(&cli, dir, service, true, sync, &xc);
    if (st == NULL) {
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return xc;
    }
    mirror_t m = {.cli = &cli, .st = st, .refuse_type = refuse_type, .fresh_ids = fresh_ids};
    evb_sub_opts o = {0};
    o.store = st;
    o.consumer = consumer;
    o.handler = s_copy;
    o.ctx = &m;
    o.rcvhwm = (int)rcvhwm;
    const evb_curve curve = {.cert_file = cert, .allow_dir = allow};
    o.curve = cert != NULL ? &curve : NULL;
    evb_sub_t *sub = evb_sub_new(&o, &err);
    rc = CLI_EXIT_OK;
    if (sub == NULL) {
        cli_error(&cli, "%s", err.msg);
        rc = CLI_EXIT_RUNTIME;
    }
    for (size_t i = 0; rc == CLI_EXIT_OK && i < follow.n; i++) {
        evb_follow_opts fo = {.categories = (const char *const *)cats.v,
                              .ncategories = cats.n,
                              .log_order = log_order,
                              .server_key = keys[i]};
        if (evb_sub_follow(sub, eps[i][0], eps[i][1], &fo, &err) != EVB_OK) {
            cli_error(&cli, "--follow %s: %s", follow.v[i], err.msg);
            rc = err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
        }
    }

    evb_cmd_t *cmd = NULL;
    if (rc == CLI_EXIT_OK && cmd_ep != NULL) {
        m.sub = sub;
        cmd = evb_cmd_new(
            &(evb_cmd_opts){.endpoint = cmd_ep, .curve = allow != NULL ? &curve : NULL},
            &err);
        if (cmd != NULL && (evb_cmd_on(cmd, "status", s_cmd_status, &m, &err) != EVB_OK ||
                            evb_cmd_on(cmd, "retry", s_cmd_retry, &m, &err) != EVB_OK ||
                            evb_cmd_on(cmd, "skip", s_cmd_skip, &m, &err) != EVB_OK))
            evb_cmd_destroy(&cmd);
        if (cmd == NULL) {
            if (strstr(err.msg, cmd_ep) != NULL)
                cli_error(&cli, "--cmd: %s", err.msg);
            else
                cli_error(&cli, "--cmd %s: %s", cmd_ep, err.msg);
            rc = err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
        }
    }

    evb_http_t *http = NULL;
    if (rc == CLI_EXIT_OK) {
        m.sub = sub;
        int hrc = ops_http_open(&cli, http_addr, http_events ? m.st : NULL, &http);
        if (hrc >= 0) rc = hrc;
    }
    int64_t start = evb_now_us();
    int64_t deadline = timeout_set ? start + (int64_t)timeout_ms * 1000 : 0;
    int64_t next_status = start + (status_ms > 0 ? (int64_t)status_ms * 1000 : 0);
    int64_t next_text = start + 2000000;
    status_acc a;
    /* With a command socket, a shorter turn bounds a command's wait; with
     * systemd's watchdog, its interval does. */
    int turn_ms = cmd != NULL ? 10 : 100;
    int notify_ms = (int)evb_notify_tick_ms();
    if (notify_ms > 0 && notify_ms < turn_ms) turn_ms = notify_ms;
    if (rc == CLI_EXIT_OK) evb_notify_ready(s_notify_line, &m); /* following, log open */
    while (rc == CLI_EXIT_OK && !cli_stop_requested()) {
        evb_notify_tick(s_notify_line, &m);
        if (evb_sub_poll(sub, turn_ms, &err) != EVB_OK) {
            cli_error(&cli, "%s: %s", dir, err.msg);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        if (cmd != NULL) evb_cmd_poll(cmd, 0, NULL);
        evb_err herr;
        if (evb_http_tick(http, 500, s_http_render, &m, &herr) != EVB_OK)
            evb_log(EVB_LOG_WARN, "http: %s", herr.msg);
        int64_t now = evb_now_us();
        bool json_due = status_ms > 0 && now >= next_status;
        bool text_due = cli.err_tty && now >= next_text;
        if (until || json_due || text_due) {
            s_status(&m, sub, json_due, false, text_due, &a);
            if (json_due) next_status = now + (int64_t)status_ms * 1000;
            if (text_due) next_text = now + 2000000;
            if (until && a.stopped > 0) {
                cli_error(&cli, "a feed stopped (see the warning above); not caught up");
                rc = CLI_EXIT_PROBLEMS;
                break;
            }
            if (until && a.feeds > 0 && a.caught_up == a.feeds) break;
        }
        if (deadline != 0 && now >= deadline) {
            s_status(&m, sub, false, false, false, &a);
            char d[32];
            cli_error(&cli, "not caught up after %s (%zu of %zu feeds live with no lag)",
                      evb_duration_format(timeout_ms, d), a.caught_up, a.feeds);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
    }
    cli_progress_end(&cli);
    /* Before the store's close, which does the last group fsync. */
    evb_notify_stopping(rc == CLI_EXIT_OK ? "stopping: final sync"
                                          : "stopping after an error");
    if (sub != NULL && stats_json) s_status(&m, sub, true, true, false, &a);
    /* After a signal too: a feed that stopped (its publisher's log id
     * changed) is a problem a script must see. */
    if (sub != NULL && rc == CLI_EXIT_OK) {
        s_status(&m, sub, false, false, false, &a);
        if (a.stopped > 0) rc = CLI_EXIT_PROBLEMS;
    }
    evb_http_destroy(&http);
    evb_cmd_destroy(&cmd);
    evb_sub_destroy(&sub);
    evb_store_destroy(&st);
    evb_buf_free(&m.line);
    evb_buf_free(&m.mp);
    if (cli.err_tty && rc == CLI_EXIT_OK)
        fprintf(stderr, "evbus mirror: stopped; %" PRIu64 " events copied this run\n",
                m.copied);
    rc = cli_finish(&cli, rc);
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
    return rc;
}
