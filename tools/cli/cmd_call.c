/*
 * cmd_call.c: `evbus call`: send one command to a service's command socket
 * and print the reply (bus/PROTOCOL.md, "Command socket").
 *
 * The arguments are a msgpack map built from KEY=VALUE words (typed by a
 * small fixed rule, see the help text), KEY:=JSON words and --payload JSON,
 * plus the reserved "cmd_id": the id services deduplicate commands by. A
 * retry after a timeout sends the same cmd_id on the same client (one DEALER
 * for every attempt, evb_cmd_client_t), so a service that carried out the
 * first attempt answers the retry with that first outcome, and a late reply
 * to an earlier attempt is dropped by the library instead of being taken for
 * the current one.
 *
 * Exit codes are finer than elsewhere because scripts branch on them: the
 * domain said no (5), the request was wrong (6), nobody answered (7).
 */
#include "cli.h"
#include "json_in.h"
#include "ops.h"
#include "context.h"
#include "disc_cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include <evbus/evbus_bus.h>

#define CALL_MAX_ARGS 256 /* KEY=VALUE words */
#define CALL_MAX_PAYLOAD_KEYS 4096u
#define CALL_MAX_RETRIES 100u
#define CALL_CMD_ID_MAX 64 /* bytes of a cmd_id */
#define CALL_KEY_WIDTH 24  /* readable output: keys are padded up to this */

/* One argument: its key (borrowed from argv or the --payload tree) and its
 * value packed as msgpack. */
typedef struct call_arg {
    const char *key;
    size_t klen;
    evb_buf val;
} call_arg;

typedef struct call_args {
    call_arg a[CALL_MAX_ARGS + CALL_MAX_PAYLOAD_KEYS];
    size_t n;
} call_args;

/* ---- building the arguments ---- */

/* True when s is valid UTF-8 without control characters. */
static bool s_text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
        size_t l = evb_utf8_len(s + i, n - i);
        if (l == 0) return false;
        i += l;
    }
    return true;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? : JSON's number grammar. */
static bool s_is_number(const char *s)
{
    const char *p = s;
    if (*p == '-') p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return false;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

static int s_pack_str(evb_buf *b, const char *s, size_t n)
{
    ops_w w;
    ops_w_init(&w, b);
    msgpack_pack_str(&w.pk, n);
    msgpack_pack_str_body(&w.pk, s, n);
    return w.rc;
}

/* Pack the JSON text t as msgpack into b. EVB_EDECODE etc. with err. */
static int s_pack_json(evb_buf *b, const char *t, evb_err *err)
{
    json_val *v = NULL;
    int rc = json_parse(t, strlen(t), &v, err);
    if (rc == EVB_OK) rc = json_to_msgpack(v, b, err);
    json_free(&v);
    return rc;
}

static call_arg *s_find_arg(call_args *as, const char *key, size_t klen)
{
    for (size_t i = 0; i < as->n; i++)
        if (as->a[i].klen == klen && memcmp(as->a[i].key, key, klen) == 0)
            return &as->a[i];
    return NULL;
}

/* KEY=VALUE or KEY:=JSON into the next slot of as. Returns -1 to go on or
 * the exit code (a usage error, named). */
static int s_add_word(cli_t *cli, call_args *as, const char *word)
{
    const char *eq = strchr(word, '=');
    if (eq == NULL)
        return cli_usage_error(cli, "'%s': expected KEY=VALUE or KEY:=JSON", word);
    bool json = eq > word && eq[-1] == ':';
    size_t klen = (size_t)(eq - word) - (json ? 1 : 0);
    if (klen == 0) return cli_usage_error(cli, "'%s': the key is empty", word);
    if (!s_text_ok(word, klen))
        return cli_usage_error(cli, "'%s': the key is not printable UTF-8", word);
    if (klen == 6 && memcmp(word, "cmd_id", 6) == 0)
        return cli_usage_error(cli, "'%s': cmd_id is reserved; set it with --id", word);
    if (s_find_arg(as, word, klen) != NULL)
        return cli_usage_error(cli, "'%.*s' is given twice", (int)klen, word);
    const char *v = eq + 1;
    size_t vlen = strlen(v);
    call_arg *a = &as->a[as->n];
    memset(a, 0, sizeof *a);
    a->key = word;
    a->klen = klen;
    evb_err err = {0};
    int rc;
    if (json) {
        rc = s_pack_json(&a->val, v, &err);
    } else if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
        if (!s_text_ok(v + 1, vlen - 2)) {
            evb_buf_free(&a->val);
            return cli_usage_error(cli, "'%.*s': the value is not printable UTF-8",
                                   (int)klen, word);
        }
        rc = s_pack_str(&a->val, v + 1, vlen - 2);
    } else if (s_is_number(v) || strcmp(v, "true") == 0 || strcmp(v, "false") == 0 ||
               strcmp(v, "null") == 0) {
        rc = s_pack_json(&a->val, v, &err); /* out of range: an error, not a string */
    } else {
        if (!s_text_ok(v, vlen)) {
            evb_buf_free(&a->val);
            return cli_usage_error(cli, "'%.*s': the value is not printable UTF-8",
                                   (int)klen, word);
        }
        rc = s_pack_str(&a->val, v, vlen);
    }
    if (rc != EVB_OK) {
        evb_buf_free(&a->val);
        return cli_usage_error(cli, "'%s': %s", word,
                               err.msg[0] ? err.msg : evb_strerror(rc));
    }
    as->n++;
    return -1;
}

