/*
 * evbus_common.h: what every evbus module shares: error codes and the error
 * struct, the log hook, the growable byte buffer, 16-byte ids, and the size
 * ceilings that every decoder and socket enforces.
 *
 * Conventions (all evbus headers follow them):
 *  1. Exported names start with evb_ (functions, types) or EVB_ (macros).
 *  2. Errors: functions return an evb_code (EVB_OK == 0) and also fill the
 *     optional evb_err passed last (NULL is allowed). err->msg names what was
 *     wrong: the field, the file, the key. Nothing to free.
 *  3. Objects are opaque unless a struct is documented here. Constructors
 *     return the object or NULL with err filled; destructors take T ** and
 *     set the caller's pointer to NULL (NULL is accepted).
 *  4. Buffers travel as (const void *, size_t). Strings are NUL-terminated.
 *  5. The library never prints and never aborts on input; it logs through
 *     evb_log, whose sink the program installs (default: stderr).
 *  6. Thread rules: the functions here are thread-safe except
 *     evb_log_set_sink, which a program calls once at start-up.
 */
#ifndef EVBUS_COMMON_H
#define EVBUS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(EVB_BUILDING_LIB)
#define EVB_EXPORT __attribute__((visibility("default")))
#else
#define EVB_EXPORT
#endif

/* Size ceilings. Every decoded length is compared with these and with the
 * bytes left before anything is allocated. */
#define EVB_MAX_EVENT_BYTES (1024u * 1024u) /* one encoded envelope */
#define EVB_MAX_PAYLOAD_BYTES (EVB_MAX_EVENT_BYTES - 4096u)
#define EVB_MAX_STREAM_LEN 128u  /* stream id, bytes */
#define EVB_MAX_CATEGORY_LEN 64u /* category: stream id before its first '-' */
#define EVB_MAX_TYPE_LEN 128u    /* event type */
#define EVB_MAX_SERVICE_LEN 64u  /* service name */
#define EVB_MAX_DEPTH 32u        /* nesting of maps/arrays inside a payload */
#define EVB_MAX_BATCH 10000u     /* events in one append */
#define EVB_ID_LEN 16u
#define EVB_ID_HEX_LEN 32u

typedef enum evb_code {
    EVB_OK = 0,
    EVB_EINVAL,      /* bad argument, flag or config */
    EVB_ENOMEM,      /* out of memory */
    EVB_EDECODE,     /* malformed encoding; msg names the field */
    EVB_ETOOBIG,     /* a size ceiling was exceeded */
    EVB_EVERSION,    /* unknown envelope version */
    EVB_ECONFLICT,   /* expected version did not match; nothing written */
    EVB_EPARTIAL,    /* some (not all) event ids of a batch already stored */
    EVB_ELOCKED,     /* the log is in use by another process */
    EVB_EFORMAT,     /* on-disk format newer than this build, or not a log */
    EVB_ECORRUPT,    /* stored data is damaged */
    EVB_EIO,         /* LevelDB or file-system error */
    EVB_ENOTFOUND,   /* no such log, stream, key */
    EVB_EBUSY,       /* another transaction is open */
    EVB_ECLOSED,     /* the object is shutting down */
    EVB_EUNWRITABLE, /* a write failed before: the log refuses writes until reopened */
    EVB_ETIMEDOUT,   /* no answer in time (peer down, unreachable or slow) */
    EVB_EREJECTED,   /* the domain said no (a command's rules), not a fault */
    EVB_EUNREACHABLE, /* endpoint cannot be connected to (malformed, unknown transport) */
    EVB_EAUTH,        /* the peer refused our handshake (CURVE key not allowed) */
    EVB_CODE_COUNT
} evb_code;

#define EVB_ERR_MSG_LEN 512

typedef struct evb_err {
    int code;                  /* an evb_code */
    char msg[EVB_ERR_MSG_LEN]; /* human text naming what was wrong */
} evb_err;

/* Name of a code, e.g. "EVB_ECONFLICT: expected version mismatch". Static. */
EVB_EXPORT const char *evb_strerror(int code);
/* The bare name, "EVB_ECONFLICT", as carried on the wire; and back (-1 when
 * the name is unknown). */
