/*
 * cmd_log_io.c: `evbus log export` and `evbus log import`: a log's events as
 * JSON lines carrying their exact bytes, and back.
 *
 * The file format (tools/README.md, "Export files") is designed so that
 * export, import into a new log, export again gives a byte-identical file.
 * Everything an event is stays the same through an import when the target
 * takes the events at the sequences they had (import checks that it does):
 * id, stream, version, type, schema, ts, ids, payload, metadata, origin, and
 * seq. Only the identity of the log that holds them necessarily changes (a
 * new log gets a random log id). So an export leaves the log id out: the
 * JSON objects lack "log_id", and "raw", the stored envelope, has the 16
 * bytes of its log_id element (#3, codec/FORMAT.md) zeroed: zero is the
 * codec's "none", and an exported event is held by no log. Everything else
 * in raw is the stored bytes as they are.
 *
 * Import trusts only raw: it is decoded with evb_event_decode (after putting
 * a placeholder in the zeroed log id), so nothing depends on how JSON typed
 * the payload. The visible fields seq, id, stream, version and type must
 * agree with raw (a hand-edited line is refused, not half-believed). The
 * whole input is checked before anything is written (pass 1): contiguous
 * seqs starting right after the target's head, each stream's versions
 * following on, ids unique and new. Pass 2 reads the file again and appends
 * in batches (consecutive events of one stream). stdin is spooled to a
 * temporary file so that both passes see the same bytes with bounded memory.
 */
#include "cmd_log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <evbus/evbus_store.h>

#include "json_in.h"

#define EXPORT_VERSION 1
/* A line holds one envelope (<= 1 MiB) twice: as JSON (payload rendering is
 * capped at 16 x its size + 4 KiB by the codec) and as base64. */
#define IMPORT_MAX_LINE (24u * 1024u * 1024u)
#define IMPORT_BATCH 1000u
#define IMPORT_BATCH_BYTES (8u * 1024u * 1024u)

/* ---- base64 (RFC 4648, standard alphabet, padded) ---- */

