/*
 * test_codec.c: the envelope codec, names, JSON rendering, timestamps and
 * upcasters, through the public header only.
 *
 * Valid envelopes come from evb_event_encode; malformed ones are made by
 * cutting or mutating its output, or by packing the 17-element array by hand
 * with msgpack-c's packer (s_env), one field at a time made wrong.
 */
#include <evbus/evbus_codec.h>

#include <msgpack.h>

#include <setjmp.h> /* cmocka needs these before cmocka.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static evb_id s_id(uint8_t fill)
{
    evb_id id;
    memset(id.b, fill, sizeof id.b);
    id.b[0] = (uint8_t)(fill ^ 0x5a); /* not all bytes equal: catches byte order */
    return id;
}

/* msgpack-c packer writing into a growing sbuffer. */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} s_mp;

static void s_mp_init(s_mp *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void s_mp_free(s_mp *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

static void s_pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void s_pack_id(msgpack_packer *pk, evb_id id)
{
    msgpack_pack_bin(pk, EVB_ID_LEN);
    msgpack_pack_bin_body(pk, id.b, EVB_ID_LEN);
}

/* {"seats":4,"show":"s1"} */
static const uint8_t s_payload[] = {0x82, 0xa5, 's', 'e', 'a', 't',  's', 0x04,
                                    0xa4, 's',  'h', 'o', 'w', 0xa2, 's', '1'};
/* {"trace":"t9"} */
static const uint8_t s_meta[] = {0x81, 0xa5, 't', 'r', 'a', 'c', 'e', 0xa2, 't', '9'};

/* A caller-filled event with every field set. */
static evb_event_t s_full_event(void)
{
    evb_event_t ev = {0};
    ev.id = s_id(0x11);
    ev.service = "reservation";
    ev.log_id = s_id(0x22);
    ev.seq = 42;
    ev.stream = "show-42";
    ev.version = 7;
    ev.type = "SeatsHeld";
    ev.schema = 2;
    ev.ts_us = 1795563612000123;
    ev.correlation_id = s_id(0x33);
    ev.causation_id = s_id(0x44);
    ev.payload = s_payload;
    ev.payload_len = sizeof s_payload;
    ev.metadata = s_meta;
    ev.metadata_len = sizeof s_meta;
    ev.origin_log_id = s_id(0x55);
    ev.origin_seq = 9;
    return ev;
}

/* A caller-filled event with only the required fields. */
static evb_event_t s_min_event(void)
{
    evb_event_t ev = {0};
    ev.id = s_id(0x01);
    ev.service = "svc";
    ev.log_id = s_id(0x02);
    ev.seq = 1;
    ev.stream = "show";
    ev.version = 1;
    ev.type = "Created";
    ev.schema = 1;
    ev.payload = evb_empty_map;
    ev.payload_len = sizeof evb_empty_map;
    return ev;
}

static void s_encode_ok(const evb_event_t *ev, evb_buf *out)
{
    evb_err err;
    int rc = evb_event_encode(ev, out, &err);
    if (rc != EVB_OK) fail_msg("encode: %s", err.msg);
}

static evb_event_t *s_decode_ok(const void *buf, size_t len)
{
    evb_err err;
    evb_event_t *ev = NULL;
    int rc = evb_event_decode(buf, len, &ev, &err);
    if (rc != EVB_OK) fail_msg("decode: %s", err.msg);
    assert_non_null(ev);
    return ev;
}

static void s_assert_str_eq(const char *a, const char *b)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
}

static void s_assert_bytes_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    assert_int_equal(alen, blen);
    if (alen > 0) assert_memory_equal(a, b, alen);
}

static void s_assert_event_eq(const evb_event_t *a, const evb_event_t *b)
{
    assert_memory_equal(&a->id, &b->id, sizeof a->id);
    s_assert_str_eq(a->service, b->service);
    assert_memory_equal(&a->log_id, &b->log_id, sizeof a->log_id);
    assert_true(a->seq == b->seq);
    s_assert_str_eq(a->stream, b->stream);
    assert_true(a->version == b->version);
    s_assert_str_eq(a->type, b->type);
    assert_int_equal(a->schema, b->schema);
    assert_true(a->ts_us == b->ts_us);
    assert_memory_equal(&a->correlation_id, &b->correlation_id, sizeof(evb_id));
    assert_memory_equal(&a->causation_id, &b->causation_id, sizeof(evb_id));
    s_assert_bytes_eq(a->payload, a->payload_len, b->payload, b->payload_len);
    assert_true((a->metadata == NULL) == (b->metadata == NULL));
    if (a->metadata != NULL)
        s_assert_bytes_eq(a->metadata, a->metadata_len, b->metadata, b->metadata_len);
    assert_memory_equal(&a->origin_log_id, &b->origin_log_id, sizeof(evb_id));
    assert_true(a->origin_seq == b->origin_seq);
}

/* Encode, decode, compare; returns the decoded event. */
static evb_event_t *s_roundtrip(const evb_event_t *ev)
{
    evb_buf out = {0};
    s_encode_ok(ev, &out);
    evb_event_t *d = s_decode_ok(out.data, out.len);
    evb_buf_free(&out);
    s_assert_event_eq(ev, d);
    return d;
}

/* Decode must fail with code; returns nothing, checks *out stays NULL. */
static void s_decode_fails(const void *buf, size_t len, int code, const char *in_msg)
{
    evb_err err;
    evb_err_clear(&err);
    evb_event_t *ev = (evb_event_t *)(uintptr_t)1; /* must be reset to NULL */
    int rc = evb_event_decode(buf, len, &ev, &err);
    if (rc == EVB_OK) evb_event_destroy(&ev); /* unexpected success: do not leak it */
    if (rc != code) fail_msg("decode: want code %d, got %d (%s)", code, rc, err.msg);
    assert_int_equal(err.code, code);
    assert_null(ev);
    if (in_msg != NULL && strstr(err.msg, in_msg) == NULL)
        fail_msg("decode message \"%s\" does not name \"%s\"", err.msg, in_msg);
}

/* Decode and return the code only (freeing any event), so that a test can
 * release its buffers before it asserts. */
static int s_decode_rc(const void *buf, size_t len, evb_err *err)
{
    evb_event_t *ev = NULL;
    int rc = evb_event_decode(buf, len, &ev, err);
    evb_event_destroy(&ev);
    return rc;
}

/* ---- hand-built envelopes ----
 * Field order (FORMAT.md): version, id, service, log_id, seq, stream, version,
 * type, schema, ts_us, correlation_id, causation_id, payload, metadata,
 * origin_log_id, origin_seq, reserved. */
enum { ENV_FIELDS = 17, ENV_NONE = -1 };

static const char *s_field_name[ENV_FIELDS] = {"envelope_version",
                                               "id",
                                               "service",
                                               "log_id",
                                               "seq",
                                               "stream",
                                               "version",
                                               "type",
                                               "schema",
                                               "ts",
                                               "correlation_id",
                                               "causation_id",
                                               "payload",
                                               "metadata",
                                               "origin_log_id",
                                               "origin_seq",
                                               NULL};

/* Pack field i with a valid value, or a wrongly typed one when bad. */
static void s_env_field(msgpack_packer *pk, int i, bool bad, uint64_t env_version)
{
    if (bad) {
        switch (i) {
        case 2:
        case 5:
        case 7: /* strings get an integer */
            msgpack_pack_uint8(pk, 5);
            return;
        case 12:
        case 13: /* maps get an array */
            msgpack_pack_array(pk, 0);
            return;
        case 16: /* reserved: nil (or a map) only */
            msgpack_pack_uint8(pk, 1);
            return;
        default: /* ids and integers get a string */
            s_pack_cstr(pk, "x");
            return;
        }
    }
    switch (i) {
    case 0:
        msgpack_pack_uint64(pk, env_version);
        break;
    case 1:
        s_pack_id(pk, s_id(0x11));
        break;
    case 2:
        s_pack_cstr(pk, "svc");
        break;
    case 3:
        s_pack_id(pk, s_id(0x22));
        break;
    case 4:
        msgpack_pack_uint64(pk, 7);
        break;
    case 5:
        s_pack_cstr(pk, "show-42");
        break;
    case 6:
        msgpack_pack_uint64(pk, 3);
        break;
    case 7:
        s_pack_cstr(pk, "SeatsHeld");
        break;
    case 8:
        msgpack_pack_uint32(pk, 1);
        break;
    case 9:
        msgpack_pack_int64(pk, 1700000000000000);
        break;
    case 12:
        msgpack_pack_map(pk, 1);
        s_pack_cstr(pk, "a");
        msgpack_pack_int(pk, 1);
        break;
    case 15:
        msgpack_pack_uint64(pk, 0);
        break;
    default:
        msgpack_pack_nil(pk);
        break; /* 10, 11, 13, 14, 16 */
    }
}

/* An envelope of nfields elements (valid ones first, nil after 17), with
 * field bad_field wrongly typed. */
static void s_env(s_mp *m, unsigned nfields, int bad_field, uint64_t env_version)
{
    s_mp_init(m);
    msgpack_pack_array(&m->pk, nfields);
    for (unsigned i = 0; i < nfields; i++) {
        if (i < ENV_FIELDS)
            s_env_field(&m->pk, (int)i, (int)i == bad_field, env_version);
        else
            msgpack_pack_nil(&m->pk);
    }
}

/* ---- round trips ---- */

static void test_roundtrip_all_fields(void **state)
{
    (void)state;
    evb_event_t ev = s_full_event();
    evb_event_t *d = s_roundtrip(&ev);
    s_assert_str_eq(d->category, "show");
    evb_event_destroy(&d);
    assert_null(d);
}

static void test_roundtrip_minimal(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    evb_event_t *d = s_roundtrip(&ev);
    assert_null(d->metadata);
    assert_int_equal(d->metadata_len, 0);
    assert_true(evb_id_is_zero(&d->correlation_id));
    assert_true(evb_id_is_zero(&d->causation_id));
    assert_true(evb_id_is_zero(&d->origin_log_id));
    assert_true(d->origin_seq == 0);
    s_assert_str_eq(d->category, "show");
    evb_event_destroy(&d);
}

static void test_roundtrip_extreme_numbers(void **state)
{
    (void)state;
    int64_t ts[] = {0, -1, INT64_MIN, INT64_MAX, 1};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        evb_event_t ev = s_min_event();
        ev.seq = UINT64_MAX;
        ev.version = UINT64_MAX;
        ev.schema = UINT32_MAX;
        ev.ts_us = ts[i];
        ev.origin_log_id = s_id(0x77);
        ev.origin_seq = UINT64_MAX;
        evb_event_t *d = s_roundtrip(&ev);
        evb_event_destroy(&d);
    }
}

static void test_roundtrip_category_with_dashes(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    ev.stream = "show-42-a";
    evb_event_t *d = s_roundtrip(&ev);
    s_assert_str_eq(d->category, "show");
    evb_event_destroy(&d);
}

static void test_encode_appends_to_buffer(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    evb_buf out = {0};
    assert_int_equal(evb_buf_append(&out, "XY", 2, NULL), EVB_OK);
    s_encode_ok(&ev, &out);
    assert_memory_equal(out.data, "XY", 2);
    evb_event_t *d = s_decode_ok(out.data + 2, out.len - 2);
    s_assert_event_eq(&ev, d);
    evb_event_destroy(&d);
    evb_buf_free(&out);
}

static void test_encode_is_deterministic(void **state)
{
    (void)state;
    evb_event_t ev = s_full_event();
    evb_buf a = {0}, b = {0};
    s_encode_ok(&ev, &a);
    evb_event_t *d = s_decode_ok(a.data, a.len);
    s_encode_ok(d, &b);
    s_assert_bytes_eq(a.data, a.len, b.data, b.len);
    evb_event_destroy(&d);
    evb_buf_free(&a);
    evb_buf_free(&b);
}

