/*
 * common.c: errors, the log hook, the growable buffer and ids, shared by every
 * evbus module. Nothing here allocates except evb_buf, and nothing aborts.
 */
#include "evbus_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/random.h>

static const char *s_code_names[EVB_CODE_COUNT] = {
    [EVB_OK] = "EVB_OK: success",
    [EVB_EINVAL] = "EVB_EINVAL: invalid argument",
    [EVB_ENOMEM] = "EVB_ENOMEM: out of memory",
    [EVB_EDECODE] = "EVB_EDECODE: malformed encoding",
    [EVB_ETOOBIG] = "EVB_ETOOBIG: size limit exceeded",
    [EVB_EVERSION] = "EVB_EVERSION: unknown envelope version",
    [EVB_ECONFLICT] = "EVB_ECONFLICT: expected version mismatch",
    [EVB_EPARTIAL] = "EVB_EPARTIAL: some event ids already stored",
    [EVB_ELOCKED] = "EVB_ELOCKED: log is in use by another process",
    [EVB_EFORMAT] = "EVB_EFORMAT: not an evbus log or newer format",
    [EVB_ECORRUPT] = "EVB_ECORRUPT: stored data is damaged",
    [EVB_EIO] = "EVB_EIO: I/O error",
    [EVB_ENOTFOUND] = "EVB_ENOTFOUND: not found",
    [EVB_EBUSY] = "EVB_EBUSY: busy",
    [EVB_ECLOSED] = "EVB_ECLOSED: closed",
    [EVB_EUNWRITABLE] = "EVB_EUNWRITABLE: log refuses writes after a failed write",
    [EVB_ETIMEDOUT] = "EVB_ETIMEDOUT: no answer in time",
    [EVB_EREJECTED] = "EVB_EREJECTED: rejected by the domain",
    [EVB_EUNREACHABLE] = "EVB_EUNREACHABLE: endpoint cannot be connected to",
    [EVB_EAUTH] = "EVB_EAUTH: handshake refused by the peer's security",
};

const char *evb_strerror(int code)
{
    if (code < 0 || code >= EVB_CODE_COUNT) return "EVB_?: unknown error code";
    return s_code_names[code];
}

/* The bare names, as carried on the wire (command replies). */
static const char *const s_bare_names[EVB_CODE_COUNT] = {
    "EVB_OK",          "EVB_EINVAL",    "EVB_ENOMEM",    "EVB_EDECODE", "EVB_ETOOBIG",
    "EVB_EVERSION",    "EVB_ECONFLICT", "EVB_EPARTIAL",  "EVB_ELOCKED", "EVB_EFORMAT",
    "EVB_ECORRUPT",    "EVB_EIO",       "EVB_ENOTFOUND", "EVB_EBUSY",   "EVB_ECLOSED",
    "EVB_EUNWRITABLE", "EVB_ETIMEDOUT", "EVB_EREJECTED", "EVB_EUNREACHABLE",
    "EVB_EAUTH",
};

const char *evb_code_name(int code)
{
    if (code < 0 || code >= EVB_CODE_COUNT) return "EVB_?";
    return s_bare_names[code];
}

int evb_code_from_name(const char *name)
{
    for (int i = 0; i < EVB_CODE_COUNT; i++)
        if (strcmp(s_bare_names[i], name) == 0) return i;
    return -1;
}

int evb_err_set(evb_err *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void evb_err_clear(evb_err *err)
{
    if (err != NULL) {
        err->code = EVB_OK;
        err->msg[0] = '\0';
    }
}

/* ---- names ---- */

size_t evb_name_distance(const char *a, size_t al, const char *b)
{
    size_t bl = strlen(b);
    if (al > 63 || bl > 63) return SIZE_MAX;
    size_t d[64][64];
    for (size_t i = 0; i <= al; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= bl; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= al; i++)
        for (size_t j = 1; j <= bl; j++) {
            size_t c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[al][bl];
}

/* ---- durations ---- */

bool evb_duration_is_bare(const char *s)
{
    if (s == NULL || *s == '\0') return false;
    int dots = 0, digits = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '.') dots++;
        else if (*p >= '0' && *p <= '9') digits++;
        else return false;
    }
    return digits > 0 && dots <= 1;
}

