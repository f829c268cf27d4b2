/*
 * make_corpus.c: writes the seed corpus of the fuzz targets.
 *
 *   make_corpus DIR   ->  DIR/decode/<name>  and  DIR/json/<name>
 *
 * The committed seeds in tests/fuzz/corpus/ came from this program; rerun it
 * (see README.md) after the envelope format changes. Seeds are small and
 * each reaches a different part of the decoder or renderer: every msgpack
 * type and width, typed JSON forms, non-string keys, bad UTF-8, depth at the
 * limit, and a few near-misses (truncated, trailing byte, wrong version), so
 * the fuzzer starts from inputs that get past the first checks.
 */
#include <evbus/evbus_codec.h>
#include <evbus/evbus_discovery.h>

#include <msgpack.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *s_root;

static void s_write(const char *sub, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", s_root, sub, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static void s_mkdir(const char *sub)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", s_root, sub);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_corpus: mkdir %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static void s_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* A payload touching every msgpack type the renderer handles. */
static void s_rich_payload(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 14);
    s_str(&pk, "u8", 2);
    msgpack_pack_uint8(&pk, 200);
    s_str(&pk, "u64", 3);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    s_str(&pk, "i64", 3);
    msgpack_pack_int64(&pk, INT64_MIN);
    s_str(&pk, "neg", 3);
    msgpack_pack_int8(&pk, -5);
    s_str(&pk, "f32", 3);
    msgpack_pack_float(&pk, 1.5f);
    s_str(&pk, "f64", 3);
    msgpack_pack_double(&pk, 0.1);
    s_str(&pk, "nan", 3);
    msgpack_pack_double(&pk, NAN);
    s_str(&pk, "esc", 3);
    s_str(&pk, "q\"\\\n\x01\xc3\xa9\xff", 9); /* 9th byte: the NUL */
    s_str(&pk, "bin", 3);
    msgpack_pack_bin(&pk, 4);
    msgpack_pack_bin_body(&pk, "\x00\x01\x02\xff", 4);
    s_str(&pk, "ext", 3);
    msgpack_pack_ext(&pk, 3, 7);
    msgpack_pack_ext_body(&pk, "abc", 3);
    s_str(&pk, "arr", 3);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_int(&pk, 42); /* integer key */
    s_str(&pk, "int key", 7);
    msgpack_pack_array(&pk, 1); /* array key */
    s_str(&pk, "k", 1);
    msgpack_pack_map(&pk, 0);
    s_str(&pk, "nested", 6);
    msgpack_pack_map(&pk, 1);
    s_str(&pk, "m", 1);
    msgpack_pack_array(&pk, 0);
}

static evb_event_t s_base(const void *payload, size_t len)
{
    evb_event_t ev = {0};
    memset(ev.id.b, 0x11, EVB_ID_LEN);
    memset(ev.log_id.b, 0x22, EVB_ID_LEN);
    ev.service = "reservation";
    ev.seq = 1;
    ev.stream = "show-42";
    ev.version = 1;
    ev.type = "SeatsHeld";
    ev.schema = 1;
    ev.ts_us = 1795563612000123;
    ev.payload = payload;
    ev.payload_len = len;
    return ev;
}

static void s_event_seed(const char *name, const evb_event_t *ev, evb_buf *keep)
{
    evb_buf out = {0};
    evb_err err;
    if (evb_event_encode(ev, &out, &err) != EVB_OK) {
        fprintf(stderr, "make_corpus: %s: %s\n", name, err.msg);
        exit(1);
    }
    s_write("decode", name, out.data, out.len);
    if (keep != NULL)
        *keep = out;
    else
        evb_buf_free(&out);
}

static void s_decode_seeds(const msgpack_sbuffer *rich)
{
    static const uint8_t meta[] = {0x81, 0xa5, 't', 'r', 'a', 'c', 'e', 0xa1, 'x'};
    evb_event_t ev = s_base(evb_empty_map, 1);
    evb_buf full = {0};
    s_event_seed("minimal", &ev, NULL);

    ev = s_base(rich->data, rich->size);
    memset(ev.correlation_id.b, 0x33, EVB_ID_LEN);
    memset(ev.causation_id.b, 0x44, EVB_ID_LEN);
    ev.metadata = meta;
    ev.metadata_len = sizeof meta;
    s_event_seed("full", &ev, &full);

    ev = s_base(evb_empty_map, 1);
    memset(ev.origin_log_id.b, 0x55, EVB_ID_LEN);
    ev.origin_seq = 77;
    ev.seq = UINT64_MAX;
    ev.version = 1ull << 40;
    ev.schema = UINT32_MAX;
    ev.ts_us = -1;
    ev.stream = "a_b.c:d@e-f-g";
    ev.type = "seats.held:v2-x";
    s_event_seed("copy_extremes", &ev, NULL);

    /* Near misses, derived from the full encoding. */
    s_write("decode", "truncated", full.data, full.len - 1);
    uint8_t *m = malloc(full.len + 1);
    if (m == NULL) exit(1);
    memcpy(m, full.data, full.len);
    m[full.len] = 0xc0;
    s_write("decode", "trailing_nil", m, full.len + 1);
    memcpy(m, full.data, full.len);
    /* 17 elements take an array16 header (dc 00 11); the version follows. */
    if (m[0] != 0xdc || m[3] != EVB_ENVELOPE_VERSION) {
        fprintf(stderr, "make_corpus: unexpected envelope header\n");
        exit(1);
    }
    m[3] = 2;
    s_write("decode", "version2", m, full.len);
    free(m);
    evb_buf_free(&full);

    static const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    s_write("decode", "huge_count", huge, sizeof huge);
    static const uint8_t empty_arr[] = {0xdc, 0x00, 0x11};
    s_write("decode", "array17_empty", empty_arr, sizeof empty_arr);

    /* Payload at the depth limit: {"k":[[...[]...]]}. */
    uint8_t deep[3 + EVB_MAX_DEPTH];
    size_t n = 0;
    deep[n++] = 0x81;
    deep[n++] = 0xa1;
    deep[n++] = 'k';
    for (unsigned i = 1; i < EVB_MAX_DEPTH; i++)
        deep[n++] = (i + 1 < EVB_MAX_DEPTH) ? 0x91 : 0x90;
    ev = s_base(deep, n);
    s_event_seed("deep_payload", &ev, NULL);
}