static const char s_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int s_b64_encode(evb_buf *out, const uint8_t *p, size_t n, evb_err *err)
{
    if (n > (SIZE_MAX / 4) * 3 - 3) return evb_err_set(err, EVB_ETOOBIG, "too big");
    size_t need = (n + 2) / 3 * 4;
    int rc = evb_buf_reserve(out, need, err);
    if (rc != EVB_OK) return rc;
    char *o = out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = s_b64[v >> 18];
        *o++ = s_b64[v >> 12 & 63];
        *o++ = s_b64[v >> 6 & 63];
        *o++ = s_b64[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = s_b64[v >> 18];
        *o++ = s_b64[v >> 12 & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = s_b64[v >> 18];
        *o++ = s_b64[v >> 12 & 63];
        *o++ = s_b64[v >> 6 & 63];
        *o++ = '=';
    }
    out->len += need;
    return EVB_OK;
}

static int s_b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict: length a multiple of 4, padding only at the end, no other byte.
 * out is replaced. */
static int s_b64_decode(evb_buf *out, const char *s, size_t n, evb_err *err)
{
    out->len = 0;
    if (n % 4 != 0)
        return evb_err_set(err, EVB_EDECODE, "base64 length %zu is not a multiple of 4",
                           n);
    int rc = evb_buf_reserve(out, n / 4 * 3, err);
    if (rc != EVB_OK) return rc;
    uint8_t *o = (uint8_t *)out->data;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = s[i + (size_t)j];
            if (c == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            v[j] = pad > 0 ? -1 : s_b64_val(c);
            if (v[j] < 0)
                return evb_err_set(err, EVB_EDECODE, "bad base64 character at %zu",
                                   i + (size_t)j + 1);
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        o[k++] = (uint8_t)(w >> 16);
        if (pad < 2) o[k++] = (uint8_t)(w >> 8);
        if (pad < 1) o[k++] = (uint8_t)w;
    }
    out->len = k;
    return EVB_OK;
}

/* ---- the log id inside an envelope ---- */

/* Read a msgpack unsigned of nb bytes (big-endian) at p. */
static uint64_t s_be(const uint8_t *p, size_t nb)
{
    uint64_t v = 0;
    for (size_t i = 0; i < nb; i++)
        v = v << 8 | p[i];
    return v;
}

/* Offset of the 16 bytes of the log_id element (#3) of the envelope in
 * buf[0..len): array of 17, uint version, bin id, str service, bin16 log id
 * (codec/FORMAT.md). Every length is checked against the bytes left. */
static int s_logid_offset(const uint8_t *buf, size_t len, size_t *off, evb_err *err)
{
    size_t p = 0;
#define NEED(k)                                                                          \
    do {                                                                                 \
        if ((k) > len - p)                                                               \
            return evb_err_set(err, EVB_EDECODE, "envelope: truncated at byte %zu", p);  \
    } while (0)
    NEED(1);
    uint8_t b = buf[p++];
    uint64_t count;
    if ((b & 0xf0) == 0x90) {
        count = b & 0x0f;
    } else if (b == 0xdc || b == 0xdd) {
        size_t nb = b == 0xdc ? 2 : 4;
        NEED(nb);
        count = s_be(buf + p, nb);
        p += nb;
    } else {
        return evb_err_set(err, EVB_EDECODE, "envelope: not an array");
    }
    if (count != 17)
        return evb_err_set(err, EVB_EDECODE, "envelope: %" PRIu64 " elements, not 17",
                           count);
    /* 0: envelope version, a uint */
    NEED(1);
    b = buf[p++];
    if (b >= 0xcc && b <= 0xcf) {
        size_t nb = (size_t)1 << (b - 0xcc);
        NEED(nb);
        p += nb;
    } else if (b > 0x7f) {
        return evb_err_set(err, EVB_EDECODE, "envelope: envelope_version is not a uint");
    }
    /* 1: id (bin), 2: service (str), 3: log id (bin) */
    for (int el = 1; el <= 3; el++) {
        NEED(1);
        b = buf[p++];
        uint64_t n;
        if (el != 2 && b >= 0xc4 && b <= 0xc6) {
            size_t nb = (size_t)1 << (b - 0xc4);
            NEED(nb);
            n = s_be(buf + p, nb);
            p += nb;
        } else if (el == 2 && (b & 0xe0) == 0xa0) {
            n = b & 0x1f;
        } else if (el == 2 && b >= 0xd9 && b <= 0xdb) {
            size_t nb = (size_t)1 << (b - 0xd9);
            NEED(nb);
            n = s_be(buf + p, nb);
            p += nb;
        } else {
            return evb_err_set(err, EVB_EDECODE,
                               "envelope: element %d has the wrong type", el);
        }
        if (el == 3 && n != EVB_ID_LEN)
            return evb_err_set(err, EVB_EDECODE, "envelope: log_id is %" PRIu64 " bytes",
                               n);
        NEED(n);
        if (el == 3) *off = p;
        p += (size_t)n;
    }
#undef NEED
    return EVB_OK;
}

/* ---- output file ---- */

typedef struct out_file {
    FILE *f;          /* NULL: stdout through cli_write */
    const char *path; /* --out FILE */
    char *part;       /* FILE.part, renamed to FILE at the end */
} out_file;

static int s_out_write(cli_t *cli, out_file *o, const void *p, size_t n)
{
    if (o->f == NULL) return cli_write(cli, p, n);
    if (fwrite(p, 1, n, o->f) != n) return -1;
    return 0;
}

/* ---- export ---- */

static int s_export_header(const evb_store_info *in, evb_buf *b, evb_err *err)
{
    b->len = 0;
    int rc = evb_buf_printf(b, err, "{\"evbus_export\":%d,\"service\":", EXPORT_VERSION);
    if (rc == EVB_OK) rc = cli_json_str(b, in->service, err);
    if (rc == EVB_OK)
        rc = evb_buf_printf(b, err, ",\"store_format\":%" PRIu32 ",\"envelope\":%u}\n",
                            in->format, EVB_ENVELOPE_VERSION);
    return rc;
}

/* One export line for ev (raw: its stored bytes) into b (replaced). */
static int s_export_line(const evb_event_t *ev, const void *raw, size_t rlen, evb_buf *b,
                         evb_buf *scratch, evb_err *err)
{
    static const char head[] = "{\"log_id\":\"";
    const size_t skip = sizeof head - 1 + EVB_ID_HEX_LEN + 2; /* ..hex", */
    scratch->len = 0;
    int rc = evb_event_to_json(ev, scratch, err);
    if (rc != EVB_OK) return rc;
    /* the codec writes log_id first (evbus_codec.h); drop it */
    if (scratch->len < skip + 1 || memcmp(scratch->data, head, sizeof head - 1) != 0 ||
        memcmp(scratch->data + skip - 2, "\",", 2) != 0 ||
        scratch->data[scratch->len - 1] != '}')
        return evb_err_set(err, EVB_EINVAL,
                           "unexpected JSON rendering (no leading log_id)");
    b->len = 0;
    rc = evb_buf_append(b, "{", 1, err);
    if (rc == EVB_OK)
        rc = evb_buf_append(b, scratch->data + skip, scratch->len - skip - 1, err);
    if (rc == EVB_OK) rc = evb_buf_append(b, ",\"raw\":\"", 8, err);
    if (rc != EVB_OK) return rc;
    size_t off = 0;
    rc = s_logid_offset(raw, rlen, &off, err);
    if (rc != EVB_OK) return rc;
    /* encode in three parts: the bytes before the log id, 16 zeros, the rest;
     * base64 works on 3-byte groups, so zero a copy instead */
    scratch->len = 0;
    rc = evb_buf_append(scratch, raw, rlen, err);
    if (rc != EVB_OK) return rc;
    memset(scratch->data + off, 0, EVB_ID_LEN);
    rc = s_b64_encode(b, (const uint8_t *)scratch->data, rlen, err);
    if (rc == EVB_OK) rc = evb_buf_append(b, "\"}\n", 3, err);
    return rc;
}

int log_cmd_export(cli_t *cli, int argc, char **argv)
{
    bool from_set = false, to_set = false;
    uint64_t from = 1, to = 0;
    const char *out = NULL;
    const cli_opt opts[] = {
        {"out", CLI_STR, &out, NULL, "FILE",
         "write to FILE (made via FILE.part) not stdout"},
        {"from", CLI_U64, &from, &from_set, "SEQ", "start at sequence SEQ (default 1)"},
        {"to", CLI_U64, &to, &to_set, "SEQ",
         "stop after sequence SEQ (default: the head)"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR [--out FILE] [--from SEQ] [--to SEQ]",
        "Write the events of the log in DIR as JSON lines: first a header\n"
        "{\"evbus_export\":1,\"service\":...,\"store_format\":5,\"envelope\":1},\n"
        "then one line per event in sequence order: the object 'evbus log cat\n"
        "--json' prints, without \"log_id\", plus \"raw\": the stored msgpack\n"
        "envelope in base64, byte for byte except its log id, zeroed (the\n"
        "export is the log's content, not its identity). 'evbus log import'\n"
        "reads it back; export, import into a new log and export again give\n"
        "the same file.",
        "With --out, the file appears only when the export is complete (it is\n"
        "written as FILE.part and renamed). Progress goes to stderr when stderr\n"
        "is a terminal. A missing event (damage) is reported and gives exit 1.\n"
        "\nExamples:\n"
        "  evbus log export /var/lib/orders --out orders.jsonl\n"
        "  evbus log export /var/lib/orders --from 1001 | gzip > orders-tail.jsonl.gz\n"
        "  evbus log export /var/lib/orders | jq -c 'select(.type==\"OrderPlaced\")'\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    const char *dir = pos[0];
    if (from_set && from == 0)
        return cli_usage_error(cli, "--from: sequences count from 1");
    if (to_set && to == 0)
        return cli_usage_error(cli,
                               "--to: sequences count from 1 (leave it out for all)");
    if (to_set && to < from)
        return cli_usage_error(cli, "--to %" PRIu64 " is before --from %" PRIu64, to,
                               from);

    evb_store_t *st = NULL;
    rc = log_open_ro(cli, dir, &st);
    if (rc >= 0) return rc;
    evb_store_info in;
    evb_store_get_info(st, &in);

    out_file of = {.path = out};
    evb_err err = {0};
    if (out != NULL) {
        size_t n = strlen(out) + 6;
        of.part = malloc(n);
        if (of.part != NULL) snprintf(of.part, n, "%s.part", out);
        of.f = of.part != NULL ? fopen(of.part, "w") : NULL;
        if (of.f == NULL) {
            cli_error(cli, "--out %s: cannot create %s: %s", out,
                      of.part != NULL ? of.part : out, strerror(errno));
            free(of.part);
            evb_store_destroy(&st);
            return cli_finish(cli, CLI_EXIT_RUNTIME);
        }
    }
    evb_iter_t *it = evb_store_read_range(st, from, to, NULL, &err);
    evb_buf line = {0}, scratch = {0};
    rc = CLI_EXIT_OK;
    if (it == NULL) {
        log_report(cli, dir, "cannot read", &err);
        rc = CLI_EXIT_RUNTIME;
    } else if (s_export_header(&in, &line, &err) != EVB_OK ||
               s_out_write(cli, &of, line.data, line.len) != 0) {
        rc = CLI_EXIT_RUNTIME;
    }
    uint64_t next = from, last = to_set && to < in.head ? to : in.head, count = 0;
    bool gaps = false;
    const evb_event_t *ev;
    evb_err_clear(&err);
    do {
        while (rc == CLI_EXIT_OK && !cli->pipe_closed && evb_iter_next(it, &ev, &err)) {
            if (ev->seq > next) {
                cli_error(cli,
                          "%s: events %" PRIu64 "..%" PRIu64
                          " are missing (run 'evbus log verify')",
                          dir, next, ev->seq - 1);
                gaps = true;
            }
            next = ev->seq + 1;
            const void *raw;
            size_t rlen;
            if (!evb_iter_raw(it, &raw, &rlen)) {
                cli_error(cli, "%s: seq %" PRIu64 ": no stored bytes", dir, ev->seq);
                rc = CLI_EXIT_RUNTIME;
                break;
            }
            if (s_export_line(ev, raw, rlen, &line, &scratch, &err) != EVB_OK) {
                cli_error(cli, "%s: seq %" PRIu64 ": %s", dir, ev->seq, err.msg);
                rc = CLI_EXIT_RUNTIME;
                break;
            }
            if (s_out_write(cli, &of, line.data, line.len) != 0) {
                if (of.f != NULL) {
                    cli_error(cli, "writing %s: %s", of.part, strerror(errno));
                    rc = CLI_EXIT_RUNTIME;
                } else if (!cli->pipe_closed) {
                    rc = CLI_EXIT_RUNTIME;
                }
                break;
            }
            if (++count % 4096 == 0 && last > 0)
                cli_progress(cli, "%s: seq %" PRIu64 " / %" PRIu64 " (%u%%)", cli->name,
                             ev->seq, last, (unsigned)(ev->seq * 100 / last));
        }
    } while (rc == CLI_EXIT_OK && log_hole(cli, it, &err, &next, &gaps));
    cli_progress_end(cli);
    rc = log_read_end(cli, dir, rc, &err);
    if (rc == CLI_EXIT_OK && gaps) rc = CLI_EXIT_PROBLEMS;
    if (of.f != NULL) {
        bool ok = rc == CLI_EXIT_OK || rc == CLI_EXIT_PROBLEMS;
        if (fflush(of.f) != 0 || fsync(fileno(of.f)) != 0) {
            if (ok) cli_error(cli, "writing %s: %s", of.part, strerror(errno));
            ok = false;
        }
        if (fclose(of.f) != 0 && ok) {
            cli_error(cli, "writing %s: %s", of.part, strerror(errno));
            ok = false;
        }
        if (ok && rename(of.part, out) != 0) {
            cli_error(cli, "renaming %s to %s: %s", of.part, out, strerror(errno));
            ok = false;
        }
        if (!ok) {
            unlink(of.part);
            if (rc == CLI_EXIT_OK || rc == CLI_EXIT_PROBLEMS) rc = CLI_EXIT_RUNTIME;
        }
        free(of.part);
    }
    evb_buf_free(&line);
    evb_buf_free(&scratch);
    evb_iter_destroy(&it);
    evb_store_destroy(&st);
    return cli_finish(cli, rc);
}

/* ---- import: reading lines ---- */

typedef struct reader {
    FILE *f;
    const char *name; /* "stdin" or the path, for messages */
    char *buf;
    size_t cap;
    uint64_t lineno;
} reader;

/* Next line into r->buf (without its newline). 1: a line, 0: end, -1: error
 * (err set). */
static int s_next_line(reader *r, size_t *len, evb_err *err)
{
    errno = 0;
    ssize_t n = getline(&r->buf, &r->cap, r->f);
    if (n < 0) {
        if (ferror(r->f))
            return evb_err_set(err, EVB_EIO, "%s: reading: %s", r->name, strerror(errno)),
                   -1;
        return 0;
    }
    r->lineno++;
    if ((size_t)n > IMPORT_MAX_LINE)
        return evb_err_set(err, EVB_ETOOBIG, "line %" PRIu64 ": longer than %u bytes",
                           r->lineno, IMPORT_MAX_LINE),
               -1;
    if (n > 0 && r->buf[n - 1] == '\n') n--;
    if (n > 0 && r->buf[n - 1] == '\r') n--;
    *len = (size_t)n;
    return 1;
}

static bool s_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return false;
    return true;
}

/* s_get_u64 and s_get_str return EVB_EINVAL themselves rather than
 * evb_err_set's result: evb_err_set lives in the library, so the compiler
 * could not tell that a failure is never EVB_OK and would think the caller
 * may read an output that was never written. */

/* A non-negative JSON integer field. */
static int s_get_u64(const json_val *obj, const char *key, uint64_t *out, evb_err *err)
{
    const json_val *v = json_get(obj, key);
    if (v == NULL) {
        evb_err_set(err, EVB_EINVAL, "field %s: missing", key);
        return EVB_EINVAL;
    }
    if (v->type == JSON_INT && v->i >= 0) {
        *out = (uint64_t)v->i;
    } else if (v->type == JSON_UINT) {
        *out = v->u;
    } else {
        evb_err_set(err, EVB_EINVAL, "field %s: expected a non-negative integer, got %s",
                    key, json_type_name(v->type));
        return EVB_EINVAL;
    }
    return EVB_OK;
}

static int s_get_str(const json_val *obj, const char *key, const char **out, evb_err *err)
{
    const json_val *v = json_get(obj, key);
    if (v == NULL) {
        evb_err_set(err, EVB_EINVAL, "field %s: missing", key);
        return EVB_EINVAL;
    }
    if (v->type != JSON_STR) {
        evb_err_set(err, EVB_EINVAL, "field %s: expected a string, got %s", key,
                    json_type_name(v->type));
        return EVB_EINVAL;
    }
    *out = v->str;
    return EVB_OK;
}

/* Parse one event line: raw decoded into ev (reused), cross-checked with
 * the visible fields. bytes gets raw's length. err names the field. */
static int s_parse_event(const json_val *obj, evb_buf *raw, evb_event_t *ev, evb_err *err)
{
    const char *b64;
    int rc = s_get_str(obj, "raw", &b64, err);
    if (rc != EVB_OK) return rc;
    const json_val *rv = json_get(obj, "raw");
    evb_err e2 = {0};
    if (s_b64_decode(raw, b64, rv->len, &e2) != EVB_OK)
        return evb_err_set(err, EVB_EDECODE, "field raw: %s", e2.msg);
    if (raw->len > EVB_MAX_EVENT_BYTES)
        return evb_err_set(err, EVB_ETOOBIG,
                           "field raw: %zu bytes, more than an event's %u", raw->len,
                           EVB_MAX_EVENT_BYTES);
    size_t off = 0;
    if (s_logid_offset((const uint8_t *)raw->data, raw->len, &off, &e2) != EVB_OK)
        return evb_err_set(err, EVB_EDECODE, "field raw: %s", e2.msg);
    /* the export zeroes the log id; the decoder wants one: any will do, the
     * target's store replaces it */
    memset(raw->data + off, 0x01, EVB_ID_LEN);
    if (evb_event_decode_into(raw->data, raw->len, ev, &e2) != EVB_OK)
        return evb_err_set(err, EVB_EDECODE, "field raw: %s", e2.msg);
    uint64_t seq, version;
    const char *id, *stream, *type;
    if ((rc = s_get_u64(obj, "seq", &seq, err)) != EVB_OK) return rc;
    if ((rc = s_get_str(obj, "id", &id, err)) != EVB_OK) return rc;
    if ((rc = s_get_str(obj, "stream", &stream, err)) != EVB_OK) return rc;
    if ((rc = s_get_u64(obj, "version", &version, err)) != EVB_OK) return rc;
    if ((rc = s_get_str(obj, "type", &type, err)) != EVB_OK) return rc;
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&ev->id, hex);
    if (seq != ev->seq)
        return evb_err_set(err, EVB_EINVAL,
                           "field seq: %" PRIu64 ", but raw says %" PRIu64, seq, ev->seq);
    if (strcmp(id, hex) != 0)
        return evb_err_set(err, EVB_EINVAL, "field id: %.40s, but raw says %s", id, hex);
    if (strcmp(stream, ev->stream) != 0)
        return evb_err_set(err, EVB_EINVAL, "field stream: %.140s, but raw says %s",
                           stream, ev->stream);
    if (version != ev->version)
        return evb_err_set(err, EVB_EINVAL,
                           "field version: %" PRIu64 ", but raw says %" PRIu64, version,
                           ev->version);
    if (strcmp(type, ev->type) != 0)
        return evb_err_set(err, EVB_EINVAL, "field type: %.140s, but raw says %s", type,
                           ev->type);
    if (ev->ts_us == 0)
        return evb_err_set(err, EVB_EINVAL,
                           "field raw: ts is 0, which an append reads as 'now'");
    return EVB_OK;
}

/* ---- import: stream versions and ids seen in pass 1 ---- */

typedef struct vslot {
    char *stream; /* NULL: empty */
    uint64_t version;
} vslot;

typedef struct vmap {
    vslot *s;
    size_t cap, n; /* cap: a power of two */
} vmap;

static uint64_t s_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static vslot *s_vfind(vmap *m, const char *stream)
{
    if (m->cap == 0) return NULL;
    for (size_t i = s_hash(stream) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->s[i].stream == NULL) return &m->s[i];
        if (strcmp(m->s[i].stream, stream) == 0) return &m->s[i];
    }
}