static void test_decode_into_reuses_block(void **state)
{
    (void)state;
    evb_event_t big = s_full_event(), small = s_min_event();
    evb_buf eb = {0}, es = {0};
    s_encode_ok(&big, &eb);
    s_encode_ok(&small, &es);
    evb_event_t ev = {0};
    assert_int_equal(evb_event_decode_into(eb.data, eb.len, &ev, NULL), EVB_OK);
    void *block = ev.priv.block;
    assert_non_null(block);
    assert_int_equal(evb_event_decode_into(es.data, es.len, &ev, NULL), EVB_OK);
    assert_ptr_equal(ev.priv.block, block); /* fits: no new allocation */
    s_assert_event_eq(&small, &ev);
    /* On error the fields are zeroed and the block kept. */
    evb_err err;
    assert_int_equal(evb_event_decode_into(es.data, es.len - 1, &ev, &err), EVB_EDECODE);
    assert_ptr_equal(ev.priv.block, block);
    assert_null(ev.stream);
    assert_null(ev.payload);
    assert_true(ev.seq == 0);
    evb_event_clear(&ev);
    assert_null(ev.priv.block);
    evb_buf_free(&eb);
    evb_buf_free(&es);
}

static void test_dup_is_independent(void **state)
{
    (void)state;
    evb_event_t ev = s_full_event();
    evb_buf out = {0};
    s_encode_ok(&ev, &out);
    evb_event_t *d = s_decode_ok(out.data, out.len);
    evb_event_t *c = evb_event_dup(d, NULL);
    assert_non_null(c);
    assert_ptr_not_equal(c->priv.block, d->priv.block);
    evb_event_destroy(&d);
    memset(out.data, 0, out.len); /* nothing may point into the input either */
    s_assert_event_eq(&ev, c);
    s_assert_str_eq(c->category, "show");
    evb_event_destroy(&c);
    evb_event_destroy(&c); /* repeat is harmless */
    evb_buf_free(&out);
}

static void test_decode_does_not_borrow_input(void **state)
{
    (void)state;
    evb_event_t ev = s_full_event();
    evb_buf out = {0};
    s_encode_ok(&ev, &out);
    evb_event_t *d = s_decode_ok(out.data, out.len);
    memset(out.data, 0xc1, out.len);
    s_assert_event_eq(&ev, d);
    evb_event_destroy(&d);
    evb_buf_free(&out);
}

/* ---- encode validation ---- */

static void s_encode_fails(const evb_event_t *ev, int code, const char *in_msg)
{
    evb_buf out = {0};
    assert_int_equal(evb_buf_append(&out, "pre", 3, NULL), EVB_OK);
    evb_err err;
    evb_err_clear(&err);
    int rc = evb_event_encode(ev, &out, &err);
    if (rc != code) fail_msg("encode: want code %d, got %d (%s)", code, rc, err.msg);
    assert_int_equal(out.len, 3); /* nothing written */
    if (in_msg != NULL && strstr(err.msg, in_msg) == NULL)
        fail_msg("encode message \"%s\" does not name \"%s\"", err.msg, in_msg);
    evb_buf_free(&out);
}

static void test_encode_rejects_zero_id(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    memset(&ev.id, 0, sizeof ev.id);
    s_encode_fails(&ev, EVB_EINVAL, "id");
}

static void test_encode_rejects_zero_seq_version_schema(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    ev.seq = 0;
    s_encode_fails(&ev, EVB_EINVAL, "seq");
    ev = s_min_event();
    ev.version = 0;
    s_encode_fails(&ev, EVB_EINVAL, "version");
    ev = s_min_event();
    ev.schema = 0;
    s_encode_fails(&ev, EVB_EINVAL, "schema");
}

static void test_encode_rejects_bad_names(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    ev.stream = "-x";
    s_encode_fails(&ev, EVB_EINVAL, "stream");
    ev = s_min_event();
    ev.service = "Svc";
    s_encode_fails(&ev, EVB_EINVAL, "service");
    ev = s_min_event();
    ev.type = "a b";
    s_encode_fails(&ev, EVB_EINVAL, "type");
    ev = s_min_event();
    ev.stream = NULL;
    s_encode_fails(&ev, EVB_EINVAL, "stream");
}

static void test_encode_rejects_non_map_payload(void **state)
{
    (void)state;
    static const uint8_t arr[] = {0x90};
    static const uint8_t map_trailing[] = {0x80, 0xc0};
    evb_event_t ev = s_min_event();
    ev.payload = arr;
    ev.payload_len = sizeof arr;
    s_encode_fails(&ev, EVB_EDECODE, "payload");
    ev.payload = map_trailing;
    ev.payload_len = sizeof map_trailing;
    s_encode_fails(&ev, EVB_EDECODE, "payload");
    ev.payload = NULL;
    ev.payload_len = 0;
    assert_int_not_equal(evb_event_encode(&ev, &(evb_buf){0}, NULL), EVB_OK);
    ev = s_min_event();
    ev.metadata = arr;
    ev.metadata_len = sizeof arr;
    s_encode_fails(&ev, EVB_EDECODE, "metadata");
}

static void test_encode_rejects_half_origin(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    ev.origin_seq = 5; /* without origin_log_id */
    s_encode_fails(&ev, EVB_EINVAL, "origin");
    ev = s_min_event();
    ev.origin_log_id = s_id(9); /* without origin_seq */
    s_encode_fails(&ev, EVB_EINVAL, "origin");
}

/* ---- boundary sizes ---- */

static char *s_repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_stream_at_max_len_roundtrips(void **state)
{
    (void)state;
    char *s = s_repeat('x', EVB_MAX_STREAM_LEN);
    s[4] = '-'; /* the category (before '-') must stay within its own limit */
    evb_event_t ev = s_min_event();
    ev.stream = s;
    evb_event_t *d = s_roundtrip(&ev);
    s_assert_str_eq(d->category, "xxxx");
    evb_event_destroy(&d);
    free(s);
}

static void test_stream_over_max_len_rejected(void **state)
{
    (void)state;
    char *s = s_repeat('x', EVB_MAX_STREAM_LEN + 1);
    s[4] = '-';
    assert_int_equal(evb_check_stream(s, NULL), EVB_EINVAL);
    evb_event_t ev = s_min_event();
    ev.stream = s;
    s_encode_fails(&ev, EVB_EINVAL, "stream");
    free(s);
}

static void test_stream_over_max_len_on_wire_rejected(void **state)
{
    (void)state;
    char *s = s_repeat('x', EVB_MAX_STREAM_LEN + 1);
    s[4] = '-';
    /* Encode a valid event, then hand-pack the same envelope with the long
     * stream in place of field 5. */
    s_mp m;
    s_mp_init(&m);
    msgpack_pack_array(&m.pk, ENV_FIELDS);
    for (int i = 0; i < ENV_FIELDS; i++) {
        if (i == 5)
            s_pack_cstr(&m.pk, s);
        else
            s_env_field(&m.pk, i, false, EVB_ENVELOPE_VERSION);
    }
    s_decode_fails(m.sb.data, m.sb.size, EVB_EDECODE, "stream");
    s_mp_free(&m);
    free(s);
}

static void test_category_at_max_len(void **state)
{
    (void)state;
    char *s = s_repeat('c', EVB_MAX_CATEGORY_LEN + 2);
    s[EVB_MAX_CATEGORY_LEN] = '-'; /* category of exactly the maximum */
    assert_int_equal(evb_check_stream(s, NULL), EVB_OK);
    char cat[EVB_MAX_CATEGORY_LEN + 1];
    assert_int_equal(evb_stream_category(s, cat, NULL), EVB_OK);
    assert_int_equal(strlen(cat), EVB_MAX_CATEGORY_LEN);
    s[EVB_MAX_CATEGORY_LEN] = 'c'; /* now the category is 66 bytes */
    assert_int_equal(evb_check_stream(s, NULL), EVB_EINVAL);
    assert_int_equal(evb_stream_category(s, cat, NULL), EVB_EINVAL);
    free(s);
}

static void test_type_and_service_max_len(void **state)
{
    (void)state;
    char *t = s_repeat('T', EVB_MAX_TYPE_LEN);
    char *sv = s_repeat('s', EVB_MAX_SERVICE_LEN);
    evb_event_t ev = s_min_event();
    ev.type = t;
    ev.service = sv;
    evb_event_t *d = s_roundtrip(&ev);
    evb_event_destroy(&d);
    free(t);
    free(sv);
    t = s_repeat('T', EVB_MAX_TYPE_LEN + 1);
    sv = s_repeat('s', EVB_MAX_SERVICE_LEN + 1);
    assert_int_equal(evb_check_type(t, NULL), EVB_EINVAL);
    assert_int_equal(evb_check_service(sv, NULL), EVB_EINVAL);
    free(t);
    free(sv);
}

/* A payload map {"b": <bin>} of exactly total bytes (total > 70000). */
static uint8_t *s_big_payload(size_t total)
{
    uint8_t *p = malloc(total);
    assert_non_null(p);
    size_t binlen = total - 8; /* 0x81 0xa1 'b' 0xc6 len32 */
    p[0] = 0x81;
    p[1] = 0xa1;
    p[2] = 'b';
    p[3] = 0xc6;
    p[4] = (uint8_t)(binlen >> 24);
    p[5] = (uint8_t)(binlen >> 16);
    p[6] = (uint8_t)(binlen >> 8);
    p[7] = (uint8_t)binlen;
    memset(p + 8, 0xab, binlen);
    return p;
}

static void test_payload_at_limit_roundtrips(void **state)
{
    (void)state;
    uint8_t *p = s_big_payload(EVB_MAX_PAYLOAD_BYTES);
    evb_event_t ev = s_full_event();
    ev.metadata = NULL;
    ev.payload = p;
    ev.payload_len = EVB_MAX_PAYLOAD_BYTES;
    evb_buf out = {0};
    s_encode_ok(&ev, &out);
    assert_true(out.len <= EVB_MAX_EVENT_BYTES);
    evb_event_t *d = s_decode_ok(out.data, out.len);
    s_assert_event_eq(&ev, d);
    evb_event_destroy(&d);
    evb_buf_free(&out);
    free(p);
}

static void test_payload_over_limit_encode_rejected(void **state)
{
    (void)state;
    uint8_t *p = s_big_payload(EVB_MAX_PAYLOAD_BYTES + 1);
    evb_event_t ev = s_min_event();
    ev.payload = p;
    ev.payload_len = EVB_MAX_PAYLOAD_BYTES + 1;
    s_encode_fails(&ev, EVB_ETOOBIG, "payload");
    free(p);
}

static void test_payload_plus_metadata_over_limit_rejected(void **state)
{
    (void)state;
    uint8_t *p = s_big_payload(EVB_MAX_PAYLOAD_BYTES - 4);
    evb_event_t ev = s_min_event();
    ev.payload = p;
    ev.payload_len = EVB_MAX_PAYLOAD_BYTES - 4;
    ev.metadata = s_meta; /* 10 bytes: 6 too many */
    ev.metadata_len = sizeof s_meta;
    s_encode_fails(&ev, EVB_ETOOBIG, NULL);
    free(p);
}

/* The one content limit: payload + metadata at most EVB_MAX_PAYLOAD_BYTES,
 * at its edges, with sizes that would wrap a sum, and its message. */
static void test_check_content_size_edges(void **state)
{
    (void)state;
    const size_t max = EVB_MAX_PAYLOAD_BYTES;
    evb_err err = {0};
    assert_int_equal(evb_check_content_size(max, 0, NULL), EVB_OK);
    assert_int_equal(evb_check_content_size(max - 10, 10, NULL), EVB_OK);
    assert_int_equal(evb_check_content_size(max - 10, 11, &err), EVB_ETOOBIG);
    char want[160];
    snprintf(want, sizeof want,
             "payload + metadata: %zu + 11 bytes, over the limit of %zu for payload and "
             "metadata", max - 10, max);
    assert_string_equal(err.msg, want);
    assert_int_equal(evb_check_content_size(max + 1, 0, &err), EVB_ETOOBIG);
    snprintf(want, sizeof want,
             "payload: %zu bytes, over the limit of %zu for payload and metadata", max + 1,
             max);
    assert_string_equal(err.msg, want);
    assert_int_equal(evb_check_content_size(10, SIZE_MAX - 5, NULL), EVB_ETOOBIG);
    assert_int_equal(evb_check_content_size(SIZE_MAX, 0, NULL), EVB_ETOOBIG);
}

