/*
 * cmd_log.c: `evbus log`: look inside a service's log directory, running or not.
 *
 *   evbus log info DIR     what the log is: id, service, head, indexer, sizes
 *   evbus log cat DIR      events as readable columns or JSON lines
 *   evbus log verify DIR   the store's own consistency check
 *   evbus log tail DIR     its last events; -f PUB_EP,CATCHUP_EP: sniff
 *   (export, import: cmd_log_io.c; state, checkpoints: cmd_log_state.c)
 *
 * Every verb but import opens the store with read_only_intent and
 * EVB_INDEX_MANUAL (log_open_ro), and never with create: a tool must not
 * change the log it inspects (no indexer runs; reads merge the indexes with
 * the unindexed tail). import appends, so it opens for writing. The directory is
 * checked with stat() first so that a mistyped path is reported as missing
 * and never created. A read-only open reads through a view of the directory
 * (store/roenv.h): no byte changes, damaged or not, and it works while the
 * owning service runs (a snapshot as of the open) and with read permission
 * only.
 */
#include "cmd_log.h"
#include "filter.h"
#include "rows.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <evbus/evbus_store.h>

/* ---- shared ---- */

/* "<what>: <message>", with the directory in front unless the store's
 * message names it already (its messages usually do). */
void log_report(cli_t *cli, const char *dir, const char *what, const evb_err *err)
{
    const char *msg = err->msg[0] != '\0' ? err->msg : evb_strerror(err->code);
    if (strstr(msg, dir) != NULL)
        cli_error(cli, "%s: %s", what, msg);
    else
        cli_error(cli, "%s: %s: %s", dir, what, msg);
}

/* Open dir for reading. Returns -1 with *out set, or an exit code after
 * naming the problem. */
/* log_open_ro; with corrupt, a log LevelDB reports corrupt is not an error
 * yet: -1 with *out NULL and the reason in *corrupt. */
static int s_open_ro(cli_t *cli, const char *dir, evb_store_t **out, evb_err *corrupt);

int log_open_ro(cli_t *cli, const char *dir, evb_store_t **out)
{
    return s_open_ro(cli, dir, out, NULL);
}

static int s_open_ro(cli_t *cli, const char *dir, evb_store_t **out, evb_err *corrupt)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        cli_error(cli, "%s: %s", dir, strerror(errno));
        return CLI_EXIT_OPEN;
    }
    if (!S_ISDIR(sb.st_mode)) {
        cli_error(cli, "%s: not a directory (a log is a directory)", dir);
        return CLI_EXIT_OPEN;
    }
    evb_store_opts opts = {0};
    opts.dir = dir;
    opts.create = false;
    opts.read_only_intent = true;
    opts.index_mode = EVB_INDEX_MANUAL;
    opts.sync = EVB_SYNC_NONE;
    evb_err err = {0};
    evb_store_t *st = evb_store_open(&opts, &err);
    if (st == NULL && corrupt != NULL && err.code == EVB_ECORRUPT) {
        *corrupt = err;
        *out = NULL;
        return -1;
    }
    if (st == NULL) {
        log_report(cli, dir, "cannot open log", &err);
        return cli_exit_for_open(err.code);
    }
    *out = st;
    return -1;
}

int log_write_row(cli_t *cli, const char *dir, const evb_event_t *ev, int erc,
                  const evb_err *err, const evb_buf *line, const char *what)
{
    if (erc != EVB_OK) {
        cli_error(cli, "%s: seq %" PRIu64 ": %s%s", dir, ev->seq, what, err->msg);
        return CLI_EXIT_RUNTIME;
    }
    if (cli_write(cli, line->data, line->len) != 0)
        return cli->pipe_closed ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
    return -1;
}

int log_read_end(cli_t *cli, const char *dir, int rc, const evb_err *err)
{
    if (rc != CLI_EXIT_OK || cli->pipe_closed || err->code == EVB_OK) return rc;
    log_report(cli, dir, "reading", err);
    return err->code == EVB_ECORRUPT ? CLI_EXIT_PROBLEMS : CLI_EXIT_RUNTIME;
}

bool log_hole(cli_t *cli, evb_iter_t *it, evb_err *err, uint64_t *next, bool *holes)
{
    uint64_t from, to;
    if (cli->pipe_closed || err->code != EVB_ECORRUPT || !evb_iter_hole(it, &from, &to))
        return false;
    cli_error(cli, "%s (`evbus log salvage` copies every readable event)", err->msg);
    *holes = true;
    if (next != NULL) *next = to + 1;
    evb_err_clear(err);
    return evb_iter_resume(it);
}

/* ---- info ---- */

typedef struct cat_row {
    char *name;
    uint64_t head, count;
} cat_row_t;

typedef struct cat_list {
    cat_row_t *rows;
    size_t n, cap;
} cat_list_t;

static int s_collect_category(const evb_category_info *ci, void *ctx)
{
    cat_list_t *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 16 : l->cap * 2;
        cat_row_t *r = realloc(l->rows, cap * sizeof *r);
        if (r == NULL) return EVB_ENOMEM;
        l->rows = r;
        l->cap = cap;
    }
    char *name = strdup(ci->name); /* ci->name is lent for this call only */
    if (name == NULL) return EVB_ENOMEM;
    l->rows[l->n++] = (cat_row_t){name, ci->head, ci->count};
    return 0;
}

static void s_free_categories(cat_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->rows[i].name);
    free(l->rows);
    memset(l, 0, sizeof *l);
}

