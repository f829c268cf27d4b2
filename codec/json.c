/*
 * json.c: JSON rendering of events and msgpack values for the tools (sniffer,
 * log inspector), and the RFC 3339 timestamp helpers.
 *
 * Key decisions:
 *  - The input is untrusted (a sniffed frame, a damaged log), so msgpack is
 *    walked with the bounds-checked mpread cursor, never msgpack_unpack, and
 *    nesting is bounded by EVB_MAX_DEPTH (a top-level map or array counts as
 *    depth 1, as in evb_check_map). Recursion is therefore at most
 *    EVB_MAX_DEPTH frames deep.
 *  - Output is always valid JSON. What JSON cannot say takes the typed forms
 *    documented in evbus_codec.h ({"$int":..}, {"$bin":..}, ...).
 *  - A map key that is not a string is rendered as JSON text and then used as
 *    a string key: the writer carries an escape level and escapes every
 *    character on the way out. A key that is itself a map or an array is
 *    written as "$key:<base64 of its msgpack>" instead, so keys never nest and
 *    the escaping never compounds. Every rendering still has an output budget
 *    (see s_budget) and fails with EVB_ETOOBIG before writing past it.
 *  - On error nothing is left appended: out->len is restored.
 *  - Floats print with the fewest of 15, 16 or 17 significant digits that read
 *    back to the same double, and always with a '.' or an exponent so that a
 *    float stays a float. snprintf follows LC_NUMERIC, so the decimal
 *    separator is normalised to '.' afterwards.
 */
#include "evbus_codec.h"
#include "mpread.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Largest integer magnitude a JSON reader using doubles holds exactly. */
#define S_JSON_SAFE_INT 9007199254740991ull /* 2^53 - 1 */

/* Budget: legitimate payloads expand at most ~7x (an invalid UTF-8 byte
 * becomes the six characters \ufffd; "false," is six characters for one byte),
 * 16x leaves room for a few levels of non-string keys. */
#define S_BUDGET_FACTOR 16u
#define S_BUDGET_SLACK 4096u

typedef struct s_writer {
    evb_buf *out;
    size_t budget;       /* bytes this rendering may still append */
    unsigned esc;        /* times every character is string-escaped (key nesting) */
    const char *what;    /* names the value in error messages */
    const uint8_t *base; /* start of the msgpack input, for byte offsets */
    evb_err *err;
    size_t n;         /* staged bytes */
    char stage[1024]; /* staging area: appends to out in chunks */
} s_writer;

static int s_flush(s_writer *w)
{
    if (w->n == 0) return EVB_OK;
    int rc = evb_buf_append(w->out, w->stage, w->n, w->err);
    w->n = 0;
    return rc;
}

static int s_too_big(s_writer *w)
{
    return evb_err_set(w->err, EVB_ETOOBIG, "%s: JSON rendering exceeds its size limit",
                       w->what);
}

/* Emit count copies of byte c, charged to the budget. */
static int s_emit(s_writer *w, char c, size_t count)
{
    if (count > w->budget) return s_too_big(w);
    w->budget -= count;
    while (count-- > 0) {
        if (w->n == sizeof w->stage) {
            int rc = s_flush(w);
            if (rc != EVB_OK) return rc;
        }
        w->stage[w->n++] = c;
    }
    return EVB_OK;
}

/* Emit one character of JSON text, escaped w->esc times. Escaping once turns
 * '\' into two backslashes and '"' into backslash-quote; k times gives 2^k
 * backslashes for '\' and 2^k - 1 backslashes before '"'. Nothing else needs
 * escaping: JSON text we produce holds no raw control characters. */
static int s_ch(s_writer *w, char c)
{
    if (w->esc == 0 || (c != '\\' && c != '"')) return s_emit(w, c, 1);
    if (w->esc >= 8 * sizeof(size_t) - 1) return s_too_big(w);
    size_t n = (size_t)1 << w->esc;
    int rc = s_emit(w, '\\', c == '\\' ? n : n - 1);
    if (rc == EVB_OK && c == '"') rc = s_emit(w, '"', 1);
    return rc;
}

