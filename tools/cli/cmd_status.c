/*
 * cmd_status.c: `evbus status CMD_EP` and `evbus feed retry|skip CMD_EP ...`:
 * the operator's side of a running service's command socket (evbus serve
 * --cmd, evbus mirror --cmd, or a service built on the library).
 *
 * Each run makes one call (evb_cmd_call: a fresh DEALER, a deadline), so a
 * service that is down, unreachable or wedged costs at most --timeout and
 * exit code 4, never a hang. The endpoint's syntax is checked first, so that
 * a typo is a usage error and not a timeout, and so that EVB_EINVAL from the
 * call can only be the service's own rejection.
 *
 * The status reply in text: one header for every program (the fields it
 * lacks print "-", never 0: a mirror has no command counters, serve no
 * uptime), a service's memory and beacons, then a subscriber's feeds and a
 * service's views (a row per feed) or a publisher's categories. Values are
 * formatted one way throughout (the "status" banner). --json prints the
 * reply map itself as one JSON object, so fields added to a service's
 * status show up without a change here.
 */
#include "cli.h"
#include "context.h"
#include "ops.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evbus/evbus_bus.h>

/* Print err.msg, naming the endpoint if the message does not. */
static void s_call_error(cli_t *cli, const char *ep, const evb_err *err)
{
    if (strstr(err->msg, ep) != NULL)
        cli_error(cli, "%s", err->msg);
    else
        cli_error(cli, "%s: %s", ep, err->msg[0] ? err->msg : evb_strerror(err->code));
}

static bool s_timeout_ok(uint64_t ms)
{
    return ms >= 1 && ms <= OPS_MAX_TIMEOUT_MS;
}

/* ---- a small aligned table ---- */

#define S_COLS 15
#define S_CELL 80

typedef struct table {
    size_t ncols, nrows, cap;
    char (*cells)[S_COLS][S_CELL]; /* row 0: the header */
    size_t width[S_COLS];
} table_t;

static int s_table_row(table_t *t)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        void *p = realloc(t->cells, cap * sizeof *t->cells);
        if (p == NULL) return EVB_ENOMEM;
        t->cells = p;
        t->cap = cap;
    }
    memset(t->cells[t->nrows], 0, sizeof t->cells[0]);
    t->nrows++;
    return EVB_OK;
}

static __attribute__((format(printf, 3, 4))) void s_cell(table_t *t, size_t col,
                                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->cells[t->nrows - 1][col], S_CELL, fmt, ap);
    va_end(ap);
    size_t n = strlen(t->cells[t->nrows - 1][col]);
    if (n > t->width[col]) t->width[col] = n;
}

/* Print row r of t. Columns whose bit is set in right_mask are numbers
 * (right-aligned); row 0 is the header (bold); colour() may give an
 * attribute for a body cell. */
typedef const char *(*colour_fn)(const cli_t *cli, size_t col, const char *cell);

static void s_row_print(cli_t *cli, const table_t *t, size_t r, const char *indent,
                        unsigned right_mask, colour_fn colour)
{
    cli_printf(cli, "%s", indent);
    for (size_t c = 0; c < t->ncols; c++) {
        const char *cell = t->cells[r][c];
        const char *on = r == 0 ? cli_bold(cli) : colour ? colour(cli, c, cell) : "";
        const char *off = on[0] ? cli_reset(cli) : "";
        int w = (int)t->width[c];
        if (right_mask & (1u << c))
            cli_printf(cli, "%s%s%*s%s", c ? "  " : "", on, w, cell, off);
        else /* the last column is not padded: no trailing blanks */
            cli_printf(cli, "%s%s%-*s%s", c ? "  " : "", on, c + 1 == t->ncols ? 0 : w,
                       cell, off);
    }
    cli_printf(cli, "\n");
}

/* ---- status ---- */

/* Every value is printed one way, whichever table or line it is in: counts
 * grouped by thousands (cli_group), sizes in binary units (cli_bytes),
 * durations as evb_duration_format writes them (whole seconds from one
 * second on, so that an age reads "12s" and not "12043ms"), and "-" for a
 * field the reply does not have: a program that does not report a thing
 * must not seem to say it is zero. */

#define S_DASH "-"

