/*
 * evbus_codec.h: the event envelope, its msgpack encoding, its JSON rendering
 * for the tools, and schema upcasters.
 *
 * Owns: the envelope struct and the wire/disk format of one event (specified
 * in codec/FORMAT.md). It never exposes msgpack-c objects or zones.
 * Thread rules: every function is reentrant; an evb_event_t or an
 * evb_upcasters_t is used by one thread at a time (a registry that is no
 * longer modified may be read by many).
 * Limits: EVB_MAX_* in evbus_common.h.
 *
 * Naming conventions (checked by evb_check_stream & co.):
 *  - stream id: 1..EVB_MAX_STREAM_LEN bytes of [A-Za-z0-9_.:@-], not starting
 *    with '-'. Its category is the part before the first '-' (the whole id
 *    when it has none): "show-42" is in category "show"; "show-42-a" too.
 *    The category part must itself be a valid category (at most
 *    EVB_MAX_CATEGORY_LEN bytes).
 *  - category: 1..EVB_MAX_CATEGORY_LEN bytes of [A-Za-z0-9_.:@].
 *  - event type: 1..EVB_MAX_TYPE_LEN bytes of [A-Za-z0-9_.:-].
 *  - service name: 1..EVB_MAX_SERVICE_LEN bytes of [a-z0-9_.-].
 *  - stream versions count from 1; version 0 means "no event yet".
 *  - expected version on append: EVB_EXPECT_ANY, EVB_EXPECT_NONE (the stream
 *    has no event; same as 0) or an exact version >= 1.
 *  - ids are 16 bytes, shown as 32 lowercase hex characters; zero = none.
 *  - ts is microseconds since the Unix epoch, UTC.
 */
#ifndef EVBUS_CODEC_H
#define EVBUS_CODEC_H

#include "evbus_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_ENVELOPE_VERSION 1u

#define EVB_EXPECT_ANY (-1)
#define EVB_EXPECT_NONE 0

/*
 * The event envelope. Two ownership modes:
 *  - Filled by the caller (to encode or append): every pointer is borrowed
 *    from the caller and must stay valid for the duration of the call.
 *    Leave `priv` zeroed ({0} initialiser).
 *  - Returned by evb_event_decode / a store iterator: every pointer points into
 *    one block owned by the event (strings NUL-terminated, payload copied);
 *    free it with evb_event_destroy. Iterators lend an event that stays
 *    valid until the next call on the iterator.
 * category is derived from stream on decode; it is not on the wire.
 */
typedef struct evb_event {
    evb_id id;             /* unique event id */
    const char *service;   /* origin service name */
    evb_id log_id;         /* the log that holds this record */
    uint64_t seq;          /* position in that log, from 1 */
    const char *stream;    /* stream id */
    const char *category;  /* derived; NULL when filled by a caller */
    uint64_t version;      /* version in the stream, from 1 */
    const char *type;      /* event type */
    uint32_t schema;       /* payload schema version, from 1 */
    int64_t ts_us;         /* commit time, us since epoch, UTC */
    evb_id correlation_id; /* zero = none */
    evb_id causation_id;   /* zero = none */
    const void *payload;   /* one msgpack map, payload_len bytes */
    size_t payload_len;
    const void *metadata; /* one msgpack map or NULL */
    size_t metadata_len;
    evb_id origin_log_id; /* copies (mirror): the log it came from */
    uint64_t origin_seq;  /* copies: its seq there; 0 = not a copy */
    struct {
        void *block; /* owned block for decoded events */
        size_t cap;
    } priv;
} evb_event_t;

/* The empty msgpack map, for events without payload: {0x80}. */
EVB_EXPORT extern const uint8_t evb_empty_map[1];

/* Check names against the conventions above. EVB_EINVAL names the problem. */
EVB_EXPORT int evb_check_stream(const char *stream, evb_err *err);
EVB_EXPORT int evb_check_category(const char *category, evb_err *err);
EVB_EXPORT int evb_check_type(const char *type, evb_err *err);
EVB_EXPORT int evb_check_service(const char *service, evb_err *err);

