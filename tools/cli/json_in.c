/*
 * json_in.c: a strict recursive-descent JSON reader and its msgpack writer,
 * for `evbus append` (see json_in.h for what is accepted).
 *
 * Decisions: the parser builds a small tree rather than streaming because a
 * line is bounded by the caller (`evbus append` caps it) and the fields of a
 * line come in any order; the tree is walked once more to pack the payload.
 * Depth is counted on the way down, so recursion is bounded by
 * JSON_MAX_DEPTH whatever the input. Integers are parsed digit by digit with
 * overflow checks rather than through strtod, so that 2^63 and 2^64-1 keep
 * every digit; anything larger is refused instead of rounded.
 */
#include "json_in.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

typedef struct parser {
    const char *p, *start, *end;
    unsigned depth;
    evb_err *err;
} parser;

static int s_fail(parser *ps, int code, const char *what)
{
    return evb_err_set(ps->err, code, "%s at byte %zu", what,
                       (size_t)(ps->p - ps->start) + 1);
}

static void s_ws(parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static void s_val_free(json_val *v)
{
    free(v->str);
    free(v->key);
    for (size_t i = 0; i < v->n; i++)
        s_val_free(&v->kids[i]);
    free(v->kids);
}

void json_free(json_val **vp)
{
    if (vp == NULL || *vp == NULL) return;
    s_val_free(*vp);
    free(*vp);
    *vp = NULL;
}

/* ---- strings ---- */

static int s_hex4(parser *ps, unsigned *out)
{
    if (ps->end - ps->p < 4) return s_fail(ps, EVB_EDECODE, "short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = ps->p[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (unsigned)(c - 'A' + 10);
        else
            return s_fail(ps, EVB_EDECODE, "bad hex digit in \\u escape");
        v = v << 4 | d;
    }
    ps->p += 4;
    *out = v;
    return EVB_OK;
}

static size_t s_put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ps->p is at the opening quote. The decoded string is never longer than
 * its JSON text, so one allocation of that size is enough. */
static int s_string(parser *ps, char **out, size_t *outlen)
{
    ps->p++;
    const char *q = ps->p;
    while (q < ps->end && *q != '"')
        q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end) return s_fail(ps, EVB_EDECODE, "unterminated string");
    char *buf = malloc((size_t)(q - ps->p) + 1);
    if (buf == NULL) return s_fail(ps, EVB_ENOMEM, "out of memory");
    size_t n = 0;
    int rc = EVB_OK;
    while (rc == EVB_OK) {
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20) {
            rc = s_fail(ps, EVB_EDECODE, "control character in string (escape it)");
        } else if (c == '\\') {
            ps->p++;
            char e = *ps->p++;
            switch (e) {
            case '"':
                buf[n++] = '"';
                break;
            case '\\':
                buf[n++] = '\\';
                break;
            case '/':
                buf[n++] = '/';
                break;
            case 'b':
                buf[n++] = '\b';
                break;
            case 'f':
                buf[n++] = '\f';
                break;
            case 'n':
                buf[n++] = '\n';
                break;
            case 'r':
                buf[n++] = '\r';
                break;
            case 't':
                buf[n++] = '\t';
                break;
            case 'u': {
                unsigned cp, lo;
                if ((rc = s_hex4(ps, &cp)) != EVB_OK) break;
                if (cp >= 0xdc00 && cp <= 0xdfff) {
                    rc = s_fail(ps, EVB_EDECODE, "lone low surrogate in \\u escape");
                    break;
                }
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                        rc = s_fail(ps, EVB_EDECODE, "high surrogate without its pair");
                        break;
                    }
                    ps->p += 2;
                    if ((rc = s_hex4(ps, &lo)) != EVB_OK) break;
                    if (lo < 0xdc00 || lo > 0xdfff) {
                        rc = s_fail(ps, EVB_EDECODE, "high surrogate without its pair");
                        break;
                    }
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                /* \uXXXX takes 6 bytes of text and at most 3 of output; a
                 * pair takes 12 and 4: the buffer is big enough. */
                n += s_put_utf8(buf + n, cp);
                break;
            }
            default:
                ps->p--;
                rc = s_fail(ps, EVB_EDECODE, "unknown escape in string");
            }
        } else {
            size_t l = evb_utf8_len(ps->p, (size_t)(q - ps->p));
            if (l == 0) {
                rc = s_fail(ps, EVB_EDECODE, "invalid UTF-8 in string");
            } else {
                memcpy(buf + n, ps->p, l);
                n += l;
                ps->p += l;
            }
        }
    }
    if (rc != EVB_OK) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return EVB_OK;
}

