/*
 * codec_int.h (private to libevbus): codec entry points for the other modules
 * of the library, not for users.
 */
#if !defined(EVB_BUILDING_CODEC) && !defined(EVB_BUILDING_STORE) && !defined(EVB_BUILDING_BUS)
#error "codec/codec_int.h is private to libevbus's codec, store and bus modules; programs include <evbus/evbus_codec.h>"
#endif
#ifndef EVB_CODEC_INT_H
#define EVB_CODEC_INT_H

#include "evbus_codec.h"

/* Encode an event whose fields the caller has already validated (the store
 * checks names and payloads once per append, before assigning positions).
 * Same output as evb_event_encode. */
int evb__event_encode_checked(const evb_event_t *ev, evb_buf *out, evb_err *err);

/* evb_event_decode_into, but ev->payload and ev->metadata point into buf
 * (valid while buf is): the store's iterators, whose events are lent until
 * the next step anyway, spare a copy of every payload. */
int evb__event_decode_lent(const void *buf, size_t len, evb_event_t *ev, evb_err *err);

/* The names of the last event decoded with them (evb__event_decode_names),
 * each checked and NUL-terminated. Zero it before the first use. */
typedef struct evb__names {
    uint32_t service_len, stream_len, type_len; /* 0: none yet */
    char service[EVB_MAX_SERVICE_LEN + 1];
    char stream[EVB_MAX_STREAM_LEN + 1];
    char category[EVB_MAX_CATEGORY_LEN + 1];
    char type[EVB_MAX_TYPE_LEN + 1];
} evb__names;

/* evb__event_decode_lent, with ev's service, stream, category and type
 * pointing into nm (valid until the next decode with nm). A name with the
 * same bytes as the last one is neither checked nor copied again: a log's
 * events share one service, and runs of them a stream or a type. */
int evb__event_decode_names(const void *buf, size_t len, evb_event_t *ev, evb__names *nm,
                            evb_err *err);

/* evb_event_decode_into without its fast pass (codec.c): the general reader
 * alone, which the tests hold the fast pass to (same result for every
 * input). Not for production code. */
int evb__event_decode_general(const void *buf, size_t len, evb_event_t *ev, evb_err *err);

/* Test hook shared by the bus (the store has its own, per store): SIGKILL
 * the process the n-th time a point named by EVB_CRASH_POINT is reached
 * (EVB_CRASH_AFTER=n, default 1). Compiled to nothing without
 * EVB_CRASH_POINTS. */
#ifdef EVB_CRASH_POINTS
void evb__crash_point(const char *name);
#define EVB_CRASH(name) evb__crash_point(name)
#else
#define EVB_CRASH(name) ((void)0)
#endif

#endif
