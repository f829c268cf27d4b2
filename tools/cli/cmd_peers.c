/*
 * cmd_peers.c: `evbus peers`: listen to service beacons for a while and list
 * the services heard (bus/PROTOCOL.md, "Discovery"): name, log id, the
 * endpoints they advertise, and where each beacon came from (interface and
 * UDP source address), so a host with several interfaces shows which network
 * a service was found on. Beacons that do not decode are counted and shown.
 */
#include "disc_cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct peers_acc {
    cli_t *cli;
    bool json;
    size_t n;
    evb_buf out;
    int rc;
} peers_acc;

static int s_json_entry(const evb_disc_entry *e, void *ctx)
{
    peers_acc *a = ctx;
    evb_buf *b = &a->out;
    char hex[EVB_ID_HEX_LEN + 1], started[40];
    evb_id_to_hex(&e->b.log_id, hex);
    evb_ts_format(e->b.started_us, started);
    int rc = evb_buf_append(b, a->n ? ",\n  {" : "\n  {", a->n ? 5 : 4, NULL);
    const char *keys[] = {"service", "log_id",  "iface", "from",
                          "pub",     "catchup", "cmd",   "started"};
    const char *vals[] = {e->b.service, hex,          e->iface, e->from,
                          e->b.pub,     e->b.catchup, e->b.cmd, started};
    for (size_t i = 0; rc == EVB_OK && i < sizeof keys / sizeof keys[0]; i++) {
        rc = evb_buf_printf(b, NULL, "%s\"%s\":", i ? ", " : "", keys[i]);
        if (rc == EVB_OK) rc = cli_json_str(b, vals[i], NULL);
    }
    int64_t age_ms = (evb_now_us() - e->last_seen_us) / 1000;
    if (rc == EVB_OK)
        rc = evb_buf_printf(b, NULL,
                            ", \"interval_ms\":%u, \"last_seen_ms_ago\":%" PRId64
                            ", \"beacons\":%" PRIu64 ", \"moves\":%" PRIu64 "}",
                            e->b.interval_ms, age_ms < 0 ? 0 : age_ms, e->beacons,
                            e->moves);
    a->n++;
    return rc == EVB_OK ? 0 : (a->rc = rc);
}

static int s_text_entry(const evb_disc_entry *e, void *ctx)
{
    peers_acc *a = ctx;
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&e->b.log_id, hex);
    int64_t age_ms = (evb_now_us() - e->last_seen_us) / 1000;
    a->n++;
    cli_printf(a->cli, "%-16s %.8s %-6s %-15s %5.1fs  pub %s  catchup %s  cmd %s\n",
               e->b.service, hex, e->iface, e->from,
               (double)(age_ms < 0 ? 0 : age_ms) / 1000, e->b.pub[0] ? e->b.pub : "-",
               e->b.catchup[0] ? e->b.catchup : "-", e->b.cmd[0] ? e->b.cmd : "-");
    return 0;
}

