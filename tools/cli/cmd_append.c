/*
 * cmd_append.c: `evbus append --store DIR`: append events read as JSON lines
 * from stdin to a log, offline (the log's service must not be running:
 * LevelDB lets one process open it).
 *
 * Each line is one event: {"stream", "type", "payload"?, "id"?,
 * "expected_version"?, "schema"?, "correlation_id"?, "causation_id"?,
 * "metadata"?}. Each line is its own append, so a bad line fails alone and
 * the next one goes on; the result of every line is printed in input order.
 * Unknown fields are errors, so a typo ("paylaod") is not silently dropped.
 * Lines are read with a bounded buffer: a line longer than S_MAX_LINE is
 * reported and skipped without holding it in memory.
 *
 * `evbus append --to CMD_EP` sends each line as an "append" request to a
 * running `evbus serve --cmd` instead: the line is parsed and its fields
 * checked for names here (so a typo is caught before the network), then the
 * whole object goes over as msgpack and the service checks the values, with
 * messages that name the field as the offline mode does. A call that gets
 * no answer stops the run (exit 4): the service is down or wedged, and
 * every later line would wait out the same timeout.
 */
#include "cli.h"
#include "context.h"
#include "json_in.h"
#include "ops.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evbus/evbus_bus.h>
#include <evbus/evbus_store.h>

/* JSON text of one event: the payload's ceiling, with room for escapes. */
#define S_MAX_LINE (4u * EVB_MAX_EVENT_BYTES)

typedef struct line_in {
    evb_buf buf;
    bool too_long; /* the line went past S_MAX_LINE: the rest was skipped */
    bool eof;
} line_in;

/* Read one line (without its '\n') into in->buf. False at the end of input. */
static bool s_read_line(line_in *in)
{
    in->buf.len = 0;
    in->too_long = false;
    if (in->eof) return false;
    int c;
    bool any = false;
    while ((c = getchar()) != EOF) {
        any = true;
        if (c == '\n') return true;
        if (in->too_long) continue;
        if (in->buf.len >= S_MAX_LINE) {
            in->too_long = true;
            continue;
        }
        char ch = (char)c;
        if (evb_buf_append(&in->buf, &ch, 1, NULL) != EVB_OK) in->too_long = true;
    }
    in->eof = true;
    return any;
}

static bool s_blank(const evb_buf *b)
{
    for (size_t i = 0; i < b->len; i++)
        if (b->data[i] != ' ' && b->data[i] != '\t' && b->data[i] != '\r') return false;
    return true;
}

/* A string field that names something (no NUL inside). */
static int s_name_field(const json_val *obj, const char *key, bool required,
                        const char **out, evb_err *err)
{
    const json_val *v = json_get(obj, key);
    *out = NULL;
    if (v == NULL)
        return required ? evb_err_set(err, EVB_EINVAL, "field \"%s\" is missing", key)
                        : EVB_OK;
    if (v->type != JSON_STR)
        return evb_err_set(err, EVB_EINVAL, "field \"%s\": expected a string, got %s",
                           key, json_type_name(v->type));
    if (strlen(v->str) != v->len)
        return evb_err_set(err, EVB_EINVAL, "field \"%s\": contains a NUL character",
                           key);
    *out = v->str;
    return EVB_OK;
}

static int s_id_field(const json_val *obj, const char *key, evb_id *id, evb_err *err)
{
    const char *hex;
    int rc = s_name_field(obj, key, false, &hex, err);
    if (rc != EVB_OK || hex == NULL) return rc;
    evb_err e2 = {0};
    if (evb_id_from_hex(hex, id, &e2) != EVB_OK || evb_id_is_zero(id))
        return evb_err_set(err, EVB_EINVAL,
                           "field \"%s\": expected 32 hex characters (not all zero)",
                           key);
    return EVB_OK;
}

static int s_map_field(const json_val *obj, const char *key, evb_buf *out, bool *present,
                       evb_err *err)
{
    const json_val *v = json_get(obj, key);
    *present = false;
    if (v == NULL || v->type == JSON_NULL) return EVB_OK;
    if (v->type != JSON_OBJ)
        return evb_err_set(err, EVB_EINVAL, "field \"%s\": expected an object, got %s",
                           key, json_type_name(v->type));
    if (json_to_msgpack(v, out, err) != EVB_OK) return err->code;
    *present = true;
    return EVB_OK;
}

