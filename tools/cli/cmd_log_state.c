/*
 * cmd_log_state.c: `evbus log state` (time travel over one stream) and
 * `evbus log checkpoints` (the consumers' positions kept in a log).
 *
 * state reads the stream from version 1 and stops at the version or time
 * asked for; it never uses snapshots, because a snapshot is a service's own
 * fold and this tool knows no domain: its "state" is a generic fold, the
 * merge of the payload maps in version order, last write wins per top-level
 * key (a key keeps the place where it first appeared; a nil value is a
 * value, not a delete). That is exactly right for events that carry the
 * fields they change and only a hint for the others; tools/README.md says so.
 * Memory: the events shown are rendered as they are read; the fold keeps one
 * copy of each top-level key and its latest value.
 */
#include "cmd_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include <evbus/evbus_store.h>

/* ---- the generic fold ---- */

typedef struct fold_kv {
    char *key; /* msgpack bytes of the key */
    size_t klen;
    char *val; /* msgpack bytes of the latest value */
    size_t vlen;
} fold_kv;

typedef struct fold {
    fold_kv *kv;
    size_t n, cap;
    msgpack_sbuffer sb; /* scratch: one packed key or value */
} fold_t;

static void s_fold_free(fold_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->kv[i].key);
        free(f->kv[i].val);
    }
    free(f->kv);
    msgpack_sbuffer_destroy(&f->sb);
    memset(f, 0, sizeof *f);
}

/* Pack o into f->sb (cleared first). */
static int s_pack(fold_t *f, const msgpack_object *o)
{
    msgpack_sbuffer_clear(&f->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f->sb, msgpack_sbuffer_write);
    return msgpack_pack_object(&pk, *o) == 0 ? EVB_OK : EVB_ENOMEM;
}

static char *s_copy(const void *p, size_t n)
{
    char *c = malloc(n > 0 ? n : 1);
    if (c != NULL && n > 0) memcpy(c, p, n);
    return c;
}

/* Merge one payload map into the fold. The payload was checked by the codec
 * when the event was decoded (one map, bounded depth, counts within the
 * bytes), so msgpack-c's allocation from declared counts is bounded here. */
static int s_fold_apply(fold_t *f, const void *payload, size_t len, evb_err *err)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int rc = EVB_OK;
    if (msgpack_unpack_next(&up, payload, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        up.data.type != MSGPACK_OBJECT_MAP) {
        rc = evb_err_set(err, EVB_EDECODE, "payload is not a msgpack map");
        goto out;
    }
    const msgpack_object_map *m = &up.data.via.map;
    for (uint32_t i = 0; i < m->size && rc == EVB_OK; i++) {
        if (s_pack(f, &m->ptr[i].key) != EVB_OK) {
            rc = evb_err_set(err, EVB_ENOMEM, "out of memory");
            break;
        }
        size_t j = 0;
        while (j < f->n && !(f->kv[j].klen == f->sb.size &&
                             memcmp(f->kv[j].key, f->sb.data, f->sb.size) == 0))
            j++;
        if (j == f->n) {
            if (f->n == f->cap) {
                size_t cap = f->cap == 0 ? 16 : f->cap * 2;
                fold_kv *kv = realloc(f->kv, cap * sizeof *kv);
                if (kv == NULL) {
                    rc = evb_err_set(err, EVB_ENOMEM, "out of memory");
                    break;
                }
                f->kv = kv;
                f->cap = cap;
            }
            fold_kv *kv = &f->kv[f->n];
            kv->key = s_copy(f->sb.data, f->sb.size);
            if (kv->key == NULL) {
                rc = evb_err_set(err, EVB_ENOMEM, "out of memory");
                break;
            }
            kv->klen = f->sb.size;
            kv->val = NULL;
            kv->vlen = 0;
            f->n++;
        }
        if (s_pack(f, &m->ptr[i].val) != EVB_OK) {
            rc = evb_err_set(err, EVB_ENOMEM, "out of memory");
            break;
        }
        char *v = s_copy(f->sb.data, f->sb.size);
        if (v == NULL) {
            rc = evb_err_set(err, EVB_ENOMEM, "out of memory");
            break;
        }
        free(f->kv[j].val);
        f->kv[j].val = v;
        f->kv[j].vlen = f->sb.size;
    }
out:
    msgpack_unpacked_destroy(&up);
    return rc;
}

/* The fold as JSON (the codec's rendering of the merged map) into out. */
static int s_fold_json(fold_t *f, evb_buf *out, evb_err *err)
{
    msgpack_sbuffer_clear(&f->sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f->sb, msgpack_sbuffer_write);
    if (f->n > UINT32_MAX || msgpack_pack_map(&pk, f->n) != 0)
        return evb_err_set(err, EVB_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n; i++)
        if (msgpack_sbuffer_write(&f->sb, f->kv[i].key, f->kv[i].klen) != 0 ||
            msgpack_sbuffer_write(&f->sb, f->kv[i].val, f->kv[i].vlen) != 0)
            return evb_err_set(err, EVB_ENOMEM, "out of memory");
    return evb_msgpack_to_json(f->sb.data, f->sb.size, out, err);
}