/* The header: "sizes past the ceilings are errors". An envelope under
 * EVB_MAX_EVENT_BYTES whose payload is over EVB_MAX_PAYLOAD_BYTES must not
 * decode: it could not be re-encoded. */
static void test_payload_over_limit_decode_rejected(void **state)
{
    (void)state;
    size_t plen = EVB_MAX_PAYLOAD_BYTES + 1;
    uint8_t *p = s_big_payload(plen);
    s_mp m;
    s_mp_init(&m);
    msgpack_pack_array(&m.pk, ENV_FIELDS);
    for (int i = 0; i < ENV_FIELDS; i++) {
        if (i == 12)
            msgpack_sbuffer_write(&m.sb, (const char *)p, plen);
        else
            s_env_field(&m.pk, i, false, EVB_ENVELOPE_VERSION);
    }
    size_t size = m.sb.size;
    evb_err err;
    int rc = s_decode_rc(m.sb.data, m.sb.size, &err);
    s_mp_free(&m);
    free(p);
    assert_true(size <= EVB_MAX_EVENT_BYTES);
    assert_int_equal(rc, EVB_ETOOBIG);
    assert_non_null(strstr(err.msg, "payload"));
}

/* Each map alone is under the ceiling but together they are over it: encode
 * refuses such an event, so decode must too (or a decoded event could not be
 * re-encoded). */
static void test_payload_plus_metadata_over_limit_decode_rejected(void **state)
{
    (void)state;
    size_t plen = EVB_MAX_PAYLOAD_BYTES - 4;
    uint8_t *p = s_big_payload(plen);
    s_mp m;
    s_mp_init(&m);
    msgpack_pack_array(&m.pk, ENV_FIELDS);
    for (int i = 0; i < ENV_FIELDS; i++) {
        if (i == 12)
            msgpack_sbuffer_write(&m.sb, (const char *)p, plen);
        else if (i == 13)
            msgpack_sbuffer_write(&m.sb, (const char *)s_meta, sizeof s_meta);
        else
            s_env_field(&m.pk, i, false, EVB_ENVELOPE_VERSION);
    }
    size_t size = m.sb.size;
    int rc = s_decode_rc(m.sb.data, m.sb.size, NULL);
    s_mp_free(&m);
    free(p);
    assert_true(size <= EVB_MAX_EVENT_BYTES);
    assert_int_equal(rc, EVB_ETOOBIG);
}

static void test_envelope_over_limit_rejected(void **state)
{
    (void)state;
    size_t len = EVB_MAX_EVENT_BYTES + 1;
    uint8_t *buf = calloc(1, len);
    assert_non_null(buf);
    buf[0] = 0xdc; /* array16 of 17: the size check must come first anyway */
    buf[2] = 17;
    s_decode_fails(buf, len, EVB_ETOOBIG, NULL);
    free(buf);
}

/* ---- names ---- */