static int s_vgrow(vmap *m)
{
    if (m->cap != 0 && (m->n + 1) * 2 <= m->cap) return EVB_OK;
    size_t cap = m->cap == 0 ? 64 : m->cap * 2;
    vslot *s = calloc(cap, sizeof *s);
    if (s == NULL) return EVB_ENOMEM;
    vmap nm = {s, cap, m->n};
    for (size_t i = 0; i < m->cap; i++)
        if (m->s[i].stream != NULL) *s_vfind(&nm, m->s[i].stream) = m->s[i];
    free(m->s);
    *m = nm;
    return EVB_OK;
}

static void s_vfree(vmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->s[i].stream);
    free(m->s);
    memset(m, 0, sizeof *m);
}

typedef struct idline {
    evb_id id;
    uint64_t line;
} idline;

static int s_idcmp(const void *a, const void *b)
{
    const idline *x = a, *y = b;
    int c = memcmp(x->id.b, y->id.b, EVB_ID_LEN);
    if (c != 0) return c;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* ---- import ---- */

typedef struct import_ctx {
    cli_t *cli;
    const char *dir;
    evb_store_t *st; /* NULL: the log does not exist yet (--create) */
    uint64_t head;
    char service[EVB_MAX_SERVICE_LEN + 1];    /* from the header, or "" */
    char ev_service[EVB_MAX_SERVICE_LEN + 1]; /* first event's service */
    bool mixed_service;
    uint64_t first_seq, last_seq, events;
} import_ctx;

/* Pass 1: check every line; nothing is written. Returns an exit code. */
static int s_check(import_ctx *c, reader *r)
{
    evb_err err = {0};
    evb_buf raw = {0};
    evb_event_t ev = {0};
    vmap vm = {0};
    idline *ids = NULL;
    size_t nids = 0, capids = 0;
    uint64_t next = c->head + 1;
    int rc = CLI_EXIT_OK;
    size_t len;
    int lr;
    while ((lr = s_next_line(r, &len, &err)) == 1) {
        if (s_blank(r->buf, len)) continue;
        json_val *obj = NULL;
        evb_err_clear(&err);
        if (json_parse(r->buf, len, &obj, &err) != EVB_OK) {
            cli_error(c->cli, "%s: line %" PRIu64 ": not JSON: %s", r->name, r->lineno,
                      err.msg);
            rc = CLI_EXIT_PROBLEMS;
            break;
        }
        if (obj->type != JSON_OBJ) {
            cli_error(c->cli, "%s: line %" PRIu64 ": expected an object, got %s", r->name,
                      r->lineno, json_type_name(obj->type));
            json_free(&obj);
            rc = CLI_EXIT_PROBLEMS;
            break;
        }
        const json_val *hv = json_get(obj, "evbus_export");
        if (hv != NULL) {
            const char *svc = NULL;
            if (c->events > 0 || c->service[0] != '\0') {
                evb_err_set(&err, EVB_EINVAL, "a header after the first line");
            } else if (hv->type != JSON_INT || hv->i != EXPORT_VERSION) {
                evb_err_set(
                    &err, EVB_EVERSION,
                    "field evbus_export: expected %d (this build's export format)",
                    EXPORT_VERSION);
            } else if (s_get_str(obj, "service", &svc, &err) == EVB_OK &&
                       evb_check_service(svc, &err) != EVB_OK) {
                evb_err_set(&err, EVB_EINVAL, "field service: not a service name");
            } else if (svc != NULL) {
                snprintf(c->service, sizeof c->service, "%s", svc);
            }
            json_free(&obj);
            if (err.code != EVB_OK) {
                cli_error(c->cli, "%s: line %" PRIu64 ": %s", r->name, r->lineno,
                          err.msg);
                rc = CLI_EXIT_PROBLEMS;
                break;
            }
            continue;
        }
        int prc = s_parse_event(obj, &raw, &ev, &err);
        json_free(&obj);
        if (prc == EVB_OK && ev.seq != next) {
            if (c->events == 0)
                evb_err_set(
                    &err, EVB_EINVAL,
                    "field seq: %" PRIu64 ", but the log %s ends at seq %" PRIu64
                    " (an import continues the log: its first seq must be %" PRIu64 ")",
                    ev.seq, c->dir, c->head, next);
            else
                evb_err_set(&err, EVB_EINVAL,
                            "field seq: %" PRIu64 " after %" PRIu64
                            " (seqs must be contiguous)",
                            ev.seq, next - 1);
            prc = EVB_EINVAL;
        }
        vslot *vs = NULL;
        if (prc == EVB_OK && (prc = s_vgrow(&vm)) != EVB_OK)
            evb_err_set(&err, prc, "out of memory");
        if (prc == EVB_OK) {
            vs = s_vfind(&vm, ev.stream);
            if (vs->stream == NULL) {
                uint64_t cur = 0;
                if (c->st != NULL)
                    prc = evb_store_stream_version(c->st, ev.stream, &cur, &err);
                if (prc == EVB_OK && (vs->stream = strdup(ev.stream)) == NULL)
                    prc = evb_err_set(&err, EVB_ENOMEM, "out of memory");
                if (prc == EVB_OK) {
                    vs->version = cur;
                    vm.n++;
                }
            }
        }
        if (prc == EVB_OK && ev.version != vs->version + 1)
            prc = evb_err_set(&err, EVB_EINVAL,
                              "field version: %" PRIu64
                              ", but stream %s is at version %" PRIu64 " there",
                              ev.version, ev.stream, vs->version);
        if (prc == EVB_OK && c->st != NULL && c->head > 0) {
            uint64_t at = 0;
            evb_err e2 = {0};
            int frc = evb_store_find_id(c->st, &ev.id, &at, &e2);
            if (frc == EVB_OK)
                prc = evb_err_set(&err, EVB_EINVAL,
                                  "field id: already stored at seq %" PRIu64, at);
            else if (frc != EVB_ENOTFOUND)
                prc = evb_err_set(&err, frc, "field id: looking it up: %s", e2.msg);
        }
        if (prc == EVB_OK && nids == capids) {
            size_t cap = capids == 0 ? 1024 : capids * 2;
            idline *n = realloc(ids, cap * sizeof *n);
            if (n == NULL)
                prc = evb_err_set(&err, EVB_ENOMEM, "out of memory");
            else {
                ids = n;
                capids = cap;
            }
        }
        if (prc != EVB_OK) {
            cli_error(c->cli, "%s: line %" PRIu64 ": %s", r->name, r->lineno, err.msg);
            rc = prc == EVB_ENOMEM || prc == EVB_EIO ? CLI_EXIT_RUNTIME
                                                     : CLI_EXIT_PROBLEMS;
            break;
        }
        ids[nids++] = (idline){ev.id, r->lineno};
        vs->version = ev.version;
        if (c->events == 0) {
            c->first_seq = ev.seq;
            snprintf(c->ev_service, sizeof c->ev_service, "%s", ev.service);
        } else if (strcmp(c->ev_service, ev.service) != 0) {
            c->mixed_service = true;
        }
        c->last_seq = ev.seq;
        c->events++;
        next = ev.seq + 1;
        if (c->events % 4096 == 0)
            cli_progress(c->cli, "%s: checked %" PRIu64 " events", c->cli->name,
                         c->events);
    }
    if (lr < 0) {
        cli_error(c->cli, "%s", err.msg);
        rc = err.code == EVB_EIO ? CLI_EXIT_RUNTIME : CLI_EXIT_PROBLEMS;
    }
    if (rc == CLI_EXIT_OK && nids > 1) {
        qsort(ids, nids, sizeof *ids, s_idcmp);
        for (size_t i = 1; i < nids; i++) {
            if (memcmp(ids[i].id.b, ids[i - 1].id.b, EVB_ID_LEN) != 0) continue;
            char hex[EVB_ID_HEX_LEN + 1];
            evb_id_to_hex(&ids[i].id, hex);
            cli_error(c->cli,
                      "%s: line %" PRIu64 ": field id: %s is also on line %" PRIu64,
                      r->name, ids[i].line, hex, ids[i - 1].line);
            rc = CLI_EXIT_PROBLEMS;
            break;
        }
    }
    cli_progress_end(c->cli);
    free(ids);
    s_vfree(&vm);
    evb_event_clear(&ev);
    evb_buf_free(&raw);
    return rc;
}

/* Append events[0..n) (one stream, versions following on). */
static int s_flush(import_ctx *c, evb_event_t *evs, size_t n, evb_err *err)
{
    if (n == 0) return EVB_OK;
    evb_append_result res = {0};
    uint64_t want_seq = evs[0].seq, want_ver = evs[0].version;
    char stream[EVB_MAX_STREAM_LEN + 1];
    snprintf(stream, sizeof stream, "%s", evs[0].stream);
    int rc = evb_store_append(c->st, stream, (int64_t)(want_ver - 1), evs, n, &res, err);
    if (rc != EVB_OK) return rc;
    if (res.duplicate || res.first_seq != want_seq || res.first_version != want_ver)
        return evb_err_set(err, EVB_ECONFLICT,
                           "stored at seq %" PRIu64 " version %" PRIu64
                           ", expected seq %" PRIu64 " version %" PRIu64 "%s",
                           res.first_seq, res.first_version, want_seq, want_ver,
                           res.duplicate ? " (a duplicate)" : "");
    return EVB_OK;
}

/* Pass 2: append every event; the input was checked by pass 1. */
static int s_write(import_ctx *c, reader *r)
{
    evb_err err = {0};
    evb_buf raw = {0};
    evb_event_t *evs = calloc(IMPORT_BATCH, sizeof *evs);
    uint64_t *lines = calloc(IMPORT_BATCH, sizeof *lines);
    size_t n = 0, bytes = 0;
    uint64_t done = 0;
    int rc = CLI_EXIT_OK;
    if (evs == NULL || lines == NULL) {
        cli_error(c->cli, "out of memory");
        free(evs);
        free(lines);
        return CLI_EXIT_RUNTIME;
    }
    size_t len;
    uint64_t bad_line = 0;
    bool failed = false;
    for (;;) {
        int lr = s_next_line(r, &len, &err);
        if (lr < 0) {
            bad_line = r->lineno + 1;
            failed = true;
            break;
        }
        if (lr == 0) { /* end of input: the last batch */
            if (s_flush(c, evs, n, &err) != EVB_OK) {
                bad_line = lines[0];
                failed = true;
            } else {
                done += n;
            }
            break;
        }
        if (s_blank(r->buf, len)) continue;
        json_val *obj = NULL;
        if (json_parse(r->buf, len, &obj, &err) != EVB_OK) {
            bad_line = r->lineno;
            failed = true;
            break;
        }
        if (json_get(obj, "evbus_export") != NULL) {
            json_free(&obj);
            continue;
        }
        evb_event_t probe = {0};
        int prc = s_parse_event(obj, &raw, &probe, &err);
        json_free(&obj);
        if (prc != EVB_OK) {
            evb_event_clear(&probe);
            bad_line = r->lineno;
            failed = true;
            break;
        }
        /* flush first when this event cannot join the batch */
        if (n > 0 && (n == IMPORT_BATCH || bytes + raw.len > IMPORT_BATCH_BYTES ||
                      strcmp(evs[0].stream, probe.stream) != 0)) {
            if (s_flush(c, evs, n, &err) != EVB_OK) {
                evb_event_clear(&probe);
                bad_line = lines[0];
                failed = true;
                break;
            }
            done += n;
            for (size_t i = 0; i < n; i++)
                evb_event_clear(&evs[i]);
            n = 0;
            bytes = 0;
            cli_progress(c->cli, "%s: imported %" PRIu64 " / %" PRIu64 " events",
                         c->cli->name, done, c->events);
        }
        evs[n] = probe; /* takes the block */
        lines[n++] = r->lineno;
        bytes += raw.len;
    }
    cli_progress_end(c->cli);
    if (failed) {
        cli_error(c->cli,
                  "%s: line %" PRIu64 ": %s; import stopped after %" PRIu64
                  " events: the log %s now ends at seq %" PRIu64,
                  r->name, bad_line, err.msg, done, c->dir, c->head + done);
        rc = CLI_EXIT_RUNTIME;
    }
    for (size_t i = 0; i < n; i++)
        evb_event_clear(&evs[i]);
    free(evs);
    free(lines);
    evb_buf_free(&raw);
    return rc;
}

/* Copy stdin into an unnamed temporary file, so that both passes read it. */
static FILE *s_spool_stdin(cli_t *cli)
{
    FILE *t = tmpfile();
    if (t == NULL) {
        cli_error(cli, "--in -: cannot make a temporary file: %s", strerror(errno));
        return NULL;
    }
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, stdin)) > 0) {
        if (fwrite(buf, 1, k, t) != k) {
            cli_error(cli, "--in -: spooling stdin: %s", strerror(errno));
            fclose(t);
            return NULL;
        }
    }
    if (ferror(stdin)) {
        cli_error(cli, "--in -: reading stdin: %s", strerror(errno));
        fclose(t);
        return NULL;
    }
    rewind(t);
    return t;
}