static const char *const s_fields[] = {
    "stream", "type",           "payload",      "id",       "expected_version",
    "schema", "correlation_id", "causation_id", "metadata", NULL};

/* Check the line's top level: an object, known fields, each once. */
static int s_check_fields(const json_val *obj, evb_err *err)
{
    if (obj->type != JSON_OBJ)
        return evb_err_set(err, EVB_EINVAL, "expected a JSON object, got %s",
                           json_type_name(obj->type));
    for (size_t i = 0; i < obj->n; i++) {
        const json_val *m = &obj->kids[i];
        bool known = false;
        for (const char *const *f = s_fields; *f != NULL; f++)
            if (strlen(*f) == m->klen && memcmp(*f, m->key, m->klen) == 0) known = true;
        if (!known)
            return evb_err_set(
                err, EVB_EINVAL,
                "unknown field \"%.64s\" (known: stream, type, payload, id, "
                "expected_version, schema, correlation_id, causation_id, "
                "metadata)",
                m->key);
        for (size_t j = 0; j < i; j++)
            if (obj->kids[j].klen == m->klen &&
                memcmp(obj->kids[j].key, m->key, m->klen) == 0)
                return evb_err_set(err, EVB_EINVAL, "field \"%.64s\" given twice",
                                   m->key);
    }
    return EVB_OK;
}

static int s_expected(const json_val *obj, int64_t *exp, evb_err *err)
{
    const json_val *v = json_get(obj, "expected_version");
    *exp = EVB_EXPECT_ANY;
    if (v == NULL) return EVB_OK;
    if (v->type == JSON_STR && strcmp(v->str, "any") == 0) return EVB_OK;
    if (v->type == JSON_STR && strcmp(v->str, "none") == 0) {
        *exp = EVB_EXPECT_NONE;
        return EVB_OK;
    }
    if (v->type == JSON_INT && v->i >= 0) {
        *exp = v->i;
        return EVB_OK;
    }
    return evb_err_set(err, EVB_EINVAL,
                       "field \"expected_version\": expected \"any\", \"none\" or a "
                       "version >= 0");
}

typedef struct line_result {
    evb_append_result res;
    char stream[EVB_MAX_STREAM_LEN + 1];
    evb_id id;
} line_result;

/* Parse and append one line. Returns EVB_OK, or an error whose message
 * names the field; a store that stopped accepting writes is told apart by
 * its code (EVB_EUNWRITABLE / EVB_EIO). */