static void test_check_stream_table(void **state)
{
    (void)state;
    static const char *good[] = {"show", "show-42", "show-42-a", "a",  "A_b.c:d@e-1",
                                 "x-",   "1-2-3",   "@",         "s--"};
    static const char *bad[] = {"", "-x", "a b", "a/b", "ü-1", "a\tb", "a#", "-"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (evb_check_stream(good[i], NULL) != EVB_OK)
            fail_msg("stream '%s' should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        evb_err err;
        if (evb_check_stream(bad[i], &err) != EVB_EINVAL)
            fail_msg("stream '%s' should be invalid", bad[i]);
        assert_int_equal(err.code, EVB_EINVAL);
        assert_true(strlen(err.msg) > 0);
    }
    assert_int_equal(evb_check_stream(NULL, NULL), EVB_EINVAL);
}

static void test_check_category_table(void **state)
{
    (void)state;
    static const char *good[] = {"show", "A_b.c:d@e", "1"};
    static const char *bad[] = {"", "show-42", "a b", "sh/ow"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (evb_check_category(good[i], NULL) != EVB_OK)
            fail_msg("category '%s' should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (evb_check_category(bad[i], NULL) != EVB_EINVAL)
            fail_msg("category '%s' should be invalid", bad[i]);
    char *s = s_repeat('c', EVB_MAX_CATEGORY_LEN);
    assert_int_equal(evb_check_category(s, NULL), EVB_OK);
    free(s);
    s = s_repeat('c', EVB_MAX_CATEGORY_LEN + 1);
    assert_int_equal(evb_check_category(s, NULL), EVB_EINVAL);
    free(s);
}

static void test_check_type_table(void **state)
{
    (void)state;
    static const char *good[] = {"SeatsHeld", "seats.held:v2", "a-b_c", "-x"};
    static const char *bad[] = {"", "a b", "a@b", "a/b", "é"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (evb_check_type(good[i], NULL) != EVB_OK)
            fail_msg("type '%s' should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (evb_check_type(bad[i], NULL) != EVB_EINVAL)
            fail_msg("type '%s' should be invalid", bad[i]);
}

static void test_check_service_table(void **state)
{
    (void)state;
    static const char *good[] = {"reservation", "svc-1", "a.b_c", "0"};
    static const char *bad[] = {"", "Reservation", "a b", "a:b", "a@b"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (evb_check_service(good[i], NULL) != EVB_OK)
            fail_msg("service '%s' should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (evb_check_service(bad[i], NULL) != EVB_EINVAL)
            fail_msg("service '%s' should be invalid", bad[i]);
}

static void test_stream_category_derivation(void **state)
{
    (void)state;
    char out[EVB_MAX_CATEGORY_LEN + 1];
    assert_int_equal(evb_stream_category("show-42", out, NULL), EVB_OK);
    assert_string_equal(out, "show");
    assert_int_equal(evb_stream_category("show", out, NULL), EVB_OK);
    assert_string_equal(out, "show");
    assert_int_equal(evb_stream_category("show-42-a", out, NULL), EVB_OK);
    assert_string_equal(out, "show");
    evb_err err;
    assert_int_equal(evb_stream_category("-x", out, &err), EVB_EINVAL);
    assert_non_null(strstr(err.msg, "-x"));
    assert_int_equal(evb_stream_category("", out, NULL), EVB_EINVAL);
}

/* ---- malformed input ---- */

static void test_truncated_at_every_byte(void **state)
{
    (void)state;
    evb_event_t ev = s_full_event();
    evb_buf out = {0};
    s_encode_ok(&ev, &out);
    for (size_t n = 0; n < out.len; n++) {
        /* A fresh copy of exactly n bytes, so ASan sees any read past it. */
        uint8_t *cut = malloc(n ? n : 1);
        assert_non_null(cut);
        memcpy(cut, out.data, n);
        evb_event_t *d = NULL;
        evb_err err;
        int rc = evb_event_decode(cut, n, &d, &err);
        if (rc != EVB_EDECODE)
            fail_msg("prefix of %zu/%zu bytes: rc %d (%s)", n, out.len, rc, err.msg);
        assert_null(d);
        free(cut);
    }
    evb_buf_free(&out);
}

static void test_trailing_bytes_rejected(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    evb_buf out = {0};
    s_encode_ok(&ev, &out);
    assert_int_equal(evb_buf_append(&out, "\xc0", 1, NULL), EVB_OK);
    s_decode_fails(out.data, out.len, EVB_EDECODE, "trailing");
    evb_buf_free(&out);
}

static void test_handbuilt_baseline_decodes(void **state)
{
    (void)state;
    /* Guards the wrong-type tests: without the bad field the same bytes
     * decode. */
    s_mp m;
    s_env(&m, ENV_FIELDS, ENV_NONE, EVB_ENVELOPE_VERSION);
    evb_event_t *d = s_decode_ok(m.sb.data, m.sb.size);
    s_assert_str_eq(d->stream, "show-42");
    s_assert_str_eq(d->category, "show");
    assert_true(d->seq == 7);
    assert_true(d->ts_us == 1700000000000000);
    evb_event_destroy(&d);
    s_mp_free(&m);
}

static void test_wrong_type_per_field(void **state)
{
    (void)state;
    for (int f = 0; f < ENV_FIELDS; f++) {
        s_mp m;
        s_env(&m, ENV_FIELDS, f, EVB_ENVELOPE_VERSION);
        s_decode_fails(m.sb.data, m.sb.size, EVB_EDECODE, s_field_name[f]);
        s_mp_free(&m);
    }
}

static void test_wrong_field_count(void **state)
{
    (void)state;
    unsigned counts[] = {0, 1, 16, 18};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        s_mp m;
        s_env(&m, counts[i], ENV_NONE, EVB_ENVELOPE_VERSION);
        s_decode_fails(m.sb.data, m.sb.size, EVB_EDECODE, NULL);
        s_mp_free(&m);
    }
}

static void test_top_level_not_array(void **state)
{
    (void)state;
    static const uint8_t map[] = {0x80};
    static const uint8_t str[] = {0xa1, 'x'};
    static const uint8_t c1[] = {0xc1};
    s_decode_fails(map, sizeof map, EVB_EDECODE, NULL);
    s_decode_fails(str, sizeof str, EVB_EDECODE, NULL);
    s_decode_fails(c1, sizeof c1, EVB_EDECODE, NULL);
    s_decode_fails("", 0, EVB_EDECODE, NULL);
}

/* Last in the table: (NULL, 0) once tripped UBSan in the reader. */
static void test_null_empty_input(void **state)
{
    (void)state;
    s_decode_fails(NULL, 0, EVB_EDECODE, NULL);
    evb_buf out = {0};
    assert_int_equal(evb_msgpack_to_json(NULL, 0, &out, NULL), EVB_EDECODE);
    assert_int_equal(out.len, 0);
}

static void test_unknown_envelope_version(void **state)
{
    (void)state;
    uint64_t versions[] = {0, 2, 255, UINT32_MAX};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        s_mp m;
        s_env(&m, ENV_FIELDS, ENV_NONE, versions[i]);
        s_decode_fails(m.sb.data, m.sb.size, EVB_EVERSION, NULL);
        s_mp_free(&m);
    }
    /* A future version may have another field count: still EVB_EVERSION. */
    s_mp m;
    s_env(&m, ENV_FIELDS + 3, ENV_NONE, 2);
    s_decode_fails(m.sb.data, m.sb.size, EVB_EVERSION, NULL);
    s_mp_free(&m);
}

static void test_id_wrong_length_rejected(void **state)
{
    (void)state;
    s_mp m;
    s_mp_init(&m);
    msgpack_pack_array(&m.pk, ENV_FIELDS);
    for (int i = 0; i < ENV_FIELDS; i++) {
        if (i == 3) {
            msgpack_pack_bin(&m.pk, 15);
            msgpack_pack_bin_body(&m.pk, "0123456789abcde", 15);
        } else {
            s_env_field(&m.pk, i, false, EVB_ENVELOPE_VERSION);
        }
    }
    s_decode_fails(m.sb.data, m.sb.size, EVB_EDECODE, "log_id");
    s_mp_free(&m);
}

/* Field f replaced by the already-packed bytes v: must fail with code. */
static void s_field_value_fails(int f, const void *v, size_t vlen, int code,
                                const char *in_msg)
{
    s_mp m;
    s_mp_init(&m);
    msgpack_pack_array(&m.pk, ENV_FIELDS);
    for (int i = 0; i < ENV_FIELDS; i++) {
        if (i == f)
            msgpack_sbuffer_write(&m.sb, v, vlen);
        else
            s_env_field(&m.pk, i, false, EVB_ENVELOPE_VERSION);
    }
    s_decode_fails(m.sb.data, m.sb.size, code, in_msg);
    s_mp_free(&m);
}

static void test_zero_or_missing_values_rejected(void **state)
{
    (void)state;
    static const uint8_t zero = 0x00, nil = 0xc0, neg = 0xff;
    static const uint8_t zero_id[18] = {0xc4, 16};
    s_field_value_fails(4, &zero, 1, EVB_EDECODE, "seq");
    s_field_value_fails(6, &zero, 1, EVB_EDECODE, "version");
    s_field_value_fails(8, &zero, 1, EVB_EDECODE, "schema");
    s_field_value_fails(4, &neg, 1, EVB_EDECODE, "seq");
    s_field_value_fails(1, &nil, 1, EVB_EDECODE, "id");
    s_field_value_fails(1, zero_id, sizeof zero_id, EVB_EDECODE, "id");
    s_field_value_fails(12, &nil, 1, EVB_EDECODE, "payload");
    /* schema above 32 bits */
    static const uint8_t big[] = {0xcf, 0, 0, 0, 1, 0, 0, 0, 0};
    s_field_value_fails(8, big, sizeof big, EVB_EDECODE, "schema");
    /* ts above INT64_MAX */
    static const uint8_t huge[] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    s_field_value_fails(9, huge, sizeof huge, EVB_EDECODE, "ts");
}

static void test_bad_names_on_wire_rejected(void **state)
{
    (void)state;
    static const uint8_t dash[] = {0xa2, '-', 'x'};
    static const uint8_t empty[] = {0xa0};
    static const uint8_t upper[] = {0xa3, 'S', 'v', 'c'};
    static const uint8_t space[] = {0xa3, 'a', ' ', 'b'};
    static const uint8_t nul[] = {0xa3, 'a', 0, 'b'};
    s_field_value_fails(5, dash, sizeof dash, EVB_EDECODE, "stream");
    s_field_value_fails(5, empty, sizeof empty, EVB_EDECODE, "stream");
    s_field_value_fails(5, nul, sizeof nul, EVB_EDECODE, "stream");
    s_field_value_fails(2, upper, sizeof upper, EVB_EDECODE, "service");
    s_field_value_fails(7, space, sizeof space, EVB_EDECODE, "type");
}

static void test_half_origin_on_wire_rejected(void **state)
{
    (void)state;
    static const uint8_t five = 0x05;
    s_field_value_fails(15, &five, 1, EVB_EDECODE, "origin");
}

/* {"k": [[[...[]...]]]}: a map holding depth - 1 nested arrays, so that the
 * payload is `depth` containers deep counting the map itself. */
static uint8_t *s_deep_payload(unsigned depth, size_t *len)
{
    uint8_t *p = malloc(depth + 3);
    assert_non_null(p);
    size_t n = 0;
    p[n++] = 0x81;
    p[n++] = 0xa1;
    p[n++] = 'k';
    for (unsigned i = 1; i < depth; i++)
        p[n++] = (i + 1 < depth) ? 0x91 : 0x90;
    *len = n;
    return p;
}

static void test_payload_depth_at_limit_ok(void **state)
{
    (void)state;
    size_t len;
    uint8_t *p = s_deep_payload(EVB_MAX_DEPTH, &len);
    assert_int_equal(evb_check_map(p, len, "payload", NULL), EVB_OK);
    evb_event_t ev = s_min_event();
    ev.payload = p;
    ev.payload_len = len;
    evb_event_t *d = s_roundtrip(&ev);
    evb_event_destroy(&d);
    evb_buf js = {0};
    assert_int_equal(evb_msgpack_to_json(p, len, &js, NULL), EVB_OK);
    evb_buf_free(&js);
    free(p);
}

static void test_payload_depth_over_limit_rejected(void **state)
{
    (void)state;
    size_t len;
    uint8_t *p = s_deep_payload(EVB_MAX_DEPTH + 1, &len);
    evb_err err;
    assert_int_equal(evb_check_map(p, len, "payload", &err), EVB_EDECODE);
    assert_non_null(strstr(err.msg, "payload"));
    evb_event_t ev = s_min_event();
    ev.payload = p;
    ev.payload_len = len;
    s_encode_fails(&ev, EVB_EDECODE, "payload");
    s_field_value_fails(12, p, len, EVB_EDECODE, "payload");
    evb_buf js = {0};
    assert_int_equal(evb_msgpack_to_json(p, len, &js, &err), EVB_EDECODE);
    assert_non_null(strstr(err.msg, "deeper"));
    evb_buf_free(&js);
    free(p);
}

static void test_huge_declared_counts_fail_fast(void **state)
{
    (void)state;
    static const uint8_t top_arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t top_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t in_map[] = {0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t big_str[] = {0x81, 0xa1, 'a', 0xdb, 0xff, 0xff, 0xff, 0xff};
    s_decode_fails(top_arr, sizeof top_arr, EVB_EDECODE, NULL);
    s_decode_fails(top_map, sizeof top_map, EVB_EDECODE, NULL);
    assert_int_equal(evb_check_map(top_map, sizeof top_map, "p", NULL), EVB_EDECODE);
    assert_int_equal(evb_check_map(in_map, sizeof in_map, "p", NULL), EVB_EDECODE);
    assert_int_equal(evb_check_map(big_str, sizeof big_str, "p", NULL), EVB_EDECODE);
    s_field_value_fails(12, in_map, sizeof in_map, EVB_EDECODE, "payload");
    s_field_value_fails(13, big_str, sizeof big_str, EVB_EDECODE, "metadata");
    evb_buf js = {0};
    assert_int_equal(evb_msgpack_to_json(top_arr, sizeof top_arr, &js, NULL),
                     EVB_EDECODE);
    assert_int_equal(evb_msgpack_to_json(in_map, sizeof in_map, &js, NULL), EVB_EDECODE);
    assert_int_equal(js.len, 0);
    evb_buf_free(&js);
}

static void test_check_map_cases(void **state)
{
    (void)state;
    static const uint8_t empty_map[] = {0x80};
    static const uint8_t arr[] = {0x90};
    static const uint8_t trailing[] = {0x80, 0x80};
    static const uint8_t c1[] = {0x81, 0xc1, 0x01};
    static const uint8_t map16[] = {0xde, 0x00, 0x01, 0xa1, 'a', 0x01};
    evb_err err;
    assert_int_equal(evb_check_map(empty_map, 1, "p", NULL), EVB_OK);
    assert_int_equal(evb_check_map(map16, sizeof map16, "p", NULL), EVB_OK);
    assert_int_equal(evb_check_map(s_payload, sizeof s_payload, "p", NULL), EVB_OK);
    assert_int_equal(evb_check_map(arr, 1, "thing", &err), EVB_EDECODE);
    assert_non_null(strstr(err.msg, "thing"));
    assert_int_equal(evb_check_map(trailing, 2, "p", NULL), EVB_EDECODE);
    assert_int_equal(evb_check_map(c1, sizeof c1, "p", NULL), EVB_EDECODE);
    assert_int_equal(evb_check_map(empty_map, 0, "p", NULL), EVB_EDECODE);
    assert_int_not_equal(evb_check_map(NULL, 0, "p", NULL), EVB_OK);
}

/* Flipping any single byte of a valid envelope must never crash, and
 * whatever still decodes must re-encode. */
static void test_single_byte_mutations_never_crash(void **state)
{
    (void)state;
    evb_event_t ev = s_full_event();
    evb_buf out = {0};
    s_encode_ok(&ev, &out);
    static const uint8_t vals[] = {0x00, 0x7f, 0x80, 0x9f, 0xc0, 0xc1, 0xc4,
                                   0xcf, 0xd3, 0xdc, 0xdd, 0xdf, 0xff};
    for (size_t i = 0; i < out.len; i++) {
        for (size_t k = 0; k < sizeof vals; k++) {
            uint8_t *copy = malloc(out.len);
            assert_non_null(copy);
            memcpy(copy, out.data, out.len);
            copy[i] = vals[k];
            evb_event_t *d = NULL;
            if (evb_event_decode(copy, out.len, &d, NULL) == EVB_OK) {
                evb_buf again = {0};
                assert_int_equal(evb_event_encode(d, &again, NULL), EVB_OK);
                evb_buf_free(&again);
                evb_event_destroy(&d);
            } else {
                assert_null(d);
            }
            free(copy);
        }
    }
    evb_buf_free(&out);
}

/* ---- the fast pass against the general reader ----
 * evb_event_decode_into reads the envelope's one canonical spelling with a
 * fast pass and hands everything else to the general reader. The fast pass
 * must never decide differently: same code, same message, same event. The
 * general reader alone is libevbus's internal evb__event_decode_general
 * (codec/codec_int.h; this test links the static library). */
int evb__event_decode_general(const void *buf, size_t len, evb_event_t *ev, evb_err *err);

/* The store's iterators decode with the names of the previous event kept
 * (evb__event_decode_names): the same bytes are not checked again. Held to
 * the general reader too, with names kept from whatever decoded before. */
#define EVB_BUILDING_CODEC
#include "../../codec/codec_int.h"
static evb__names s_kept_names;

static void s_fast_agrees(const void *buf, size_t len)
{
    evb_event_t a = {0}, b = {0}, c = {0};
    evb_err ea, eb, ec;
    evb_err_clear(&ea);
    evb_err_clear(&eb);
    evb_err_clear(&ec);
    int ra = evb_event_decode_into(buf, len, &a, &ea);
    int rb = evb__event_decode_general(buf, len, &b, &eb);
    int rc = evb__event_decode_names(buf, len, &c, &s_kept_names, &ec);
    if (ra != rb)
        fail_msg("decode_into %d (%s), general reader %d (%s)", ra, ea.msg, rb, eb.msg);
    if (rc != rb)
        fail_msg("decode_names %d (%s), general reader %d (%s)", rc, ec.msg, rb, eb.msg);
    if (ra == EVB_OK) {
        s_assert_event_eq(&a, &b);
        s_assert_str_eq(a.category, b.category);
        s_assert_event_eq(&c, &b);
        s_assert_str_eq(c.category, b.category);
        assert_ptr_equal(c.stream, s_kept_names.stream); /* lent from the names */
        const uint8_t *pl = c.payload, *in = buf; /* lent from buf */
        assert_true(pl >= in && pl + c.payload_len <= in + len);
    } else {
        assert_string_equal(ea.msg, eb.msg);
        assert_string_equal(ec.msg, eb.msg);
    }
    evb_event_clear(&a);
    evb_event_clear(&b);
    evb_event_clear(&c);
}

/* Names kept from one event are taken again only for the same bytes: a
 * stream or type that differs by a byte is checked (and refused when bad),
 * and the category follows the stream. */
static void test_decode_names_checks_what_changed(void **state)
{
    (void)state;
    evb__names nm;
    memset(&nm, 0, sizeof nm);
    evb_event_t ev = s_full_event(), out = {0};
    evb_buf buf = {0};
    evb_err err;
    s_encode_ok(&ev, &buf);
    assert_int_equal(evb__event_decode_names(buf.data, buf.len, &out, &nm, &err), EVB_OK);
    assert_string_equal(out.category, "show");
    assert_string_equal(out.type, "SeatsHeld");
    /* the same stream and type again */
    ev.seq = 43;
    buf.len = 0;
    s_encode_ok(&ev, &buf);
    assert_int_equal(evb__event_decode_names(buf.data, buf.len, &out, &nm, &err), EVB_OK);
    assert_true(out.seq == 43);
    assert_string_equal(out.stream, "show-42");
    /* a type one byte off, bad: the bytes are patched after encoding */
    ev.type = "SeatsHelD";
    buf.len = 0;
    s_encode_ok(&ev, &buf);
    char *t = NULL;
    for (size_t i = 0; t == NULL && i + 9 <= buf.len; i++)
        if (memcmp((char *)buf.data + i, "SeatsHelD", 9) == 0) t = (char *)buf.data + i;
    assert_non_null(t);
    t[8] = '!';
    assert_int_equal(evb__event_decode_names(buf.data, buf.len, &out, &nm, &err),
                     EVB_EDECODE);
    assert_non_null(strstr(err.msg, "type"));
    /* another stream: a new category */
    ev.type = "SeatsHeld";
    ev.stream = "hall-7";
    buf.len = 0;
    s_encode_ok(&ev, &buf);
    assert_int_equal(evb__event_decode_names(buf.data, buf.len, &out, &nm, &err), EVB_OK);
    assert_string_equal(out.stream, "hall-7");
    assert_string_equal(out.category, "hall");
    assert_string_equal(out.service, "reservation");
    evb_buf_free(&buf);
}

static uint64_t s_rand(uint64_t *x) /* splitmix64 */
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void test_fast_pass_agrees_with_general_reader(void **state)
{
    (void)state;
    /* Every byte of three envelopes set to every value, then random 1-4 byte
     * damage and cuts: the fast pass sees its own spelling with every field
     * broken in every way one byte can break it. */
    evb_event_t evs[3] = {s_full_event(), s_min_event(), s_full_event()};
    evs[2].metadata = NULL;
    evs[2].origin_log_id = (evb_id){{0}};
    evs[2].origin_seq = 0;
    evs[2].seq = 1ull << 40; /* a uint64 seq, a str8 stream */
    evs[2].stream = "show-0123456789abcdefghijklmnopqrstuvwxyz";
    uint64_t seed = 0x5eed;
    size_t decoded = 0;
    for (size_t e = 0; e < 3; e++) {
        evb_buf out = {0};
        s_encode_ok(&evs[e], &out);
        s_fast_agrees(out.data, out.len);
        uint8_t *copy = malloc(out.len);
        assert_non_null(copy);
        for (size_t i = 0; i < out.len; i++) {
            for (unsigned v = 0; v < 256; v++) {
                memcpy(copy, out.data, out.len);
                copy[i] = (uint8_t)v;
                s_fast_agrees(copy, out.len);
                decoded++;
            }
        }
        for (unsigned k = 0; k < 20000; k++) {
            memcpy(copy, out.data, out.len);
            unsigned n = 1 + (unsigned)(s_rand(&seed) % 4);
            for (unsigned j = 0; j < n; j++)
                copy[s_rand(&seed) % out.len] = (uint8_t)s_rand(&seed);
            size_t len = (s_rand(&seed) % 8 == 0) ? s_rand(&seed) % out.len : out.len;
            s_fast_agrees(copy, len);
            decoded++;
        }
        free(copy);
        evb_buf_free(&out);
    }
    assert_true(decoded > 100000);
}

static void test_fast_pass_keeps_the_size_limit(void **state)
{
    (void)state;
    /* Canonical in every field and each part within its own limit, but an
     * 8 KiB extensions map after a payload at its limit makes the envelope
     * larger than EVB_MAX_EVENT_BYTES: refused, by both readers alike. */
    size_t plen = EVB_MAX_PAYLOAD_BYTES;
    uint8_t *payload = malloc(plen);
    assert_non_null(payload);
    size_t body = plen - 1 - 2 - 5; /* fixmap, fixstr "p", bin32 header */
    payload[0] = 0x81;
    payload[1] = 0xa1;
    payload[2] = 'p';
    payload[3] = 0xc6;
    for (int i = 0; i < 4; i++)
        payload[4 + i] = (uint8_t)(body >> (8 * (3 - i)));
    memset(payload + 8, 'x', body);
    evb_event_t ev = s_min_event();
    ev.payload = payload;
    ev.payload_len = plen;
    evb_buf out = {0};
    s_encode_ok(&ev, &out);
    size_t ext_len = 3 + 3 + 8192; /* {"e": bin16 of 8192} */
    uint8_t *big = malloc(out.len - 1 + ext_len);
    assert_non_null(big);
    memcpy(big, out.data, out.len - 1); /* all but the nil extensions */
    uint8_t *x = big + out.len - 1;
    x[0] = 0x81;
    x[1] = 0xa1;
    x[2] = 'e';
    x[3] = 0xc5;
    x[4] = 0x20;
    x[5] = 0x00;
    memset(x + 6, 'y', 8192);
    size_t len = out.len - 1 + ext_len;
    assert_true(len > EVB_MAX_EVENT_BYTES);
    s_decode_fails(big, len, EVB_ETOOBIG, NULL);
    s_fast_agrees(big, len);
    free(big);
    evb_buf_free(&out);
    free(payload);
}

static void test_other_spellings_decode_alike(void **state)
{
    (void)state;
    /* The same envelope with its array header as array32 and its seq as a
     * uint64: the fast pass refuses both spellings, the general reader
     * accepts them, and the event is the same. */
    evb_event_t ev = s_full_event();
    evb_buf out = {0};
    s_encode_ok(&ev, &out);
    assert_int_equal(((const uint8_t *)out.data)[0], 0xdc);
    uint8_t *wide = malloc(out.len + 2);
    assert_non_null(wide);
    const uint8_t a32[5] = {0xdd, 0, 0, 0, 17};
    memcpy(wide, a32, 5);
    memcpy(wide + 5, (const uint8_t *)out.data + 3, out.len - 3);
    evb_event_t *d = s_decode_ok(wide, out.len + 2);
    s_assert_event_eq(&ev, d);
    evb_event_destroy(&d);
    s_fast_agrees(wide, out.len + 2);
    free(wide);

    /* seq 42 is one byte (0x2a) right after the log id's 18 bytes. */
    const uint8_t *p = (const uint8_t *)out.data;
    size_t at = 4 + 18 + 1 + strlen(ev.service) + 18;
    assert_int_equal(p[at], 42);
    uint8_t *u64 = malloc(out.len + 8);
    assert_non_null(u64);
    memcpy(u64, p, at);
    const uint8_t seq[9] = {0xcf, 0, 0, 0, 0, 0, 0, 0, 42};
    memcpy(u64 + at, seq, 9);
    memcpy(u64 + at + 9, p + at + 1, out.len - at - 1);
    d = s_decode_ok(u64, out.len + 8);
    s_assert_event_eq(&ev, d);
    evb_event_destroy(&d);
    free(u64);
    evb_buf_free(&out);
}

/* ---- JSON ---- */

/* Render buf and compare with want. */
static void s_json_is(const void *buf, size_t len, const char *want)
{
    evb_buf out = {0};
    evb_err err;
    int rc = evb_msgpack_to_json(buf, len, &out, &err);
    if (rc != EVB_OK) fail_msg("to_json: %s", err.msg);
    if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
        fail_msg("to_json:\n got  %.*s\n want %s", (int)out.len, out.data, want);
    evb_buf_free(&out);
}

/* Pack with msgpack-c via fn, then compare the JSON. */
static void s_json_packed(void (*fn)(msgpack_packer *), const char *want)
{
    s_mp m;
    s_mp_init(&m);
    fn(&m.pk);
    s_json_is(m.sb.data, m.sb.size, want);
    s_mp_free(&m);
}

static void test_json_scalars(void **state)
{
    (void)state;
    s_json_is("\xc0", 1, "null");
    s_json_is("\xc3", 1, "true");
    s_json_is("\xc2", 1, "false");
    s_json_is("\x00", 1, "0");
    s_json_is("\x7f", 1, "127");
    s_json_is("\xff", 1, "-1");
    s_json_is("\xa0", 1, "\"\"");
    s_json_is("\x81\xa1"
              "a"
              "\x01",
              4, "{\"a\":1}");
    s_json_is(s_payload, sizeof s_payload, "{\"seats\":4,\"show\":\"s1\"}");
}

static void s_pack_ints(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 8);
    msgpack_pack_uint64(pk, 9007199254740991ull); /* 2^53 - 1 */
    msgpack_pack_uint64(pk, 9007199254740992ull); /* 2^53 */
    msgpack_pack_uint64(pk, UINT64_MAX);
    msgpack_pack_int64(pk, -9007199254740991ll);
    msgpack_pack_int64(pk, -9007199254740992ll);
    msgpack_pack_int64(pk, INT64_MIN);
    msgpack_pack_int8(pk, -128);
    msgpack_pack_uint16(pk, 65535);
}

static void test_json_integers(void **state)
{
    (void)state;
    s_json_packed(s_pack_ints,
                  "[9007199254740991,{\"$int\":\"9007199254740992\"},"
                  "{\"$int\":\"18446744073709551615\"},-9007199254740991,"
                  "{\"$int\":\"-9007199254740992\"},{\"$int\":\"-9223372036854775808\"},"
                  "-128,65535]");
}

static void s_pack_floats(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 11);
    msgpack_pack_double(pk, 1.0);
    msgpack_pack_double(pk, 0.5);
    msgpack_pack_double(pk, 0.1);
    msgpack_pack_double(pk, -0.0);
    msgpack_pack_double(pk, 1e300);
    msgpack_pack_double(pk, NAN);
    msgpack_pack_double(pk, INFINITY);
    msgpack_pack_double(pk, -INFINITY);
    msgpack_pack_float(pk, 1.5f);
    msgpack_pack_double(pk, 123456789.0);
    msgpack_pack_double(pk, 2.5e-10);
}

static void test_json_floats(void **state)
{
    (void)state;
    s_json_packed(s_pack_floats, "[1.0,0.5,0.1,-0.0,1e+300,{\"$float\":\"nan\"},"
                                 "{\"$float\":\"inf\"},{\"$float\":\"-inf\"},1.5,"
                                 "123456789.0,2.5e-10]");
}

static void test_json_float_round_trips(void **state)
{
    (void)state;
    static const double vals[] = {0.1,
                                  1.0 / 3.0,
                                  2.0 / 3.0,
                                  1e-300,
                                  5e-324,
                                  1.7976931348623157e308,
                                  3.141592653589793,
                                  1e21};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        s_mp m;
        s_mp_init(&m);
        msgpack_pack_double(&m.pk, vals[i]);
        evb_buf out = {0};
        assert_int_equal(evb_msgpack_to_json(m.sb.data, m.sb.size, &out, NULL), EVB_OK);
        assert_int_equal(evb_buf_append(&out, "", 1, NULL), EVB_OK);
        char *end;
        double back = strtod(out.data, &end);
        assert_true(*end == '\0');
        assert_memory_equal(&back, &vals[i], sizeof back);
        evb_buf_free(&out);
        s_mp_free(&m);
    }
}

static void test_json_string_escaping(void **state)
{
    (void)state;
    static const char s[] = "\xad"
                            "q\"b\\/\n\r\t\b\f\x01\x1f\x7f"
                            "e";
    /* fixstr of 14 bytes */
    uint8_t buf[16];
    buf[0] = 0xa0 | 14;
    memcpy(buf + 1, s + 1, 14);
    s_json_is(buf, 15,
              "\"q\\\"b\\\\/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f"
              "e\"");
}

static void test_json_invalid_utf8(void **state)
{
    (void)state;
    s_json_is("\xa3"
              "a\xff"
              "b",
              4, "\"a\\ufffdb\"");
    /* truncated 3-byte sequence then ASCII: one replacement per bad byte */
    s_json_is("\xa3\xe2\x82"
              "a",
              4, "\"\\ufffd\\ufffda\"");
    /* overlong '/' and a surrogate */
    s_json_is("\xa2\xc0\xaf", 3, "\"\\ufffd\\ufffd\"");
    s_json_is("\xa3\xed\xa0\x80", 4, "\"\\ufffd\\ufffd\\ufffd\"");
    /* above U+10FFFF */
    s_json_is("\xa4\xf4\x90\x80\x80", 5, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    /* valid 2, 3 and 4 byte sequences pass through */
    s_json_is("\xa9\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10,
              "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    /* a sequence cut by the end of the string */
    s_json_is("\xa1\xf0", 2, "\"\\ufffd\"");
}

static void test_json_bin_and_ext(void **state)
{
    (void)state;
    s_json_is("\xc4\x04\x00\x01\x02\xff", 6, "{\"$bin\":\"AAEC/w==\"}");
    s_json_is("\xc4\x00", 2, "{\"$bin\":\"\"}");
    s_json_is("\xc4\x03"
              "abc",
              5, "{\"$bin\":\"YWJj\"}");
    s_json_is("\xc4\x02"
              "ab",
              4, "{\"$bin\":\"YWI=\"}");
    s_json_is("\xd5\x05"
              "ab",
              4, "{\"$ext\":5,\"data\":\"YWI=\"}");
    s_json_is("\xd4\xff"
              "a",
              3, "{\"$ext\":-1,\"data\":\"YQ==\"}");
    s_json_is("\xc7\x00\x07", 3, "{\"$ext\":7,\"data\":\"\"}");
}

static void s_pack_keys(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 6);
    msgpack_pack_int(pk, 1);
    s_pack_cstr(pk, "a");
    msgpack_pack_nil(pk);
    msgpack_pack_int(pk, 2);
    msgpack_pack_array(pk, 2); /* key [1,"x"] */
    msgpack_pack_int(pk, 1);
    s_pack_cstr(pk, "x");
    msgpack_pack_int(pk, 3);
    msgpack_pack_map(pk, 1); /* key {"k\"":"v"} */
    s_pack_cstr(pk, "k\"");
    s_pack_cstr(pk, "v");
    msgpack_pack_int(pk, 4);
    msgpack_pack_true(pk);
    msgpack_pack_int(pk, 5);
    msgpack_pack_bin(pk, 1); /* key bin */
    msgpack_pack_bin_body(pk, "a", 1);
    msgpack_pack_int(pk, 6);
}

static void test_json_non_string_keys(void **state)
{
    (void)state;
    /* Scalar keys: their JSON text. Container keys: "$key:" + base64 of their
     * msgpack ([1,"x"] is 92 01 a1 78; {"k\"":"v"} is 81 a2 6b 22 a1 76). */
    s_json_packed(s_pack_keys, "{\"1\":\"a\",\"null\":2,\"$key:kgGheA==\":3,"
                               "\"$key:gaJrIqF2\":4,\"true\":5,"
                               "\"{\\\"$bin\\\":\\\"YQ==\\\"}\":6}");
}

static void s_pack_key_in_key(msgpack_packer *pk)
{
    /* {{{"a":1}:2}:3}: the inner key's JSON text is escaped twice */
    msgpack_pack_map(pk, 1);
    msgpack_pack_map(pk, 1);
    msgpack_pack_map(pk, 1);
    s_pack_cstr(pk, "a");
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 2);
    msgpack_pack_int(pk, 3);
}

static void test_json_key_in_key(void **state)
{
    (void)state;
    /* A map key holding a map key: base64 of the outer key's msgpack bytes,
     * so escaping never compounds (81 81 a1 61 01 02 = {{"a":1}:2}). */
    s_json_packed(s_pack_key_in_key, "{\"$key:gYGhYQEC\":3}");
}

static void test_json_key_nesting_blowup_bounded(void **state)
{
    (void)state;
    /* 31 levels of map keys around a string of 4000 backslashes: escaped
     * JSON text as keys would double them per level (2^30 * 4000 bytes).
     * Container keys are base64 instead, so the output stays near 4/3 of the
     * input. */
    s_mp m;
    s_mp_init(&m);
    for (int i = 0; i < 31; i++)
        msgpack_pack_map(&m.pk, 1);
    char *bs = s_repeat('\\', 4000);
    s_pack_cstr(&m.pk, bs);
    for (int i = 0; i < 31; i++)
        msgpack_pack_int(&m.pk, 0);
    free(bs);
    evb_buf out = {0};
    evb_err err;
    assert_int_equal(evb_msgpack_to_json(m.sb.data, m.sb.size, &out, &err), EVB_OK);
    assert_true(out.len < 2 * m.sb.size + 64);
    assert_memory_equal(out.data, "{\"$key:", 7);
    evb_buf_free(&out);
    s_mp_free(&m);
}

static void test_json_nested_containers(void **state)
{
    (void)state;
    s_json_is("\x93\x90\x80\x91\x81\xa1"
              "k\x92\xc0\xc3",
              10, "[[],{},[{\"k\":[null,true]}]]");
}

static void test_json_depth(void **state)
{
    (void)state;
    uint8_t buf[EVB_MAX_DEPTH + 1];
    memset(buf, 0x91, EVB_MAX_DEPTH - 1);
    buf[EVB_MAX_DEPTH - 1] = 0x90; /* EVB_MAX_DEPTH arrays */
    evb_buf out = {0};
    assert_int_equal(evb_msgpack_to_json(buf, EVB_MAX_DEPTH, &out, NULL), EVB_OK);
    assert_int_equal(out.len, 2 * EVB_MAX_DEPTH);
    evb_buf_free(&out);
    memset(buf, 0x91, EVB_MAX_DEPTH);
    buf[EVB_MAX_DEPTH] = 0x90; /* one more */
    evb_err err;
    assert_int_equal(evb_msgpack_to_json(buf, EVB_MAX_DEPTH + 1, &out, &err),
                     EVB_EDECODE);
    assert_non_null(strstr(err.msg, "deeper"));
    evb_buf_free(&out);
}

static void test_json_malformed(void **state)
{
    (void)state;
    evb_buf out = {0};
    assert_int_equal(evb_buf_append(&out, "keep", 4, NULL), EVB_OK);
    evb_err err;
    /* ["a", uint16 cut short]: the message names the byte and the cause */
    assert_int_equal(evb_msgpack_to_json("\x92\xa1"
                                         "a\xcd\x01",
                                         5, &out, &err),
                     EVB_EDECODE);
    assert_non_null(strstr(err.msg, "byte 3"));
    assert_non_null(strstr(err.msg, "truncated"));
    /* a map declaring more pairs than there are bytes */
    assert_int_equal(evb_msgpack_to_json("\x82\xa1"
                                         "a\x01",
                                         4, &out, &err),
                     EVB_EDECODE);
    assert_int_equal(out.len, 4); /* nothing left appended */
    assert_int_equal(evb_msgpack_to_json("\xc0\xc0", 2, &out, &err), EVB_EDECODE);
    assert_non_null(strstr(err.msg, "trailing"));
    assert_int_equal(evb_msgpack_to_json("", 0, &out, &err), EVB_EDECODE);
    assert_int_equal(evb_msgpack_to_json("\xc1", 1, &out, &err), EVB_EDECODE);
    assert_int_equal(evb_msgpack_to_json("\xa5"
                                         "ab",
                                         3, &out, &err),
                     EVB_EDECODE);
    assert_int_equal(evb_msgpack_to_json("\xcb\x00", 2, &out, &err), EVB_EDECODE);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "keep", 4);
    evb_buf_free(&out);
}

static void test_json_respects_max_cap(void **state)
{
    (void)state;
    evb_buf out = {0};
    out.max_cap = 8;
    assert_int_equal(evb_msgpack_to_json(s_payload, sizeof s_payload, &out, NULL),
                     EVB_ETOOBIG);
    assert_int_equal(out.len, 0);
    evb_buf_free(&out);
}

static void test_json_event_exact(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    ev.ts_us = 1795563612000123;
    evb_buf enc = {0};
    s_encode_ok(&ev, &enc);
    evb_event_t *d = s_decode_ok(enc.data, enc.len);
    evb_buf out = {0};
    evb_err err;
    assert_int_equal(evb_event_to_json(d, &out, &err), EVB_OK);
    char id[EVB_ID_HEX_LEN + 1], log[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&ev.id, id);
    evb_id_to_hex(&ev.log_id, log);
    char want[1024];
    snprintf(
        want, sizeof want,
        "{\"log_id\":\"%s\",\"seq\":1,\"id\":\"%s\",\"service\":\"svc\","
        "\"stream\":\"show\",\"version\":1,\"category\":\"show\",\"type\":\"Created\","
        "\"schema\":1,\"ts\":\"2026-11-24T23:40:12.000123Z\","
        "\"ts_us\":1795563612000123,\"correlation_id\":null,\"causation_id\":null,"
        "\"payload\":{}}",
        log, id);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.data, want, out.len);
    /* Caller-filled event (category NULL) renders the same. */
    evb_buf out2 = {0};
    assert_int_equal(evb_event_to_json(&ev, &out2, &err), EVB_OK);
    s_assert_bytes_eq(out.data, out.len, out2.data, out2.len);
    evb_buf_free(&out);
    evb_buf_free(&out2);
    evb_buf_free(&enc);
    evb_event_destroy(&d);
}

static void test_json_event_full_fields_in_order(void **state)
{
    (void)state;
    evb_event_t ev = s_full_event();
    evb_buf out = {0};
    assert_int_equal(evb_event_to_json(&ev, &out, NULL), EVB_OK);
    assert_int_equal(evb_buf_append(&out, "", 1, NULL), EVB_OK);
    char corr[EVB_ID_HEX_LEN + 1], origin[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&ev.correlation_id, corr);
    evb_id_to_hex(&ev.origin_log_id, origin);
    static const char *keys[] = {"\"log_id\":",
                                 "\"seq\":42",
                                 "\"id\":",
                                 "\"service\":\"reservation\"",
                                 "\"stream\":\"show-42\"",
                                 "\"version\":7",
                                 "\"category\":\"show\"",
                                 "\"type\":\"SeatsHeld\"",
                                 "\"schema\":2",
                                 "\"ts\":",
                                 "\"ts_us\":",
                                 "\"correlation_id\":\"",
                                 "\"causation_id\":\"",
                                 "\"payload\":{\"seats\":4,\"show\":\"s1\"}",
                                 "\"metadata\":{\"trace\":\"t9\"}",
                                 "\"origin_log_id\":\"",
                                 "\"origin_seq\":9}"};
    const char *at = out.data;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *p = strstr(at, keys[i]);
        if (p == NULL) fail_msg("%s missing or out of order in %s", keys[i], out.data);
        at = p + strlen(keys[i]);
    }
    assert_non_null(strstr(out.data, corr));
    assert_non_null(strstr(out.data, origin));
    evb_buf_free(&out);
}