static int s_info_json(cli_t *cli, evb_store_t *st, const char *dir,
                       const evb_store_info *in, uint64_t disk, const cat_list_t *cats)
{
    evb_buf b = {0};
    evb_err err = {0};
    char id[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&in->log_id, id);
    int rc = evb_buf_append(&b, "{\"dir\":", 7, &err);
    if (rc == EVB_OK) rc = cli_json_str(&b, dir, &err);
    if (rc == EVB_OK)
        rc = evb_buf_printf(&b, &err,
                            ",\"log_id\":\"%s\",\"format\":%" PRIu32 ",\"service\":", id,
                            in->format);
    if (rc == EVB_OK) rc = cli_json_str(&b, in->service, &err);
    if (rc == EVB_OK)
        rc = evb_buf_printf(
            &b, &err,
            ",\"head\":%" PRIu64 ",\"indexed\":%" PRIu64 ",\"unindexed\":%" PRIu64
            ",\"synced\":%" PRIu64 ",\"streams\":%" PRIu64 ",\"disk_bytes\":%" PRIu64
            ",\"categories\":[",
            in->head, in->indexed, in->head > in->indexed ? in->head - in->indexed : 0,
            in->synced, in->streams, disk);
    for (size_t i = 0; rc == EVB_OK && i < cats->n; i++) {
        rc =
            evb_buf_append(&b, i > 0 ? ",{\"name\":" : "{\"name\":", i > 0 ? 9 : 8, &err);
        if (rc == EVB_OK) rc = cli_json_str(&b, cats->rows[i].name, &err);
        if (rc == EVB_OK)
            rc = evb_buf_printf(&b, &err, ",\"count\":%" PRIu64 ",\"head\":%" PRIu64 "}",
                                cats->rows[i].count, cats->rows[i].head);
    }
    char dmg[400];
    size_t drops = evb_store_wal_damage(st, dmg, sizeof dmg);
    if (rc == EVB_OK)
        rc = evb_buf_printf(&b, &err, "],\"wal_damage\":{\"parts\":%zu,\"first\":", drops);
    if (rc == EVB_OK) rc = cli_json_str(&b, dmg, &err);
    size_t tails = evb_store_tail_damage(st, dmg, sizeof dmg);
    if (rc == EVB_OK)
        rc = evb_buf_printf(&b, &err, "},\"tail_damage\":{\"count\":%zu,\"first\":", tails);
    if (rc == EVB_OK) rc = cli_json_str(&b, dmg, &err);
    if (rc == EVB_OK) rc = evb_buf_append(&b, "}}\n", 3, &err);
    int ret = CLI_EXIT_OK;
    if (rc != EVB_OK) {
        cli_error(cli, "rendering JSON: %s", err.msg);
        ret = CLI_EXIT_RUNTIME;
    } else {
        cli_write(cli, b.data, b.len);
    }
    evb_buf_free(&b);
    return ret;
}

static void s_info_text(cli_t *cli, evb_store_t *st, const char *dir,
                        const evb_store_info *in, uint64_t disk, const cat_list_t *cats)
{
    char id[EVB_ID_HEX_LEN + 1], g1[32], g2[32];
    evb_id_to_hex(&in->log_id, id);
    const char *b = cli_bold(cli), *r = cli_reset(cli);
    cli_printf(cli, "%-14s %s\n", "dir", dir);
    cli_printf(cli, "%-14s %s\n", "log id", id);
    cli_printf(cli, "%-14s %" PRIu32 "\n", "format", in->format);
    cli_printf(cli, "%-14s %s\n", "service", in->service);
    cli_printf(cli, "%-14s %" PRIu64 "\n", "head", in->head);
    if (in->indexed >= in->head)
        cli_printf(cli, "%-14s %" PRIu64 " (up to date)\n", "indexed", in->indexed);
    else
        cli_printf(cli, "%-14s %" PRIu64 " (%" PRIu64 " events not indexed yet)\n",
                   "indexed", in->indexed, in->head - in->indexed);
    cli_printf(cli, "%-14s %" PRIu64 "\n", "synced", in->synced);
    cli_printf(cli, "%-14s %" PRIu64 "%s\n", "streams", in->streams,
               in->indexed < in->head ? " (indexed part)" : "");
    cli_printf(cli, "%-14s %s (%s bytes)\n", "disk size", cli_bytes(disk, g1),
               cli_group(disk, g2));
    char dmg[400];
    size_t drops = evb_store_wal_damage(st, dmg, sizeof dmg);
    if (drops > 0)
        cli_printf(cli, "%-14s %s%zu damaged part(s) of the write-ahead log skipped%s: %s "
                        "(`evbus log verify` names the missing events)\n",
                   "damage", cli_red(cli), drops, r, dmg);
    size_t tails = evb_store_tail_damage(st, dmg, sizeof dmg);
    if (tails > 0)
        cli_printf(cli, "%-14s %s%zu damaged place(s) in the unindexed events%s: %s "
                        "(`evbus log verify` names the missing events)\n",
                   "damage", cli_red(cli), tails, r, dmg);
    cli_printf(cli, "%-14s %zu\n", "categories", cats->n);
    if (cats->n == 0) return;
    int wname = 8, wcount = 6, whead = 4;
    for (size_t i = 0; i < cats->n; i++) {
        int l = (int)strlen(cats->rows[i].name);
        wname = l > wname ? l : wname;
        l = (int)strlen(cli_group(cats->rows[i].count, g1));
        wcount = l > wcount ? l : wcount;
        l = cli_digits(cats->rows[i].head);
        whead = l > whead ? l : whead;
    }
    cli_printf(cli, "\n  %s%-*s  %*s  %*s%s\n", b, wname, "category", wcount, "events",
               whead, "head", r);
    for (size_t i = 0; i < cats->n; i++)
        cli_printf(cli, "  %-*s  %*s  %*" PRIu64 "\n", wname, cats->rows[i].name, wcount,
                   cli_group(cats->rows[i].count, g1), whead, cats->rows[i].head);
}

static int s_info(cli_t *cli, int argc, char **argv)
{
    bool json = false;
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, NULL, "print one JSON object instead of text"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR [--json]",
        "Show what the log in DIR is: its id, format, service, head, indexer\n"
        "position, last synced sequence, number of streams, size on disk, and\n"
        "each category with its event count and last sequence. The log is\n"
        "read as it is at the start (its service may be running); nothing in\n"
        "DIR changes. Exit code 1 when damage was found on the way (a damaged\n"
        "write-ahead log, or events not indexed yet that cannot be read: a\n"
        "'damage' line). Damage elsewhere in the tables shows when read\n"
        "(`evbus log verify`).",
        "JSON fields: dir, log_id, format, service, head, indexed, unindexed,\n"
        "synced, streams, disk_bytes, categories [{name, count, head}],\n"
        "wal_damage {parts, first}: damaged parts of LevelDB's write-ahead log\n"
        "skipped on reading (0 and \"\" when none), tail_damage {count, first}:\n"
        "unindexed events that could not be read.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    const char *dir = pos[0];

    evb_store_t *st = NULL;
    rc = log_open_ro(cli, dir, &st);
    if (rc >= 0) return rc;
    evb_store_info in;
    evb_store_get_info(st, &in);
    evb_err err = {0};
    uint64_t disk = 0;
    cat_list_t cats = {0};
    rc = CLI_EXIT_OK;
    if (evb_store_disk_size(st, &disk, &err) != EVB_OK) {
        log_report(cli, dir, "size on disk", &err);
        rc = CLI_EXIT_RUNTIME;
    } else if (evb_store_categories(st, s_collect_category, &cats, &err) != EVB_OK) {
        log_report(cli, dir, "listing categories", &err);
        rc = err.code == EVB_ECORRUPT ? CLI_EXIT_PROBLEMS : CLI_EXIT_RUNTIME;
    } else if (json) {
        rc = s_info_json(cli, st, dir, &in, disk, &cats);
    } else {
        s_info_text(cli, st, dir, &in, disk, &cats);
    }
    if (rc == CLI_EXIT_OK &&
        (evb_store_wal_damage(st, NULL, 0) > 0 || evb_store_tail_damage(st, NULL, 0) > 0))
        rc = CLI_EXIT_PROBLEMS;
    s_free_categories(&cats);
    evb_store_destroy(&st);
    return cli_finish(cli, rc);
}