EVB_EXPORT const char *evb_code_name(int code);
EVB_EXPORT int evb_code_from_name(const char *name);

/* Fill err (if not NULL) with code and a printf-style message; returns code. */
EVB_EXPORT int evb_err_set(evb_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reset err to EVB_OK with an empty message. */
EVB_EXPORT void evb_err_clear(evb_err *err);

/* ---- names ----
 * Edit distance between a[0..al) and b (insert, delete, replace, and swap of
 * two neighbours), for "did you mean" hints about flags and settings; names
 * of more than 63 bytes are SIZE_MAX ("far"). */
EVB_EXPORT size_t evb_name_distance(const char *a, size_t al, const char *b);

/* ---- durations ----
 * Every duration a person types (flags, environment, config files) has a
 * unit: "250ms", "3s", "2.5s", "2m", "1h30m", "1d". Units: ms, s, m, h, d;
 * parts may be chained largest first ("1m30s"); a part may have a fraction
 * ("1.5s"). The result is in whole milliseconds. A bare number ("3000") is
 * refused: its unit used to differ from one flag to the next. */

/* Parse s into *ms. EVB_EINVAL, with err naming what was wrong (a bare
 * number, an unknown unit, a part finer than a millisecond, overflow). */
EVB_EXPORT int evb_duration_parse(const char *s, uint64_t *ms, evb_err *err);
/* True when s is a bare number (digits, at most one '.'), which
 * evb_duration_parse refuses: callers name the old unit in their hint. */
EVB_EXPORT bool evb_duration_is_bare(const char *s);
/* ms as the shortest exact duration text ("1500ms", "3s", "2m", "1h30m",
 * "1d"), into out (>= 32 bytes); returns out. */
EVB_EXPORT const char *evb_duration_format(uint64_t ms, char out[32]);

/* ---- logging ---- */
typedef enum evb_log_level {
    EVB_LOG_DEBUG = 0,
    EVB_LOG_INFO,
    EVB_LOG_WARN,
    EVB_LOG_ERROR
} evb_log_level;

typedef void (*evb_log_sink_fn)(evb_log_level level, const char *msg, void *ctx);

/* Install the sink that receives library messages (NULL restores stderr) and
 * the least level passed to it. Call once, before other threads start. */
EVB_EXPORT void evb_log_set_sink(evb_log_sink_fn sink, void *ctx, evb_log_level min);

/* Send one formatted message to the sink. */
EVB_EXPORT void evb_log(evb_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- growable byte buffer ----
 * The buffer owns data (malloc'd). evb_buf_free releases it and leaves an
 * empty buffer that can be reused. Growth beyond max_cap (0 = no ceiling
 * other than SIZE_MAX) fails with EVB_ETOOBIG. */
typedef struct evb_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max_cap;
} evb_buf;

EVB_EXPORT int evb_buf_reserve(evb_buf *b, size_t extra, evb_err *err);
EVB_EXPORT int evb_buf_append(evb_buf *b, const void *p, size_t n, evb_err *err);
EVB_EXPORT int evb_buf_printf(evb_buf *b, evb_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
EVB_EXPORT void evb_buf_free(evb_buf *b);

/* ---- ids ----
 * Event ids, log ids, correlation and causation ids are 16 bytes, shown as 32
 * lowercase hex characters. The all-zero id means "none". */
typedef struct evb_id {
    uint8_t b[EVB_ID_LEN];
} evb_id;

EVB_EXPORT bool evb_id_is_zero(const evb_id *id);
/* Fill id with 16 random bytes (getrandom). Returns EVB_OK or EVB_EIO. */
EVB_EXPORT int evb_id_random(evb_id *id, evb_err *err);
/* Write 32 lowercase hex characters and a NUL into out. */
EVB_EXPORT void evb_id_to_hex(const evb_id *id, char out[EVB_ID_HEX_LEN + 1]);
/* Parse exactly 32 hex characters (either case). EVB_EINVAL otherwise. */
EVB_EXPORT int evb_id_from_hex(const char *hex, evb_id *id, evb_err *err);

#ifdef __cplusplus
}
#endif
#endif