int cmd_peers(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus peers");
    const char *iface_flag = NULL;
    uint64_t port = EVB_DISC_DEFAULT_PORT, timeout_ms = 3000;
    bool port_set = false, json = false, timeout_set = false;
    const cli_opt opts[] = {
        {"iface", CLI_STR, &iface_flag, NULL, "NAME",
         "listen on this interface (\"*\": all; default $EVBUS_BEACON_IFACE)"},
        {"port", CLI_U64, &port, &port_set, "N",
         "UDP port of the beacons (default $EVBUS_BEACON_PORT or 5670)"},
        {"json", CLI_FLAG, &json, NULL, NULL, "print one JSON object"},
        {"timeout", CLI_DUR_S, &timeout_ms, &timeout_set, "DURATION",
         "listen this long (default 3s; beacons come every second)"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS),
        "[--iface NAME] [--port N] [--json] [--timeout DURATION]",
        "List the services whose beacons (evbus-* --announce) are heard on an\n"
        "interface: name, log id (first 8 hex characters), the interface and the\n"
        "UDP source address of the last beacon, its age, and the endpoints the\n"
        "service advertises (full tcp://ADDRESS:PORT, as its beacon says; not\n"
        "guessed from the source address).",
        "--json prints {\"iface\", \"address\", \"port\", \"services\": [{service,\n"
        "log_id, iface, from, pub, catchup, cmd, started, interval_ms,\n"
        "last_seen_ms_ago, beacons, moves}], \"beacons\": {received, accepted,\n"
        "foreign, bad, version, stale, expired}}.\n"
        "Exit codes: 0 at least one service heard, 1 none, 2 usage, 4 the\n"
        "interface cannot listen (the message lists those that can)."};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    if (timeout_set && (timeout_ms == 0 || timeout_ms > 86400000))
        return cli_usage_error(&cli, "--timeout: expected 1ms..1d");
    const char *iface;
    unsigned uport;
    if ((rc = disc_cli_settings(&cli, true, iface_flag, port, port_set, &iface, &uport)) >= 0)
        return rc;
    cli_install_log_sink(&cli);
    evb_err err = {0};
    evb_discover_t *d = evb_discover_new(iface, uport, &err);
    if (d == NULL) {
        cli_error(&cli, "%s", err.msg);
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return err.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    cli_catch_stop_signals();
    int64_t deadline = evb_now_us() + (int64_t)timeout_ms * 1000;
    rc = CLI_EXIT_OK;
    while (!cli_stop_requested()) {
        int64_t left = (deadline - evb_now_us()) / 1000;
        if (left <= 0) break;
        if (evb_discover_poll(d, left > 200 ? 200 : (int)left, &err) < 0) {
            cli_error(&cli, "%s", err.msg);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
    }
    evb_disc_stats st;
    evb_discover_get_stats(d, &st);
    peers_acc a = {.cli = &cli, .json = json};
    if (rc == CLI_EXIT_OK && json) {
        evb_buf *b = &a.out;
        int jrc = evb_buf_append(b, "{\"iface\":", 9, NULL);
        if (jrc == EVB_OK) jrc = cli_json_str(b, iface, NULL);
        if (jrc == EVB_OK) jrc = evb_buf_append(b, ", \"address\":", 12, NULL);
        if (jrc == EVB_OK) jrc = cli_json_str(b, evb_discover_address(d), NULL);
        if (jrc == EVB_OK)
            jrc = evb_buf_printf(b, NULL, ", \"port\":%u, \"services\":[", uport);
        if (jrc == EVB_OK) evb_discover_list(d, s_json_entry, &a);
        if (jrc == EVB_OK && a.rc == EVB_OK)
            jrc = evb_buf_printf(b, NULL,
                                 "%s], \"beacons\":{\"received\":%" PRIu64
                                 ", \"accepted\":%" PRIu64 ", \"foreign\":%" PRIu64
                                 ", \"bad\":%" PRIu64 ", \"version\":%" PRIu64
                                 ", \"stale\":%" PRIu64 ", \"expired\":%" PRIu64 "}}\n",
                                 a.n ? "\n" : "", st.received, st.accepted, st.foreign,
                                 st.bad, st.version, st.stale, st.expired);
        if (jrc != EVB_OK || a.rc != EVB_OK) {
            cli_error(&cli, "out of memory");
            rc = CLI_EXIT_RUNTIME;
        } else {
            cli_write(&cli, b->data, b->len);
        }
    } else if (rc == CLI_EXIT_OK) {
        evb_discover_list(d, s_text_entry, &a);
        if (st.bad + st.version > 0)
            cli_error(&cli,
                      "%" PRIu64 " malformed and %" PRIu64
                      " other-version evbus beacons ignored",
                      st.bad, st.version);
    }
    if (rc == CLI_EXIT_OK && a.n == 0) {
        char dur[32];
        cli_error(&cli, "no service heard on interface %s (%s), UDP port %u in %s", iface,
                  evb_discover_address(d), uport, evb_duration_format(timeout_ms, dur));
        rc = CLI_EXIT_PROBLEMS;
    }
    evb_buf_free(&a.out);
    evb_discover_destroy(&d);
    rc = cli_finish(&cli, rc);
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
    return rc;
}