static int s_raw(s_writer *w, const char *s, size_t len)
{
    if (w->esc == 0) {
        /* Fast path: no per-character expansion. */
        if (len > w->budget) return s_too_big(w);
        w->budget -= len;
        while (len > 0) {
            if (w->n == sizeof w->stage) {
                int rc = s_flush(w);
                if (rc != EVB_OK) return rc;
            }
            size_t k = sizeof w->stage - w->n;
            if (k > len) k = len;
            memcpy(w->stage + w->n, s, k);
            w->n += k;
            s += k;
            len -= k;
        }
        return EVB_OK;
    }
    for (size_t i = 0; i < len; i++) {
        int rc = s_ch(w, s[i]);
        if (rc != EVB_OK) return rc;
    }
    return EVB_OK;
}

static int s_cstr(s_writer *w, const char *s)
{
    return s_raw(w, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at p (Unicode table 3-7: no
 * overlongs, no surrogates, nothing above U+10FFFF), or 0 if it is not one. */
size_t evb_utf8_len(const void *vp, size_t n)
{
    const uint8_t *p = vp;
    if (n == 0) return 0;
    uint8_t b = p[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (b < 0x80) return 1;
    if (b >= 0xc2 && b <= 0xdf) {
        len = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
        len = 3;
        if (b == 0xe0)
            lo = 0xa0;
        else if (b == 0xed)
            hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4;
        if (b == 0xf0)
            lo = 0x90;
        else if (b == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf) return 0;
    return len;
}

/* A JSON string literal of the bytes s[0..len), invalid UTF-8 bytes as
 * U+FFFD, control characters, '"' and '\' escaped. */
static int s_string(s_writer *w, const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    int rc = s_ch(w, '"');
    size_t i = 0;
    while (rc == EVB_OK && i < len) {
        uint8_t c = p[i];
        /* Copy the longest run of printable ASCII in one go. */
        size_t j = i;
        while (j < len && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\')
            j++;
        if (j > i) {
            rc = s_raw(w, s + i, j - i);
            i = j;
            continue;
        }
        char esc[8];
        const char *e = NULL;
        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        default:
            break;
        }
        if (e != NULL) {
            rc = s_cstr(w, e);
            i++;
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)c);
            rc = s_cstr(w, esc);
            i++;
        } else {
            size_t n = evb_utf8_len(p + i, len - i);
            if (n == 0) {
                rc = s_cstr(w, "\\ufffd");
                i++;
            } else {
                rc = s_raw(w, s + i, n);
                i += n;
            }
        }
    }
    if (rc == EVB_OK) rc = s_ch(w, '"');
    return rc;
}

/* A JSON string: prefix (plain characters) then p in base64. */
static int s_base64p(s_writer *w, const char *prefix, const uint8_t *p, size_t len)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int rc = s_ch(w, '"');
    if (rc == EVB_OK && prefix[0] != '\0') rc = s_raw(w, prefix, strlen(prefix));
    char quad[4];
    for (size_t i = 0; rc == EVB_OK && i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len) v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len) v |= p[i + 2];
        quad[0] = tab[(v >> 18) & 63];
        quad[1] = tab[(v >> 12) & 63];
        quad[2] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        quad[3] = i + 2 < len ? tab[v & 63] : '=';
        rc = s_raw(w, quad, 4);
    }
    if (rc == EVB_OK) rc = s_ch(w, '"');
    return rc;
}

static int s_base64(s_writer *w, const uint8_t *p, size_t len)
{
    return s_base64p(w, "", p, len);
}