static void test_json_event_escapes_strings(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event(); /* to_json does not validate names */
    ev.type = "a\"b\n\xff";
    evb_buf out = {0};
    assert_int_equal(evb_event_to_json(&ev, &out, NULL), EVB_OK);
    assert_int_equal(evb_buf_append(&out, "", 1, NULL), EVB_OK);
    assert_non_null(strstr(out.data, "\"type\":\"a\\\"b\\n\\ufffd\""));
    evb_buf_free(&out);
}

static void test_json_event_bad_payload_names_field(void **state)
{
    (void)state;
    evb_event_t ev = s_min_event();
    ev.metadata = "\x81\xa1";
    ev.metadata_len = 2;
    evb_buf out = {0};
    evb_err err;
    assert_int_equal(evb_event_to_json(&ev, &out, &err), EVB_EDECODE);
    assert_non_null(strstr(err.msg, "metadata"));
    assert_int_equal(out.len, 0);
    evb_buf_free(&out);
}

/* ---- timestamps ---- */

static void s_ts_is(int64_t ts, const char *want)
{
    char out[32];
    evb_ts_format(ts, out);
    assert_string_equal(out, want);
}

static void test_ts_format(void **state)
{
    (void)state;
    s_ts_is(0, "1970-01-01T00:00:00.000000Z");
    s_ts_is(1795563612000123, "2026-11-24T23:40:12.000123Z");
    s_ts_is(1709208000000000, "2024-02-29T12:00:00.000000Z");
    s_ts_is(-1, "1969-12-31T23:59:59.999999Z");
    s_ts_is(253402300799999999, "9999-12-31T23:59:59.999999Z");
    char out[32];
    evb_ts_format(INT64_MIN, out); /* must not overflow out */
    assert_true(strlen(out) < 32);
    evb_ts_format(INT64_MAX, out);
    assert_true(strlen(out) < 32);
}