/* The members of --payload's object that no KEY=VALUE word names. */
static int s_add_payload(cli_t *cli, call_args *as, const json_val *obj, size_t nwords)
{
    if (obj->type != JSON_OBJ)
        return cli_usage_error(cli, "--payload: expected a JSON object, got %s",
                               json_type_name(obj->type));
    if (obj->n > CALL_MAX_PAYLOAD_KEYS)
        return cli_usage_error(cli, "--payload: more than %u keys",
                               CALL_MAX_PAYLOAD_KEYS);
    for (size_t i = 0; i < obj->n; i++) {
        const json_val *k = &obj->kids[i];
        if (k->klen == 6 && memcmp(k->key, "cmd_id", 6) == 0)
            return cli_usage_error(cli,
                                   "--payload: cmd_id is reserved; set it with --id");
        for (size_t j = 0; j < i; j++)
            if (obj->kids[j].klen == k->klen &&
                memcmp(obj->kids[j].key, k->key, k->klen) == 0)
                return cli_usage_error(cli, "--payload: key \"%.*s\" is given twice",
                                       (int)(k->klen > 64 ? 64 : k->klen), k->key);
        bool named = false; /* KEY=VALUE words win */
        for (size_t j = 0; j < nwords && !named; j++)
            named =
                as->a[j].klen == k->klen && memcmp(as->a[j].key, k->key, k->klen) == 0;
        if (named) continue;
        call_arg *a = &as->a[as->n];
        memset(a, 0, sizeof *a);
        a->key = k->key;
        a->klen = k->klen;
        evb_err err = {0};
        if (json_to_msgpack(k, &a->val, &err) != EVB_OK) {
            evb_buf_free(&a->val);
            return cli_usage_error(cli, "--payload: %s", err.msg);
        }
        as->n++;
    }
    return -1;
}

/* The map: every argument, then cmd_id. */
static int s_pack_args(const call_args *as, const char *cmd_id, evb_buf *out)
{
    ops_w w;
    ops_w_init(&w, out);
    msgpack_pack_map(&w.pk, (uint32_t)as->n + 1);
    for (size_t i = 0; i < as->n && w.rc == EVB_OK; i++) {
        msgpack_pack_str(&w.pk, as->a[i].klen);
        msgpack_pack_str_body(&w.pk, as->a[i].key, as->a[i].klen);
        if (w.rc == EVB_OK)
            w.rc = evb_buf_append(out, as->a[i].val.data, as->a[i].val.len, NULL);
    }
    ops_w_kv_str(&w, "cmd_id", cmd_id);
    return w.rc;
}

/* ---- printing the reply ---- */

/* One value as text for `key: value` lines: strings bare when they need no
 * escaping, numbers and booleans as such, anything else as compact JSON. */