static int s_append_line(evb_store_t *st, const evb_buf *line, evb_buf *payload,
                         evb_buf *meta, line_result *lr, evb_err *err)
{
    json_val *obj = NULL;
    int rc = json_parse(line->data, line->len, &obj, err);
    if (rc != EVB_OK) {
        char msg[EVB_ERR_MSG_LEN];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return evb_err_set(err, EVB_EINVAL, "not valid JSON: %s", msg);
    }
    const char *stream = NULL, *type = NULL;
    evb_event_t ev = {0};
    int64_t expected = EVB_EXPECT_ANY;
    bool has_payload = false, has_meta = false;
    payload->len = 0;
    meta->len = 0;
    rc = s_check_fields(obj, err);
    if (rc == EVB_OK) rc = s_name_field(obj, "stream", true, &stream, err);
    if (rc == EVB_OK && evb_check_stream(stream, err) != EVB_OK) {
        char msg[EVB_ERR_MSG_LEN];
        snprintf(msg, sizeof msg, "%s", err->msg);
        rc = evb_err_set(err, EVB_EINVAL, "field \"stream\": %s", msg);
    }
    if (rc == EVB_OK) rc = s_name_field(obj, "type", true, &type, err);
    if (rc == EVB_OK && evb_check_type(type, err) != EVB_OK) {
        char msg[EVB_ERR_MSG_LEN];
        snprintf(msg, sizeof msg, "%s", err->msg);
        rc = evb_err_set(err, EVB_EINVAL, "field \"type\": %s", msg);
    }
    if (rc == EVB_OK) rc = s_id_field(obj, "id", &ev.id, err);
    if (rc == EVB_OK) rc = s_id_field(obj, "correlation_id", &ev.correlation_id, err);
    if (rc == EVB_OK) rc = s_id_field(obj, "causation_id", &ev.causation_id, err);
    if (rc == EVB_OK) rc = s_expected(obj, &expected, err);
    if (rc == EVB_OK) rc = s_map_field(obj, "payload", payload, &has_payload, err);
    if (rc == EVB_OK) rc = s_map_field(obj, "metadata", meta, &has_meta, err);
    if (rc == EVB_OK) {
        const json_val *sv = json_get(obj, "schema");
        ev.schema = 1;
        if (sv != NULL) {
            if (sv->type != JSON_INT || sv->i < 1 || sv->i > UINT32_MAX)
                rc = evb_err_set(
                    err, EVB_EINVAL,
                    "field \"schema\": expected an integer from 1 to %" PRIu32,
                    UINT32_MAX);
            else
                ev.schema = (uint32_t)sv->i;
        }
    }
    if (rc == EVB_OK) {
        ev.type = type;
        ev.payload =
            has_payload ? (const void *)payload->data : (const void *)evb_empty_map;
        ev.payload_len = has_payload ? payload->len : sizeof evb_empty_map;
        ev.metadata = has_meta ? meta->data : NULL;
        ev.metadata_len = has_meta ? meta->len : 0;
        snprintf(lr->stream, sizeof lr->stream, "%s", stream);
        rc = evb_store_append(st, lr->stream, expected, &ev, 1, &lr->res, err);
        lr->id = ev.id;
    }
    json_free(&obj);
    return rc;
}

static int s_print_ok(cli_t *cli, bool json, unsigned long long lineno,
                      const line_result *lr)
{
    char id[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&lr->id, id);
    if (json)
        return cli_printf(cli,
                          "{\"line\":%llu,\"ok\":true,\"seq\":%" PRIu64
                          ",\"stream\":\"%s\",\"version\":%" PRIu64
                          ",\"id\":\"%s\",\"duplicate\":%s}\n",
                          lineno, lr->res.first_seq, lr->stream, lr->res.first_version,
                          id, lr->res.duplicate ? "true" : "false");
    return cli_printf(cli, "line %llu: %s seq %" PRIu64 " %s version %" PRIu64 " id %s\n",
                      lineno, lr->res.duplicate ? "duplicate of" : "appended",
                      lr->res.first_seq, lr->stream, lr->res.first_version, id);
}

/* What a run appended, for --quiet's summary line. */
typedef struct tally {
    unsigned long long appended, duplicates;
    uint64_t first, last; /* lowest and highest seq appended (0: none) */
} tally;

/* One line stored: counted, and printed unless quiet. */
static void s_line_ok(cli_t *cli, bool json, bool quiet, unsigned long long lineno,
                      const line_result *lr, tally *t)
{
    if (lr->res.duplicate) {
        t->duplicates++;
    } else {
        t->appended++;
        if (t->first == 0 || lr->res.first_seq < t->first) t->first = lr->res.first_seq;
        if (lr->res.last_seq > t->last) t->last = lr->res.last_seq;
    }
    if (!quiet) s_print_ok(cli, json, lineno, lr);
}

/* --quiet: one line for people at the end, "appended 1,234 events (seq
 * 5..1238) to DIR", whatever happened (the errors went to stderr). With
 * --to the seqs are the lowest and highest of ours: other writers' events
 * may sit between them. */
static void s_summary(cli_t *cli, const tally *t, const char *where)
{
    char n[32], a[32], b[32], d[32];
    cli_group(t->appended, n);
    cli_printf(cli, "appended %s event%s", n, t->appended == 1 ? "" : "s");
    if (t->appended == 1)
        cli_printf(cli, " (seq %s)", cli_group(t->first, a));
    else if (t->appended > 1)
        cli_printf(cli, " (seq %s..%s)", cli_group(t->first, a), cli_group(t->last, b));
    cli_printf(cli, " to %s", where);
    if (t->duplicates > 0)
        cli_printf(cli, "; %s already stored (duplicate ids)",
                   cli_group(t->duplicates, d));
    cli_printf(cli, "\n");
}