static const struct {
    const char *name;
    uint64_t ms;
} s_units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
#define S_NUNITS (sizeof s_units / sizeof s_units[0])

int evb_duration_parse(const char *s, uint64_t *ms, evb_err *err)
{
    if (s == NULL || *s == '\0') return evb_err_set(err, EVB_EINVAL, "empty duration");
    if (evb_duration_is_bare(s))
        return evb_err_set(err, EVB_EINVAL, "'%s' has no unit (ms, s, m, h or d)", s);
    uint64_t total = 0;
    size_t last = S_NUNITS; /* parts go largest unit first, each unit once */
    const char *p = s;
    while (*p != '\0') {
        uint64_t whole = 0, frac = 0, scale = 1;
        const char *start = p;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (whole > (UINT64_MAX - 9) / 10)
                return evb_err_set(err, EVB_EINVAL, "'%s' is too long a duration", s);
            whole = whole * 10 + (uint64_t)(*p - '0');
        }
        if (*p == '.') {
            p++;
            for (; *p >= '0' && *p <= '9'; p++) {
                if (scale == 1000000)
                    return evb_err_set(err, EVB_EINVAL, "'%s': more than 6 decimals", s);
                frac = frac * 10 + (uint64_t)(*p - '0');
                scale *= 10;
            }
        }
        if (p == start || (p - start == 1 && *start == '.'))
            return evb_err_set(err, EVB_EINVAL, "'%s' is not a duration (e.g. 500ms, 3s, 2m)",
                               s);
        const char *u = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            p++;
        size_t ul = (size_t)(p - u), k = 0;
        for (; k < S_NUNITS; k++)
            if (strlen(s_units[k].name) == ul && memcmp(s_units[k].name, u, ul) == 0) break;
        if (ul == 0)
            return evb_err_set(err, EVB_EINVAL, "'%s': a number without a unit (ms, s, m, h "
                               "or d)", s);
        if (k == S_NUNITS)
            return evb_err_set(err, EVB_EINVAL, "'%s': unknown unit '%.*s' (ms, s, m, h or d)",
                               s, (int)ul, u);
        if (last != S_NUNITS && k <= last)
            return evb_err_set(err, EVB_EINVAL, "'%s': give the larger units first, each once",
                               s);
        last = k;
        uint64_t unit = s_units[k].ms;
        if (whole > UINT64_MAX / unit)
            return evb_err_set(err, EVB_EINVAL, "'%s' is too long a duration", s);
        uint64_t part = whole * unit;
        if (frac != 0) {
            /* frac/scale of a unit, exact in milliseconds or refused */
            if ((frac * unit) % scale != 0)
                return evb_err_set(err, EVB_EINVAL, "'%s' is finer than a millisecond", s);
            uint64_t f = frac * unit / scale;
            if (f > UINT64_MAX - part)
                return evb_err_set(err, EVB_EINVAL, "'%s' is too long a duration", s);
            part += f;
        }
        if (part > UINT64_MAX - total)
            return evb_err_set(err, EVB_EINVAL, "'%s' is too long a duration", s);
        total += part;
    }
    *ms = total;
    return EVB_OK;
}

const char *evb_duration_format(uint64_t ms, char out[32])
{
    if (ms == 0) {
        snprintf(out, 32, "0s");
        return out;
    }
    if (ms % 1000 != 0) {
        snprintf(out, 32, "%llums", (unsigned long long)ms);
        return out;
    }
    size_t o = 0;
    for (size_t k = 0; k + 1 < S_NUNITS && ms > 0; k++) {
        uint64_t n = ms / s_units[k].ms;
        if (n == 0) continue;
        o += (size_t)snprintf(out + o, 32 - o, "%llu%s", (unsigned long long)n,
                              s_units[k].name);
        ms -= n * s_units[k].ms;
    }
    return out;
}

/* ---- logging ---- */

static evb_log_sink_fn s_sink;
static void *s_sink_ctx;
static evb_log_level s_min_level = EVB_LOG_INFO;

void evb_log_set_sink(evb_log_sink_fn sink, void *ctx, evb_log_level min)
{
    s_sink = sink;
    s_sink_ctx = ctx;
    s_min_level = min;
}

