/*
 * json_in.h (private to the evbus program): a small strict JSON reader for
 * the lines `evbus append` takes, and the conversion of a parsed value to
 * msgpack (the payload and metadata maps of an event).
 *
 * Accepts RFC 8259 JSON: objects, arrays, strings (escapes including \uXXXX
 * and surrogate pairs; the text must be valid UTF-8), numbers, true, false,
 * null. Nesting deeper than JSON_MAX_DEPTH is an error, so a hostile line
 * costs a rejection, not the stack. Numbers without a fraction or exponent
 * become integers (int64, or uint64 above INT64_MAX; beyond that an error,
 * never a silently rounded float); the others become float64.
 *
 * Ownership: json_parse returns a tree owned by the caller (json_free).
 * Thread rules: none shared; reentrant.
 */
#ifndef EVB_TOOLS_JSON_IN_H
#define EVB_TOOLS_JSON_IN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <evbus/evbus_codec.h>

#define JSON_MAX_DEPTH 64

typedef enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_INT,   /* fits int64: i */
    JSON_UINT,  /* above INT64_MAX, fits uint64: u */
    JSON_FLOAT, /* d */
    JSON_STR,   /* str[0..len), NUL after (may hold NULs: use len) */
    JSON_ARR,   /* kids[0..n) */
    JSON_OBJ    /* kids[0..n), each with key[0..klen) */
} json_type;

typedef struct json_val json_val;
struct json_val {
    json_type type;
    bool b;
    int64_t i;
    uint64_t u;
    double d;
    char *str;
    size_t len;
    json_val *kids;
    size_t n, cap;
    char *key; /* as an object member: its key (decoded, NUL after) */
    size_t klen;
};

/* Parse exactly one JSON value from text[0..len) (whitespace around it is
 * allowed, anything else after it is not). On success *out is a new tree.
 * On error returns EVB_EDECODE (EVB_ENOMEM, EVB_ETOOBIG for depth) with
 * err->msg naming the problem and its byte offset ("at byte 17"). */
int json_parse(const char *text, size_t len, json_val **out, evb_err *err);

void json_free(json_val **vp);

/* Member of an object by key, or NULL (also when v is not an object). */
const json_val *json_get(const json_val *obj, const char *key);

/* Name of a type for messages ("an object", "a string", ...). */
const char *json_type_name(json_type t);

/* Append the msgpack encoding of v to out: objects become maps with str
 * keys, integers the smallest msgpack int, floats float64. */
int json_to_msgpack(const json_val *v, evb_buf *out, evb_err *err);

#endif
