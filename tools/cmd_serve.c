/*
 * cmd_serve.c: `evbus serve`: serve a log on the bus (live on PUB, catch-up
 * on ROUTER) with no service around it, until SIGINT or SIGTERM.
 *
 * The store is opened by this process (EVB_INDEX_THREAD: catch-up reads the
 * category index) and the publisher polls in the main thread, which owns
 * both. A signal only sets a flag; the loop sees it within one poll
 * interval, destroys the publisher, then the store (a pending group fsync is
 * done first), and exits 0. --cmd (appends through a command socket) is not
 * built yet.
 */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <evbus/evbus_bus.h>

int cmd_serve(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus serve");
    const char *dir = NULL, *pub_ep = NULL, *cu_ep = NULL, *service = NULL;
    const char *sync_s = "group";
    bool create = false;
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
        {"heartbeat-ms", CLI_U64, &hb_ms, NULL, "N", "heartbeat interval (default 500)"},
        {"sndhwm", CLI_U64, &sndhwm, NULL, "N",
         "PUB high-water mark in messages (default: the library's, 100000)"},
        {0},
    };
    const cli_usage usage = {
        "--store DIR --pub EP --catchup EP [--create --service NAME]\n"
        "       [--sync none|every|group] [--heartbeat-ms N] [--sndhwm N]",
        "Serve the log in DIR on the bus until SIGINT or SIGTERM: events go out\n"
        "live on the PUB endpoint once durable, subscribers fetch what they miss\n"
        "from the catch-up endpoint. Endpoints are ZeroMQ addresses, e.g.\n"
        "tcp://127.0.0.1:5601 or ipc:///run/evbus/pub. The log stays locked\n"
        "while it is served (evbus log and evbus append fail with exit code 3).",
        "With --sync none, a power loss can take back events that subscribers\n"
        "have already applied; every and group publish only fsynced events.\n"
        "A start line goes to stderr. Exit code 0 after a signal, 3 when the log\n"
        "cannot be opened, 4 when an endpoint cannot be bound or reading fails.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    if (dir == NULL) return cli_usage_error(&cli, "--store DIR is required");
    if (pub_ep == NULL) return cli_usage_error(&cli, "--pub EP is required");
    if (cu_ep == NULL) return cli_usage_error(&cli, "--catchup EP is required");
    if (strcmp(pub_ep, cu_ep) == 0)
        return cli_usage_error(&cli, "--pub and --catchup must be different endpoints");
    int sync;
    if (cli_parse_sync(sync_s, &sync) != EVB_OK)
        return cli_usage_error(&cli, "--sync: expected none, every or group, got '%s'",
                               sync_s);
    if (hb_ms == 0 || hb_ms > 60000)
        return cli_usage_error(&cli, "--heartbeat-ms: expected 1..60000");
    if (sndhwm > 100000000) return cli_usage_error(&cli, "--sndhwm: at most 100000000");
    evb_err err = {0};
    if (create && service == NULL)
        return cli_usage_error(&cli, "--create needs --service NAME");
    if (service != NULL && !create)
        return cli_usage_error(&cli, "--service only names a new log (with --create)");
    if (service != NULL && evb_check_service(service, &err) != EVB_OK)
        return cli_usage_error(&cli, "--service: %s", err.msg);

    cli_install_log_sink(&cli);
    cli_catch_stop_signals();
    evb_store_opts so = {0};
    so.dir = dir;
    so.service = service;
    so.create = create;
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
    evb_pub_opts po = {0};
    po.store = st;
    po.pub_endpoint = pub_ep;
    po.catchup_endpoint = cu_ep;
    po.heartbeat_ms = (unsigned)hb_ms;
    po.sndhwm = (int)sndhwm;
    evb_pub_t *pub = evb_pub_new(&po, &err);
    if (pub == NULL) {
        cli_error(&cli, "%s", err.msg); /* names the endpoint */
        evb_store_destroy(&st);
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    evb_store_info in;
    evb_store_get_info(st, &in);
    char id[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&in.log_id, id);
    fprintf(stderr,
            "evbus serve: serving %s (service %s, log %s, head %" PRIu64
            ") live on %s, catch-up on %s, sync %s\n",
            dir, in.service, id, in.head, pub_ep, cu_ep, sync_s);
    if (sync == EVB_SYNC_NONE)
        fprintf(stderr, "evbus serve: warning: --sync none: a power loss can take back "
                        "events subscribers have already applied\n");
    fflush(stderr);

    rc = CLI_EXIT_OK;
    while (!cli_stop_requested()) {
        if (evb_pub_poll(pub, 200, &err) != EVB_OK) {
            cli_error(&cli, "%s: publishing stopped: %s", dir, err.msg);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
    }
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