/* A count: grouped, or "-" when map has no integer under key. */
static const char *s_count(const msgpack_object *map, const char *key, char out[32])
{
    const msgpack_object *v = ops_get(map, key);
    if (v == NULL || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return S_DASH;
    return cli_group(v->via.u64, out);
}

/* A duration of ms milliseconds, "-" when negative (unknown). */
static const char *s_dur(int64_t ms, char out[32])
{
    if (ms < 0) return S_DASH;
    uint64_t u = (uint64_t)ms;
    return evb_duration_format(u < 1000 ? u : u - u % 1000, out);
}

/* A duration field in ms (an integer), "-" when absent or negative. */
static const char *s_dur_field(const msgpack_object *map, const char *key, char out[32])
{
    return s_dur(ops_get(map, key) == NULL ? -1 : ops_i64(map, key, -1), out);
}

/* A string field; "-" when absent, not a string, or empty. */
static const char *s_text(const msgpack_object *map, const char *key, char *out,
                          size_t cap)
{
    const char *s = ops_str(map, key, out, cap, S_DASH);
    return s[0] ? s : S_DASH;
}

static void s_kv(cli_t *cli, const char *label, const char *value)
{
    cli_printf(cli, "%-18s %s\n", label, value);
}

static bool s_feed_bad(const msgpack_object *f)
{
    char st[32];
    const char *s = ops_str(f, "state", st, sizeof st, "");
    return strcmp(s, "stalled") == 0 || strcmp(s, "stopped") == 0;
}

/* Is a feed of list (an array, or NULL) stalled or stopped? */
static bool s_any_bad(const msgpack_object *list)
{
    for (uint32_t i = 0; list != NULL && i < list->via.array.size; i++)
        if (s_feed_bad(&list->via.array.ptr[i])) return true;
    return false;
}

/* The state an operator acts on: the feed's own, except that a feed that
 * would move (live, catching up) but whose publisher is not heard from is
 * "lost": nothing moves until the publisher is back. */
static const char *s_feed_state(const msgpack_object *f, char *out, size_t cap)
{
    const char *s = s_text(f, "state", out, cap);
    const msgpack_object *up = ops_get(f, "publisher_up");
    bool lost = up != NULL && up->type == MSGPACK_OBJECT_BOOLEAN && !up->via.boolean;
    if (lost && (strcmp(s, "live") == 0 || strcmp(s, "catching-up") == 0)) return "lost";
    return s;
}

/* How long ago the feed's last change was (its newest history entry, on
 * the service's wall clock), "-" without a history. */
static const char *s_since(const msgpack_object *f, char out[32])
{
    const msgpack_object *h = ops_get(f, "history");
    if (h == NULL || h->type != MSGPACK_OBJECT_ARRAY || h->via.array.size == 0)
        return S_DASH;
    const msgpack_object *last = &h->via.array.ptr[h->via.array.size - 1];
    int64_t at = ops_i64(last, "at_ms", -1);
    if (at < 0) return S_DASH;
    return s_dur(evb_now_us() / 1000 - at, out);
}

/* The lag in time: lag_seconds, nil while the oldest missing event has not
 * come yet. */
static const char *s_lag_time(const msgpack_object *f, char out[32])
{
    const msgpack_object *v = ops_get(f, "lag_seconds");
    if (v == NULL) return S_DASH;
    double s;
    if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64)
        s = v->via.f64;
    else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        s = (double)v->via.u64;
    else
        return S_DASH;
    return s >= 0 && s < 1e12 ? s_dur((int64_t)(s * 1000.0), out) : S_DASH;
}

/* A publisher's name in a feed row: the service its heartbeats name, or its
 * endpoints until one came. */
static const char *s_pub_name(const msgpack_object *f, char *out, size_t cap)
{
    const char *s = ops_str(f, "publisher_service", out, cap, "");
    return s[0] ? s : ops_str(f, "publisher", out, cap, "?");
}

static const char *s_state_colour(const cli_t *cli, size_t col, const char *cell)
{
    if (col != 2) return "";
    if (strcmp(cell, "live") == 0) return cli_green(cli);
    if (strcmp(cell, "stalled") == 0 || strcmp(cell, "stopped") == 0 ||
        strcmp(cell, "lost") == 0)
        return cli_red(cli);
    return "";
}