/* ---- numbers ---- */

static bool s_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int s_number(parser *ps, json_val *v)
{
    const char *b = ps->p, *q = ps->p;
    bool neg = false, frac = false;
    if (q < ps->end && *q == '-') {
        neg = true;
        q++;
    }
    if (q >= ps->end || !s_digit(*q)) return s_fail(ps, EVB_EDECODE, "bad number");
    if (*q == '0' && q + 1 < ps->end && s_digit(q[1]))
        return s_fail(ps, EVB_EDECODE, "leading zero in number");
    while (q < ps->end && s_digit(*q))
        q++;
    const char *int_end = q;
    if (q < ps->end && *q == '.') {
        frac = true;
        q++;
        if (q >= ps->end || !s_digit(*q))
            return s_fail(ps, EVB_EDECODE, "digit expected after '.'");
        while (q < ps->end && s_digit(*q))
            q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        frac = true;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || !s_digit(*q))
            return s_fail(ps, EVB_EDECODE, "digit expected in exponent");
        while (q < ps->end && s_digit(*q))
            q++;
    }
    if (!frac) {
        uint64_t u = 0;
        for (const char *d = b + (neg ? 1 : 0); d < int_end; d++) {
            unsigned dv = (unsigned)(*d - '0');
            if (u > (UINT64_MAX - dv) / 10)
                return s_fail(ps, EVB_EDECODE, "integer out of the 64-bit range");
            u = u * 10 + dv;
        }
        if (neg) {
            if (u > (uint64_t)INT64_MAX + 1)
                return s_fail(ps, EVB_EDECODE, "integer out of the 64-bit range");
            v->type = JSON_INT;
            v->i = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
        } else if (u > (uint64_t)INT64_MAX) {
            v->type = JSON_UINT;
            v->u = u;
        } else {
            v->type = JSON_INT;
            v->i = (int64_t)u;
        }
        ps->p = q;
        return EVB_OK;
    }
    /* strtod needs a NUL-terminated copy; numbers are short. */
    size_t n = (size_t)(q - b);
    char tmp[64];
    if (n >= sizeof tmp)
        return s_fail(ps, EVB_EDECODE, "number longer than 63 characters");
    memcpy(tmp, b, n);
    tmp[n] = '\0';
    errno = 0;
    double d = strtod(tmp, NULL);
    if (errno == ERANGE && isinf(d))
        return s_fail(ps, EVB_EDECODE, "number out of the float64 range");
    v->type = JSON_FLOAT;
    v->d = d;
    ps->p = q;
    return EVB_OK;
}

/* ---- values ---- */

static int s_value(parser *ps, json_val *v);

static json_val *s_push(parser *ps, json_val *parent)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        json_val *k = realloc(parent->kids, cap * sizeof *k);
        if (k == NULL) {
            s_fail(ps, EVB_ENOMEM, "out of memory");
            return NULL;
        }
        parent->kids = k;
        parent->cap = cap;
    }
    json_val *k = &parent->kids[parent->n++];
    memset(k, 0, sizeof *k);
    return k;
}

static int s_lit(parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return s_fail(ps, EVB_EDECODE, "unexpected character");
    ps->p += n;
    return EVB_OK;
}