/* ---- cat ---- */

int log_color_opt(cli_t *cli, const char *when)
{
    if (when == NULL || strcmp(when, "auto") == 0) return -1;
    if (strcmp(when, "always") == 0)
        cli->color = true;
    else if (strcmp(when, "never") == 0)
        cli->color = false;
    else
        return cli_usage_error(cli, "--color: expected auto, always or never, got '%s'",
                               when);
    return -1;
}

void log_row_fmt_init(const cli_t *cli, log_row_fmt *f, uint64_t head, const char *stream)
{
    memset(f, 0, sizeof *f);
    f->wseq = cli_digits(head);
    f->wseq = f->wseq < 3 ? 3 : f->wseq;
    /* one stream shown: its column fits it (every row is that stream) */
    f->wstream = stream != NULL ? (int)strlen(stream) : ROW_STREAM_W;
    f->wstream = f->wstream < 6 ? 6 : f->wstream;
    f->wver = f->wseq; /* a version is at most the head */
    f->wtype = ROW_TYPE_W;
    f->width = cli_term_width(cli);
}

void log_row_header(cli_t *cli, const log_row_fmt *f)
{
    cli_printf(cli, "%s%*s  %-*s  %-*s  %*s  %-*s  %s%s\n", cli_bold(cli), f->wseq, "SEQ",
               ROW_TIME_W, "TS", f->wstream, "STREAM", f->wver, "VER", f->wtype, "TYPE",
               "PAYLOAD", cli_reset(cli));
}

/* The escape sequences count no columns: the payload's room is computed from
 * the visible text, so the row has the same width coloured or not. Stream
 * and type are cells of fixed width (rows.h), so a long id keeps the row
 * aligned. */
int log_row(const cli_t *cli, const log_row_fmt *f, const evb_event_t *ev, evb_buf *line,
            evb_buf *payload, evb_err *err)
{
    char ts[32];
    row_time(ev->ts_us, ts);
    line->len = 0;
    const char *dim = cli_dim(cli), *rst = cli_reset(cli), *bold = cli_bold(cli),
               *grn = cli_green(cli);
    /* visible width of the fixed columns, each followed by two spaces */
    size_t used = (size_t)f->wseq + 2 + ROW_TIME_W + 2 + (size_t)f->wstream + 2 +
                  (size_t)f->wver + 2 + (size_t)f->wtype + 2;
    int rc = evb_buf_printf(line, err, "%s%*" PRIu64 "%s  %s%-*s%s  %s", dim, f->wseq,
                            ev->seq, rst, dim, ROW_TIME_W, ts, rst, bold);
    if (rc == EVB_OK) rc = row_cell(line, ev->stream, f->wstream, err);
    if (rc == EVB_OK)
        rc = evb_buf_printf(line, err, "%s  %*" PRIu64 "  %s", rst, f->wver, ev->version,
                            grn);
    if (rc == EVB_OK) rc = row_cell(line, ev->type, f->wtype, err);
    if (rc == EVB_OK) rc = evb_buf_printf(line, err, "%s  ", rst);
    if (rc != EVB_OK) return rc;
    return cli_row_payload(cli, f->width, used, ev, line, payload, err);
}

/* What `log cat` was asked for, once its flags are checked. */
typedef struct cat_opts {
    const char *dir;
    const char *stream;   /* one --stream naming a stream: read in version order */
    const char *category; /* --category: read in log order */
    bool json, to_set, limit_set;
    uint64_t from, last, to, limit; /* last: --from -N */
    int64_t since, until;
    filter_t filter; /* --type, --stream (as globs), --where */
} cat_opts;

/* One --stream without glob characters names a stream: it is read through
 * the stream's index (versions), as before globs; anything else is a glob
 * filter over the range or the category. */
static bool s_one_stream(const cli_list *streams)
{
    return streams->n == 1 && strpbrk(streams->v[0], "*?[\\") == NULL;
}

/* Where to start for --from -N: N events (versions with --stream) before the
 * end, from 1 when there are fewer. */
static int s_cat_resolve_last(cli_t *cli, evb_store_t *st, cat_opts *o)
{
    if (o->last == 0) return -1;
    uint64_t end = evb_store_head(st);
    evb_err err = {0};
    if (o->stream != NULL &&
        evb_store_stream_version(st, o->stream, &end, &err) != EVB_OK) {
        log_report(cli, o->dir, "cannot read", &err);
        return CLI_EXIT_RUNTIME;
    }
    o->from = end > o->last ? end - o->last + 1 : 1;
    if (o->to_set && o->to < o->from)
        return cli_usage_error(
            cli, "--to %" PRIu64 " is before --from -%" PRIu64 " (%s %" PRIu64 ")", o->to,
            o->last, o->stream != NULL ? "version" : "seq", o->from);
    return -1;
}

static evb_iter_t *s_cat_iter(evb_store_t *st, const cat_opts *o, evb_err *err)
{
    if (o->stream != NULL)
        return evb_store_read_stream(st, o->stream, o->from, o->to, NULL, err);
    if (o->category != NULL)
        return evb_store_read_category(st, o->category, o->from - 1, NULL, err);
    return evb_store_read_range(st, o->from, o->to, NULL, err);
}

/* Every filter holds: --category (when the read is not the category's),
 * --since/--until, --type, --stream, --where. */