/* ---- state ---- */

int log_cmd_state(cli_t *cli, int argc, char **argv)
{
    bool json = false, ver_set = false;
    uint64_t want = 0;
    const char *at_s = NULL, *color = NULL;
    const cli_opt opts[] = {
        {"version", CLI_U64, &want, &ver_set, "V",
         "as of version V (default: the latest)"},
        {"at", CLI_STR, &at_s, NULL, "TIME",
         "as of TIME (RFC 3339): the events committed by then"},
        {"json", CLI_FLAG, &json, NULL, NULL,
         "one JSON object: stream, version, latest, as_of, events, state"},
        {"color", CLI_STR, &color, NULL, "WHEN", "auto (default), always or never"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR STREAM [--version V | --at TIME] [--json] [--color WHEN]",
        "Time travel over one stream of the log in DIR: its events up to version\n"
        "V, or up to time TIME, and the generic state they fold to: the payload\n"
        "maps merged in version order, the last write winning per top-level key\n"
        "(a key keeps its first position; null is a value, not a delete).\n"
        "Without --version or --at: the stream as it is now.",
        "--at TIME takes the events in version order while their ts <= TIME and\n"
        "stops at the first later one, so the answer is always a state the\n"
        "stream really had (a clock stepping back cannot pull in a later event).\n"
        "Text output: the events as columns (like 'evbus log cat'), then\n"
        "'state at version N:' and the state as one JSON line.\n"
        "JSON output: {\"stream\", \"version\" (reached), \"latest\" (the stream's\n"
        "version now), \"as_of\" ({\"version\":V}, {\"ts\":...} or null),\n"
        "\"events\" (codec JSON objects), \"state\" (the fold)}.\n"
        "Exit code 1 when the stream has no events, or V is past its version.\n"
        "\nExamples:\n"
        "  evbus log state /var/lib/orders order-42\n"
        "  evbus log state /var/lib/orders order-42 --version 3\n"
        "  evbus log state /var/lib/orders order-42 --at 2026-11-24T12:00:00Z --json\n"};
    const char *pos[2];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 2, 2, pos, &npos);
    if (rc >= 0) return rc;
    const char *dir = pos[0], *stream = pos[1];
    evb_err err = {0};
    if (evb_check_stream(stream, &err) != EVB_OK)
        return cli_usage_error(cli, "STREAM: %s", err.msg);
    if (ver_set && at_s != NULL)
        return cli_usage_error(cli, "--version and --at exclude each other");
    if (ver_set && want == 0)
        return cli_usage_error(cli, "--version: versions count from 1");
    int64_t at = 0;
    if (at_s != NULL && evb_ts_parse(at_s, &at, &err) != EVB_OK)
        return cli_usage_error(cli, "--at: %s", err.msg);
    rc = log_color_opt(cli, color);
    if (rc >= 0) return rc;

    evb_store_t *st = NULL;
    rc = log_open_ro(cli, dir, &st);
    if (rc >= 0) return rc;

    uint64_t latest = 0;
    if (evb_store_stream_version(st, stream, &latest, &err) != EVB_OK) {
        log_report(cli, dir, "reading the stream's version", &err);
        evb_store_destroy(&st);
        return cli_finish(cli, CLI_EXIT_RUNTIME);
    }
    if (latest == 0 || (ver_set && want > latest)) {
        if (latest == 0)
            cli_error(cli, "%s: stream %s has no events", dir, stream);
        else
            cli_error(
                cli, "%s: stream %s is at version %" PRIu64 ", before --version %" PRIu64,
                dir, stream, latest, want);
        evb_store_destroy(&st);
        return cli_finish(cli, CLI_EXIT_PROBLEMS);
    }
    evb_iter_t *it = evb_store_read_stream(st, stream, 1, ver_set ? want : 0, NULL, &err);
    if (it == NULL) {
        log_report(cli, dir, "cannot read", &err);
        evb_store_destroy(&st);
        return cli_finish(cli, CLI_EXIT_RUNTIME);
    }

    log_row_fmt f;
    log_row_fmt_init(cli, &f, evb_store_head(st), stream);
    evb_buf line = {0}, scratch = {0};
    fold_t fold = {0};
    msgpack_sbuffer_init(&fold.sb);
    uint64_t reached = 0;
    const evb_event_t *ev;
    rc = CLI_EXIT_OK;
    if (json) {
        int jrc = evb_buf_append(&line, "{\"stream\":", 10, &err);
        if (jrc == EVB_OK) jrc = cli_json_str(&line, stream, &err);
        if (jrc == EVB_OK) jrc = evb_buf_append(&line, ",\"events\":[", 11, &err);
        if (jrc != EVB_OK || cli_write(cli, line.data, line.len) != 0)
            rc = CLI_EXIT_RUNTIME;
    } else {
        log_row_header(cli, &f);
    }
    evb_err_clear(&err);
    while (rc == CLI_EXIT_OK && !cli->pipe_closed && evb_iter_next(it, &ev, &err)) {
        if (at_s != NULL && ev->ts_us > at) break;
        if (ev->version != reached + 1) {
            cli_error(cli,
                      "%s: stream %s: version %" PRIu64
                      " is missing (run 'evbus log verify')",
                      dir, stream, reached + 1);
            rc = CLI_EXIT_PROBLEMS;
            break;
        }
        reached = ev->version;
        int erc = s_fold_apply(&fold, ev->payload, ev->payload_len, &err);
        if (erc == EVB_OK) {
            if (json) {
                line.len = 0;
                if (reached > 1) erc = evb_buf_append(&line, ",", 1, &err);
                if (erc == EVB_OK) erc = evb_event_to_json(ev, &line, &err);
            } else {
                erc = log_row(cli, &f, ev, &line, &scratch, &err);
            }
        }
        int wrc = log_write_row(cli, dir, ev, erc, &err, &line, "");
        if (wrc >= 0) {
            rc = wrc;
            break;
        }
    }
    rc = log_read_end(cli, dir, rc, &err);
    if (rc == CLI_EXIT_OK && !cli->pipe_closed) {
        scratch.len = 0;
        int jrc = s_fold_json(&fold, &scratch, &err);
        line.len = 0;
        if (jrc == EVB_OK && json) {
            jrc = evb_buf_printf(
                &line, &err,
                "],\"version\":%" PRIu64 ",\"latest\":%" PRIu64 ",\"as_of\":", reached,
                latest);
            if (jrc == EVB_OK) {
                if (ver_set) {
                    jrc = evb_buf_printf(&line, &err, "{\"version\":%" PRIu64 "}", want);
                } else if (at_s != NULL) {
                    char ts[32];
                    evb_ts_format(at, ts);
                    jrc = evb_buf_printf(&line, &err,
                                         "{\"ts\":\"%s\",\"ts_us\":%" PRId64 "}", ts, at);
                } else {
                    jrc = evb_buf_append(&line, "null", 4, &err);
                }
            }
            if (jrc == EVB_OK) jrc = evb_buf_append(&line, ",\"state\":", 9, &err);
            if (jrc == EVB_OK)
                jrc = evb_buf_append(&line, scratch.data, scratch.len, &err);
            if (jrc == EVB_OK) jrc = evb_buf_append(&line, "}\n", 2, &err);
        } else if (jrc == EVB_OK) {
            char ts[32] = "";
            if (at_s != NULL) evb_ts_format(at, ts);
            jrc = evb_buf_printf(&line, &err,
                                 "\n%sstate at version %" PRIu64 "%s%s (latest %" PRIu64
                                 "):%s\n",
                                 cli_bold(cli), reached, at_s != NULL ? ", as of " : "",
                                 ts, latest, cli_reset(cli));
            if (jrc == EVB_OK)
                jrc = evb_buf_append(&line, scratch.data, scratch.len, &err);
            if (jrc == EVB_OK) jrc = evb_buf_append(&line, "\n", 1, &err);
        }
        if (jrc != EVB_OK) {
            cli_error(cli, "%s: rendering the state: %s", dir, err.msg);
            rc = CLI_EXIT_RUNTIME;
        } else {
            cli_write(cli, line.data, line.len);
        }
    }
    s_fold_free(&fold);
    evb_buf_free(&line);
    evb_buf_free(&scratch);
    evb_iter_destroy(&it);
    evb_store_destroy(&st);
    return cli_finish(cli, rc);
}