void evb_log(evb_log_level level, const char *fmt, ...)
{
    if (level < s_min_level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (s_sink != NULL) {
        s_sink(level, msg, s_sink_ctx);
        return;
    }
    static const char *names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "evbus %s: %s\n", names[level & 3], msg);
}

/* ---- buffer ---- */

int evb_buf_reserve(evb_buf *b, size_t extra, evb_err *err)
{
    size_t max = b->max_cap ? b->max_cap : SIZE_MAX;
    if (extra > max || b->len > max - extra)
        return evb_err_set(err, EVB_ETOOBIG, "buffer would exceed %zu bytes", max);
    size_t need = b->len + extra;
    if (need <= b->cap) return EVB_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = (cap > SIZE_MAX / 2) ? need : cap * 2;
    if (cap > max) cap = max;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return evb_err_set(err, EVB_ENOMEM, "out of memory growing a buffer to %zu bytes",
                           cap);
    b->data = p;
    b->cap = cap;
    return EVB_OK;
}

int evb_buf_append(evb_buf *b, const void *p, size_t n, evb_err *err)
{
    int rc = evb_buf_reserve(b, n, err);
    if (rc != EVB_OK) return rc;
    if (n > 0) memcpy(b->data + b->len, p, n);
    b->len += n;
    return EVB_OK;
}

int evb_buf_printf(evb_buf *b, evb_err *err, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return evb_err_set(err, EVB_EINVAL, "bad format string");
    if ((size_t)n < sizeof small) return evb_buf_append(b, small, (size_t)n, err);
    int rc = evb_buf_reserve(b, (size_t)n + 1, err);
    if (rc != EVB_OK) return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return EVB_OK;
}

void evb_buf_free(evb_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* ---- ids ---- */

bool evb_id_is_zero(const evb_id *id)
{
    uint64_t a, b;
    memcpy(&a, id->b, 8);
    memcpy(&b, id->b + 8, 8);
    return (a | b) == 0;
}

int evb_id_random(evb_id *id, evb_err *err)
{
    size_t got = 0;
    while (got < EVB_ID_LEN) {
        ssize_t n = getrandom(id->b + got, EVB_ID_LEN - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return evb_err_set(err, EVB_EIO, "getrandom: %s", strerror(errno));
        }
        got += (size_t)n;
    }
    if (evb_id_is_zero(id)) /* zero means "none"; astronomically unlikely */
        id->b[0] = 1;
    return EVB_OK;
}

void evb_id_to_hex(const evb_id *id, char out[EVB_ID_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < EVB_ID_LEN; i++) {
        out[2 * i] = hex[id->b[i] >> 4];
        out[2 * i + 1] = hex[id->b[i] & 15];
    }
    out[EVB_ID_HEX_LEN] = '\0';
}

static int s_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int evb_id_from_hex(const char *hex, evb_id *id, evb_err *err)
{
    if (hex == NULL || strlen(hex) != EVB_ID_HEX_LEN)
        return evb_err_set(err, EVB_EINVAL, "id '%.40s' is not 32 hex characters",
                           hex ? hex : "(null)");
    for (unsigned i = 0; i < EVB_ID_LEN; i++) {
        int hi = s_hexval(hex[2 * i]), lo = s_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return evb_err_set(err, EVB_EINVAL, "id '%s' has a non-hex character", hex);
        id->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return EVB_OK;
}

#ifdef EVB_CRASH_POINTS
#include "codec_int.h"

static const char *s_crash_want;
static long s_crash_after = 1;

static void s_crash_init(void)
{
    s_crash_want = getenv("EVB_CRASH_POINT");
    const char *after = getenv("EVB_CRASH_AFTER");
    if (after != NULL) s_crash_after = atol(after);
}

void evb__crash_point(const char *name)
{
    /* The environment is read once: some points sit on hot paths. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    static atomic_long hits;
    pthread_once(&once, s_crash_init);
    if (s_crash_want == NULL || strcmp(s_crash_want, name) != 0) return;
    if (atomic_fetch_add(&hits, 1) + 1 == s_crash_after) raise(SIGKILL);
}
#endif