static int s_float(s_writer *w, double d)
{
    if (isnan(d)) return s_cstr(w, "{\"$float\":\"nan\"}");
    if (isinf(d))
        return s_cstr(w, d > 0 ? "{\"$float\":\"inf\"}" : "{\"$float\":\"-inf\"}");
    char tmp[64];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (prec == 17 || strtod(tmp, NULL) == d) break;
    }
    /* Normalise: keep sign, digits and exponent; whatever the locale used as
     * the decimal separator becomes '.'. */
    char num[72];
    size_t n = 0;
    bool has_point_or_exp = false;
    for (size_t i = 0; tmp[i] != '\0'; i++) {
        char c = tmp[i];
        if ((c >= '0' && c <= '9') || c == '-' || c == '+') {
            num[n++] = c;
        } else if (c == 'e' || c == 'E') {
            num[n++] = 'e';
            has_point_or_exp = true;
        } else if (n == 0 || num[n - 1] != '.') {
            num[n++] = '.';
            has_point_or_exp = true;
        }
    }
    if (!has_point_or_exp) {
        num[n++] = '.';
        num[n++] = '0';
    }
    return s_raw(w, num, n);
}

static int s_decode_err(s_writer *w, const uint8_t *at, int mprc)
{
    return evb_err_set(w->err, EVB_EDECODE, "%s: bad msgpack at byte %zu: %s", w->what,
                       (size_t)(at - w->base), mp_rc_str(mprc));
}

static int s_value(s_writer *w, mp_cur *c, unsigned depth);

static int s_map(s_writer *w, mp_cur *c, uint32_t n, unsigned depth)
{
    int rc = s_ch(w, '{');
    for (uint32_t i = 0; rc == EVB_OK && i < n; i++) {
        if (i > 0) rc = s_ch(w, ',');
        if (rc != EVB_OK) break;
        /* Peek at the key: a string is written as is, anything else as its
         * JSON text inside a string (escaped one level deeper). */
        mp_cur peek = *c;
        mp_val k;
        int mprc = mp_next(&peek, &k);
        if (mprc != MP_OK) return s_decode_err(w, c->p, mprc);
        if (k.type == MP_STR) {
            *c = peek;
            rc = s_string(w, k.v.s.p, k.v.s.len);
        } else if (k.type == MP_ARRAY || k.type == MP_MAP) {
            /* A container as a key: "$key:" and its msgpack bytes in base64.
             * Rendering it as escaped JSON would double the escaping at each
             * level of keys within keys (the fuzzer found 3.8 KB that asked
             * for more than the budget); base64 grows by 4/3, once. */
            const uint8_t *start = c->p;
            int sk = mp_skip(c, EVB_MAX_DEPTH > depth ? EVB_MAX_DEPTH - depth : 0);
            if (sk != MP_OK) return s_decode_err(w, start, sk);
            rc = s_base64p(w, "$key:", start, (size_t)(c->p - start));
        } else {
            rc = s_ch(w, '"');
            if (rc == EVB_OK) {
                w->esc++;
                rc = s_value(w, c, depth);
                w->esc--;
            }
            if (rc == EVB_OK) rc = s_ch(w, '"');
        }
        if (rc == EVB_OK) rc = s_ch(w, ':');
        if (rc == EVB_OK) rc = s_value(w, c, depth);
    }
    if (rc == EVB_OK) rc = s_ch(w, '}');
    return rc;
}