static int s_container(parser *ps, json_val *v, bool obj)
{
    if (++ps->depth > JSON_MAX_DEPTH)
        return s_fail(ps, EVB_ETOOBIG, "nesting deeper than 64 levels");
    v->type = obj ? JSON_OBJ : JSON_ARR;
    char close = obj ? '}' : ']';
    ps->p++;
    s_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return EVB_OK;
    }
    for (;;) {
        s_ws(ps);
        json_val *k = s_push(ps, v);
        if (k == NULL) return EVB_ENOMEM;
        int rc;
        if (obj) {
            if (ps->p >= ps->end || *ps->p != '"')
                return s_fail(ps, EVB_EDECODE, "object key (a string) expected");
            if ((rc = s_string(ps, &k->key, &k->klen)) != EVB_OK) return rc;
            s_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return s_fail(ps, EVB_EDECODE, "':' expected after object key");
            ps->p++;
            s_ws(ps);
        }
        if ((rc = s_value(ps, k)) != EVB_OK) return rc;
        s_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            ps->depth--;
            return EVB_OK;
        }
        return s_fail(ps, EVB_EDECODE,
                      obj ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int s_value(parser *ps, json_val *v)
{
    if (ps->p >= ps->end) return s_fail(ps, EVB_EDECODE, "value expected, found the end");
    switch (*ps->p) {
    case '{':
        return s_container(ps, v, true);
    case '[':
        return s_container(ps, v, false);
    case '"':
        v->type = JSON_STR;
        return s_string(ps, &v->str, &v->len);
    case 't':
        v->type = JSON_BOOL;
        v->b = true;
        return s_lit(ps, "true");
    case 'f':
        v->type = JSON_BOOL;
        return s_lit(ps, "false");
    case 'n':
        v->type = JSON_NULL;
        return s_lit(ps, "null");
    default:
        if (*ps->p == '-' || s_digit(*ps->p)) return s_number(ps, v);
        return s_fail(ps, EVB_EDECODE, "unexpected character");
    }
}

int json_parse(const char *text, size_t len, json_val **out, evb_err *err)
{
    *out = NULL;
    parser ps = {text, text, text + len, 0, err};
    json_val *v = calloc(1, sizeof *v);
    if (v == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
    s_ws(&ps);
    int rc = s_value(&ps, v);
    if (rc == EVB_OK) {
        s_ws(&ps);
        if (ps.p != ps.end) rc = s_fail(&ps, EVB_EDECODE, "text after the JSON value");
    }
    if (rc != EVB_OK) {
        json_free(&v);
        return rc;
    }
    *out = v;
    return EVB_OK;
}

const json_val *json_get(const json_val *obj, const char *key)
{
    if (obj == NULL || obj->type != JSON_OBJ) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->n; i++)
        if (obj->kids[i].klen == kl && memcmp(obj->kids[i].key, key, kl) == 0)
            return &obj->kids[i];
    return NULL;
}

const char *json_type_name(json_type t)
{
    switch (t) {
    case JSON_NULL:
        return "null";
    case JSON_BOOL:
        return "a boolean";
    case JSON_INT:
    case JSON_UINT:
        return "an integer";
    case JSON_FLOAT:
        return "a number";
    case JSON_STR:
        return "a string";
    case JSON_ARR:
        return "an array";
    case JSON_OBJ:
        return "an object";
    }
    return "?";
}

/* ---- msgpack ---- */

typedef struct wctx {
    evb_buf *b;
    evb_err *err;
    int rc;
} wctx;

static int s_write(void *data, const char *buf, size_t len)
{
    wctx *w = data;
    if (w->rc == EVB_OK) w->rc = evb_buf_append(w->b, buf, len, w->err);
    return w->rc == EVB_OK ? 0 : -1;
}

/* Depth is bounded by the parser's JSON_MAX_DEPTH. */
static void s_pack(msgpack_packer *pk, const json_val *v)
{
    switch (v->type) {
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    case JSON_BOOL:
        v->b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        break;
    case JSON_INT:
        msgpack_pack_int64(pk, v->i);
        break;
    case JSON_UINT:
        msgpack_pack_uint64(pk, v->u);
        break;
    case JSON_FLOAT:
        msgpack_pack_double(pk, v->d);
        break;
    case JSON_STR:
        msgpack_pack_str(pk, v->len);
        msgpack_pack_str_body(pk, v->str, v->len);
        break;
    case JSON_ARR:
        msgpack_pack_array(pk, v->n);
        for (size_t i = 0; i < v->n; i++)
            s_pack(pk, &v->kids[i]);
        break;
    case JSON_OBJ:
        msgpack_pack_map(pk, v->n);
        for (size_t i = 0; i < v->n; i++) {
            msgpack_pack_str(pk, v->kids[i].klen);
            msgpack_pack_str_body(pk, v->kids[i].key, v->kids[i].klen);
            s_pack(pk, &v->kids[i]);
        }
        break;
    }
}

int json_to_msgpack(const json_val *v, evb_buf *out, evb_err *err)
{
    size_t mark = out->len;
    wctx w = {out, err, EVB_OK};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w, s_write);
    s_pack(&pk, v);
    if (w.rc != EVB_OK) out->len = mark;
    return w.rc;
}