/* Numeric columns of the feeds table: all but publisher, category, state. */
#define S_FEED_NUMS 0x7ff8u

/* One row of the feeds table for feed f. */
static void s_feed_row(table_t *t, const msgpack_object *f)
{
    char buf[S_CELL], n[32];
    s_cell(t, 0, "%s", s_pub_name(f, buf, sizeof buf));
    s_cell(t, 1, "%s", s_text(f, "category", buf, sizeof buf));
    s_cell(t, 2, "%s", s_feed_state(f, buf, sizeof buf));
    s_cell(t, 3, "%s", s_since(f, n));
    s_cell(t, 4, "%s", s_count(f, "applied", n));
    s_cell(t, 5, "%s", s_count(f, "head", n));
    s_cell(t, 6, "%s", s_count(f, "lag", n));
    s_cell(t, 7, "%s", s_lag_time(f, n));
    s_cell(t, 8, "%s", s_dur_field(f, "heartbeat_age_ms", n));
    s_cell(t, 9, "%s", s_count(f, "applied_events", n));
    s_cell(t, 10, "%s", s_count(f, "duplicates", n));
    s_cell(t, 11, "%s", s_count(f, "gaps", n));
    s_cell(t, 12, "%s", s_count(f, "pages", n));
    s_cell(t, 13, "%s", s_count(f, "bad_frames", n));
    s_cell(t, 14, "%s", s_count(f, "refusals", n));
}

/* Each publisher once, under the table: its endpoints, log and whether it
 * is heard from (the rows name it by its service alone). */
static void s_print_publishers(cli_t *cli, const msgpack_object_array *a)
{
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *f = &a->ptr[i];
        char pub[2 * EVB_BUS_MAX_ENDPOINT + 2], other[sizeof pub];
        ops_str(f, "publisher", pub, sizeof pub, "?");
        bool seen = false;
        for (uint32_t j = 0; j < i && !seen; j++)
            seen = strcmp(ops_str(&a->ptr[j], "publisher", other, sizeof other, "?"),
                          pub) == 0;
        if (seen) continue;
        char svc[EVB_MAX_SERVICE_LEN + 1], lid[EVB_ID_HEX_LEN + 1], n[32];
        const msgpack_object *up = ops_get(f, "publisher_up");
        const char *heard = up == NULL || up->type != MSGPACK_OBJECT_BOOLEAN ? S_DASH
                            : up->via.boolean                                ? "up"
                                                                             : "lost";
        ops_str(f, "publisher_service", svc, sizeof svc, "");
        cli_printf(cli, "  %s%s%s, log %s, %s", svc, svc[0] ? ": " : "", pub,
                   s_text(f, "log_id", lid, sizeof lid), heard);
        if (ops_u64(f, "handshake_refusals", 0) > 0)
            cli_printf(cli, ", %s handshakes refused",
                       s_count(f, "handshake_refusals", n));
        cli_printf(cli, "\n");
    }
}

/* A subscriber's feeds (or views): one row each, the publishers they
 * follow, then the reasons of those stalled or stopped. */
static int s_print_feeds(cli_t *cli, const msgpack_object *feeds)
{
    const msgpack_object_array *a = &feeds->via.array;
    if (a->size == 0) {
        cli_printf(cli, "  none\n");
        return EVB_OK;
    }
    static const char *const head[] = {"PUBLISHER", "CATEGORY", "STATE",  "SINCE",
                                       "APPLIED",   "HEAD",     "LAG",    "LAG_TIME",
                                       "HB_AGE",    "EVENTS",   "DUPS",   "GAPS",
                                       "PAGES",     "BAD",      "REFUSED"};
    const size_t ncols = sizeof head / sizeof head[0];
    table_t t = {.ncols = ncols};
    int rc = EVB_OK;
    for (uint32_t i = 0; i <= a->size && rc == EVB_OK; i++) {
        if ((rc = s_table_row(&t)) != EVB_OK) break;
        if (i == 0)
            for (size_t c = 0; c < ncols; c++)
                s_cell(&t, c, "%s", head[c]);
        else
            s_feed_row(&t, &a->ptr[i - 1]);
    }
    if (rc != EVB_OK) {
        free(t.cells);
        return rc;
    }
    for (size_t r = 0; r < t.nrows; r++)
        s_row_print(cli, &t, r, "  ", S_FEED_NUMS, r == 0 ? NULL : s_state_colour);
    free(t.cells);
    s_print_publishers(cli, a);
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *f = &a->ptr[i];
        char reason[EVB_ERR_MSG_LEN], cat[EVB_MAX_CATEGORY_LEN + 1], st[32], pub[S_CELL];
        if (ops_str(f, "reason", reason, sizeof reason, "")[0] == '\0') continue;
        cli_printf(cli, "  %s%s/%s %s%s: %s\n", s_feed_bad(f) ? cli_red(cli) : "",
                   s_pub_name(f, pub, sizeof pub),
                   ops_str(f, "category", cat, sizeof cat, "?"),
                   ops_str(f, "state", st, sizeof st, "?"),
                   s_feed_bad(f) ? cli_reset(cli) : "", reason);
    }
    return EVB_OK;
}