static int s_print_err(cli_t *cli, bool json, unsigned long long lineno, const char *msg)
{
    cli_error(cli, "line %llu: %s", lineno, msg);
    if (!json) return 0;
    evb_buf b = {0};
    evb_err err = {0};
    int rc = evb_buf_printf(&b, &err, "{\"line\":%llu,\"ok\":false,\"error\":", lineno);
    if (rc == EVB_OK) rc = cli_json_str(&b, msg, &err);
    if (rc == EVB_OK) rc = evb_buf_append(&b, "}\n", 2, &err);
    if (rc == EVB_OK) rc = cli_write(cli, b.data, b.len);
    evb_buf_free(&b);
    return rc;
}

/* SIGINT or SIGTERM stopped the loop between two lines (or a read of
 * stdin): what was reported stays reported (cli_finish flushes stdout). */
static int s_interrupted(cli_t *cli, unsigned long long lineno)
{
    cli_error(cli, "interrupted after line %llu: the lines after it were not read "
                   "(each line reported above is stored)", lineno);
    return CLI_EXIT_RUNTIME;
}

/* The store's size check, made here with the same limit and message (an
 * event over it would not fit the command socket's request either, and the
 * service would see no request at all). scratch is only working space. */
static int s_content_size(const json_val *obj, evb_buf *scratch, evb_err *err)
{
    static const char *const parts[2] = {"payload", "metadata"};
    size_t sizes[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        bool present;
        scratch->len = 0;
        int rc = s_map_field(obj, parts[i], scratch, &present, err);
        if (rc != EVB_OK) return rc;
        sizes[i] = scratch->len;
    }
    scratch->len = 0;
    evb_err e = {0};
    if (evb_check_content_size(sizes[0], sizes[1], &e) == EVB_OK) return EVB_OK;
    const json_val *sv = json_get(obj, "stream");
    if (sv == NULL || sv->type != JSON_STR) return evb_err_set(err, EVB_ETOOBIG, "%s", e.msg);
    return evb_err_set(err, EVB_ETOOBIG, "append to %.200s, event 0: %s", sv->str, e.msg);
}

/* One line through the service at ep. EVB_OK with lr filled, or the
 * call's error (EVB_ETIMEDOUT: no answer) with err naming the problem. */
static int s_send_line(evb_cmd_client_t *client, int timeout_ms, const evb_buf *line,
                       evb_buf *args, evb_buf *reply, line_result *lr, evb_err *err)
{
    json_val *obj = NULL;
    int rc = json_parse(line->data, line->len, &obj, err);
    if (rc != EVB_OK) {
        char msg[EVB_ERR_MSG_LEN];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return evb_err_set(err, EVB_EINVAL, "not valid JSON: %s", msg);
    }
    args->len = 0;
    rc = s_check_fields(obj, err);
    if (rc == EVB_OK) rc = s_content_size(obj, args, err);
    if (rc == EVB_OK) rc = json_to_msgpack(obj, args, err);
    json_free(&obj);
    if (rc != EVB_OK) return rc;
    rc = evb_cmd_client_call(client, "append", args->data, args->len, timeout_ms, reply,
                             err);
    if (rc != EVB_OK) return rc;
    ops_reply r;
    rc = ops_reply_parse(&r, reply->data, reply->len, err);
    char hex[EVB_ID_HEX_LEN + 1];
    const msgpack_object *dup = rc == EVB_OK ? ops_get(r.root, "duplicate") : NULL;
    bool complete =
        rc == EVB_OK && dup != NULL && dup->type == MSGPACK_OBJECT_BOOLEAN &&
        ops_get(r.root, "seq") != NULL &&
        ops_str(r.root, "stream", lr->stream, sizeof lr->stream, NULL) != NULL &&
        ops_str(r.root, "id", hex, sizeof hex, NULL) != NULL &&
        evb_id_from_hex(hex, &lr->id, NULL) == EVB_OK;
    if (complete) {
        lr->res.first_seq = lr->res.last_seq = ops_u64(r.root, "seq", 0);
        lr->res.first_version = lr->res.last_version = ops_u64(r.root, "version", 0);
        lr->res.duplicate = dup->via.boolean;
    } else if (rc == EVB_OK) {
        rc = evb_err_set(err, EVB_EDECODE, "the reply to append lacks a field");
    }
    ops_reply_free(&r);
    return rc;
}

