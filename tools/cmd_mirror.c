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
 */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <evbus/evbus_bus.h>

typedef struct mirror {
    cli_t *cli;
    uint64_t copied;
    evb_buf line;
} mirror_t;

static int s_copy(const evb_event_t *ev, evb_txn_t *tx, void *ctx, evb_err *err)
{
    mirror_t *m = ctx;
    evb_event_t copy = {0};
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

static int s_status_json(status_acc *a, const evb_feed_status *fs)
{
    evb_buf *b = &a->m->line;
    evb_err err = {0};
    char id[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&fs->log_id, id);
    b->len = 0;
    int rc = evb_buf_append(b, "{\"publisher\":", 13, &err);
    if (rc == EVB_OK) rc = cli_json_str(b, fs->publisher, &err);
    if (rc == EVB_OK) rc = evb_buf_append(b, ",\"category\":", 12, &err);
    if (rc == EVB_OK) rc = cli_json_str(b, fs->category, &err);
    if (rc == EVB_OK)
        rc =
            evb_buf_printf(b, &err, ",\"log_id\":\"%s\",\"state\":\"%s\",\"reason\":", id,
                           evb_feed_state_name(fs->state));
    if (rc == EVB_OK) rc = cli_json_str(b, fs->reason != NULL ? fs->reason : "", &err);
    if (rc == EVB_OK)
        rc = evb_buf_printf(
            b, &err,
            ",\"applied\":%" PRIu64 ",\"head\":%" PRIu64 ",\"lag\":%" PRIu64
            ",\"applied_events\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"gaps\":%" PRIu64
            ",\"pages\":%" PRIu64 ",\"bad_frames\":%" PRIu64 ",\"refusals\":%" PRIu64
            ",\"heartbeat_age_ms\":%" PRId64 ",\"final\":%s}\n",
            fs->applied, fs->head, fs->lag, fs->applied_events, fs->duplicates, fs->gaps,
            fs->pages, fs->bad_frames, fs->refusals, fs->heartbeat_age_ms,
            a->final ? "true" : "false");
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

/* "PUB_EP,CATCHUP_EP" into two buffers. */
static int s_split_follow(const char *v, char *pub, char *cu)
{
    const char *comma = strchr(v, ',');
    if (comma == NULL || strchr(comma + 1, ',') != NULL) return EVB_EINVAL;
    size_t a = (size_t)(comma - v), b = strlen(comma + 1);
    if (a == 0 || b == 0 || a >= EVB_BUS_MAX_ENDPOINT || b >= EVB_BUS_MAX_ENDPOINT)
        return EVB_EINVAL;
    memcpy(pub, v, a);
    pub[a] = '\0';
    memcpy(cu, comma + 1, b + 1);
    return EVB_OK;
}

int cmd_mirror(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus mirror");
    cli_list follow = {0}, cats = {0};
    const char *dir = NULL, *service = "mirror", *consumer = "mirror", *sync_s = "group";
    bool until = false, stats_json = false, timeout_set = false;
    uint64_t timeout_s = 0, rcvhwm = 0, status_ms = 0;
    const cli_opt opts[] = {
        {"follow", CLI_LIST, &follow, NULL, "PUB_EP,CATCHUP_EP",
         "a publisher's two endpoints (required; may repeat)"},
        {"store", CLI_STR, &dir, NULL, "DIR", "the mirror's own log (made if missing)"},
        {"category", CLI_LIST, &cats, NULL, "C", "copy only this category (may repeat)"},
        {"service", CLI_STR, &service, NULL, "NAME",
         "service name of a new log (mirror)"},
        {"consumer", CLI_STR, &consumer, NULL, "NAME",
         "checkpoint namespace in DIR (default mirror)"},
        {"sync", CLI_STR, &sync_s, NULL, "POLICY", "none, every or group (default)"},
        {"rcvhwm", CLI_U64, &rcvhwm, NULL, "N",
         "SUB high-water mark in messages (default: the library's, 100000)"},
        {"until-caught-up", CLI_FLAG, &until, NULL, NULL,
         "exit 0 once every feed is live with no lag"},
        {"timeout", CLI_U64, &timeout_s, &timeout_set, "S",
         "with --until-caught-up: give up after S seconds (exit 4)"},
        {"stats-json", CLI_FLAG, &stats_json, NULL, NULL,
         "at exit, print each feed's status as a JSON line on stdout"},
        {"status-every", CLI_U64, &status_ms, NULL, "MS",
         "print each feed's status as JSON lines on stdout every MS ms"},
        {0},
    };
    const cli_usage usage = {
        "--follow PUB_EP,CATCHUP_EP --store DIR [--category C]... [--service NAME]\n"
        "       [--until-caught-up [--timeout S]] [--stats-json] [--status-every MS]",
        "Follow a publisher (evbus serve, or a service) and copy each event, once,\n"
        "into the log in DIR, with the feed's checkpoint in the same write: a live\n"
        "backup that survives crashes without losing or doubling an event. The\n"
        "copies keep id, type, schema, time, correlation and causation ids,\n"
        "payload and metadata, and name their origin (origin_log_id, origin_seq).\n"
        "Without --category every category is copied. Runs until SIGINT/SIGTERM;\n"
        "on a terminal, a status line on stderr shows each feed.",
        "Status JSON fields: publisher, category, log_id, state, reason, applied,\n"
        "head, lag, applied_events, duplicates, gaps, pages, bad_frames, refusals,\n"
        "heartbeat_age_ms, final.\n"
        "Exit code 0 after a signal or once caught up, 1 when a feed stopped (the\n"
        "publisher's log id changed), 3 when DIR cannot be opened, 4 on a store\n"
        "error or when --timeout passed.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    if (follow.n == 0)
        return cli_usage_error(&cli, "--follow PUB_EP,CATCHUP_EP is required");
    if (dir == NULL) return cli_usage_error(&cli, "--store DIR is required");
    if (timeout_set && !until)
        return cli_usage_error(&cli, "--timeout only goes with --until-caught-up");
    if (timeout_set && (timeout_s == 0 || timeout_s > 86400))
        return cli_usage_error(&cli, "--timeout: expected 1..86400 seconds");
    if (rcvhwm > 100000000) return cli_usage_error(&cli, "--rcvhwm: at most 100000000");
    if (status_ms > 0 && status_ms < 10)
        return cli_usage_error(&cli, "--status-every: at least 10 ms");
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
    for (size_t i = 0; i < cats.n; i++)
        if (evb_check_category(cats.v[i], &err) != EVB_OK)
            return cli_usage_error(&cli, "--category '%s': %s", cats.v[i], err.msg);
    char eps[CLI_MAX_LIST][2][EVB_BUS_MAX_ENDPOINT];
    for (size_t i = 0; i < follow.n; i++)
        if (s_split_follow(follow.v[i], eps[i][0], eps[i][1]) != EVB_OK)
            return cli_usage_error(&cli,
                                   "--follow '%s': expected PUB_EP,CATCHUP_EP (two "
                                   "endpoints, one comma)",
                                   follow.v[i]);

    cli_install_log_sink(&cli);
    cli_catch_stop_signals();
    evb_store_opts so = {0};
    so.dir = dir;
    so.service = service;
    so.create = true;
    so.sync = (evb_sync)sync;
    so.index_mode = EVB_INDEX_THREAD;
    evb_store_t *st = evb_store_open(&so, &err);
    if (st == NULL) {
        if (strstr(err.msg, dir) != NULL)
            cli_error(&cli, "cannot open log: %s", err.msg);
        else
            cli_error(&cli, "%s: cannot open log: %s", dir, err.msg);
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return cli_exit_for_open(err.code);
    }
    mirror_t m = {.cli = &cli};
    evb_sub_opts o = {0};
    o.store = st;
    o.consumer = consumer;
    o.handler = s_copy;
    o.ctx = &m;
    o.rcvhwm = (int)rcvhwm;
    evb_sub_t *sub = evb_sub_new(&o, &err);
    rc = CLI_EXIT_OK;
    if (sub == NULL) {
        cli_error(&cli, "%s", err.msg);
        rc = CLI_EXIT_RUNTIME;
    }
    for (size_t i = 0; rc == CLI_EXIT_OK && i < follow.n; i++) {
        if (evb_sub_follow(sub, eps[i][0], eps[i][1], cats.v, cats.n, &err) != EVB_OK) {
            cli_error(&cli, "--follow %s: %s", follow.v[i], err.msg);
            rc = err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
        }
    }

    int64_t start = evb_now_us();
    int64_t deadline = timeout_set ? start + (int64_t)timeout_s * 1000000 : 0;
    int64_t next_status = start + (status_ms > 0 ? (int64_t)status_ms * 1000 : 0);
    int64_t next_text = start + 2000000;
    status_acc a;
    while (rc == CLI_EXIT_OK && !cli_stop_requested()) {
        if (evb_sub_poll(sub, 100, &err) != EVB_OK) {
            cli_error(&cli, "%s: %s", dir, err.msg);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
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
            cli_error(&cli,
                      "not caught up after %" PRIu64 " s (%zu of %zu feeds live with "
                      "no lag)",
                      timeout_s, a.caught_up, a.feeds);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
    }
    cli_progress_end(&cli);
    if (sub != NULL && stats_json) s_status(&m, sub, true, true, false, &a);
    evb_sub_destroy(&sub);
    evb_store_destroy(&st);
    evb_buf_free(&m.line);
    if (cli.err_tty && rc == CLI_EXIT_OK)
        fprintf(stderr, "evbus mirror: stopped; %" PRIu64 " events copied this run\n",
                m.copied);
    rc = cli_finish(&cli, rc);
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
    return rc;
}