/* The program and its log: the same lines for every program, "-" where
 * its reply has nothing (a mirror has no commands, serve no uptime). */
static void s_print_header(cli_t *cli, const msgpack_object *root)
{
    char s[EVB_MAX_SERVICE_LEN + EVB_ID_HEX_LEN + 8], n[32];
    s_kv(cli, "service", s_text(root, "service", s, sizeof s));
    s_kv(cli, "program", s_text(root, "program", s, sizeof s));
    s_kv(cli, "state", s_text(root, "state", s, sizeof s));
    s_kv(cli, "uptime", s_dur_field(root, "uptime_ms", n));
    s_kv(cli, "log id", s_text(root, "log_id", s, sizeof s));
    s_kv(cli, "head", s_count(root, "head", n));
    s_kv(cli, "synced", s_count(root, "synced", n));
    s_kv(cli, "indexed", s_count(root, "indexed", n));
    s_kv(cli, "published", s_count(root, "published", n));
    s_kv(cli, "sync", s_text(root, "sync", s, sizeof s));
    cli_printf(cli, "\n");
    s_kv(cli, "commands", s_count(root, "commands", n));
    s_kv(cli, "rejected", s_count(root, "rejected", n));
    s_kv(cli, "retries answered", s_count(root, "retries_answered", n));
}

/* A service's memory: its aggregate cache and heap trims. */
static void s_print_memory(cli_t *cli, const msgpack_object *root)
{
    const msgpack_object *c = ops_get(root, "aggregate_cache");
    const msgpack_object *h = ops_get(root, "heap_trims");
    if (c == NULL && h == NULL) return;
    char a[32], b[32], line[160];
    cli_printf(cli, "\n");
    if (c != NULL) {
        const msgpack_object *bytes = ops_get(c, "bytes"), *max = ops_get(c, "max_bytes");
        char x[32], y[32];
        snprintf(line, sizeof line, "%s aggregates, %s of %s", s_count(c, "entries", a),
                 bytes && bytes->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                     ? cli_bytes(bytes->via.u64, x)
                     : S_DASH,
                 max && max->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                     ? cli_bytes(max->via.u64, y)
                     : S_DASH);
        s_kv(cli, "aggregate cache", line);
        snprintf(line, sizeof line, "%s (%s aggregates)", s_count(c, "evictions", a),
                 s_count(c, "evicted", b));
        s_kv(cli, "evictions", line);
    }
    if (h != NULL) {
        snprintf(line, sizeof line, "%s, the longest %s us", s_count(h, "count", a),
                 s_count(h, "us_max", b));
        s_kv(cli, "heap trims", line);
    }
}

