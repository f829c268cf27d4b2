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
 * The status reply is printed the way it comes: a subscriber's answer has
 * "feeds" (one table row per feed), a publisher's has "head" and
 * "categories" (a summary and a table). --json prints the reply map itself
 * as one JSON object, so fields added to a service's status show up
 * without a change here.
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

#define S_COLS 13
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

static const char *s_state_colour(const cli_t *cli, size_t col, const char *cell)
{
    if (col != 1) return "";
    if (strcmp(cell, "live") == 0) return cli_green(cli);
    if (strcmp(cell, "stalled") == 0 || strcmp(cell, "stopped") == 0) return cli_red(cli);
    return "";
}

/* ---- status ---- */

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

/* Numeric columns of the feeds table: all but category and state. */
#define S_FEED_NUMS 0xffcu

/* A subscriber's feeds, grouped by publisher, then the reasons. */
static int s_print_feeds(cli_t *cli, const msgpack_object *feeds)
{
    const msgpack_object_array *a = &feeds->via.array;
    if (a->size == 0) {
        cli_printf(cli, "no feeds\n");
        return EVB_OK;
    }
    static const char *const head[] = {"CATEGORY", "STATE",  "APPLIED", "HEAD",
                                       "LAG",      "HB_AGE", "EVENTS",  "DUPS",
                                       "GAPS",     "PAGES",  "BAD",     "REFUSED"};
    const size_t ncols = sizeof head / sizeof head[0];
    table_t t = {.ncols = ncols};
    int rc = EVB_OK;
    /* One table for all rows so the columns line up across publishers. */
    for (uint32_t i = 0; i <= a->size && rc == EVB_OK; i++) {
        if ((rc = s_table_row(&t)) != EVB_OK) break;
        if (i == 0) {
            for (size_t c = 0; c < ncols; c++)
                s_cell(&t, c, "%s", head[c]);
            continue;
        }
        const msgpack_object *f = &a->ptr[i - 1];
        char buf[S_CELL];
        s_cell(&t, 0, "%s", ops_str(f, "category", buf, sizeof buf, "?"));
        s_cell(&t, 1, "%s", ops_str(f, "state", buf, sizeof buf, "?"));
        s_cell(&t, 2, "%" PRIu64, ops_u64(f, "applied", 0));
        s_cell(&t, 3, "%" PRIu64, ops_u64(f, "head", 0));
        s_cell(&t, 4, "%" PRIu64, ops_u64(f, "lag", 0));
        int64_t age = ops_i64(f, "heartbeat_age_ms", -1);
        if (age < 0)
            s_cell(&t, 5, "-");
        else
            s_cell(&t, 5, "%" PRId64 "ms", age);
        s_cell(&t, 6, "%" PRIu64, ops_u64(f, "applied_events", 0));
        s_cell(&t, 7, "%" PRIu64, ops_u64(f, "duplicates", 0));
        s_cell(&t, 8, "%" PRIu64, ops_u64(f, "gaps", 0));
        s_cell(&t, 9, "%" PRIu64, ops_u64(f, "pages", 0));
        s_cell(&t, 10, "%" PRIu64, ops_u64(f, "bad_frames", 0));
        s_cell(&t, 11, "%" PRIu64, ops_u64(f, "refusals", 0));
    }
    if (rc != EVB_OK) {
        free(t.cells);
        return rc;
    }
    /* The header once, then each publisher's name above its rows. */
    s_row_print(cli, &t, 0, "  ", S_FEED_NUMS, NULL);
    char prev[2 * EVB_BUS_MAX_ENDPOINT + 2] = "";
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *f = &a->ptr[i];
        char pub[sizeof prev];
        ops_str(f, "publisher", pub, sizeof pub, "?");
        if (i == 0 || strcmp(pub, prev) != 0) {
            char lid[EVB_ID_HEX_LEN + 1], svc[EVB_MAX_SERVICE_LEN + 2];
            ops_str(f, "publisher_service", svc, sizeof svc - 1, "");
            if (svc[0] != '\0') strcat(svc, " ");
            cli_printf(cli, "%s%s%s%s  log %s\n", cli_bold(cli), svc, pub, cli_reset(cli),
                       ops_str(f, "log_id", lid, sizeof lid, "?"));
            snprintf(prev, sizeof prev, "%s", pub);
        }
        s_row_print(cli, &t, i + 1, "  ", S_FEED_NUMS, s_state_colour);
    }
    free(t.cells);
    bool any = false;
    for (uint32_t i = 0; i < a->size; i++) {
        const msgpack_object *f = &a->ptr[i];
        char reason[EVB_ERR_MSG_LEN], cat[EVB_MAX_CATEGORY_LEN + 1], st[32];
        if (ops_str(f, "reason", reason, sizeof reason, "")[0] == '\0') continue;
        if (!any) cli_printf(cli, "\n");
        any = true;
        cli_printf(cli, "%s%s %s%s: %s\n", s_feed_bad(f) ? cli_red(cli) : "",
                   ops_str(f, "category", cat, sizeof cat, "?"),
                   ops_str(f, "state", st, sizeof st, "?"),
                   s_feed_bad(f) ? cli_reset(cli) : "", reason);
    }
    return EVB_OK;
}

/* The program's own fields, those present, one a line in this order;
 * numbers grouped by thousands. */
static void s_print_fields(cli_t *cli, const msgpack_object *root)
{
    char buf[EVB_MAX_SERVICE_LEN + EVB_ID_HEX_LEN + 8];
    static const char *const fields[] = {
        "service", "program", "state",    "log_id",   "head",
        "synced",  "indexed", "published", "sync",    "commands",
        "rejected", "retries_answered"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const msgpack_object *v = ops_get(root, fields[i]);
        if (v == NULL) continue;
        if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            char g[32];
            cli_printf(cli, "%-17s %s\n", fields[i], cli_group(v->via.u64, g));
        } else {
            cli_printf(cli, "%-17s %s\n", fields[i],
                       ops_str(root, fields[i], buf, sizeof buf, "?"));
        }
    }
}