/* Render the next value at c. depth = containers already open around it. */
static int s_value(s_writer *w, mp_cur *c, unsigned depth)
{
    const uint8_t *at = c->p;
    mp_val v;
    int mprc = mp_next(c, &v);
    if (mprc != MP_OK) return s_decode_err(w, at, mprc);
    char tmp[64];
    switch (v.type) {
    case MP_NIL:
        return s_cstr(w, "null");
    case MP_BOOL:
        return s_cstr(w, v.v.b ? "true" : "false");
    case MP_UINT:
        if (v.v.u <= S_JSON_SAFE_INT) {
            snprintf(tmp, sizeof tmp, "%" PRIu64, v.v.u);
        } else {
            snprintf(tmp, sizeof tmp, "{\"$int\":\"%" PRIu64 "\"}", v.v.u);
        }
        return s_cstr(w, tmp);
    case MP_INT:
        if (v.v.i >= -(int64_t)S_JSON_SAFE_INT) {
            snprintf(tmp, sizeof tmp, "%" PRId64, v.v.i);
        } else {
            snprintf(tmp, sizeof tmp, "{\"$int\":\"%" PRId64 "\"}", v.v.i);
        }
        return s_cstr(w, tmp);
    case MP_FLOAT:
        return s_float(w, v.v.f);
    case MP_STR:
        return s_string(w, v.v.s.p, v.v.s.len);
    case MP_BIN: {
        int rc = s_cstr(w, "{\"$bin\":");
        if (rc == EVB_OK) rc = s_base64(w, (const uint8_t *)v.v.s.p, v.v.s.len);
        if (rc == EVB_OK) rc = s_ch(w, '}');
        return rc;
    }
    case MP_EXT: {
        snprintf(tmp, sizeof tmp, "{\"$ext\":%d,\"data\":", (int)v.v.s.ext_type);
        int rc = s_cstr(w, tmp);
        if (rc == EVB_OK) rc = s_base64(w, (const uint8_t *)v.v.s.p, v.v.s.len);
        if (rc == EVB_OK) rc = s_ch(w, '}');
        return rc;
    }
    case MP_ARRAY:
    case MP_MAP:
        if (depth + 1 > EVB_MAX_DEPTH)
            return evb_err_set(w->err, EVB_EDECODE,
                               "%s: nested deeper than %u at byte %zu", w->what,
                               EVB_MAX_DEPTH, (size_t)(at - w->base));
        if (v.type == MP_MAP) return s_map(w, c, v.v.n, depth + 1);
        {
            int rc = s_ch(w, '[');
            for (uint32_t i = 0; rc == EVB_OK && i < v.v.n; i++) {
                if (i > 0) rc = s_ch(w, ',');
                if (rc == EVB_OK) rc = s_value(w, c, depth + 1);
            }
            if (rc == EVB_OK) rc = s_ch(w, ']');
            return rc;
        }
    }
    return evb_err_set(w->err, EVB_EDECODE, "%s: unknown msgpack type at byte %zu",
                       w->what, (size_t)(at - w->base));
}

/* The most a rendering of len input bytes may append (see S_BUDGET_FACTOR). */
static size_t s_budget(size_t len)
{
    if (len > (SIZE_MAX - S_BUDGET_SLACK) / S_BUDGET_FACTOR) return SIZE_MAX;
    return len * S_BUDGET_FACTOR + S_BUDGET_SLACK;
}

/* Render exactly one msgpack value from buf[0..len) onto w (flushed). */
static int s_render(s_writer *w, const void *buf, size_t len)
{
    if (buf == NULL) /* len is 0: NULL + 0 is still undefined behaviour */
        buf = "";
    mp_cur c;
    mp_init(&c, buf, len);
    w->base = (const uint8_t *)buf;
    w->budget = s_budget(len);
    w->esc = 0;
    int rc = s_value(w, &c, 0);
    if (rc == EVB_OK && mp_left(&c) != 0)
        rc = evb_err_set(w->err, EVB_EDECODE, "%s: %zu trailing bytes after the value",
                         w->what, mp_left(&c));
    if (rc == EVB_OK) rc = s_flush(w);
    return rc;
}

int evb_msgpack_to_json(const void *buf, size_t len, evb_buf *out, evb_err *err)
{
    if (out == NULL || (buf == NULL && len > 0))
        return evb_err_set(err, EVB_EINVAL, "msgpack_to_json: NULL argument");
    size_t start = out->len;
    s_writer w = {.out = out, .what = "msgpack", .err = err};
    int rc = s_render(&w, buf, len);
    if (rc != EVB_OK) out->len = start;
    return rc;
}

/* ---- event ---- */

/* Plain (non-payload) output: the envelope's own text is small and bounded by
 * the name limits, so it is appended directly without a budget. */
static int s_put_id(s_writer *w, const char *key, const evb_id *id, bool zero_is_null)
{
    char hex[EVB_ID_HEX_LEN + 1];
    int rc = s_cstr(w, key);
    if (rc != EVB_OK) return rc;
    if (zero_is_null && evb_id_is_zero(id)) return s_cstr(w, "null");
    evb_id_to_hex(id, hex);
    rc = s_ch(w, '"');
    if (rc == EVB_OK) rc = s_raw(w, hex, EVB_ID_HEX_LEN);
    if (rc == EVB_OK) rc = s_ch(w, '"');
    return rc;
}