/* Write the category of stream (the part before the first '-') into out,
 * NUL-terminated. out must hold EVB_MAX_CATEGORY_LEN + 1 bytes.
 * EVB_EINVAL if the stream id is not valid. */
EVB_EXPORT int evb_stream_category(const char *stream, char *out, evb_err *err);

/* Check that buf holds exactly one well-formed msgpack map within the depth
 * and size limits, and nothing after it. `what` names it in messages. */
EVB_EXPORT int evb_check_map(const void *buf, size_t len, const char *what, evb_err *err);

/* The one size limit of an event's content: its payload and metadata
 * (msgpack bytes; metadata_len 0 without metadata) together at most
 * EVB_MAX_PAYLOAD_BYTES. EVB_ETOOBIG names the sizes and the limit:
 * "payload: N bytes, over the limit of M for payload and metadata". */
EVB_EXPORT int evb_check_content_size(size_t payload_len, size_t metadata_len, evb_err *err);

/* Append the msgpack encoding of ev to out (out->len grows). Validates every
 * field first (names, payload map, sizes) and writes nothing on error. */
EVB_EXPORT int evb_event_encode(const evb_event_t *ev, evb_buf *out, evb_err *err);

/* Decode exactly one envelope from buf[0..len). On success *out is a new
 * event owned by the caller. Trailing bytes, unknown envelope versions, wrong
 * types, bad names, lengths past the buffer and sizes past the ceilings are
 * errors (EVB_EDECODE / EVB_EVERSION / EVB_ETOOBIG) whose message names the
 * field. Allocation is bounded by len. */
EVB_EXPORT int evb_event_decode(const void *buf, size_t len, evb_event_t **out,
                                evb_err *err);

/* Like evb_event_decode, but reuses ev's owned block (grows it if needed).
 * ev must be zeroed or previously filled by a decode. On error ev is left
 * empty (fields zeroed, block kept). */
EVB_EXPORT int evb_event_decode_into(const void *buf, size_t len, evb_event_t *ev,
                                     evb_err *err);

/* Deep copy: a new event owning its block. */
EVB_EXPORT evb_event_t *evb_event_dup(const evb_event_t *ev, evb_err *err);

/* Free a decoded event's block and the event; *evp becomes NULL. */
EVB_EXPORT void evb_event_destroy(evb_event_t **evp);

/* Free only the owned block of an event that lives in caller memory
 * (decode_into); the struct is zeroed. */
EVB_EXPORT void evb_event_clear(evb_event_t *ev);

/*
 * JSON rendering: one object, no newline, appended to out. Fields, in order:
 *   log_id, seq, id, service, stream, version, category, type, schema,
 *   ts (RFC 3339 UTC with microseconds, "2026-11-24T23:40:12.000123Z"),
 *   ts_us, correlation_id, causation_id (hex or null), payload, metadata
 *   (only when present), origin_log_id and origin_seq (only for copies).
 * Payload values render as JSON; what JSON cannot say takes a typed form:
 *   - integer outside +-(2^53-1):   {"$int":"18446744073709551615"}
 *   - binary:                       {"$bin":"<base64>"}
 *   - ext type t:                   {"$ext":t,"data":"<base64>"}
 *   - NaN / infinities:             {"$float":"nan"|"inf"|"-inf"}
 *   - map key that is not a string: its JSON text, as a string key
 *     ({"1":..} for the integer key 1); a key that is a map or an array:
 *     "$key:<base64 of its msgpack bytes>"
 *   - invalid UTF-8 in a string:    each bad byte becomes \ufffd (lossy: the
 *     exact bytes are in `evbus log export`)
 * Control characters and quotes are escaped. Always valid JSON.
 */
EVB_EXPORT int evb_event_to_json(const evb_event_t *ev, evb_buf *out, evb_err *err);