/* A publisher's log: the summary, then its categories. */
static int s_print_log(cli_t *cli, const msgpack_object *root)
{
    s_print_fields(cli, root);
    const msgpack_object *cats = ops_get(root, "categories");
    if (cats == NULL || cats->type != MSGPACK_OBJECT_ARRAY) return EVB_OK;
    if (cats->via.array.size == 0) {
        cli_printf(cli, "\nno categories\n");
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
        char name[EVB_MAX_CATEGORY_LEN + 1];
        s_cell(&t, 0, "%s", ops_str(c, "name", name, sizeof name, "?"));
        s_cell(&t, 1, "%" PRIu64, ops_u64(c, "head", 0));
        s_cell(&t, 2, "%" PRIu64, ops_u64(c, "count", 0));
    }
    if (rc == EVB_OK) {
        cli_printf(cli, "\n");
        for (size_t r = 0; r < t.nrows; r++)
            s_row_print(cli, &t, r, "", 0x6u, NULL);
    }
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
        {"timeout", CLI_U64, &timeout_ms, NULL, "MS",
         "wait at most MS ms for the reply (default 3000)"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "CURVE: our certificate (NAME_secret of `evbus cert new`)"},
        {"server-key", CLI_STR, &server_key, NULL, "KEY|FILE",
         "CURVE: the service's public key, or its public certificate"},
        {"context", CLI_STR, &context, NULL, "NAME", CTX_OPT_HELP},
        {0},
    };
    const cli_usage usage = {
        "CMD_EP|--context NAME [--json] [--timeout MS] [--cert FILE --server-key KEY]",
        "Ask the service whose command socket is CMD_EP (evbus serve --cmd, evbus\n"
        "mirror --cmd, ...) for its status. A service shows its name, state, log,\n"
        "head and command counters; a subscriber (a service, a mirror) each feed:\n"
        "state (catching-up, live, stalled, stopped), position, the publisher's\n"
        "head, lag, the age of the last heartbeat and its counters, then why a\n"
        "feed is stalled or stopped, and a service's views the same way. A\n"
        "publisher shows its log: head, synced, indexed, published, sync policy\n"
        "and categories. With --context NAME (-C, or EVBUS_CONTEXT) CMD_EP and the\n"
        "CURVE flags may be left out: the saved context's are used (`evbus context`).",
        "--json fields: program (service, serve or mirror), service, log_id, head;\n"
        "(a service) state, synced, published, commands, rejected,\n"
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
        return cli_usage_error(&cli, "--timeout: expected 1..%u ms", OPS_MAX_TIMEOUT_MS);
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
    if (views != NULL && (views->type != MSGPACK_OBJECT_ARRAY || views->via.array.size == 0))
        views = NULL;
    bool bad = s_any_bad(feeds) || s_any_bad(views);
    if (rc == CLI_EXIT_OK && json) {
        if (evb_msgpack_to_json(out.data, out.len, &js, &err) != EVB_OK ||
            evb_buf_append(&js, "\n", 1, &err) != EVB_OK) {
            s_call_error(&cli, ep, &err);
            rc = CLI_EXIT_RUNTIME;
        } else {
            cli_write(&cli, js.data, js.len);
        }
    } else if (rc == CLI_EXIT_OK && feeds != NULL) {
        /* A subscriber (a service, a mirror): what it says of itself, then
         * its feeds, then a service's views. */
        s_print_fields(&cli, r.root);
        bool titled = ops_get(r.root, "service") != NULL;
        if (titled) cli_printf(&cli, "\n%sfeeds%s\n", cli_bold(&cli), cli_reset(&cli));
        int prc = s_print_feeds(&cli, feeds);
        if (prc == EVB_OK && views != NULL) {
            cli_printf(&cli, "\n%sviews%s\n", cli_bold(&cli), cli_reset(&cli));
            prc = s_print_feeds(&cli, views);
        }
        if (prc != EVB_OK) {
            cli_error(&cli, "%s", evb_strerror(prc));
            rc = CLI_EXIT_RUNTIME;
        }
    } else if (rc == CLI_EXIT_OK) {
        int prc = s_print_log(&cli, r.root);
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
        {"timeout", CLI_U64, &timeout_ms, NULL, "MS",
         "wait at most MS ms for the reply (default 3000)"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "CURVE: our certificate (NAME_secret of `evbus cert new`)"},
        {"server-key", CLI_STR, &server_key, NULL, "KEY|FILE",
         "CURVE: the subscriber's public key, or its public certificate"},
        {"context", CLI_STR, &context, NULL, "NAME", CTX_OPT_HELP},
        {0},
    };
    const cli_usage retry_usage = {
        "[CMD_EP] [PUBLISHER/]CATEGORY [--timeout MS] [--cert FILE --server-key KEY]\n"
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
        "[CMD_EP] [PUBLISHER/]CATEGORY SEQ [--timeout MS] [--cert FILE --server-key "
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
    const char *pos[3];
    size_t npos;
    size_t need = skip ? 3 : 2;
    /* One argument fewer: CMD_EP comes from the context. */
    int rc = cli_parse(cli, argc, argv, opts, skip ? &skip_usage : &retry_usage, need - 1,
                       need, pos, &npos);
    if (rc >= 0) return rc;
    if (!s_timeout_ok(timeout_ms))
        return cli_usage_error(cli, "--timeout: expected 1..%u ms", OPS_MAX_TIMEOUT_MS);
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