/* What a service's beacon listener found ("off" without discovery). */
static void s_print_beacons(cli_t *cli, const msgpack_object *root)
{
    const msgpack_object *b = ops_get(root, "beacons");
    if (b == NULL) return;
    if (b->type != MSGPACK_OBJECT_MAP) {
        s_kv(cli, "beacons", "off");
        return;
    }
    const msgpack_object *found = ops_get(b, "found");
    uint32_t nf =
        found && found->type == MSGPACK_OBJECT_ARRAY ? found->via.array.size : 0;
    const msgpack_object *ann = ops_get(b, "announcing");
    char iface[64], line[160], n[32];
    snprintf(line, sizeof line, "interface %s, %s, %s found",
             s_text(b, "iface", iface, sizeof iface),
             ann && ann->type == MSGPACK_OBJECT_BOOLEAN && ann->via.boolean
                 ? "announcing"
                 : "not announcing",
             cli_group(nf, n));
    s_kv(cli, "beacons", line);
    for (uint32_t i = 0; i < nf; i++) {
        const msgpack_object *e = &found->via.array.ptr[i];
        char svc[EVB_MAX_SERVICE_LEN + 1], ep[EVB_BUS_MAX_ENDPOINT],
            lid[EVB_ID_HEX_LEN + 1];
        char from[64], age[32];
        cli_printf(cli, "  %s: %s (log %s) from %s, %s beacons, the last %s ago\n",
                   s_text(e, "service", svc, sizeof svc), s_text(e, "pub", ep, sizeof ep),
                   s_text(e, "log_id", lid, sizeof lid),
                   s_text(e, "from", from, sizeof from), s_count(e, "beacons", n),
                   s_dur_field(e, "age_ms", age));
    }
}

/* A section title, bold. */
static void s_title(cli_t *cli, const char *title)
{
    cli_printf(cli, "\n%s%s%s\n", cli_bold(cli), title, cli_reset(cli));
}

/* A subscriber (a service, a mirror): the header, its memory and beacons,
 * then its feeds, then a service's views. */
static int s_print_subscriber(cli_t *cli, const msgpack_object *root,
                              const msgpack_object *feeds, const msgpack_object *views)
{
    s_print_header(cli, root);
    s_print_memory(cli, root);
    s_print_beacons(cli, root);
    s_title(cli, "feeds");
    int rc = s_print_feeds(cli, feeds);
    if (rc == EVB_OK && views != NULL) {
        s_title(cli, "views");
        rc = s_print_feeds(cli, views);
    }
    return rc;
}

/* A publisher's log (evbus serve): the header, then its categories. */
static int s_print_log(cli_t *cli, const msgpack_object *root)
{
    s_print_header(cli, root);
    const msgpack_object *cats = ops_get(root, "categories");
    if (cats == NULL || cats->type != MSGPACK_OBJECT_ARRAY) return EVB_OK;
    s_title(cli, "categories");
    if (cats->via.array.size == 0) {
        cli_printf(cli, "  none\n");
        return EVB_OK;
    }
    table_t t = {.ncols = 3};
    int rc = EVB_OK;
    for (uint32_t i = 0; i <= cats->via.array.size && rc == EVB_OK; i++) {
        if ((rc = s_table_row(&t)) != EVB_OK) break;
        if (i == 0) {
            s_cell(&t, 0, "CATEGORY");
            s_cell(&t, 1, "HEAD");
            s_cell(&t, 2, "COUNT");
            continue;
        }
        const msgpack_object *c = &cats->via.array.ptr[i - 1];
        char name[EVB_MAX_CATEGORY_LEN + 1], n[32];
        s_cell(&t, 0, "%s", s_text(c, "name", name, sizeof name));
        s_cell(&t, 1, "%s", s_count(c, "head", n));
        s_cell(&t, 2, "%s", s_count(c, "count", n));
    }
    if (rc == EVB_OK)
        for (size_t r = 0; r < t.nrows; r++)
            s_row_print(cli, &t, r, "  ", 0x6u, NULL);
    free(t.cells);
    return rc;
}