static bool s_cat_match(cat_opts *o, const evb_event_t *ev)
{
    if (o->stream != NULL && o->category != NULL &&
        (ev->category == NULL || strcmp(ev->category, o->category) != 0))
        return false;
    if (ev->ts_us < o->since || ev->ts_us > o->until) return false;
    return filter_match(&o->filter, ev);
}

/* A range or a stream is contiguous: say so when it is not, since the
 * iterators skip what is missing. */
static void s_cat_missing(cli_t *cli, const cat_opts *o, uint64_t at, uint64_t next)
{
    const char *what = o->stream != NULL ? "version" : "event";
    if (at - 1 == next)
        cli_error(cli, "%s: %s %" PRIu64 " is missing (run 'evbus log verify')", o->dir,
                  what, next);
    else
        cli_error(cli,
                  "%s: %ss %" PRIu64 "..%" PRIu64 " are missing (run 'evbus log verify')",
                  o->dir, what, next, at - 1);
}

/* Print what the iterator brings and the filters let through. Returns the
 * exit code. */
static int s_cat_print(cli_t *cli, evb_store_t *st, evb_iter_t *it, cat_opts *o)
{
    log_row_fmt f;
    log_row_fmt_init(cli, &f, evb_store_head(st), o->stream);
    if (!o->json) log_row_header(cli, &f);
    bool by_category = o->category != NULL && o->stream == NULL;
    evb_buf line = {0}, payload = {0};
    uint64_t printed = 0, next = o->from;
    bool gaps = false, stop = false;
    const evb_event_t *ev;
    int rc = CLI_EXIT_OK;
    evb_err err = {0};
    do {
        while (!cli->pipe_closed && evb_iter_next(it, &ev, &err)) {
            if (by_category && o->to_set && ev->seq > o->to) {
                stop = true; /* category order is log order: nothing later can fit */
                break;
            }
            uint64_t at = o->stream != NULL ? ev->version : ev->seq;
            if (!by_category && at > next) {
                s_cat_missing(cli, o, at, next);
                gaps = true;
            }
            next = at + 1;
            if (!s_cat_match(o, ev)) continue;
            int erc;
            if (o->json) {
                line.len = 0;
                erc = evb_event_to_json(ev, &line, &err);
                if (erc == EVB_OK) erc = evb_buf_append(&line, "\n", 1, &err);
            } else {
                erc = log_row(cli, &f, ev, &line, &payload, &err);
            }
            int wrc = log_write_row(cli, o->dir, ev, erc, &err, &line, "rendering: ");
            if (wrc >= 0) {
                rc = wrc;
                stop = true;
                break;
            }
            if (o->limit_set && ++printed == o->limit) {
                stop = true;
                break;
            }
        }
    } while (!stop && log_hole(cli, it, &err, &next, &gaps));
    rc = log_read_end(cli, o->dir, rc, &err);
    if (rc == CLI_EXIT_OK && gaps) rc = CLI_EXIT_PROBLEMS;
    evb_buf_free(&line);
    evb_buf_free(&payload);
    return rc;
}

/* Check the values of log cat's flags into o. Returns -1, or the exit code
 * after naming the first bad one. */
static int s_cat_check(cli_t *cli, cat_opts *o, const char *from_s, const char *since_s,
                       const char *until_s, const cli_list *streams)
{
    evb_err err = {0};
    if (s_one_stream(streams)) {
        o->stream = streams->v[0];
        if (evb_check_stream(o->stream, &err) != EVB_OK)
            return cli_usage_error(cli, "--stream '%s': %s", o->stream, err.msg);
    }
    if (o->category != NULL && evb_check_category(o->category, &err) != EVB_OK)
        return cli_usage_error(cli, "--category: %s", err.msg);
    const char *unit = o->stream != NULL ? "versions" : "sequences";
    int rc;
    o->from = 1;
    if (from_s != NULL && (rc = filter_parse_from(cli, from_s, &o->from, &o->last)) >= 0)
        return rc;
    if (from_s != NULL && o->from == 0 && o->last == 0)
        return cli_usage_error(cli, "--from: %s count from 1", unit);
    if (o->last > 0) o->from = 1; /* resolved once the log is open */
    if (o->to_set && o->to == 0)
        return cli_usage_error(
            cli, "--to: %s count from 1 (leave --to out to read to the end)", unit);
    if (o->to_set && o->last == 0 && o->to < o->from)
        return cli_usage_error(cli, "--to %" PRIu64 " is before --from %" PRIu64, o->to,
                               o->from);
    if (o->limit_set && o->limit == 0)
        return cli_usage_error(cli, "--limit: must be at least 1");
    o->since = INT64_MIN;
    o->until = INT64_MAX;
    if (since_s != NULL && evb_ts_parse(since_s, &o->since, &err) != EVB_OK)
        return cli_usage_error(cli, "--since: %s", err.msg);
    if (until_s != NULL && evb_ts_parse(until_s, &o->until, &err) != EVB_OK)
        return cli_usage_error(cli, "--until: %s", err.msg);
    if (o->until < o->since)
        return cli_usage_error(cli, "--until %s is before --since %s", until_s, since_s);
    return -1;
}