static int s_put_str(s_writer *w, const char *key, const char *s)
{
    int rc = s_cstr(w, key);
    if (rc != EVB_OK) return rc;
    if (s == NULL) return s_cstr(w, "null");
    return s_string(w, s, strlen(s));
}

static int s_put_u64(s_writer *w, const char *key, uint64_t u)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%" PRIu64, u);
    int rc = s_cstr(w, key);
    if (rc == EVB_OK) rc = s_cstr(w, tmp);
    return rc;
}

static int s_put_map(s_writer *w, const char *key, const char *what, const void *p,
                     size_t len)
{
    int rc = s_cstr(w, key);
    if (rc != EVB_OK) return rc;
    /* Render straight into out after flushing the staged envelope text; the
     * budget is per value. */
    rc = s_flush(w);
    if (rc != EVB_OK) return rc;
    if (p == NULL && len == 0) return s_cstr(w, "{}");
    if (p == NULL)
        return evb_err_set(w->err, EVB_EINVAL, "%s: NULL with length %zu", what, len);
    w->what = what;
    rc = s_render(w, p, len);
    w->budget = SIZE_MAX; /* envelope text again */
    return rc;
}

static int s_event(s_writer *w, const evb_event_t *ev)
{
    char tmp[48];
    int rc = s_put_id(w, "{\"log_id\":", &ev->log_id, false);
    if (rc == EVB_OK) rc = s_put_u64(w, ",\"seq\":", ev->seq);
    if (rc == EVB_OK) rc = s_put_id(w, ",\"id\":", &ev->id, false);
    if (rc == EVB_OK) rc = s_put_str(w, ",\"service\":", ev->service);
    if (rc == EVB_OK) rc = s_put_str(w, ",\"stream\":", ev->stream);
    if (rc == EVB_OK) rc = s_put_u64(w, ",\"version\":", ev->version);
    if (rc == EVB_OK) {
        /* A caller-filled event has no category: derive it as decode would. */
        const char *cat = ev->category;
        char derived[EVB_MAX_CATEGORY_LEN + 1];
        if (cat == NULL && ev->stream != NULL &&
            evb_stream_category(ev->stream, derived, NULL) == EVB_OK)
            cat = derived;
        rc = s_put_str(w, ",\"category\":", cat);
    }
    if (rc == EVB_OK) rc = s_put_str(w, ",\"type\":", ev->type);
    if (rc == EVB_OK) rc = s_put_u64(w, ",\"schema\":", ev->schema);
    if (rc == EVB_OK) {
        char ts[32];
        evb_ts_format(ev->ts_us, ts);
        rc = s_put_str(w, ",\"ts\":", ts);
    }
    if (rc == EVB_OK) {
        snprintf(tmp, sizeof tmp, ",\"ts_us\":%" PRId64, ev->ts_us);
        rc = s_cstr(w, tmp);
    }
    if (rc == EVB_OK) rc = s_put_id(w, ",\"correlation_id\":", &ev->correlation_id, true);
    if (rc == EVB_OK) rc = s_put_id(w, ",\"causation_id\":", &ev->causation_id, true);
    if (rc == EVB_OK)
        rc = s_put_map(w, ",\"payload\":", "payload", ev->payload, ev->payload_len);
    if (rc == EVB_OK && ev->metadata != NULL)
        rc = s_put_map(w, ",\"metadata\":", "metadata", ev->metadata, ev->metadata_len);
    if (rc == EVB_OK && ev->origin_seq != 0) {
        rc = s_put_id(w, ",\"origin_log_id\":", &ev->origin_log_id, false);
        if (rc == EVB_OK) rc = s_put_u64(w, ",\"origin_seq\":", ev->origin_seq);
    }
    if (rc == EVB_OK) rc = s_ch(w, '}');
    if (rc == EVB_OK) rc = s_flush(w);
    return rc;
}