static void s_parse_is(const char *s, int64_t want)
{
    int64_t got = -1;
    evb_err err;
    if (evb_ts_parse(s, &got, &err) != EVB_OK) fail_msg("parse %s: %s", s, err.msg);
    if (got != want)
        fail_msg("parse %s: got %lld want %lld", s, (long long)got, (long long)want);
}

static void test_ts_parse_forms(void **state)
{
    (void)state;
    s_parse_is("2026-11-24T23:40:12.000123Z", 1795563612000123);
    s_parse_is("2026-11-24T23:40:12Z", 1795563612000000);
    s_parse_is("2026-11-24T23:40:12.5Z", 1795563612500000);
    s_parse_is("2026-11-24T23:40:12.123456789Z", 1795563612123456);
    s_parse_is("2026-11-25T01:40:12+02:00", 1795563612000000);
    s_parse_is("2026-11-24T18:10:12.000123-05:30", 1795563612000123);
    s_parse_is("2026-11-24t23:40:12z", 1795563612000000);
    s_parse_is("1970-01-01T00:00:00Z", 0);
    s_parse_is("2024-02-29T12:00:00Z", 1709208000000000);
}

static void test_ts_roundtrip(void **state)
{
    (void)state;
    /* A spread of instants over 1970..9999, including day/year edges. */
    int64_t ts = 0;
    for (int i = 0; i < 2000; i++) {
        char out[32];
        evb_ts_format(ts, out);
        int64_t back = -1;
        assert_int_equal(evb_ts_parse(out, &back, NULL), EVB_OK);
        if (back != ts) fail_msg("%s: %lld != %lld", out, (long long)back, (long long)ts);
        ts += 126230400000001ll + i * 86400000000ll; /* ~4 years + i days + 1 us */
        if (ts > 253402300799999999) ts %= 253402300799999999;
    }
}