static int s_cat(cli_t *cli, int argc, char **argv)
{
    cat_opts o = {0};
    cli_list types = {0}, streams = {0}, wheres = {0};
    const char *from_s = NULL, *since_s = NULL, *until_s = NULL, *color = NULL;
    const cli_opt opts[] = {
        {"from", CLI_STR, &from_s, NULL, "N|-N",
         "start at sequence N (one --stream: version N); -N: the last N; default 1"},
        {"to", CLI_U64, &o.to, &o.to_set, "N",
         "stop after sequence N (one --stream: version N); default: the end"},
        {"category", CLI_STR, &o.category, NULL, "CAT",
         "only this category, in log order"},
        FILTER_OPTS(&types, &streams, &wheres),
        {"since", CLI_STR, &since_s, NULL, "TIME",
         "only events with ts >= TIME (RFC 3339)"},
        {"until", CLI_STR, &until_s, NULL, "TIME",
         "only events with ts <= TIME (RFC 3339)"},
        {"limit", CLI_U64, &o.limit, &o.limit_set, "N", "print at most N events"},
        {"json", CLI_FLAG, &o.json, NULL, NULL, "one JSON object per line (for jq)"},
        {"color", CLI_STR, &color, NULL, "WHEN",
         "auto (default: on a terminal, NO_COLOR unset), always or never"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR [--from N|-N] [--to N] [--category CAT] [--type T]...\n"
        "       [--stream GLOB]... [--where FIELD=VALUE]... [--since TIME]\n"
        "       [--until TIME] [--limit N] [--json] [--color WHEN]",
        "Print the events of the log in DIR: columns seq, ts, stream, version,\n"
        "type and payload (cut to the terminal's width on a terminal, coloured\n"
        "there unless --color never), or with --json exactly one event object\n"
        "per line (the codec's JSON rendering, never coloured).",
        "--from and --to are inclusive global sequence numbers. --from -N\n"
        "(kcat's -o -N) starts N events before the end: the last N events of the\n"
        "log (all of them when it holds fewer); the filters apply to those N.\n"
        "'--from -5' and '--from=-5' both work.\n"
        "One --stream that names a stream (no *, ? or [) reads that stream in\n"
        "version order, and --from/--to are its versions (--from -N: its last N).\n"
        "With --category, events come in log order.\n"
        FILTER_NOTES
        "The filters are those of `evbus sniff`; they combine with --category,\n"
        "--since and --until.\n"
        "--since and --until (inclusive, RFC 3339: 2026-11-24T23:40:12Z, a\n"
        "fraction and an offset are optional) filter by the events' commit time;\n"
        "ts is not guaranteed to grow with seq (clocks step), so the whole\n"
        "selected range is read and each event is tested.\n"
        ROW_NOTES
        "A closed pipe (e.g. '| head') ends the output quietly with exit code 0.\n"
        "\nExamples:\n"
        "  evbus log cat /var/lib/orders --stream order-42\n"
        "  evbus log cat /var/lib/orders --from -20 --type OrderPlaced\n"
        "  evbus log cat /var/lib/orders --stream 'order-*' --where status=open\n"
        "  evbus log cat /var/lib/orders --since 2026-11-24T00:00:00Z --json | jq .type\n"
        "  evbus log cat /var/lib/orders --category order --color always | less -R\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    o.dir = pos[0];
    rc = filter_init(cli, &o.filter, &types, &streams, &wheres);
    if (rc < 0) rc = s_cat_check(cli, &o, from_s, since_s, until_s, &streams);
    if (rc < 0) rc = log_color_opt(cli, color);
    evb_store_t *st = NULL;
    if (rc < 0) rc = log_open_ro(cli, o.dir, &st);
    if (rc < 0) rc = s_cat_resolve_last(cli, st, &o);
    if (rc < 0) {
        evb_err err = {0};
        evb_iter_t *it = s_cat_iter(st, &o, &err);
        if (it == NULL) {
            log_report(cli, o.dir, "cannot read", &err);
            rc = CLI_EXIT_RUNTIME;
        } else {
            rc = s_cat_print(cli, st, it, &o);
        }
        evb_iter_destroy(&it);
    }
    filter_free(&o.filter);
    evb_store_destroy(&st);
    return cli_finish(cli, rc);
}

/* ---- verify ---- */

typedef struct verify_ctx {
    cli_t *cli;
    bool json;
    evb_buf line;
    bool render_failed;
} verify_ctx_t;

static void s_problem(const char *problem, void *ctx)
{
    verify_ctx_t *v = ctx;
    cli_progress_end(v->cli);
    if (v->json) {
        v->line.len = 0;
        evb_err err = {0};
        int rc = evb_buf_append(&v->line, "{\"problem\":", 11, &err);
        if (rc == EVB_OK) rc = cli_json_str(&v->line, problem, &err);
        if (rc == EVB_OK) rc = evb_buf_append(&v->line, "}\n", 2, &err);
        if (rc != EVB_OK) {
            v->render_failed = true;
            return;
        }
        cli_write(v->cli, v->line.data, v->line.len);
    } else {
        cli_printf(v->cli, "%sproblem:%s %s\n", cli_red(v->cli), cli_reset(v->cli),
                   problem);
    }
}

static void s_verify_progress(uint64_t done, uint64_t total, void *ctx)
{
    verify_ctx_t *v = ctx;
    unsigned pct = total > 0 ? (unsigned)(done * 100 / total) : 100;
    cli_progress(v->cli, "%s: verifying %" PRIu64 " / %" PRIu64 " (%u%%)", v->cli->name,
                 done, total, pct > 100 ? 100 : pct);
}

static int s_verify(cli_t *cli, int argc, char **argv)
{
    bool json = false;
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, NULL,
         "problems as {\"problem\":...} lines, then one summary object"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR [--json]",
        "Check the log in DIR: the sequence is contiguous from 1 to the head,\n"
        "every event decodes and names this log and its own sequence, stream\n"
        "versions are contiguous, every index entry points at the right event,\n"
        "and every event up to the indexer's position is indexed. Each problem\n"
        "is printed, then a summary. The log is opened read-only, so nothing is\n"
        "indexed here: events after the indexer's position are checked, their\n"
        "index entries are not (the owning service writes them when it runs).",
        "Exit code 0 only when the log is clean, 1 when problems were found.\n"
        "Progress goes to stderr when stderr is a terminal.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    const char *dir = pos[0];

    evb_store_t *st = NULL;
    rc = log_open_ro(cli, dir, &st);
    if (rc >= 0) return rc;
    evb_store_info in;
    evb_store_get_info(st, &in);

    verify_ctx_t v = {.cli = cli, .json = json};
    uint64_t problems = 0;
    evb_err err = {0};
    int vrc = evb_store_verify(st, s_problem, s_verify_progress, &v, &problems, &err);
    cli_progress_end(cli);
    if (vrc != EVB_OK && vrc != EVB_ECORRUPT) {
        if (err.code == EVB_OK) err.code = vrc;
        log_report(cli, dir, "verify stopped", &err);
        rc = CLI_EXIT_RUNTIME;
    } else if (v.render_failed) {
        cli_error(cli, "%s: out of memory rendering a problem", dir);
        rc = CLI_EXIT_RUNTIME;
    } else {
        rc = vrc == EVB_OK ? CLI_EXIT_OK : CLI_EXIT_PROBLEMS;
        if (vrc == EVB_ECORRUPT && problems == 0)
            problems = 1; /* keep "not clean" visible even if uncounted */
        uint64_t unindexed = in.head > in.indexed ? in.head - in.indexed : 0;
        if (json) {
            v.line.len = 0;
            int jrc = evb_buf_append(&v.line, "{\"dir\":", 7, &err);
            if (jrc == EVB_OK) jrc = cli_json_str(&v.line, dir, &err);
            if (jrc == EVB_OK)
                jrc = evb_buf_printf(&v.line, &err,
                                     ",\"head\":%" PRIu64 ",\"indexed\":%" PRIu64
                                     ",\"unindexed\":%" PRIu64 ",\"problems\":%" PRIu64
                                     ",\"ok\":%s}\n",
                                     in.head, in.indexed, unindexed, problems,
                                     vrc == EVB_OK ? "true" : "false");
            if (jrc == EVB_OK)
                cli_write(cli, v.line.data, v.line.len);
            else
                rc = CLI_EXIT_RUNTIME;
        } else if (vrc == EVB_OK) {
            cli_printf(cli,
                       "%sok%s: %s: %" PRIu64
                       " events, indexes checked up to seq %" PRIu64 "%s\n",
                       cli_green(cli), cli_reset(cli), dir, in.head, in.indexed,
                       unindexed > 0 ? " (later events are not indexed yet)" : "");
        } else {
            cli_printf(cli,
                       "%sdamaged%s: %s: %" PRIu64 " problem%s in %" PRIu64
                       " events (indexes checked up to seq %" PRIu64 ")\n",
                       cli_red(cli), cli_reset(cli), dir, problems,
                       problems == 1 ? "" : "s", in.head, in.indexed);
        }
    }
    evb_buf_free(&v.line);
    evb_store_destroy(&st);
    return cli_finish(cli, rc);
}

/* ---- dispatch ---- */

/* Does argv ask to follow (-f, --follow, --follow=..., or -f at the end of a
 * bundle of flags that take no value, -jf)? Then *val is its value (NULL
 * when missing). */
static bool s_tail_follows(int argc, char **argv, const char **val)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) break;
        if (strncmp(a, "--follow=", 9) == 0) {
            *val = a + 9;
            return true;
        }
        bool bundle = a[0] == '-' && a[1] != '-' && a[1] != '\0' &&
                      strspn(a + 1, "jq") == strlen(a + 1) - 1 && a[strlen(a) - 1] == 'f';
        if (strcmp(a, "--follow") == 0 || bundle) {
            *val = i + 1 < argc ? argv[i + 1] : NULL;
            return true;
        }
    }
    return false;
}

