/*
 * fuzz_decode.c: libFuzzer target for evb_event_decode on arbitrary bytes.
 *
 * Besides "never crash, never read past the buffer" (ASan), it checks the
 * codec's round-trip contract on whatever decodes: the event re-encodes, the
 * re-encoding decodes to an equal event and is a fixed point (encoding it
 * again gives the same bytes), decode_into into a reused block agrees, and
 * the JSON rendering succeeds and is valid JSON. A failed decode must leave
 * *out NULL. And the decoder's fast pass for the canonical spelling decides
 * every input as the general reader alone does (same code, message, event),
 * also with the names of earlier inputs kept (the store's iterators' way).
 * Any broken property aborts, which libFuzzer reports as a crash.
 */
#include <evbus/evbus_codec.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsoncheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_die(const char *what, const evb_err *err)
{
    fprintf(stderr, "fuzz_decode: %s: %s\n", what, err ? err->msg : "");
    abort();
}

static bool s_same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool s_same_str(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static bool s_same_event(const evb_event_t *a, const evb_event_t *b)
{
    return memcmp(&a->id, &b->id, sizeof a->id) == 0 &&
           s_same_str(a->service, b->service) &&
           memcmp(&a->log_id, &b->log_id, sizeof a->log_id) == 0 && a->seq == b->seq &&
           s_same_str(a->stream, b->stream) && s_same_str(a->category, b->category) &&
           a->version == b->version && s_same_str(a->type, b->type) &&
           a->schema == b->schema && a->ts_us == b->ts_us &&
           memcmp(&a->correlation_id, &b->correlation_id, sizeof(evb_id)) == 0 &&
           memcmp(&a->causation_id, &b->causation_id, sizeof(evb_id)) == 0 &&
           s_same_bytes(a->payload, a->payload_len, b->payload, b->payload_len) &&
           (a->metadata == NULL) == (b->metadata == NULL) &&
           s_same_bytes(a->metadata, a->metadata_len, b->metadata, b->metadata_len) &&
           memcmp(&a->origin_log_id, &b->origin_log_id, sizeof(evb_id)) == 0 &&
           a->origin_seq == b->origin_seq;
}

/* libevbus's general reader without the fast pass (codec/codec_int.h; this
 * target links the static library). */
int evb__event_decode_general(const void *buf, size_t len, evb_event_t *ev, evb_err *err);

/* The store's iterators' decode with the names of the previous event kept
 * (codec/codec_int.h): kept across inputs here, it must decide and decode
 * as the general reader does. */
#define EVB_BUILDING_CODEC
#include "../../codec/codec_int.h"
static evb__names s_names;
static evb_event_t s_named;

/* Reused across inputs to exercise decode_into's block reuse; reachable at
 * exit, so LeakSanitizer does not count it. */
static evb_event_t s_reused, s_general;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    evb_err err;
    evb_event_t *ev = (evb_event_t *)&s_reused; /* must be overwritten */
    int rc = evb_event_decode(data, size, &ev, &err);
    int rc_into = evb_event_decode_into(data, size, &s_reused, NULL);
    if ((rc == EVB_OK) != (rc_into == EVB_OK))
        s_die("decode and decode_into disagree", &err);
    evb_err gerr;
    int rc_general = evb__event_decode_general(data, size, &s_general, &gerr);
    if (rc_general != rc || (rc != EVB_OK && strcmp(gerr.msg, err.msg) != 0))
        s_die("the fast pass and the general reader disagree", &gerr);
    if (rc == EVB_OK && !s_same_event(&s_reused, &s_general))
        s_die("the fast pass and the general reader decode differently", NULL);
    evb_err nerr;
    int rc_named = evb__event_decode_names(data, size, &s_named, &s_names, &nerr);
    if (rc_named != rc || (rc != EVB_OK && strcmp(nerr.msg, err.msg) != 0))
        s_die("decode with kept names and the general reader disagree", &nerr);
    if (rc == EVB_OK && !s_same_event(&s_named, &s_general))
        s_die("decode with kept names and the general reader decode differently", NULL);
    if (rc != EVB_OK) {
        if (ev != NULL) s_die("failed decode left *out set", &err);
        if (err.code != rc || err.msg[0] == '\0')
            s_die("failed decode without a message", &err);
        if (s_reused.payload != NULL || s_reused.stream != NULL)
            s_die("failed decode_into left fields set", NULL);
        return 0;
    }
    if (!s_same_event(ev, &s_reused)) s_die("decode_into differs from decode", NULL);

    evb_buf a = {0}, b = {0}, js = {0};
    if (evb_event_encode(ev, &a, &err) != EVB_OK)
        s_die("decoded event does not re-encode", &err);
    evb_event_t *ev2 = NULL;
    if (evb_event_decode(a.data, a.len, &ev2, &err) != EVB_OK)
        s_die("re-encoding does not decode", &err);
    if (!s_same_event(ev, ev2)) s_die("round trip changed the event", NULL);
    if (evb_event_encode(ev2, &b, &err) != EVB_OK ||
        !s_same_bytes(a.data, a.len, b.data, b.len))
        s_die("encoding is not a fixed point", &err);

    if (evb_event_to_json(ev, &js, &err) != EVB_OK)
        s_die("event_to_json failed on a decoded event", &err);
    if (!jc_valid(js.data, js.len)) s_die("event_to_json produced invalid JSON", NULL);

    evb_event_destroy(&ev);
    evb_event_destroy(&ev2);
    evb_buf_free(&a);
    evb_buf_free(&b);
    evb_buf_free(&js);
    return 0;
}