static void test_ts_parse_rejects(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "2026",
        "2026-11-24",
        "2026-11-24T23:40:12",  /* no zone */
        "2026-11-24 23:40:12Z", /* space */
        "2026-13-01T00:00:00Z", /* month */
        "2026-00-01T00:00:00Z",
        "2026-02-29T00:00:00Z", /* not a leap year */
        "2026-04-31T00:00:00Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T23:60:00Z",
        "2026-11-24T23:40:61Z",
        "2026-11-24T23:40:12.Z",           /* empty fraction */
        "2026-11-24T23:40:12.1234567890Z", /* 10 digits */
        "2026-11-24T23:40:12+2:00",
        "2026-11-24T23:40:12+24:00",
        "2026-11-24T23:40:12+02:60",
        "2026-11-24T23:40:12Zjunk",
        "2026-11-24T23:40:12ZZ",
        "+2026-11-24T23:40:12Z",
        "1969-12-31T23:59:59Z",      /* before 1970 */
        "1970-01-01T00:00:00+00:01", /* also before 1970 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ts = 7;
        evb_err err;
        if (evb_ts_parse(bad[i], &ts, &err) != EVB_EINVAL)
            fail_msg("'%s' should be rejected", bad[i]);
        assert_true(ts == 7); /* untouched */
        if (bad[i][0] != '\0' && strstr(err.msg, bad[i]) == NULL)
            fail_msg("message '%s' does not show '%s'", err.msg, bad[i]);
    }
    int64_t ts;
    assert_int_equal(evb_ts_parse(NULL, &ts, NULL), EVB_EINVAL);
}

static void test_now_is_plausible(void **state)
{
    (void)state;
    int64_t a = evb_now_us();
    assert_true(a > 1700000000000000); /* after 2023-11 */
    assert_true(a < 4102444800000000); /* before 2100 */
}

/* ---- upcasters ---- */

/* Appends one pair {"vN": true} to a fixmap payload (N = from schema + 1) and
 * reports schema + 1. ctx counts calls. */
static int s_up_add_key(const evb_event_t *ev, evb_buf *out, uint32_t *to, void *ctx,
                        evb_err *err)
{
    const uint8_t *p = ev->payload;
    if (ev->payload_len == 0 || (p[0] & 0xf0) != 0x80 || (p[0] & 0x0f) == 0x0f)
        return evb_err_set(err, EVB_EINVAL, "test upcaster wants a small fixmap");
    uint8_t head = (uint8_t)(p[0] + 1);
    char key[3] = {'v', (char)('0' + (ev->schema + 1) % 10), 0};
    int rc = evb_buf_append(out, &head, 1, err);
    if (rc == EVB_OK) rc = evb_buf_append(out, p + 1, ev->payload_len - 1, err);
    uint8_t pair[4] = {0xa2, (uint8_t)key[0], (uint8_t)key[1], 0xc3};
    if (rc == EVB_OK) rc = evb_buf_append(out, pair, sizeof pair, err);
    *to = ev->schema + 1;
    if (ctx != NULL) (*(int *)ctx)++;
    return rc;
}

static int s_up_same_schema(const evb_event_t *ev, evb_buf *out, uint32_t *to, void *ctx,
                            evb_err *err)
{
    (void)ctx;
    *to = ev->schema; /* not greater: must be refused */
    return evb_buf_append(out, evb_empty_map, 1, err);
}

static int s_up_not_map(const evb_event_t *ev, evb_buf *out, uint32_t *to, void *ctx,
                        evb_err *err)
{
    (void)ctx;
    *to = ev->schema + 1;
    return evb_buf_append(out, "\x90", 1, err);
}

static int s_up_fails(const evb_event_t *ev, evb_buf *out, uint32_t *to, void *ctx,
                      evb_err *err)
{
    (void)ev;
    (void)out;
    (void)to;
    (void)ctx;
    return evb_err_set(err, EVB_ENOTFOUND, "lookup of seat map failed");
}

/* A bigger payload than the input: {"pad": bin 3000}, schema to 9. */
static int s_up_grow(const evb_event_t *ev, evb_buf *out, uint32_t *to, void *ctx,
                     evb_err *err)
{
    (void)ev;
    (void)ctx;
    static uint8_t big[3000 + 8];
    big[0] = 0x81;
    big[1] = 0xa3;
    memcpy(big + 2, "pad", 3);
    big[5] = 0xc5;
    big[6] = 3000 >> 8;
    big[7] = 3000 & 0xff;
    memset(big + 8, 'z', 3000);
    *to = 9;
    return evb_buf_append(out, big, sizeof big, err);
}

/* A decoded event of type t, schema s, payload {"n":1}. */
static evb_event_t *s_decoded(const char *t, uint32_t s)
{
    static const uint8_t p[] = {0x81, 0xa1, 'n', 0x01};
    evb_event_t ev = s_full_event();
    ev.type = t;
    ev.schema = s;
    ev.payload = p;
    ev.payload_len = sizeof p;
    evb_buf out = {0};
    s_encode_ok(&ev, &out);
    evb_event_t *d = s_decode_ok(out.data, out.len);
    evb_buf_free(&out);
    return d;
}

static void test_upcast_chain(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    assert_non_null(reg);
    int calls = 0;
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 2, s_up_add_key, &calls, NULL),
                     EVB_OK);
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 1, s_up_add_key, &calls, NULL),
                     EVB_OK);
    evb_event_t *ev = s_decoded("SeatsHeld", 1);
    evb_event_t *orig = evb_event_dup(ev, NULL);
    assert_non_null(orig);
    evb_err err;
    assert_int_equal(evb_upcasters_apply(reg, ev, &err), EVB_OK);
    assert_int_equal(calls, 2);
    assert_int_equal(ev->schema, 3);
    static const uint8_t want[] = {0x83, 0xa1, 'n',  0x01, 0xa2, 'v',
                                   '2',  0xc3, 0xa2, 'v',  '3',  0xc3};
    s_assert_bytes_eq(ev->payload, ev->payload_len, want, sizeof want);
    /* Everything else is as before, and still owned by ev. */
    s_assert_str_eq(ev->stream, orig->stream);
    s_assert_str_eq(ev->category, "show");
    s_assert_str_eq(ev->type, "SeatsHeld");
    s_assert_bytes_eq(ev->metadata, ev->metadata_len, orig->metadata, orig->metadata_len);
    assert_memory_equal(&ev->id, &orig->id, sizeof ev->id);
    assert_true(ev->seq == orig->seq);
    /* It re-encodes and JSON-renders with the new payload. */
    evb_buf out = {0};
    s_encode_ok(ev, &out);
    evb_buf_free(&out);
    evb_event_destroy(&ev);
    evb_event_destroy(&orig);
    evb_upcasters_destroy(&reg);
    assert_null(reg);
}

static void test_upcast_none_registered_unchanged(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    assert_int_equal(evb_upcasters_add(reg, "Other", 1, s_up_add_key, NULL, NULL),
                     EVB_OK);
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 2, s_up_add_key, NULL, NULL),
                     EVB_OK);
    evb_event_t *ev = s_decoded("SeatsHeld", 1); /* schema 1: nothing for it */
    const void *payload = ev->payload;
    void *block = ev->priv.block;
    assert_int_equal(evb_upcasters_apply(reg, ev, NULL), EVB_OK);
    assert_ptr_equal(ev->payload, payload);
    assert_ptr_equal(ev->priv.block, block);
    assert_int_equal(ev->schema, 1);
    evb_event_destroy(&ev);
    evb_upcasters_destroy(&reg);
}

/* apply must fail with code and leave ev byte-for-byte as it was. */
static void s_apply_fails_unchanged(evb_upcasters_t *reg, int code, const char *in_msg)
{
    evb_event_t *ev = s_decoded("SeatsHeld", 1);
    evb_event_t *orig = evb_event_dup(ev, NULL);
    const void *payload = ev->payload;
    evb_err err;
    evb_err_clear(&err);
    int rc = evb_upcasters_apply(reg, ev, &err);
    if (rc != code) fail_msg("apply: want %d got %d (%s)", code, rc, err.msg);
    if (in_msg != NULL && strstr(err.msg, in_msg) == NULL)
        fail_msg("apply message '%s' lacks '%s'", err.msg, in_msg);
    assert_ptr_equal(ev->payload, payload);
    s_assert_event_eq(ev, orig);
    evb_event_destroy(&ev);
    evb_event_destroy(&orig);
}

static void test_upcast_to_schema_not_greater(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 1, s_up_same_schema, NULL, NULL),
                     EVB_OK);
    s_apply_fails_unchanged(reg, EVB_EINVAL, "SeatsHeld");
    evb_upcasters_destroy(&reg);
}

static void test_upcast_output_not_map(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 1, s_up_not_map, NULL, NULL),
                     EVB_OK);
    s_apply_fails_unchanged(reg, EVB_EDECODE, "SeatsHeld");
    evb_upcasters_destroy(&reg);
}

static void test_upcast_error_propagates(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 1, s_up_fails, NULL, NULL),
                     EVB_OK);
    s_apply_fails_unchanged(reg, EVB_ENOTFOUND, "seat map");
    evb_upcasters_destroy(&reg);
}

static void test_upcast_failure_mid_chain_unchanged(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 1, s_up_add_key, NULL, NULL),
                     EVB_OK);
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 2, s_up_fails, NULL, NULL),
                     EVB_OK);
    s_apply_fails_unchanged(reg, EVB_ENOTFOUND, NULL);
    evb_upcasters_destroy(&reg);
}

/* Keeps the payload, schema + 1. */
static int s_up_plus_one(const evb_event_t *ev, evb_buf *out, uint32_t *to, void *ctx,
                         evb_err *err)
{
    (void)ctx;
    *to = ev->schema + 1;
    return evb_buf_append(out, ev->payload, ev->payload_len, err);
}