static void s_json_seeds(const msgpack_sbuffer *rich)
{
    s_write("json", "rich_map", rich->data, rich->size);
    static const struct {
        const char *name;
        const char *bytes;
        size_t len;
    } seeds[] = {
        {"nil", "\xc0", 1},
        {"fixint", "\x7f", 1},
        {"negfix", "\xe0", 1},
        {"u64_max", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9},
        {"i64_min", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9},
        {"f64_inf", "\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00", 9},
        {"f32_nan", "\xca\x7f\xc0\x00\x00", 5},
        {"str8_bad_utf8", "\xd9\x06\xe2\x82\xed\xa0\x80\xff", 8},
        {"str_ctrl", "\xa4\x00\x1f\x7f\"", 5},
        {"bin16", "\xc5\x00\x03\x01\x02\x03", 6},
        {"ext8", "\xc7\x02\x80\xaa\xbb", 5},
        {"fixext16",
         "\xd8\x01"
         "0123456789abcdef",
         18},
        {"array16", "\xdc\x00\x02\xc3\xc2", 5},
        {"map32", "\xdf\x00\x00\x00\x01\xa1k\xa1v", 9},
        {"key_in_key", "\x81\x81\x81\xa1\"\x01\x02\x03", 8},
        {"bin_key", "\x81\xc4\x01z\x90", 5},
        {"float_key", "\x81\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\xc0", 11},
        {"truncated_map",
         "\x82\xa1"
         "a",
         3},
        {"c1", "\xc1", 1},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
        s_write("json", seeds[i].name, seeds[i].bytes, seeds[i].len);
    uint8_t deep[EVB_MAX_DEPTH];
    memset(deep, 0x91, sizeof deep);
    deep[EVB_MAX_DEPTH - 1] = 0x90;
    s_write("json", "deep_arrays", deep, sizeof deep);
}

/* Beacons: tcp endpoints (the compact form), text endpoints (ipc), one
 * without a publisher, and a truncated one. */
static void s_beacon_seeds(void)
{
    evb_beacon b = {.version = EVB_BEACON_VERSION, .interval_ms = 1000,
                    .started_us = 1795573466176754};
    for (unsigned i = 0; i < EVB_ID_LEN; i++) b.log_id.b[i] = (uint8_t)(i * 37 + 1);
    snprintf(b.service, sizeof b.service, "reservation");
    snprintf(b.pub, sizeof b.pub, "tcp://10.77.0.1:5601");
    snprintf(b.catchup, sizeof b.catchup, "tcp://10.77.0.1:5602");
    snprintf(b.cmd, sizeof b.cmd, "tcp://10.77.0.1:5603");
    uint8_t out[EVB_BEACON_MAX_BYTES];
    size_t n;
    if (evb_beacon_encode(&b, out, &n, NULL) == EVB_OK) {
        s_write("beacon", "tcp", out, n);
        s_write("beacon", "truncated", out, n / 2);
    }
    snprintf(b.pub, sizeof b.pub, "ipc:///run/evbus/booking.pub");
    snprintf(b.catchup, sizeof b.catchup, "ipc:///run/evbus/booking.cu");
    snprintf(b.service, sizeof b.service, "booking");
    if (evb_beacon_encode(&b, out, &n, NULL) == EVB_OK) s_write("beacon", "ipc", out, n);
    b.pub[0] = b.catchup[0] = '\0';
    if (evb_beacon_encode(&b, out, &n, NULL) == EVB_OK) s_write("beacon", "cmd_only", out, n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR (writes DIR/decode, DIR/json and DIR/beacon)\n");
        return 2;
    }
    s_root = argv[1];
    s_mkdir("decode");
    s_mkdir("json");
    s_mkdir("beacon");
    s_beacon_seeds();
    msgpack_sbuffer rich;
    msgpack_sbuffer_init(&rich);
    s_rich_payload(&rich);
    s_decode_seeds(&rich);
    s_json_seeds(&rich);
    msgpack_sbuffer_destroy(&rich);
    return 0;
}