int cmd_status(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus status");
    bool json = false;
    uint64_t timeout_ms = OPS_DEFAULT_TIMEOUT_MS;
    const char *cert = NULL, *server_key = NULL; /* CURVE (README.md, "Security") */
    const char *context = NULL;                  /* context.h */
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, NULL,
         "print the service's reply as one JSON object"},
        {"timeout", CLI_DUR_MS, &timeout_ms, NULL, "DURATION",
         "wait at most this long for the reply (default 3s)"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "CURVE: our certificate (NAME_secret of `evbus cert new`)"},
        {"server-key", CLI_STR, &server_key, NULL, "KEY|FILE",
         "CURVE: the service's public key, or its public certificate"},
        {"context", CLI_STR, &context, NULL, "NAME", CTX_OPT_HELP},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS),
        "CMD_EP|--context NAME [--json] [--timeout DURATION] [--cert FILE --server-key KEY]",
        "Ask the service whose command socket is CMD_EP (evbus serve --cmd, evbus\n"
        "mirror --cmd, ...) for its status. Every program gets the same header:\n"
        "service, program, state, uptime, log id, head, synced, indexed,\n"
        "published, sync, then the command counters (commands, rejected, retries\n"
        "answered); \"-\" marks what its reply does not have. A service adds its\n"
        "aggregate cache, heap trims and beacons. A subscriber (a service, a\n"
        "mirror) then shows each feed, a row each: its publisher (by service name,\n"
        "its endpoints and log under the table), state (catching-up, live,\n"
        "stalled, stopped, or lost while its publisher is not heard from), since\n"
        "when, position, the publisher's head, lag in events and in time, the age\n"
        "of the last heartbeat and its counters; then why a feed is stalled or\n"
        "stopped; a service's views the same way. A publisher (serve) shows its\n"
        "categories. Counts are grouped by thousands, durations read 250ms, 12s,\n"
        "2m13s.",
        "--json fields: program (service, serve or mirror), service, log_id, head;\n"
        "(a service) uptime_ms, state, synced, published, commands, rejected,\n"
        "retries_answered, views, beacons, aggregate_cache {entries, bytes,\n"
        "max_bytes, evictions, evicted}, heap_trims {count, us_max}; (a\n"
        "subscriber) feeds: [{publisher,\n"
        "publisher_service, publisher_up, category, log_id, state, reason, applied,\n"
        "applied_events, head, lag, lag_seconds, duplicates, gaps, pages,\n"
        "bad_frames, refusals, handshake_refusals, heartbeat_age_ms, hole?,\n"
        "history: [{at_ms, what, why}]}]; (serve) synced, indexed, published,\n"
        "sync, categories: [{name, head, count}].\n"
        "Exit code 0 when the status was printed, 1 when it was printed and a feed\n"
        "is stalled or stopped, 2 for a bad endpoint, 4 when the service did not\n"
        "answer within --timeout (down, unreachable or busy).\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 0, 1, pos, &npos);
    if (rc >= 0) return rc;
    if (!s_timeout_ok(timeout_ms))
        return cli_usage_error(&cli, "--timeout: expected 1ms..%us", OPS_MAX_TIMEOUT_MS / 1000);
    int tmo = (int)timeout_ms;
    const char *ep = npos > 0 ? pos[0] : NULL;
    if ((rc = ctx_cmd_socket(&cli, context, "CMD_EP", &ep, &cert, &server_key)) >= 0)
        return rc;
    if ((rc = ops_check_endpoint(&cli, ep)) >= 0) return rc;
    if ((cert == NULL) != (server_key == NULL))
        return cli_usage_error(&cli, "--cert and --server-key go together");
    const evb_curve curve = {.cert_file = cert, .server_key = server_key};

    evb_err err = {0};
    evb_buf out = {0}, js = {0};
    ops_reply r;
    if (evb_cmd_call(&(evb_cmd_opts){.endpoint = ep, .curve = cert ? &curve : NULL},
                     "status", NULL, 0, tmo, &out, &err) != EVB_OK) {
        s_call_error(&cli, ep, &err);
        evb_buf_free(&out);
        return cli_finish(&cli, CLI_EXIT_RUNTIME);
    }
    rc = CLI_EXIT_OK;
    if (ops_reply_parse(&r, out.data, out.len, &err) != EVB_OK) {
        s_call_error(&cli, ep, &err);
        rc = CLI_EXIT_RUNTIME;
    }
    const msgpack_object *feeds = rc == CLI_EXIT_OK ? ops_get(r.root, "feeds") : NULL;
    const msgpack_object *views = rc == CLI_EXIT_OK ? ops_get(r.root, "views") : NULL;
    if (feeds != NULL && feeds->type != MSGPACK_OBJECT_ARRAY) feeds = NULL;
    if (views != NULL && views->type != MSGPACK_OBJECT_ARRAY) views = NULL;
    bool bad = s_any_bad(feeds) || s_any_bad(views);
    if (rc == CLI_EXIT_OK && json) {
        if (evb_msgpack_to_json(out.data, out.len, &js, &err) != EVB_OK ||
            evb_buf_append(&js, "\n", 1, &err) != EVB_OK) {
            s_call_error(&cli, ep, &err);
            rc = CLI_EXIT_RUNTIME;
        } else {
            cli_write(&cli, js.data, js.len);
        }
    } else if (rc == CLI_EXIT_OK) {
        int prc = feeds != NULL ? s_print_subscriber(&cli, r.root, feeds, views)
                                : s_print_log(&cli, r.root);
        if (prc != EVB_OK) {
            cli_error(&cli, "%s", evb_strerror(prc));
            rc = CLI_EXIT_RUNTIME;
        }
    }
    if (rc == CLI_EXIT_OK && bad) rc = CLI_EXIT_PROBLEMS;
    ops_reply_free(&r);
    evb_buf_free(&out);
    evb_buf_free(&js);
    return cli_finish(&cli, rc);
}