static int s_value_text(const msgpack_object *v, evb_buf *tmp, evb_buf *txt)
{
    tmp->len = 0;
    txt->len = 0;
    switch (v->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return evb_buf_printf(txt, NULL, "%" PRIu64, v->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return evb_buf_printf(txt, NULL, "%" PRId64, v->via.i64);
    case MSGPACK_OBJECT_STR:
        if (s_text_ok(v->via.str.ptr, v->via.str.size))
            return evb_buf_append(txt, v->via.str.ptr, v->via.str.size, NULL);
        break;
    default:
        break;
    }
    ops_w w;
    ops_w_init(&w, tmp);
    msgpack_pack_object(&w.pk, *v);
    if (w.rc != EVB_OK) return w.rc;
    return evb_msgpack_to_json(tmp->data, tmp->len, txt, NULL);
}

static int s_print_readable(cli_t *cli, const void *body, size_t len)
{
    ops_reply r;
    evb_err err = {0};
    int rc = ops_reply_parse(&r, body, len, &err);
    evb_buf tmp = {0}, key = {0}, txt = {0};
    const msgpack_object_map *m = rc == EVB_OK ? &r.root->via.map : NULL;
    size_t width = 0;
    for (uint32_t i = 0; m != NULL && i < m->size && rc == EVB_OK; i++) {
        rc = s_value_text(&m->ptr[i].key, &tmp, &key);
        if (rc == EVB_OK && key.len > width) width = key.len;
    }
    if (width > CALL_KEY_WIDTH) width = CALL_KEY_WIDTH;
    if (m != NULL && m->size == 0 && rc == EVB_OK) cli_printf(cli, "ok\n");
    for (uint32_t i = 0; m != NULL && i < m->size && rc == EVB_OK; i++) {
        rc = s_value_text(&m->ptr[i].key, &tmp, &key);
        if (rc == EVB_OK) rc = s_value_text(&m->ptr[i].val, &tmp, &txt);
        if (rc != EVB_OK) break;
        int pad = key.len < width ? (int)(width - key.len) : 0;
        cli_printf(cli, "%s%.*s:%s %*s%.*s\n", cli_bold(cli), (int)key.len, key.data,
                   cli_reset(cli), pad, "", (int)txt.len, txt.data);
    }
    if (rc != EVB_OK)
        cli_error(cli, "the reply: %s", err.msg[0] ? err.msg : evb_strerror(rc));
    ops_reply_free(&r);
    evb_buf_free(&tmp);
    evb_buf_free(&key);
    evb_buf_free(&txt);
    return rc;
}

/* ---- errors ---- */

static int s_exit_for(int code)
{
    switch (code) {
    case EVB_OK:
        return CLI_EXIT_OK;
    case EVB_EREJECTED:
    case EVB_ECONFLICT:
        return CLI_EXIT_REJECTED;
    case EVB_EINVAL:
    case EVB_EDECODE:
    case EVB_ETOOBIG:
        return CLI_EXIT_BAD_REQUEST;
    case EVB_ETIMEDOUT:
    case EVB_EUNREACHABLE:
        return CLI_EXIT_UNREACHABLE;
    case EVB_EAUTH:
        return CLI_EXIT_AUTH;
    default:
        return CLI_EXIT_RUNTIME;
    }
}

/* "evbus call: CODE: message" on stderr; with --json also
 * {"error": CODE, "message": ...} on stdout. */
static void s_report(cli_t *cli, bool json, int code, const char *msg)
{
    cli_error(cli, "%s: %s", evb_code_name(code), msg);
    if (!json) return;
    evb_buf b = {0};
    int rc = evb_buf_append(&b, "{\"error\":", 9, NULL);
    if (rc == EVB_OK) rc = cli_json_str(&b, evb_code_name(code), NULL);
    if (rc == EVB_OK) rc = evb_buf_append(&b, ",\"message\":", 11, NULL);
    if (rc == EVB_OK) rc = cli_json_str(&b, msg, NULL);
    if (rc == EVB_OK) rc = evb_buf_append(&b, "}\n", 2, NULL);
    if (rc == EVB_OK) cli_write(cli, b.data, b.len);
    evb_buf_free(&b);
}

/* ---- the command ---- */

static const char s_notes[] =
    "Arguments (a msgpack map, sent with COMMAND):\n"
    "  KEY=123, KEY=-4        an integer (JSON number syntax: no leading zeros,\n"
    "                         within 64 bits; beyond that an error)\n"
    "  KEY=1.5, KEY=2e3       a float\n"
    "  KEY=true, KEY=false    a boolean\n"
    "  KEY=null               nil\n"
    "  KEY='\"text\"'           a string, always: the text between the double\n"
    "                         quotes, as is (KEY='\"123\"' is the string 123)\n"
    "  KEY=anything else      a string (KEY= is the empty string)\n"
    "  KEY:=JSON              any JSON value: KEY:='{\"seats\":5}', KEY:='[1,2]'\n"
    "  --payload JSON         a JSON object whose members are added; a KEY=VALUE\n"
    "                         word with the same key wins\n"
    "A key is given once. Every call also carries \"cmd_id\" (reserved): --id,\n"
    "or 32 random hex characters. Services deduplicate commands by it, so\n"
    "--retries (the same cmd_id after each timeout) gets the first outcome\n"
    "back rather than doing the work twice; give --id to retry across runs.\n"
    "Each attempt waits --timeout (e.g. 3s, 500ms); a retry is announced on stderr.\n\n"
    "Output: the reply as aligned `key: value` lines (nested maps and arrays\n"
    "as compact JSON), or with --json exactly one JSON object: the reply, or\n"
    "{\"error\": CODE, \"message\": ...} when the call failed. Errors also go to\n"
    "stderr as \"evbus call: CODE: message\". Scripts may rely on the exit\n"
    "codes below.\n";

int cmd_call(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus call");
    bool json = false;
    uint64_t timeout_ms = OPS_DEFAULT_TIMEOUT_MS, retries = 0;
    const char *payload = NULL, *id = NULL;
    const char *cert = NULL, *server_key = NULL; /* CURVE (README.md, "Security") */
    const char *beacon_iface = NULL; /* @NAME: found by beacons (disc_cli.h) */
    const char *context = NULL;      /* context.h */
    uint64_t beacon_port = 0;
    bool beacon_port_set = false;
    const cli_opt opts[] = {
        {"payload", CLI_STR, &payload, NULL, "JSON",
         "a JSON object merged into the arguments"},
        {"json", CLI_FLAG, &json, NULL, NULL, "print the reply as one JSON object"},
        {"timeout", CLI_DUR_MS, &timeout_ms, NULL, "DURATION",
         "wait at most this long for each attempt (default 3s)"},
        {"id", CLI_STR, &id, NULL, "CMD_ID",
         "the command id (1..64 bytes; default: 32 random hex)"},
        {"retries", CLI_U64, &retries, NULL, "N",
         "after a timeout, send the same cmd_id again, N times"},
        {"cert", CLI_STR, &cert, NULL, "FILE",
         "CURVE: our certificate (NAME_secret of `evbus cert new`)"},
        {"server-key", CLI_STR, &server_key, NULL, "KEY|FILE",
         "CURVE: the service's public key, or its public certificate"},
        {"beacon-iface", CLI_STR, &beacon_iface, NULL, "NAME",
         "for @NAME: the beacon interface (default $EVBUS_BEACON_IFACE)"},
        {"beacon-port", CLI_U64, &beacon_port, &beacon_port_set, "N",
         "for @NAME: the beacons' UDP port (default 5670)"},
        {"context", CLI_STR, &context, NULL, "NAME", CTX_OPT_HELP},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_REJECTED) | CLI_EXITS(CLI_EXIT_BAD_REQUEST) |
            CLI_EXITS(CLI_EXIT_UNREACHABLE) | CLI_EXITS(CLI_EXIT_AUTH),
        "CMD_EP|@SERVICE COMMAND [KEY=VALUE | KEY:=JSON]... [--payload JSON] [--json]\n"
        "       [--timeout DURATION] [--id CMD_ID] [--retries N] [--cert FILE --server-key KEY]",
        "Send COMMAND to the command socket at CMD_EP (evbus serve --cmd, evbus\n"
        "mirror --cmd, a service) and print its reply, e.g.\n"
        "  evbus call ipc:///run/evbus/shows.cmd status\n"
        "  evbus call ipc:///run/evbus/shows.cmd append stream=show-1 \\\n"
        "      type=ShowAdded payload:='{\"seats\":100}'\n"
        "@SERVICE names a service instead: its command endpoint is taken from its\n"
        "beacon (it runs with --announce) heard on --beacon-iface within 3 s, e.g.\n"
        "  evbus call @reservation status --beacon-iface eth0\n"
        "With --context NAME (-C, or EVBUS_CONTEXT) CMD_EP may be left out: the\n"
        "saved context's cmd is used (`evbus context`), e.g. `evbus call -C prod\n"
        "status`; a first argument with \"://\" or a leading '@' is still CMD_EP.\n"
        "A call opens a connection of its own: for load, use `evbus bench --case\n"
        "booking --to RES_CMD,BK_CMD` (persistent connections, --rate, percentiles).",
        s_notes};
    const char *pos[2 + CALL_MAX_ARGS];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 1, 2 + CALL_MAX_ARGS, pos, &npos);
    if (rc >= 0) return rc;
    /* CMD_EP from a context: endpoints always hold "://" (tcp://, ipc://),
     * @NAME starts with '@', a COMMAND holds neither; so an argument that
     * looks like neither is the COMMAND, and CMD_EP the context's. */
    const char *ctx_ep = NULL;
    if (strstr(pos[0], "://") != NULL || pos[0][0] == '@') ctx_ep = pos[0];
    bool ep_given = ctx_ep != NULL;
    if ((rc = ctx_cmd_socket(&cli, context, NULL, &ctx_ep, &cert, &server_key)) >= 0)
        return rc;
    if (!ep_given && ctx_ep != NULL) { /* the context's: the rest move up one */
        if (npos == 2 + CALL_MAX_ARGS)
            return cli_usage_error(&cli, "more than %d KEY=VALUE arguments",
                                   CALL_MAX_ARGS);
        memmove(pos + 1, pos, npos * sizeof pos[0]);
        pos[0] = ctx_ep;
        npos++;
    }
    if (npos < 2)
        return cli_usage_error(&cli, "missing argument (usage: %s %s)%s", cli.name,
                               "CMD_EP|@SERVICE COMMAND ...",
                               ep_given ? "" : "; or --context NAME with a cmd");
    if (timeout_ms == 0 || timeout_ms > OPS_MAX_TIMEOUT_MS)
        return cli_usage_error(&cli, "--timeout: expected 1ms..%us", OPS_MAX_TIMEOUT_MS / 1000);
    if (retries > CALL_MAX_RETRIES)
        return cli_usage_error(&cli, "--retries: at most %u", CALL_MAX_RETRIES);
    if ((cert == NULL) != (server_key == NULL))
        return cli_usage_error(&cli, "--cert and --server-key go together");
    const char *ep = pos[0], *command = pos[1];
    evb_disc_entry found; /* @NAME: the service's command endpoint, by its beacon */
    if (ep[0] == '@') {
        const char *difc, *dname = ep + 1;
        unsigned dport;
        ctx_note_beacon(&cli, dname, ep);
        if ((rc = disc_cli_settings(&cli, false, beacon_iface, beacon_port, beacon_port_set, &difc,
                                    &dport)) >= 0 ||
            (rc = disc_cli_resolve(&cli, difc, dport, &dname, 1, DISC_CLI_DEFAULT_WAIT_MS,
                                   CLI_EXIT_UNREACHABLE, &found)) >= 0)
            return rc;
        if (found.b.cmd[0] == '\0') {
            cli_error(&cli, "service %s announces no command endpoint", dname);
            return CLI_EXIT_UNREACHABLE;
        }
        ep = found.b.cmd;
    }
    if (strlen(command) > 32 || !s_text_ok(command, strlen(command)))
        return cli_usage_error(&cli, "COMMAND: expected 1..32 printable bytes, got '%s'",
                               command);
    char cmd_id[EVB_ID_HEX_LEN + 1];
    if (id != NULL) {
        if (strlen(id) > CALL_CMD_ID_MAX || !s_text_ok(id, strlen(id)))
            return cli_usage_error(&cli, "--id: expected 1..%d printable bytes",
                                   CALL_CMD_ID_MAX);
    } else {
        evb_id rid;
        evb_err e = {0};
        if (evb_id_random(&rid, &e) != EVB_OK) {
            cli_error(&cli, "cannot make a command id: %s", e.msg);
            return CLI_EXIT_RUNTIME;
        }
        evb_id_to_hex(&rid, cmd_id);
        id = cmd_id;
    }

    call_args *as = calloc(1, sizeof *as);
    json_val *pl = NULL;
    evb_buf args = {0}, out = {0};
    evb_cmd_client_t *c = NULL;
    if (as == NULL) {
        cli_error(&cli, "out of memory");
        return CLI_EXIT_RUNTIME;
    }
    rc = -1;
    for (size_t i = 2; i < npos && rc < 0; i++)
        rc = s_add_word(&cli, as, pos[i]);
    size_t nwords = as->n;
    if (rc < 0 && payload != NULL) {
        evb_err e = {0};
        if (json_parse(payload, strlen(payload), &pl, &e) != EVB_OK)
            rc = cli_usage_error(&cli, "--payload: %s", e.msg);
        else
            rc = s_add_payload(&cli, as, pl, nwords);
    }
    if (rc < 0 && s_pack_args(as, id, &args) != EVB_OK) {
        cli_error(&cli, "out of memory");
        rc = CLI_EXIT_RUNTIME;
    }
    if (rc >= 0) goto done;

    evb_err err = {0};
    const evb_curve curve = {.cert_file = cert, .server_key = server_key};
    c = evb_cmd_client_new(&(evb_cmd_opts){.endpoint = ep, .curve = cert ? &curve : NULL},
                           &err);
    int code = c != NULL ? EVB_OK : err.code;
    if (c == NULL && cert != NULL && code == EVB_EINVAL) {
        rc = cli_usage_error(&cli, "%s", err.msg);
        goto done;
    }
    unsigned attempts = (unsigned)retries + 1;
    for (unsigned k = 1; c != NULL && k <= attempts; k++) {
        code = evb_cmd_client_call(c, command, args.data, args.len, (int)timeout_ms, &out,
                                   &err);
        if (code != EVB_ETIMEDOUT || k == attempts) break;
        cli_error(&cli,
                  "no reply within %u ms; retrying with cmd_id %s (attempt %u of %u)",
                  (unsigned)timeout_ms, id, k + 1, attempts);
    }
    if (code == EVB_ETIMEDOUT && attempts > 1) {
        char msg[EVB_ERR_MSG_LEN];
        snprintf(msg, sizeof msg, "%s", err.msg);
        evb_err_set(&err, code, "%.400s (%u attempts, cmd_id %s)", msg, attempts, id);
    }
    rc = s_exit_for(code);
    if (code != EVB_OK) {
        s_report(&cli, json, code, err.msg);
    } else if (json) {
        evb_buf js = {0};
        if (evb_msgpack_to_json(out.data, out.len, &js, &err) != EVB_OK ||
            evb_buf_append(&js, "\n", 1, &err) != EVB_OK) {
            s_report(&cli, json, err.code, err.msg);
            rc = CLI_EXIT_RUNTIME;
        } else {
            cli_write(&cli, js.data, js.len);
        }
        evb_buf_free(&js);
    } else if (s_print_readable(&cli, out.data, out.len) != EVB_OK) {
        rc = CLI_EXIT_RUNTIME;
    }
    rc = cli_finish(&cli, rc);
done:
    evb_cmd_client_destroy(&c);
    for (size_t i = 0; i < as->n; i++)
        evb_buf_free(&as->a[i].val);
    free(as);
    json_free(&pl);
    evb_buf_free(&args);
    evb_buf_free(&out);
    return rc;
}