/* tail: the last N events of the log in DIR, printed as `cat` prints them
 * (the log's head read first, then cat --from HEAD-N+1 --to HEAD). With
 * -f/--follow PUB_EP,CATCHUP_EP it is `evbus sniff`: a running service's
 * log as it grows, through its publisher. Why the two differ: a running
 * service holds its directory, and a snapshot of it does not grow, so new
 * events can only be followed on the bus. */
static int s_tail(cli_t *cli, int argc, char **argv)
{
    uint64_t n = 10;
    bool json = false;
    const char *color = NULL, *follow = NULL;
    const cli_opt opts[] = {
        {"limit", CLI_U64, &n, NULL, "N", "print the last N events (default 10)"},
        {"json", CLI_FLAG, &json, NULL, NULL, "one JSON object per line (as cat --json)"},
        {"color", CLI_STR, &color, NULL, "WHEN",
         "auto (default: on a terminal, NO_COLOR unset), always or never"},
        {"follow", CLI_STR, &follow, NULL, "PUB_EP,CATCHUP_EP",
         "follow the running service through its publisher (evbus sniff)"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR [-n N] [--json] [--color WHEN]\n"
        "       -f PUB_EP,CATCHUP_EP [--from SEQ] [SNIFF OPTIONS]",
        "Print the last N events (default 10) of the log in DIR, as `evbus log\n"
        "cat` prints them, and exit: `evbus log tail DIR` alone shows the newest\n"
        "10. Like the other verbs it reads DIR as it is at its start, also while\n"
        "the service runs.\n\n"
        "With -f PUB_EP,CATCHUP_EP (-f is --follow, as for every command with a\n"
        "--follow; it takes the publisher's endpoints, not DIR), it keeps\n"
        "printing new events as they are appended, like tail -f. This is where\n"
        "tail differs from the other verbs: a running service holds its\n"
        "directory and a snapshot of it never grows, so new events are read\n"
        "from the service's publisher on the bus: it is `evbus sniff` with the\n"
        "same options (live from now; --from SEQ first prints the events from\n"
        "SEQ on; --json, --category, --type, --stream, --count, --timeout).\n"
        "See `evbus sniff --help`.",
        "Examples:\n"
        "  evbus log tail /var/lib/orders\n"
        "  evbus log tail /var/lib/orders -n 50 --json | jq .type\n"
        "  evbus log tail -f tcp://orders:5601,tcp://orders:5602 --from 1000\n"};
    const char *fv = NULL;
    if (cli->collect_exits == NULL && s_tail_follows(argc, argv, &fv)) {
        struct stat sb;
        if (fv != NULL && strchr(fv, ',') == NULL && stat(fv, &sb) == 0 &&
            S_ISDIR(sb.st_mode))
            return cli_usage_error(cli,
                                   "--follow %s: -f/--follow takes the running service's "
                                   "PUB_EP,CATCHUP_EP, not its directory (`evbus log tail "
                                   "DIR` prints the last events of DIR)",
                                   fv);
        return cmd_sniff(argc, argv);
    }
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    if (n == 0) return cli_usage_error(cli, "--limit: must be at least 1");
    evb_store_t *st = NULL;
    rc = log_open_ro(cli, pos[0], &st);
    if (rc >= 0) return rc;
    evb_store_info in;
    evb_store_get_info(st, &in);
    evb_store_destroy(&st);
    if (in.head == 0) return cli_finish(cli, CLI_EXIT_OK); /* an empty log */
    char from[24], to[24], word[] = "tail", f_from[] = "--from", f_to[] = "--to",
                           f_json[] = "--json", f_color[] = "--color";
    snprintf(from, sizeof from, "%" PRIu64, in.head > n ? in.head - n + 1 : 1);
    snprintf(to, sizeof to, "%" PRIu64, in.head);
    char *cat_argv[9] = {word, (char *)pos[0], f_from, from, f_to, to};
    int cat_argc = 6;
    if (json) cat_argv[cat_argc++] = f_json;
    if (color != NULL) {
        cat_argv[cat_argc++] = f_color;
        cat_argv[cat_argc++] = (char *)color;
    }
    return s_cat(cli, cat_argc, cat_argv);
}

/* ---- backup ---- */

/* Remove directory d and the files in it (a backup that failed half-way). */
static void s_remove_dir(const char *d)
{
    DIR *dp = opendir(d);
    if (dp == NULL) return;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            unlinkat(dirfd(dp), de->d_name, 0);
    closedir(dp);
    rmdir(d);
}

/* backup and salvage: DIR DEST, where DEST must be new. Parse, then open DIR
 * read-only into *st; -1 to go on, else the exit code. */
static int s_to_new_dir(cli_t *cli, int argc, char **argv, const cli_opt *opts,
                        const cli_usage *usage, const char *verb, const char **dir,
                        const char **dest, evb_store_t **st, evb_err *corrupt)
{
    const char *pos[2];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, usage, 2, 2, pos, &npos);
    if (rc >= 0) return rc;
    *dir = pos[0];
    *dest = pos[1];
    struct stat sb;
    if (lstat(*dest, &sb) == 0) {
        cli_error(cli, "%s: already exists (a %s writes a new directory)", *dest, verb);
        return CLI_EXIT_RUNTIME;
    }
    return s_open_ro(cli, *dir, st, corrupt);
}