/* ---- feed retry | skip ---- */

static int s_feed_action(cli_t *cli, int argc, char **argv, bool skip)
{
    uint64_t timeout_ms = OPS_DEFAULT_TIMEOUT_MS;
    const char *cert = NULL, *server_key = NULL; /* CURVE (README.md, "Security") */
    const char *context = NULL;                  /* context.h */
    const cli_opt opts[] = {
        {"timeout", CLI_DUR_MS, &timeout_ms, NULL, "DURATION",
         "wait at most this long for the reply (default 3s)"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "CURVE: our certificate (NAME_secret of `evbus cert new`)"},
        {"server-key", CLI_STR, &server_key, NULL, "KEY|FILE",
         "CURVE: the subscriber's public key, or its public certificate"},
        {"context", CLI_STR, &context, NULL, "NAME", CTX_OPT_HELP},
        {0},
    };
    const cli_usage retry_usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS),
        "[CMD_EP] [PUBLISHER/]CATEGORY [--timeout DURATION] [--cert FILE --server-key KEY]\n"
        "       [--context NAME]",
        "Ask the subscriber at CMD_EP to try a stalled feed again: its attempt\n"
        "count is reset and the event that stalled it is offered to the handler\n"
        "again (which may stall it again).",
        "PUBLISHER is the feed's \"PUB_EP,CATCHUP_EP\" or just PUB_EP, as `evbus\n"
        "status` shows it; without it, the first feed of CATEGORY is meant. The\n"
        "split is at the last '/', so endpoints with \"//\" are fine:\n"
        "  evbus feed retry ipc:///run/m.cmd ipc:///run/p.pub/show\n"
        "Without CMD_EP, the cmd of --context NAME (or EVBUS_CONTEXT) is used.\n"
        "Exit code 0 when done, 1 when the subscriber refused (no such feed, or\n"
        "the feed is not stalled; its message is printed), 2 for bad arguments,\n"
        "4 when it did not answer within --timeout.\n"};
    const cli_usage skip_usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS),
        "[CMD_EP] [PUBLISHER/]CATEGORY SEQ [--timeout DURATION] [--cert FILE --server-key "
        "KEY]\n"
        "       [--context NAME]",
        "Ask the subscriber at CMD_EP to skip a stalled feed's events up to SEQ\n"
        "(a sequence of the publisher's log) and go on after it. The skip is\n"
        "recorded in the subscriber's store with the checkpoint that passes it;\n"
        "the skipped events are never applied.",
        "PUBLISHER is the feed's \"PUB_EP,CATCHUP_EP\" or just PUB_EP, as `evbus\n"
        "status` shows it; without it, the first feed of CATEGORY is meant. The\n"
        "split is at the last '/'. SEQ is usually the one in the stall reason.\n"
        "Without CMD_EP, the cmd of --context NAME (or EVBUS_CONTEXT) is used.\n"
        "Exit code 0 when done, 1 when the subscriber refused (no such feed, the\n"
        "feed is not stalled, or it is already past SEQ; its message is printed),\n"
        "2 for bad arguments, 4 when it did not answer within --timeout.\n"};
    const char *pos[3] = {NULL, NULL, NULL};
    size_t npos;
    size_t need = skip ? 3 : 2;
    /* One argument fewer: CMD_EP comes from the context. */
    int rc = cli_parse(cli, argc, argv, opts, skip ? &skip_usage : &retry_usage, need - 1,
                       need, pos, &npos);
    if (rc >= 0) return rc;
    if (!s_timeout_ok(timeout_ms))
        return cli_usage_error(cli, "--timeout: expected 1ms..%us", OPS_MAX_TIMEOUT_MS / 1000);
    int tmo = (int)timeout_ms;
    const char *ep = npos == need ? pos[0] : NULL;
    if ((rc = ctx_cmd_socket(cli, context, "CMD_EP", &ep, &cert, &server_key)) >= 0)
        return rc;
    if (npos < need) { /* the arguments after CMD_EP, one place earlier */
        pos[2] = pos[1];
        pos[1] = pos[0];
    }
    char pub[2 * EVB_BUS_MAX_ENDPOINT + 2], cat[EVB_MAX_CATEGORY_LEN + 1];
    evb_err err = {0};
    if (ops_split_feed(pos[1], pub, sizeof pub, cat, sizeof cat) != EVB_OK ||
        evb_check_category(cat, &err) != EVB_OK)
        return cli_usage_error(cli, "'%s': expected [PUBLISHER/]CATEGORY%s%s", pos[1],
                               err.msg[0] ? ": " : "", err.msg);
    uint64_t seq = 0;
    if (skip && (cli_parse_u64(pos[2], &seq) != EVB_OK || seq == 0))
        return cli_usage_error(cli, "SEQ: expected a sequence >= 1, got '%s'", pos[2]);
    if ((rc = ops_check_endpoint(cli, ep)) >= 0) return rc;
    if ((cert == NULL) != (server_key == NULL))
        return cli_usage_error(cli, "--cert and --server-key go together");
    const evb_curve curve = {.cert_file = cert, .server_key = server_key};

    evb_buf args = {0}, out = {0};
    ops_w w;
    ops_w_init(&w, &args);
    msgpack_pack_map(&w.pk, 1u + (pub[0] ? 1u : 0u) + (skip ? 1u : 0u));
    ops_w_kv_str(&w, "category", cat);
    if (pub[0]) ops_w_kv_str(&w, "publisher", pub);
    if (skip) ops_w_kv_u64(&w, "seq", seq);
    if (w.rc != EVB_OK) {
        cli_error(cli, "%s", evb_strerror(w.rc));
        evb_buf_free(&args);
        return CLI_EXIT_RUNTIME;
    }
    int code =
        evb_cmd_call(&(evb_cmd_opts){.endpoint = ep, .curve = cert ? &curve : NULL},
                     skip ? "skip" : "retry", args.data, args.len, tmo, &out, &err);
    rc = ops_exit_for(code);
    if (code == EVB_OK) {
        if (skip)
            cli_printf(cli, "%s: skipping %s up to %" PRIu64 "\n", ep, pos[1], seq);
        else
            cli_printf(cli, "%s: retrying %s\n", ep, pos[1]);
    } else if (rc == CLI_EXIT_PROBLEMS) {
        cli_error(cli, "%s refused: %s", ep, err.msg);
    } else {
        s_call_error(cli, ep, &err);
    }
    evb_buf_free(&args);
    evb_buf_free(&out);
    return cli_finish(cli, rc);
}

static int s_retry(cli_t *cli, int argc, char **argv)
{
    return s_feed_action(cli, argc, argv, false);
}

static int s_skip(cli_t *cli, int argc, char **argv)
{
    return s_feed_action(cli, argc, argv, true);
}

static const cli_verb s_verbs[] = {
    {"retry", s_retry, "try a stalled feed again"},
    {"skip", s_skip, "skip a stalled feed's events up to a sequence"},
};

int cmd_feed(int argc, char **argv)
{
    return cli_dispatch("evbus feed", s_verbs, sizeof s_verbs / sizeof s_verbs[0],
                        "Usage: evbus feed VERB CMD_EP [PUBLISHER/]CATEGORY [SEQ]\n\n"
                        "Act on a stalled feed of a running subscriber (evbus mirror --cmd,\n"
                        "or a service) through its command socket.\n",
                        argc, argv);
}