int log_cmd_import(cli_t *cli, int argc, char **argv)
{
    bool create = false, dry = false;
    const char *in = NULL, *service = NULL;
    const cli_opt opts[] = {
        {"in", CLI_STR, &in, NULL, "FILE", "the export to read ('-': stdin); required"},
        {"create", CLI_FLAG, &create, NULL, NULL, "create the log if DIR holds none"},
        {"service", CLI_STR, &service, NULL, "NAME",
         "service of a new log (default: the export header's)"},
        {"dry-run", CLI_FLAG, &dry, NULL, NULL, "check the whole input, write nothing"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS) | CLI_EXITS(CLI_EXIT_OPEN),
        "DIR --in FILE|- [--create [--service NAME]] [--dry-run]",
        "Append the events of an 'evbus log export' file to the log in DIR,\n"
        "each from its \"raw\" bytes: id, stream, version, type, schema, ts,\n"
        "correlation and causation ids, metadata, payload and origin are kept\n"
        "exactly. The events must continue the log: the first one's seq is the\n"
        "log's head + 1 (1 for an empty log) and each stream's versions follow\n"
        "on, so every event gets the seq and version it had, and exporting the\n"
        "result gives the same file. The log gets its own log id (an export\n"
        "carries none) and stamps its service name on the events.",
        "The whole input is checked before anything is written: a bad line\n"
        "(not JSON, a field missing or disagreeing with raw, raw that does not\n"
        "decode, a seq or version out of order, an id already stored) is named\n"
        "with its line number and field, and nothing is imported. A failure\n"
        "while writing (disk full) says how far the import got.\n"
        "The service that owns DIR must not be running (exit 3).\n"
        "Exit code 0 when every event was imported, 1 when the input has a bad\n"
        "line (nothing written), 2 for bad flags or an unreadable --in file.\n"
        "\nExamples:\n"
        "  evbus log export /var/lib/orders --out orders.jsonl\n"
        "  evbus log import /tmp/restore --in orders.jsonl --create\n"
        "  gunzip -c tail.jsonl.gz | evbus log import /tmp/restore --in -\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(cli, argc, argv, opts, &usage, 1, 1, pos, &npos);
    if (rc >= 0) return rc;
    const char *dir = pos[0];
    if (in == NULL) return cli_usage_error(cli, "--in FILE is required ('-' for stdin)");
    if (service != NULL && !create)
        return cli_usage_error(cli, "--service names a new log: use it with --create");
    evb_err err = {0};
    if (service != NULL && evb_check_service(service, &err) != EVB_OK)
        return cli_usage_error(cli, "--service: %s", err.msg);

    reader r = {0};
    if (strcmp(in, "-") == 0) {
        r.f = s_spool_stdin(cli);
        r.name = "stdin";
        if (r.f == NULL) return cli_finish(cli, CLI_EXIT_RUNTIME);
    } else {
        struct stat sb;
        r.f = stat(in, &sb) == 0 && S_ISDIR(sb.st_mode) ? NULL : fopen(in, "r");
        r.name = in;
        if (r.f == NULL) {
            cli_error(cli, "--in %s: %s", in,
                      errno != 0 ? strerror(errno) : "a directory");
            return CLI_EXIT_USAGE;
        }
    }

    import_ctx c = {.cli = cli, .dir = dir};
    evb_store_opts so = {0};
    so.dir = dir;
    so.sync = EVB_SYNC_NONE; /* one fsync at the end */
    so.index_mode = EVB_INDEX_THREAD;
    so.read_only_intent = dry;
    c.st = evb_store_open(&so, &err);
    if (c.st == NULL && !(err.code == EVB_ENOTFOUND && create)) {
        log_report(cli, dir, "cannot open log", &err);
        if (err.code == EVB_ENOTFOUND)
            fprintf(stderr, "(use --create to make a new log)\n");
        fclose(r.f);
        free(r.buf);
        return cli_finish(cli, cli_exit_for_open(err.code));
    }
    if (c.st != NULL) c.head = evb_store_head(c.st);
    rc = s_check(&c, &r);
    if (rc == CLI_EXIT_OK && c.st == NULL) {
        const char *svc = service != NULL ? service : c.service;
        if (svc[0] == '\0') {
            cli_error(cli,
                      "%s: the input has no header naming the service: give "
                      "--service NAME to create the log",
                      r.name);
            rc = CLI_EXIT_USAGE;
        } else if (!dry) {
            so.create = true;
            so.service = svc;
            c.st = evb_store_open(&so, &err);
            if (c.st == NULL) {
                log_report(cli, dir, "cannot create log", &err);
                rc = cli_exit_for_open(err.code);
            }
        }
    }
    if (rc == CLI_EXIT_OK && c.events > 0 && c.st != NULL) {
        evb_store_info info;
        evb_store_get_info(c.st, &info);
        if (c.mixed_service || strcmp(c.ev_service, info.service) != 0)
            cli_error(
                cli,
                "warning: the events name service %s%s; the log %s stamps its own, %s",
                c.ev_service, c.mixed_service ? " (and others)" : "", dir, info.service);
    }
    if (rc == CLI_EXIT_OK && !dry && c.events > 0) {
        rewind(r.f);
        r.lineno = 0;
        rc = s_write(&c, &r);
        if (rc == CLI_EXIT_OK && (evb_store_sync(c.st, &err) != EVB_OK ||
                                  evb_store_index_wait(c.st, &err) != EVB_OK)) {
            log_report(cli, dir, "syncing", &err);
            rc = CLI_EXIT_RUNTIME;
        }
    }
    if (rc == CLI_EXIT_OK) {
        if (c.events == 0)
            cli_printf(cli, "%s: no events in %s\n", dir, r.name);
        else
            cli_printf(cli, "%s: %s %" PRIu64 " events, seq %" PRIu64 "..%" PRIu64 "\n",
                       dir, dry ? "checked, would import" : "imported", c.events,
                       c.first_seq, c.last_seq);
    }
    fclose(r.f);
    free(r.buf);
    evb_store_destroy(&c.st);
    return cli_finish(cli, rc);
}
