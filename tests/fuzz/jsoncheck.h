/*
 * jsoncheck.h: a small strict JSON validator (RFC 8259) for the fuzz targets,
 * so "always valid JSON" in evbus_codec.h is checked on every rendering.
 *
 * Strict means: one value and nothing after it but whitespace; strings hold
 * well-formed UTF-8 and no raw control characters; escapes are the eight of
 * the RFC or \uXXXX with surrogates correctly paired; numbers follow the RFC
 * grammar (no leading zeros, no bare '.', no inf/nan). Nesting is bounded
 * (JC_MAX_DEPTH) so the checker's own recursion stays small.
 */
#ifndef EVB_JSONCHECK_H
#define EVB_JSONCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define JC_MAX_DEPTH 256

typedef struct jc {
    const uint8_t *p;
    const uint8_t *end;
} jc;

static inline void jc_ws(jc *c)
{
    while (c->p < c->end &&
           (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static inline bool jc_lit(jc *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    return true;
}

static inline bool jc_digits(jc *c)
{
    const uint8_t *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > s;
}

static inline bool jc_number(jc *c)
{
    if (c->p < c->end && *c->p == '-') c->p++;
    if (c->p >= c->end) return false;
    if (*c->p == '0') {
        c->p++;
    } else if (!jc_digits(c)) {
        return false;
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!jc_digits(c)) return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!jc_digits(c)) return false;
    }
    return true;
}

static inline int jc_hex4(jc *c)
{
    if (c->end - c->p < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t h = c->p[i];
        int d = (h >= '0' && h <= '9')   ? h - '0'
                : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                         : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    c->p += 4;
    return v;
}

/* One well-formed UTF-8 sequence of 2..4 bytes at c->p. */
static inline bool jc_utf8(jc *c)
{
    uint8_t b = *c->p;
    size_t n = (size_t)(c->end - c->p), len;
    uint8_t lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf)
        len = 2;
    else if (b >= 0xe0 && b <= 0xef)
        len = 3, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf;
    else if (b >= 0xf0 && b <= 0xf4)
        len = 4, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf;
    else
        return false;
    if (n < len || c->p[1] < lo || c->p[1] > hi) return false;
    for (size_t i = 2; i < len; i++)
        if (c->p[i] < 0x80 || c->p[i] > 0xbf) return false;
    c->p += len;
    return true;
}

static inline bool jc_string(jc *c)
{
    if (c->p >= c->end || *c->p != '"') return false;
    c->p++;
    while (c->p < c->end) {
        uint8_t b = *c->p;
        if (b == '"') {
            c->p++;
            return true;
        }
        if (b < 0x20) return false;
        if (b >= 0x80) {
            if (!jc_utf8(c)) return false;
            continue;
        }
        c->p++;
        if (b != '\\') continue;
        if (c->p >= c->end) return false;
        uint8_t e = *c->p++;
        if (strchr("\"\\/bfnrt", e) != NULL && e != '\0') continue;
        if (e != 'u') return false;
        int u = jc_hex4(c);
        if (u < 0 || (u >= 0xdc00 && u <= 0xdfff)) return false; /* lone low surrogate */
        if (u >= 0xd800 && u <= 0xdbff) {
            if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') return false;
            c->p += 2;
            int lo = jc_hex4(c);
            if (lo < 0xdc00 || lo > 0xdfff) return false;
        }
    }
    return false;
}

static inline bool jc_value(jc *c, unsigned depth)
{
    jc_ws(c);
    if (c->p >= c->end) return false;
    switch (*c->p) {
    case '{':
    case '[': {
        uint8_t close = *c->p == '{' ? '}' : ']';
        bool obj = close == '}';
        if (depth >= JC_MAX_DEPTH) return false;
        c->p++;
        jc_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return true;
        }
        for (;;) {
            if (obj) {
                jc_ws(c);
                if (!jc_string(c)) return false;
                jc_ws(c);
                if (c->p >= c->end || *c->p++ != ':') return false;
            }
            if (!jc_value(c, depth + 1)) return false;
            jc_ws(c);
            if (c->p >= c->end) return false;
            uint8_t b = *c->p++;
            if (b == close) return true;
            if (b != ',') return false;
        }
    }
    case '"':
        return jc_string(c);
    case 't':
        return jc_lit(c, "true");
    case 'f':
        return jc_lit(c, "false");
    case 'n':
        return jc_lit(c, "null");
    default:
        return jc_number(c);
    }
}

/* True if buf[0..len) is exactly one valid JSON value (whitespace around). */
static inline bool jc_valid(const void *buf, size_t len)
{
    jc c = {(const uint8_t *)buf, (const uint8_t *)buf + len};
    if (!jc_value(&c, 0)) return false;
    jc_ws(&c);
    return c.p == c.end;
}

#endif