/* `append --to EP`: every line through the service, on one connection (a
 * client per line cost a ZeroMQ context each: ~1,300 lines/s). */
static int s_run_remote(cli_t *cli, const char *ep, const evb_curve *curve,
                        int timeout_ms, bool json, bool quiet)
{
    evb_err cerr = {0};
    evb_cmd_client_t *client =
        curve ? evb_cmd_client_new(&(evb_cmd_opts){.endpoint = ep, .curve = curve}, &cerr)
              : evb_cmd_client_new(&(evb_cmd_opts){.endpoint = ep}, &cerr);
    if (client == NULL) {
        cli_error(cli, "%s", cerr.msg);
        return cli_finish(cli, cerr.code == EVB_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME);
    }
    line_in in = {0};
    evb_buf args = {0}, reply = {0};
    evb_err err = {0};
    unsigned long long lineno = 0, ok = 0, failed = 0;
    tally t = {0};
    int rc = CLI_EXIT_OK;
    while (!cli->pipe_closed && !cli_stop_requested() && s_read_line(&in)) {
        lineno++;
        if (in.too_long) {
            char msg[96];
            snprintf(msg, sizeof msg, "line longer than %u bytes (skipped)", S_MAX_LINE);
            s_print_err(cli, json, lineno, msg);
            failed++;
            continue;
        }
        if (s_blank(&in.buf)) continue;
        line_result lr = {0};
        evb_err_clear(&err);
        int arc = s_send_line(client, timeout_ms, &in.buf, &args, &reply, &lr, &err);
        if (arc == EVB_OK) {
            s_line_ok(cli, json, quiet, lineno, &lr, &t);
            ok++;
            continue;
        }
        failed++;
        s_print_err(cli, json, lineno, err.msg[0] ? err.msg : evb_strerror(arc));
        if (arc == EVB_EAUTH || arc == EVB_EUNREACHABLE) {
            cli_error(cli, "%s: %s; lines after %llu were not read", ep, err.msg, lineno);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        if (arc == EVB_ETIMEDOUT) {
            cli_error(cli,
                      "%s: the service did not answer; lines after %llu were not read "
                      "(line %llu may or may not be stored: send it again with its id)",
                      ep, lineno, lineno);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
        if (arc == EVB_EUNWRITABLE || arc == EVB_EIO || arc == EVB_ECORRUPT ||
            arc == EVB_ENOMEM) {
            cli_error(cli,
                      "%s: the service's log stopped accepting writes; lines after "
                      "%llu were not read",
                      ep, lineno);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
    }
    if (rc == CLI_EXIT_OK && cli_stop_requested()) rc = s_interrupted(cli, lineno);
    if (rc == CLI_EXIT_OK && ferror(stdin)) {
        cli_error(cli, "reading stdin: %s", strerror(errno));
        rc = CLI_EXIT_RUNTIME;
    }
    if (rc == CLI_EXIT_OK && failed > 0) rc = CLI_EXIT_PROBLEMS;
    if (quiet) s_summary(cli, &t, ep);
    if (failed > 0) cli_error(cli, "%llu of %llu lines failed", failed, ok + failed);
    evb_buf_free(&in.buf);
    evb_buf_free(&args);
    evb_buf_free(&reply);
    evb_cmd_client_destroy(&client);
    return cli_finish(cli, rc);
}

int cmd_append(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus append");
    cli_install_log_sink(&cli);
    const char *dir = NULL, *service = NULL, *sync_s = "group", *to = NULL;
    const char *cert = NULL, *server_key = NULL; /* CURVE (README.md, "Security") */
    const char *context = NULL;                  /* context.h: its cmd as --to */
    bool create = false, json = false, quiet = false, sync_set = false,
         timeout_set = false;
    uint64_t timeout_ms = OPS_DEFAULT_TIMEOUT_MS;
    const cli_opt opts[] = {
        {"store", CLI_STR, &dir, NULL, "DIR",
         "the log to append to (it must not be served)"},
        {"to", CLI_STR, &to, NULL, "CMD_EP",
         "append through a running `evbus serve --cmd CMD_EP` instead"},
        {"timeout", CLI_DUR_MS, &timeout_ms, &timeout_set, "DURATION",
         "with --to: wait at most this long per line (default 3s)"},
        {"create", CLI_FLAG, &create, NULL, NULL,
         "create the log if DIR holds none (needs --service)"},
        {"service", CLI_STR, &service, NULL, "NAME", "service name of a new log"},
        {"sync", CLI_STR, &sync_s, &sync_set, "POLICY",
         "none, every (fsync each line) or group (default)"},
        {"json", CLI_FLAG, &json, NULL, NULL,
         "one JSON result object per line on stdout, errors included"},
        {"quiet", CLI_FLAG, &quiet, NULL, NULL,
         "no line per event: one summary line at the end (errors still on stderr)"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "with --to, CURVE: our certificate (NAME_secret of `evbus cert new`)"},
        {"server-key", CLI_STR, &server_key, NULL, "KEY|FILE",
         "with --to, CURVE: the service's public key, or its public certificate"},
        {"context", CLI_STR, &context, NULL, "NAME",
         "--to (and CURVE) from saved context NAME's cmd (default $EVBUS_CONTEXT)"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "--store DIR [--create --service NAME] [--sync none|every|group] [--json] [-q]\n"
        "       --to CMD_EP [--timeout DURATION] [--cert FILE --server-key KEY] [--json]\n"
        "       --context NAME [--timeout DURATION] [--json]   (its cmd as --to CMD_EP)",
        "Append events read from stdin, one JSON object per line, to the log in\n"
        "DIR, with no service running (use a copy, or stop the service: a log is\n"
        "opened by one process at a time), or with --to through the command\n"
        "socket of a running `evbus serve --cmd`. Each line is appended on its own:\n"
        "  {\"stream\": \"show-1\", \"type\": \"ShowAdded\", \"payload\": {...},\n"
        "   \"id\": \"<32 hex>\", \"expected_version\": \"any\" | \"none\" | N,\n"
        "   \"schema\": N, \"correlation_id\": \"<32 hex>\",\n"
        "   \"causation_id\": \"<32 hex>\", \"metadata\": {...}}\n"
        "stream and type are required; payload defaults to {}; without id a\n"
        "UUIDv7 is made. A line whose id is already stored in that stream\n"
        "is a retry: nothing is written and the original position is printed.",
        "For every line, stdout gets its position ('line N: appended seq S STREAM\n"
        "version V id ID', or 'duplicate of ...'); a bad line is reported on\n"
        "stderr as 'evbus append: line N: ...' naming the field, and the next\n"
        "line goes on. Blank lines are skipped. JSON integers become msgpack\n"
        "integers, other numbers float64.\n"
        "-q, --quiet (with --store or --to) prints no line per event, only one\n"
        "at the end, for people:\n"
        "'appended 1,234 events (seq 5..1238) to DIR' (or to CMD_EP; with\n"
        "'; N already stored (duplicate ids)' when some lines were retries).\n"
        "Errors still go to stderr as above. Not with --json.\n"
        "Exit code 0 when every line was appended (or was a duplicate), 1 when\n"
        "some failed, 3 when the log cannot be opened, 4 when the store stopped\n"
        "accepting writes or (--to) the service did not answer within --timeout\n"
        "(the rest of stdin is not read; give lines an id so that sending them\n"
        "again is safe).\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    /* A context's cmd stands for --to only when no log is named: --store
     * (given on the command line) wins over a context, as any flag does. */
    bool to_given = to != NULL;
    if (dir == NULL &&
        (rc = ctx_cmd_socket(&cli, context, NULL, &to, &cert, &server_key)) >= 0)
        return rc;
    cli_catch_stop_signals(); /* stop between lines: what was reported is flushed */
    if (quiet && json)
        return cli_usage_error(&cli, "--quiet and --json exclude each other (--json is "
                                     "the line per event for scripts)");
    if (to != NULL) {
        if (!to_given && (create || service != NULL || sync_set))
            return cli_usage_error(&cli,
                                   "--create, --service and --sync go with --store DIR; "
                                   "without it the context's cmd (%s) stands for --to",
                                   to);
        if (dir != NULL || create || service != NULL || sync_set)
            return cli_usage_error(&cli,
                                   "--to takes none of --store, --create, --service, "
                                   "--sync (the service owns its log)");
        if (timeout_ms == 0 || timeout_ms > OPS_MAX_TIMEOUT_MS)
            return cli_usage_error(&cli, "--timeout: expected 1ms..%us",
                                   OPS_MAX_TIMEOUT_MS / 1000);
        if ((rc = ops_check_endpoint(&cli, to)) >= 0) return rc;
        if ((cert == NULL) != (server_key == NULL))
            return cli_usage_error(&cli, "--cert and --server-key go together");
        const evb_curve curve = {.cert_file = cert, .server_key = server_key};
        rc = s_run_remote(&cli, to, cert ? &curve : NULL, (int)timeout_ms, json, quiet);
        evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
        return rc;
    }
    if (timeout_set) return cli_usage_error(&cli, "--timeout only goes with --to");
    if (cert != NULL || server_key != NULL)
        return cli_usage_error(&cli, "--cert and --server-key only go with --to");
    if (dir == NULL)
        return cli_usage_error(&cli,
                               "--store DIR or --to CMD_EP (or --context NAME with a "
                               "cmd) is required");
    int sync;
    if (cli_parse_sync(sync_s, &sync) != EVB_OK)
        return cli_usage_error(&cli, "--sync: expected none, every or group, got '%s'",
                               sync_s);
    evb_err err = {0};
    if (create && service == NULL)
        return cli_usage_error(&cli, "--create needs --service NAME");
    if (service != NULL && !create)
        return cli_usage_error(&cli, "--service only names a new log (with --create)");
    if (service != NULL && evb_check_service(service, &err) != EVB_OK)
        return cli_usage_error(&cli, "--service: %s", err.msg);

    int xc;
    evb_store_t *st = cli_open_log(&cli, dir, service, create, sync, &xc);
    if (st == NULL)
        return xc;

    line_in in = {0};
    evb_buf payload = {0}, meta = {0};
    unsigned long long lineno = 0, ok = 0, failed = 0;
    tally t = {0};
    rc = CLI_EXIT_OK;
    while (!cli.pipe_closed && !cli_stop_requested() && s_read_line(&in)) {
        lineno++;
        if (in.too_long) {
            char msg[96];
            snprintf(msg, sizeof msg, "line longer than %u bytes (skipped)", S_MAX_LINE);
            s_print_err(&cli, json, lineno, msg);
            failed++;
            continue;
        }
        if (s_blank(&in.buf)) continue;
        line_result lr = {0};
        evb_err_clear(&err);
        int arc = s_append_line(st, &in.buf, &payload, &meta, &lr, &err);
        if (arc == EVB_OK) {
            s_line_ok(&cli, json, quiet, lineno, &lr, &t);
            ok++;
            continue;
        }
        failed++;
        s_print_err(&cli, json, lineno, err.msg[0] ? err.msg : evb_strerror(arc));
        if (arc == EVB_EUNWRITABLE || arc == EVB_EIO || arc == EVB_ECORRUPT ||
            arc == EVB_ENOMEM) {
            cli_error(&cli,
                      "%s: the log stopped accepting writes; lines after %llu were "
                      "not read",
                      dir, lineno);
            rc = CLI_EXIT_RUNTIME;
            break;
        }
    }
    if (rc == CLI_EXIT_OK && cli_stop_requested()) rc = s_interrupted(&cli, lineno);
    if (rc == CLI_EXIT_OK && ferror(stdin)) {
        cli_error(&cli, "reading stdin: %s", strerror(errno));
        rc = CLI_EXIT_RUNTIME;
    }
    if (rc == CLI_EXIT_OK && failed > 0) rc = CLI_EXIT_PROBLEMS;
    if (quiet) s_summary(&cli, &t, dir);
    if (failed > 0) cli_error(&cli, "%llu of %llu lines failed", failed, ok + failed);
    evb_buf_free(&in.buf);
    evb_buf_free(&payload);
    evb_buf_free(&meta);
    evb_store_destroy(&st);
    rc = cli_finish(&cli, rc);
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
    return rc;
}