int evb_event_to_json(const evb_event_t *ev, evb_buf *out, evb_err *err)
{
    if (ev == NULL || out == NULL)
        return evb_err_set(err, EVB_EINVAL, "event_to_json: NULL argument");
    size_t start = out->len;
    s_writer w = {.out = out, .budget = SIZE_MAX, .what = "event", .err = err};
    int rc = s_event(&w, ev);
    if (rc != EVB_OK) out->len = start;
    return rc;
}

/* ---- time ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. Both use
 * 400-year eras (146097 days) shifted to start on March 1st, so the leap day
 * is the last day of the shifted year and needs no special case. */
static int64_t s_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);                       /* [0, 399] */
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
    return era * 146097 + (int64_t)doe - 719468;
}

static void s_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void evb_ts_format(int64_t ts_us, char out[32])
{
    /* Floor division so that times before 1970 still get a fraction in
     * [0, 999999]. */
    int64_t secs = ts_us / 1000000;
    int64_t us = ts_us % 1000000;
    if (us < 0) {
        us += 1000000;
        secs -= 1;
    }
    int64_t days = secs / 86400;
    int64_t sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days -= 1;
    }
    int64_t y;
    unsigned m, d;
    s_civil_from_days(days, &y, &m, &d);
    /* Widest case, year -292277: 30 characters and the NUL. */
    snprintf(out, 32, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u.%06uZ", y, m % 100u,
             d % 100u, (unsigned)(sod / 3600), (unsigned)(sod / 60 % 60),
             (unsigned)(sod % 60), (unsigned)us);
}

/* Read exactly n decimal digits at *p. */
static bool s_digits(const char **p, unsigned n, unsigned *v)
{
    unsigned acc = 0;
    for (unsigned i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return false;
        acc = acc * 10 + (unsigned)(c - '0');
    }
    *p += n;
    *v = acc;
    return true;
}

static bool s_leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int evb_ts_parse(const char *s, int64_t *ts_us, evb_err *err)
{
    if (s == NULL || ts_us == NULL)
        return evb_err_set(err, EVB_EINVAL, "ts_parse: NULL argument");
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = s;
    unsigned y, mo, d, h, mi, sec;
    if (!s_digits(&p, 4, &y) || *p++ != '-' || !s_digits(&p, 2, &mo) || *p++ != '-' ||
        !s_digits(&p, 2, &d) || (*p != 'T' && *p != 't') || !(p++, s_digits(&p, 2, &h)) ||
        *p++ != ':' || !s_digits(&p, 2, &mi) || *p++ != ':' || !s_digits(&p, 2, &sec))
        goto bad;
    if (mo < 1 || mo > 12 || d < 1 ||
        d > mdays[mo - 1] + (mo == 2 && s_leap(y) ? 1u : 0u) || h > 23 || mi > 59 ||
        sec > 59) /* leap seconds (":60") are not accepted */
        goto bad;
    int64_t frac_us = 0;
    if (*p == '.') {
        p++;
        unsigned n = 0;
        int64_t scale = 100000;
        while (*p >= '0' && *p <= '9') {
            if (++n > 9) goto bad;
            /* Digits past the sixth are dropped (truncation). */
            frac_us += (*p - '0') * scale;
            scale /= 10;
            p++;
        }
        if (n == 0) goto bad;
    }
    int64_t offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        unsigned oh, om;
        if (!s_digits(&p, 2, &oh) || *p++ != ':' || !s_digits(&p, 2, &om) || oh > 23 ||
            om > 59)
            goto bad;
        offset_s = sign * (int64_t)(oh * 3600 + om * 60);
    } else {
        goto bad;
    }
    if (*p != '\0') goto bad;
    int64_t secs =
        s_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_s;
    if (secs < 0) return evb_err_set(err, EVB_EINVAL, "time \"%.64s\" is before 1970", s);
    *ts_us = secs * 1000000 + frac_us;
    return EVB_OK;
bad:
    return evb_err_set(err, EVB_EINVAL,
                       "time \"%.64s\" is not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.f]Z or "
                       "+hh:mm)",
                       s);
}

int64_t evb_now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}