static void test_upcast_step_bound(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    for (uint32_t s = 1; s <= EVB_MAX_UPCAST_STEPS; s++)
        assert_int_equal(
            evb_upcasters_add(reg, "SeatsHeld", s, s_up_plus_one, NULL, NULL), EVB_OK);
    /* Exactly EVB_MAX_UPCAST_STEPS steps: allowed. */
    evb_event_t *ev = s_decoded("SeatsHeld", 1);
    assert_int_equal(evb_upcasters_apply(reg, ev, NULL), EVB_OK);
    assert_int_equal(ev->schema, EVB_MAX_UPCAST_STEPS + 1);
    evb_event_destroy(&ev);
    /* One more: refused, event unchanged. */
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", EVB_MAX_UPCAST_STEPS + 1,
                                       s_up_plus_one, NULL, NULL),
                     EVB_OK);
    s_apply_fails_unchanged(reg, EVB_EINVAL, "chain");
    evb_upcasters_destroy(&reg);
}

static void test_upcast_grows_payload(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 1, s_up_grow, NULL, NULL),
                     EVB_OK);
    evb_event_t *ev = s_decoded("SeatsHeld", 1);
    assert_int_equal(evb_upcasters_apply(reg, ev, NULL), EVB_OK);
    assert_int_equal(ev->schema, 9);
    assert_int_equal(ev->payload_len, 3008);
    assert_memory_equal(ev->payload, "\x81\xa3pad\xc5\x0b\xb8", 8);
    s_assert_str_eq(ev->service, "reservation"); /* strings moved with the block */
    evb_event_destroy(&ev);
    evb_upcasters_destroy(&reg);
}

static void test_upcast_duplicate_rejected(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    int calls = 0;
    evb_err err;
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 1, s_up_add_key, &calls, &err),
                     EVB_OK);
    assert_int_equal(evb_upcasters_add(reg, "SeatsHeld", 1, s_up_plus_one, NULL, &err),
                     EVB_EINVAL);
    assert_non_null(strstr(err.msg, "SeatsHeld"));
    /* The first registration stays in force. */
    evb_event_t *ev = s_decoded("SeatsHeld", 1);
    assert_int_equal(evb_upcasters_apply(reg, ev, NULL), EVB_OK);
    assert_int_equal(calls, 1);
    assert_int_equal(ev->payload_len, 8); /* s_up_add_key's output, not a copy */
    evb_event_destroy(&ev);
    evb_upcasters_destroy(&reg);
}

/* Durations: units, chains, fractions exact to the millisecond; bare
 * numbers, unknown units, wrong order and overflow refused by name. */
static void test_duration_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms;
    } ok[] = {{"0s", 0},        {"250ms", 250},   {"3s", 3000},        {"2.5s", 2500},
              {"2m", 120000},   {"1h30m", 5400000}, {"1d", 86400000}, {"1m30s", 90000},
              {"0.001s", 1},    {"1.5m", 90000},  {"1s500ms", 1500}, {".5s", 500}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t ms = 7;
        evb_err err;
        assert_int_equal(evb_duration_parse(ok[i].s, &ms, &err), EVB_OK);
        assert_int_equal(ms, ok[i].ms);
    }
    static const struct {
        const char *s, *says;
    } bad[] = {{"3000", "no unit"},          {"2.5", "no unit"},
               {"3 s", "without a unit"},        {"5x", "unknown unit 'x'"},
               {"1.5ms", "finer than a millisecond"}, {"30s1m", "larger units first"},
               {"1s1s", "larger units first"}, {"s", "not a duration"},
               {"", "empty"},                  {"99999999999999999999d", "too long"},
               {"213503982335d", "too long"}, {"1.0000001s", "more than 6 decimals"},
               {"-3s", "not a duration"},
               {"18446744073709551.9s", "too long"}, {"213503982334.9d", "too long"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms = 7;
        evb_err err;
        assert_int_equal(evb_duration_parse(bad[i].s, &ms, &err), EVB_EINVAL);
        assert_non_null(strstr(err.msg, bad[i].says));
        assert_int_equal(ms, 7);
    }
    assert_true(evb_duration_is_bare("3000"));
    assert_true(evb_duration_is_bare("2.5"));
    assert_false(evb_duration_is_bare("3s"));
    assert_false(evb_duration_is_bare("1.2.3"));
    char out[32];
    assert_string_equal(evb_duration_format(1500, out), "1500ms");
    assert_string_equal(evb_duration_format(5400000, out), "1h30m");
    assert_string_equal(evb_duration_format(86400000, out), "1d");
    assert_string_equal(evb_duration_format(0, out), "0s");
    for (uint64_t v = 0; v < 200000000; v = v * 3 + 1000) {
        uint64_t back;
        assert_int_equal(evb_duration_parse(evb_duration_format(v, out), &back, NULL), EVB_OK);
        assert_int_equal(back, v);
    }
}

static void test_upcast_add_validates(void **state)
{
    (void)state;
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    assert_int_equal(evb_upcasters_add(reg, "bad type", 1, s_up_add_key, NULL, NULL),
                     EVB_EINVAL);
    assert_int_equal(evb_upcasters_add(reg, NULL, 1, s_up_add_key, NULL, NULL),
                     EVB_EINVAL);
    assert_int_equal(evb_upcasters_add(reg, "T", 1, NULL, NULL, NULL), EVB_EINVAL);
    assert_int_equal(evb_upcasters_add(NULL, "T", 1, s_up_add_key, NULL, NULL),
                     EVB_EINVAL);
    /* The type is copied: a caller's buffer may change afterwards. */
    char t[] = "Typed";
    assert_int_equal(evb_upcasters_add(reg, t, 1, s_up_plus_one, NULL, NULL), EVB_OK);
    t[0] = 'X';
    evb_event_t *ev = s_decoded("Typed", 1);
    assert_int_equal(evb_upcasters_apply(reg, ev, NULL), EVB_OK);
    assert_int_equal(ev->schema, 2);
    evb_event_destroy(&ev);
    evb_upcasters_destroy(&reg);
    evb_upcasters_destroy(&reg); /* NULL: harmless */
    evb_upcasters_destroy(NULL);
}

static void test_upcast_many_types(void **state)
{
    (void)state;
    /* Registered out of order, many types: lookups still find each one. */
    evb_upcasters_t *reg = evb_upcasters_new(NULL);
    char name[16];
    for (int i = 99; i >= 0; i--) {
        snprintf(name, sizeof name, "T%d", i);
        assert_int_equal(evb_upcasters_add(reg, name, (uint32_t)(i % 3 + 1),
                                           s_up_plus_one, NULL, NULL),
                         EVB_OK);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "T%d", i);
        evb_event_t *ev = s_decoded(name, (uint32_t)(i % 3 + 1));
        assert_int_equal(evb_upcasters_apply(reg, ev, NULL), EVB_OK);
        assert_int_equal(ev->schema, (uint32_t)(i % 3 + 2));
        evb_event_destroy(&ev);
    }
    evb_upcasters_destroy(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_fields),
        cmocka_unit_test(test_roundtrip_minimal),
        cmocka_unit_test(test_roundtrip_extreme_numbers),
        cmocka_unit_test(test_roundtrip_category_with_dashes),
        cmocka_unit_test(test_encode_appends_to_buffer),
        cmocka_unit_test(test_encode_is_deterministic),
        cmocka_unit_test(test_decode_into_reuses_block),
        cmocka_unit_test(test_dup_is_independent),
        cmocka_unit_test(test_decode_does_not_borrow_input),
        cmocka_unit_test(test_encode_rejects_zero_id),
        cmocka_unit_test(test_encode_rejects_zero_seq_version_schema),
        cmocka_unit_test(test_encode_rejects_bad_names),
        cmocka_unit_test(test_encode_rejects_non_map_payload),
        cmocka_unit_test(test_encode_rejects_half_origin),
        cmocka_unit_test(test_stream_at_max_len_roundtrips),
        cmocka_unit_test(test_stream_over_max_len_rejected),
        cmocka_unit_test(test_stream_over_max_len_on_wire_rejected),
        cmocka_unit_test(test_category_at_max_len),
        cmocka_unit_test(test_type_and_service_max_len),
        cmocka_unit_test(test_payload_at_limit_roundtrips),
        cmocka_unit_test(test_payload_over_limit_encode_rejected),
        cmocka_unit_test(test_payload_plus_metadata_over_limit_rejected),
        cmocka_unit_test(test_check_content_size_edges),
        cmocka_unit_test(test_payload_over_limit_decode_rejected),
        cmocka_unit_test(test_payload_plus_metadata_over_limit_decode_rejected),
        cmocka_unit_test(test_envelope_over_limit_rejected),
        cmocka_unit_test(test_check_stream_table),
        cmocka_unit_test(test_check_category_table),
        cmocka_unit_test(test_check_type_table),
        cmocka_unit_test(test_check_service_table),
        cmocka_unit_test(test_stream_category_derivation),
        cmocka_unit_test(test_truncated_at_every_byte),
        cmocka_unit_test(test_trailing_bytes_rejected),
        cmocka_unit_test(test_handbuilt_baseline_decodes),
        cmocka_unit_test(test_wrong_type_per_field),
        cmocka_unit_test(test_wrong_field_count),
        cmocka_unit_test(test_top_level_not_array),
        cmocka_unit_test(test_unknown_envelope_version),
        cmocka_unit_test(test_id_wrong_length_rejected),
        cmocka_unit_test(test_zero_or_missing_values_rejected),
        cmocka_unit_test(test_bad_names_on_wire_rejected),
        cmocka_unit_test(test_half_origin_on_wire_rejected),
        cmocka_unit_test(test_payload_depth_at_limit_ok),
        cmocka_unit_test(test_payload_depth_over_limit_rejected),
        cmocka_unit_test(test_huge_declared_counts_fail_fast),
        cmocka_unit_test(test_check_map_cases),
        cmocka_unit_test(test_single_byte_mutations_never_crash),
        cmocka_unit_test(test_fast_pass_agrees_with_general_reader),
        cmocka_unit_test(test_decode_names_checks_what_changed),
        cmocka_unit_test(test_other_spellings_decode_alike),
        cmocka_unit_test(test_fast_pass_keeps_the_size_limit),
        cmocka_unit_test(test_json_scalars),
        cmocka_unit_test(test_json_integers),
        cmocka_unit_test(test_json_floats),
        cmocka_unit_test(test_json_float_round_trips),
        cmocka_unit_test(test_json_string_escaping),
        cmocka_unit_test(test_json_invalid_utf8),
        cmocka_unit_test(test_json_bin_and_ext),
        cmocka_unit_test(test_json_non_string_keys),
        cmocka_unit_test(test_json_key_in_key),
        cmocka_unit_test(test_json_key_nesting_blowup_bounded),
        cmocka_unit_test(test_json_nested_containers),
        cmocka_unit_test(test_json_depth),
        cmocka_unit_test(test_json_malformed),
        cmocka_unit_test(test_json_respects_max_cap),
        cmocka_unit_test(test_json_event_exact),
        cmocka_unit_test(test_json_event_full_fields_in_order),
        cmocka_unit_test(test_json_event_escapes_strings),
        cmocka_unit_test(test_json_event_bad_payload_names_field),
        cmocka_unit_test(test_ts_format),
        cmocka_unit_test(test_ts_parse_forms),
        cmocka_unit_test(test_ts_roundtrip),
        cmocka_unit_test(test_ts_parse_rejects),
        cmocka_unit_test(test_now_is_plausible),
        cmocka_unit_test(test_upcast_chain),
        cmocka_unit_test(test_upcast_none_registered_unchanged),
        cmocka_unit_test(test_upcast_to_schema_not_greater),
        cmocka_unit_test(test_upcast_output_not_map),
        cmocka_unit_test(test_upcast_error_propagates),
        cmocka_unit_test(test_upcast_failure_mid_chain_unchanged),
        cmocka_unit_test(test_upcast_step_bound),
        cmocka_unit_test(test_upcast_grows_payload),
        cmocka_unit_test(test_upcast_duplicate_rejected),
        cmocka_unit_test(test_upcast_add_validates),
        cmocka_unit_test(test_upcast_many_types),
        cmocka_unit_test(test_null_empty_input),
        cmocka_unit_test(test_duration_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