/* After a failed backup or salvage: remove what it made of dest (it did
 * not exist before). */
static void s_remove_new_dir(const char *dest)
{
    char ixdir[PATH_MAX];
    if (snprintf(ixdir, sizeof ixdir, "%s/index", dest) < (int)sizeof ixdir) {
        s_remove_dir(ixdir);
        s_remove_dir(dest);
    }
}

/* The start of the JSON line of backup and salvage: {"dir":..,"dest":.. */
static int s_json_dirs(evb_buf *b, const char *dir, const char *dest, evb_err *err)
{
    int rc = evb_buf_append(b, "{\"dir\":", 7, err);
    if (rc == EVB_OK) rc = cli_json_str(b, dir, err);
    if (rc == EVB_OK) rc = evb_buf_append(b, ",\"dest\":", 8, err);
    if (rc == EVB_OK) rc = cli_json_str(b, dest, err);
    return rc;
}

static int s_backup(cli_t *cli, int argc, char **argv)
{
    bool json = false;
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, NULL, "print one JSON object instead of text"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR DEST [--json]",
        "Write a consistent copy of the log in DIR into the new directory\n"
        "DEST: the log as it is at the start (its service may be running),\n"
        "which opens and verifies as a log of its own with the same log id.\n"
        "Tables are hard-linked where the file system allows, the rest is\n"
        "copied; every file is fsynced. DIR does not change.\n\n"
        "Example: evbus log backup /var/lib/shows /backup/shows-$(date +%F)",
        "JSON fields: dir, dest, head, bytes_copied, files_linked.\n"
        "Exit code 4 when DEST exists or cannot be written (an incomplete DEST\n"
        "is removed).\n"};
    const char *dir, *dest;
    evb_store_t *st = NULL;
    int rc = s_to_new_dir(cli, argc, argv, opts, &usage, "backup", &dir, &dest, &st, NULL);
    if (rc >= 0) return rc;
    evb_backup_info bi;
    evb_err err = {0};
    rc = CLI_EXIT_OK;
    if (evb_store_backup(st, dest, &bi, &err) != EVB_OK) {
        cli_error(cli, "%s", err.msg);
        rc = CLI_EXIT_RUNTIME;
        s_remove_new_dir(dest);
    } else if (json) {
        evb_buf b = {0};
        int jrc = s_json_dirs(&b, dir, dest, &err);
        if (jrc == EVB_OK)
            jrc = evb_buf_printf(&b, &err,
                                 ",\"head\":%" PRIu64 ",\"bytes_copied\":%" PRIu64
                                 ",\"files_linked\":%u}\n",
                                 bi.head, bi.bytes_copied, bi.files_linked);
        if (jrc == EVB_OK) cli_write(cli, b.data, b.len);
        else rc = CLI_EXIT_RUNTIME;
        evb_buf_free(&b);
    } else {
        char g[32];
        cli_printf(cli, "%s: backup of %s up to seq %" PRIu64 " (%s copied, %u tables linked)\n",
                   dest, dir, bi.head, cli_bytes(bi.bytes_copied, g), bi.files_linked);
    }
    evb_store_destroy(&st);
    return cli_finish(cli, rc);
}

/* ---- salvage ---- */

typedef struct salvage_ctx {
    cli_t *cli;
    const char *dir, *dest;
    uint64_t (*holes)[2];
    size_t nholes, cap;
    bool oom;
} salvage_ctx;

static void s_salvage_hole(void *ctx, uint64_t from, uint64_t to, const char *why)
{
    salvage_ctx *c = ctx;
    cli_error(c->cli, "%s: events %" PRIu64 "..%" PRIu64 " lost, marked in %s (%s)", c->dir,
              from, to, c->dest, why);
    if (c->nholes == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        void *p = realloc(c->holes, nc * sizeof *c->holes);
        if (p == NULL) {
            c->oom = true;
            return;
        }
        c->holes = p;
        c->cap = nc;
    }
    c->holes[c->nholes][0] = from;
    c->holes[c->nholes++][1] = to;
}

static void s_salvage_progress(void *ctx, uint64_t seq, uint64_t head)
{
    salvage_ctx *c = ctx;
    cli_progress(c->cli, "%s: seq %" PRIu64 " / %" PRIu64 " (%u%%)", c->cli->name, seq,
                 head, (unsigned)(head ? seq * 100 / head : 100));
}