/* Render one msgpack value (e.g. a payload) as JSON with the same rules.
 * Trailing bytes are an error; on any error nothing is appended. Output is
 * capped at 16 x len + 4 KiB (EVB_ETOOBIG past it): map keys rendered inside
 * map keys could otherwise double in size per level. Envelope integers (seq,
 * version, origin_seq) are plain JSON numbers; the {"$int":...} form is for
 * payload values. */
EVB_EXPORT int evb_msgpack_to_json(const void *buf, size_t len, evb_buf *out,
                                   evb_err *err);

/* Length (1..4) of the well-formed UTF-8 sequence at the start of p[0..n),
 * or 0 when there is none (overlongs, surrogates, above U+10FFFF, truncated). */
EVB_EXPORT size_t evb_utf8_len(const void *p, size_t n);

/* Format ts_us as RFC 3339 UTC with microseconds into out (>= 32 bytes). */
EVB_EXPORT void evb_ts_format(int64_t ts_us, char out[32]);
/* Parse RFC 3339 ("2026-11-24T23:40:12Z", fraction and +hh:mm offset
 * optional) into microseconds since the epoch. EVB_EINVAL otherwise. */
EVB_EXPORT int evb_ts_parse(const char *s, int64_t *ts_us, evb_err *err);
/* Wall clock now, in microseconds since the epoch. */
EVB_EXPORT int64_t evb_now_us(void);

/*
 * Reading fields of a msgpack map (payloads, command arguments) without
 * msgpack-c objects. The map is checked as it is walked (bounded, depth
 * limited); keys are compared as strings.
 *  evb_map_find:  *val and *vlen give the value's bytes (lent from map).
 *  evb_map_str:   copies a str value, NUL-terminated, into out (cap bytes);
 *                 EVB_ETOOBIG if it does not fit, EVB_EDECODE if not a str.
 *  evb_map_uint / evb_map_int: an integer value (EVB_EDECODE if not one, or
 *                 out of range).
 * All return EVB_ENOTFOUND when the key is absent, naming it.
 */
EVB_EXPORT int evb_map_find(const void *map, size_t len, const char *key,
                            const void **val, size_t *vlen, evb_err *err);
EVB_EXPORT int evb_map_str(const void *map, size_t len, const char *key, char *out,
                           size_t cap, evb_err *err);
EVB_EXPORT int evb_map_uint(const void *map, size_t len, const char *key, uint64_t *out,
                            evb_err *err);
EVB_EXPORT int evb_map_int(const void *map, size_t len, const char *key, int64_t *out,
                           evb_err *err);

/*
 * Schema upcasters. A function registered for (type, from_schema) turns a
 * payload of that schema into the next shape: it writes the new msgpack map
 * into out (caller-owned, empty on entry) and the schema it produced into
 * *to_schema, which must be greater than from_schema. Upcasters chain until
 * none is registered for the event's (type, schema); the chain is bounded
 * (EVB_MAX_UPCAST_STEPS).
 */
#define EVB_MAX_UPCAST_STEPS 64

typedef int (*evb_upcast_fn)(const evb_event_t *ev, evb_buf *out, uint32_t *to_schema,
                             void *ctx, evb_err *err);

typedef struct evb_upcasters evb_upcasters_t;

EVB_EXPORT evb_upcasters_t *evb_upcasters_new(evb_err *err);
EVB_EXPORT void evb_upcasters_destroy(evb_upcasters_t **regp);
/* Register fn for (type, from_schema). A second registration for the same
 * pair is EVB_EINVAL. The registry copies type. */
EVB_EXPORT int evb_upcasters_add(evb_upcasters_t *reg, const char *type,
                                 uint32_t from_schema, evb_upcast_fn fn, void *ctx,
                                 evb_err *err);
/* Bring ev (a decoded event owning its block) to the current shape: runs the
 * chain and replaces ev's payload and schema in place. EVB_OK also when no
 * upcaster applies. On error ev is unchanged. */
EVB_EXPORT int evb_upcasters_apply(const evb_upcasters_t *reg, evb_event_t *ev,
                                   evb_err *err);

#ifdef __cplusplus
}
#endif
#endif