/* ---- checkpoints ---- */

typedef struct cp_row {
    char *consumer, *category;
    evb_id log;
    uint64_t seq;
} cp_row;

typedef struct cp_list {
    cp_row *rows;
    size_t n, cap;
    const char *only; /* --consumer, or NULL */
} cp_list;

static int s_collect_cp(const char *consumer, const evb_id *source_log,
                        const char *category, uint64_t seq, void *ctx)
{
    cp_list *l = ctx;
    if (l->only != NULL && strcmp(l->only, consumer) != 0) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 16 : l->cap * 2;
        cp_row *r = realloc(l->rows, cap * sizeof *r);
        if (r == NULL) return EVB_ENOMEM;
        l->rows = r;
        l->cap = cap;
    }
    cp_row *r = &l->rows[l->n];
    r->consumer = strdup(consumer); /* lent for this call only */
    r->category = strdup(category);
    if (r->consumer == NULL || r->category == NULL) {
        free(r->consumer);
        free(r->category);
        return EVB_ENOMEM;
    }
    r->log = *source_log;
    r->seq = seq;
    l->n++;
    return 0;
}

int log_cmd_checkpoints(cli_t *cli, int argc, char **argv)
{
    bool json = false;
    const char *consumer = NULL, *color = NULL;
    const cli_opt opts[] = {
        {"consumer", CLI_STR, &consumer, NULL, "NAME",
         "only this consumer's checkpoints"},
        {"json", CLI_FLAG, &json, NULL, NULL,
         "one JSON object per checkpoint: consumer, source_log_id, category, seq"},
        {"color", CLI_STR, &color, NULL, "WHEN", "auto (default), always or never"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR [--consumer NAME] [--json] [--color WHEN]",
        "List the consumer checkpoints stored in the log in DIR: for each\n"
        "consumer (a mirror, a service's subscription), source log and\n"
        "category, the last sequence of the source it applied.",
        "Columns: CONSUMER, SOURCE LOG ID (32 hex), CATEGORY, SEQ; in key order\n"
        "(consumer, then source log, then category). No checkpoints: the header\n"
        "only (text) or nothing (--json), exit code 0.\n"
        "\nExamples:\n"
        "  evbus log checkpoints /var/lib/backup\n"
        "  evbus log checkpoints /var/lib/backup --consumer mirror --json\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    const char *dir = pos[0];
    rc = log_color_opt(cli, color);
    if (rc >= 0) return rc;

    evb_store_t *st = NULL;
    rc = log_open_ro(cli, dir, &st);
    if (rc >= 0) return rc;
    cp_list l = {.only = consumer};
    evb_err err = {0};
    rc = CLI_EXIT_OK;
    int crc = evb_store_checkpoints(st, s_collect_cp, &l, &err);
    if (crc != EVB_OK) {
        if (err.code == EVB_OK) evb_err_set(&err, crc, "%s", evb_strerror(crc));
        log_report(cli, dir, "reading checkpoints", &err);
        rc = crc == EVB_ECORRUPT ? CLI_EXIT_PROBLEMS : CLI_EXIT_RUNTIME;
    } else if (json) {
        evb_buf b = {0};
        for (size_t i = 0; i < l.n && rc == CLI_EXIT_OK; i++) {
            char hex[EVB_ID_HEX_LEN + 1];
            evb_id_to_hex(&l.rows[i].log, hex);
            b.len = 0;
            int jrc = evb_buf_append(&b, "{\"consumer\":", 12, &err);
            if (jrc == EVB_OK) jrc = cli_json_str(&b, l.rows[i].consumer, &err);
            if (jrc == EVB_OK)
                jrc = evb_buf_printf(&b, &err,
                                     ",\"source_log_id\":\"%s\",\"category\":", hex);
            if (jrc == EVB_OK) jrc = cli_json_str(&b, l.rows[i].category, &err);
            if (jrc == EVB_OK)
                jrc = evb_buf_printf(&b, &err, ",\"seq\":%" PRIu64 "}\n", l.rows[i].seq);
            if (jrc != EVB_OK) {
                cli_error(cli, "rendering JSON: %s", err.msg);
                rc = CLI_EXIT_RUNTIME;
            } else if (cli_write(cli, b.data, b.len) != 0) {
                break;
            }
        }
        evb_buf_free(&b);
    } else {
        int wc = 8, wcat = 8;
        for (size_t i = 0; i < l.n; i++) {
            int a = (int)strlen(l.rows[i].consumer), c = (int)strlen(l.rows[i].category);
            wc = a > wc ? a : wc;
            wcat = c > wcat ? c : wcat;
        }
        cli_printf(cli, "%s%-*s  %-32s  %-*s  %s%s\n", cli_bold(cli), wc, "CONSUMER",
                   "SOURCE LOG ID", wcat, "CATEGORY", "SEQ", cli_reset(cli));
        for (size_t i = 0; i < l.n; i++) {
            char hex[EVB_ID_HEX_LEN + 1];
            evb_id_to_hex(&l.rows[i].log, hex);
            cli_printf(cli, "%-*s  %s%s%s  %-*s  %" PRIu64 "\n", wc, l.rows[i].consumer,
                       cli_dim(cli), hex, cli_reset(cli), wcat, l.rows[i].category,
                       l.rows[i].seq);
        }
    }
    for (size_t i = 0; i < l.n; i++) {
        free(l.rows[i].consumer);
        free(l.rows[i].category);
    }
    free(l.rows);
    evb_store_destroy(&st);
    return cli_finish(cli, rc);
}