static int s_salvage(cli_t *cli, int argc, char **argv)
{
    bool json = false;
    const cli_opt opts[] = {
        {"json", CLI_FLAG, &json, NULL, NULL, "print one JSON object instead of text"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR DEST [--json]",
        "Copy what the damaged log in DIR can still read into the new log\n"
        "DEST, so that its service can go on: the same log id, service and\n"
        "ids, every readable event at its own sequence and stream version,\n"
        "and in place of each event that cannot be read a marker event\n"
        "(stream evbus.hole-FROM, type Unreadable, payload {from, to}), so\n"
        "subscribers' positions stay valid and the loss is written down.\n"
        "Consumer keys, checkpoints and snapshots are copied as they are.\n"
        "DIR does not change; each hole is named on stderr as it is met.\n\n"
        "Then stop the service, move DIR aside, put DEST in its place and\n"
        "start the service: subscribers stalled at the hole skip it with\n"
        "`evbus feed skip`, or read the markers.\n\n"
        "Example: evbus log salvage /var/lib/shows /var/lib/shows.salvaged",
        "JSON fields: dir, dest, head, events, unreadable, holes ([from, to]\n"
        "pairs), keys, keys_damaged.\n"
        "Exit code 0 when every event was readable, 1 when some were lost (the\n"
        "copy is made), 3 when DIR cannot be opened, 4 when DEST exists or\n"
        "cannot be written (an incomplete DEST is removed).\n"};
    const char *dir, *dest;
    evb_store_t *st = NULL;
    evb_err corrupt = {0};
    int rc = s_to_new_dir(cli, argc, argv, opts, &usage, "salvage", &dir, &dest, &st,
                          &corrupt);
    if (rc >= 0) return rc;
    /* A log that does not open (its MANIFEST or CURRENT damaged): salvage
     * from a copy that LevelDB's RepairDB rebuilt, next to DEST. */
    char repaired[PATH_MAX] = "";
    if (st == NULL) {
        evb_err rerr = {0};
        if (snprintf(repaired, sizeof repaired, "%s.repair", dest) >= (int)sizeof repaired) {
            cli_error(cli, "%s: path too long", dest);
            return CLI_EXIT_RUNTIME;
        }
        cli_error(cli, "%s does not open (%s); salvaging from a copy repaired by LevelDB in %s "
                  "(%s is not changed)", dir, corrupt.msg, repaired, dir);
        if (evb_store_repair_copy(dir, repaired, &rerr) != EVB_OK ||
            (rc = log_open_ro(cli, repaired, &st)) >= 0) {
            if (rerr.code != EVB_OK) cli_error(cli, "%s", rerr.msg);
            s_remove_dir(repaired);
            return rerr.code != EVB_OK ? CLI_EXIT_OPEN : rc;
        }
    }
    salvage_ctx c = {.cli = cli, .dir = dir, .dest = dest};
    const evb_salvage_cbs cbs = {s_salvage_hole, s_salvage_progress, &c};
    evb_salvage_info si;
    evb_err err = {0};
    rc = CLI_EXIT_OK;
    int src = evb_store_salvage(st, dest, &cbs, &si, &err);
    cli_progress_end(cli);
    if (src != EVB_OK) {
        cli_error(cli, "%s", err.msg);
        rc = CLI_EXIT_RUNTIME;
        s_remove_new_dir(dest);
    } else {
        if (si.unreadable > 0 || si.keys_damaged) rc = CLI_EXIT_PROBLEMS;
        if (si.keys_damaged)
            cli_error(cli, "%s: some consumer keys, checkpoints or snapshots were in damaged "
                      "blocks and are not in %s", dir, dest);
        evb_buf b = {0};
        int jrc = EVB_OK;
        if (json) {
            jrc = s_json_dirs(&b, dir, dest, &err);
            if (jrc == EVB_OK)
                jrc = evb_buf_printf(&b, &err,
                                     ",\"head\":%" PRIu64 ",\"events\":%" PRIu64
                                     ",\"unreadable\":%" PRIu64 ",\"holes\":[",
                                     si.head, si.events, si.unreadable);
            for (size_t i = 0; jrc == EVB_OK && i < c.nholes; i++)
                jrc = evb_buf_printf(&b, &err, "%s[%" PRIu64 ",%" PRIu64 "]", i ? "," : "",
                                     c.holes[i][0], c.holes[i][1]);
            if (jrc == EVB_OK)
                jrc = evb_buf_printf(&b, &err, "],\"keys\":%" PRIu64 ",\"keys_damaged\":%s}\n",
                                     si.keys, si.keys_damaged ? "true" : "false");
        } else {
            jrc = evb_buf_printf(&b, &err,
                                 "%s: salvage of %s up to seq %" PRIu64 ": %" PRIu64
                                 " events copied, %" PRIu64 " unreadable in %" PRIu64
                                 " hole%s (marked), %" PRIu64 " consumer keys copied\n",
                                 dest, dir, si.head, si.events, si.unreadable, si.holes,
                                 si.holes == 1 ? "" : "s", si.keys);
        }
        if (jrc == EVB_OK && !c.oom) cli_write(cli, b.data, b.len);
        else rc = CLI_EXIT_RUNTIME;
        evb_buf_free(&b);
    }
    free(c.holes);
    evb_store_destroy(&st);
    if (repaired[0] != '\0') {
        char lost[PATH_MAX + 8]; /* where RepairDB put what it could not use */
        snprintf(lost, sizeof lost, "%s/lost", repaired);
        s_remove_dir(lost);
        s_remove_new_dir(repaired);
        if (rc == CLI_EXIT_OK) rc = CLI_EXIT_PROBLEMS; /* it was damaged */
    }
    return cli_finish(cli, rc);
}

static const cli_verb s_verbs[] = {
    {"info", s_info, "log id, service, head, indexer, categories, size on disk"},
    {"cat", s_cat, "print events: a range, a stream or a category"},
    {"verify", s_verify, "check contiguity, decoding, versions and indexes"},
    {"export", log_cmd_export, "write events as JSON lines with their exact bytes"},
    {"import", log_cmd_import, "append the events of an export (seqs reproduced)"},
    {"state", log_cmd_state, "a stream's events and folded state as of a version/time"},
    {"checkpoints", log_cmd_checkpoints, "consumers' checkpoints stored in the log"},
    {"backup", s_backup, "a consistent copy of the log, also while its service runs"},
    {"salvage", s_salvage, "copy what a damaged log can read into a new log"},
    {"tail", s_tail, "the last N events; -f follows a running service (tail -f)"},
};

size_t cmd_log_verbs(const cli_verb **verbs)
{
    *verbs = s_verbs;
    return sizeof s_verbs / sizeof s_verbs[0];
}

int cmd_log(int argc, char **argv)
{
    return cli_dispatch(
        "evbus log", s_verbs, sizeof s_verbs / sizeof s_verbs[0],
        "Usage: evbus log VERB DIR [OPTIONS]\n\n"
        "Inspect the log directory of a service, running or not. Every verb\n"
        "but `import` reads a snapshot of the directory as of its start and\n"
        "changes no byte of it (a damaged log stays as found); read permission\n"
        "is enough. Only `import` writes (it appends), when no service runs;\n"
        "`backup` and `salvage` write only their new directory.\n",
        argc, argv);
}
