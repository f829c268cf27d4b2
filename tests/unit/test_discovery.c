/*
 * test_discovery.c: the discovery beacon (PROTOCOL.md, "Discovery") through
 * the public header: encode/decode round trips, the 255-byte limit and its
 * message, endpoints that cannot be advertised, and decoding of truncated,
 * mutated and random bytes (rejected with an error, never a crash: run
 * under ASan in CI). Sockets are not used, except for an interface that does
 * not exist (refused with a message naming it).
 */
#include <evbus/evbus_discovery.h>

#include <setjmp.h> /* cmocka needs these before cmocka.h */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static evb_beacon s_beacon(void)
{
    evb_beacon b;
    memset(&b, 0, sizeof b);
    b.version = EVB_BEACON_VERSION;
    b.interval_ms = 1000;
    b.started_us = 1700000000000000LL;
    for (unsigned i = 0; i < EVB_ID_LEN; i++)
        b.log_id.b[i] = (uint8_t)(0xa0 + i);
    snprintf(b.service, sizeof b.service, "reservation");
    snprintf(b.pub, sizeof b.pub, "tcp://10.77.0.2:6001");
    snprintf(b.catchup, sizeof b.catchup, "tcp://10.77.0.2:6002");
    snprintf(b.cmd, sizeof b.cmd, "tcp://10.77.0.2:6003");
    return b;
}

static void s_same(const evb_beacon *a, const evb_beacon *b)
{
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->interval_ms, b->interval_ms);
    assert_true(a->started_us == b->started_us);
    assert_memory_equal(a->log_id.b, b->log_id.b, EVB_ID_LEN);
    assert_string_equal(a->service, b->service);
    assert_string_equal(a->pub, b->pub);
    assert_string_equal(a->catchup, b->catchup);
    assert_string_equal(a->cmd, b->cmd);
}

static size_t s_encode(const evb_beacon *b, uint8_t *buf)
{
    size_t len = 0;
    evb_err err = {0};
    assert_int_equal(evb_beacon_encode(b, buf, &len, &err), EVB_OK);
    assert_true(len <= EVB_BEACON_MAX_BYTES);
    return len;
}

static void s_roundtrip(const evb_beacon *b)
{
    uint8_t buf[EVB_BEACON_MAX_BYTES];
    size_t len = s_encode(b, buf);
    evb_beacon d;
    evb_err err = {0};
    assert_int_equal(evb_beacon_decode(buf, len, &d, &err), EVB_OK);
    s_same(b, &d);
}

/* ---- encode ---- */

static void test_roundtrip_tcp4_compact(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    uint8_t buf[EVB_BEACON_MAX_BYTES];
    /* 31 header + name + three 7-byte endpoints */
    assert_int_equal(s_encode(&b, buf), 31 + strlen("reservation") + 3 * 7);
    assert_memory_equal(buf, "EVB\x01", 4);
    s_roundtrip(&b);
}

static void test_roundtrip_text_endpoints(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    snprintf(b.pub, sizeof b.pub, "tcp://shows.example.org:6001");
    snprintf(b.catchup, sizeof b.catchup, "tcp://[fd00::2]:6002");
    snprintf(b.cmd, sizeof b.cmd, "ipc:///run/evbus/res.cmd");
    s_roundtrip(&b);
    /* Not the canonical dotted quad: kept as text, byte for byte. */
    snprintf(b.pub, sizeof b.pub, "tcp://010.0.0.1:6001");
    snprintf(b.catchup, sizeof b.catchup, "tcp://10.0.0.1:06002");
    s_roundtrip(&b);
}

static void test_roundtrip_without_publisher(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    b.pub[0] = b.catchup[0] = '\0';
    s_roundtrip(&b);
    b = s_beacon();
    b.cmd[0] = '\0';
    s_roundtrip(&b);
}

static void test_limits_of_fields(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    b.interval_ms = 65535;
    b.started_us = INT64_MAX;
    memset(b.service, 'a', EVB_MAX_SERVICE_LEN);
    b.service[EVB_MAX_SERVICE_LEN] = '\0';
    s_roundtrip(&b);
}

static void test_exactly_255_bytes(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    /* 31 + 11 (name) + 7 + 7 = 56: the cmd text endpoint gets 255 - 56 - 2. */
    size_t n = 255 - 56 - 2;
    snprintf(b.cmd, sizeof b.cmd, "ipc://");
    memset(b.cmd + 6, 'c', n - 6);
    b.cmd[n] = '\0';
    uint8_t buf[EVB_BEACON_MAX_BYTES];
    assert_int_equal(s_encode(&b, buf), 255);
    s_roundtrip(&b);
    b.cmd[n] = 'c';
    b.cmd[n + 1] = '\0';
    size_t len;
    evb_err err = {0};
    assert_int_equal(evb_beacon_encode(&b, buf, &len, &err), EVB_ETOOBIG);
    assert_non_null(strstr(err.msg, "256 bytes"));
    assert_non_null(strstr(err.msg, "cmd endpoint"));
    assert_non_null(strstr(err.msg, "255"));
}

static void test_oversized_names_the_longest(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    snprintf(b.pub, sizeof b.pub, "tcp://%s.example:1",
             "a-very-long-host-name-that-is-long");
    snprintf(b.catchup, sizeof b.catchup, "tcp://%0200d.example:2", 7);
    uint8_t buf[EVB_BEACON_MAX_BYTES];
    size_t len;
    evb_err err = {0};
    assert_int_equal(evb_beacon_encode(&b, buf, &len, &err), EVB_ETOOBIG);
    assert_non_null(strstr(err.msg, "the catchup endpoint"));
    assert_non_null(strstr(err.msg, "reservation"));
}

static void test_encode_refuses(void **state)
{
    (void)state;
    uint8_t buf[EVB_BEACON_MAX_BYTES];
    size_t len;
    evb_err err = {0};
    const char *bad_eps[] = {"tcp://*:6001",     "tcp://0.0.0.0:6001",
                             "tcp://10.0.0.1:*", "no-transport",
                             "tcp://",           "tcp://a b:1"};
    for (size_t i = 0; i < sizeof bad_eps / sizeof bad_eps[0]; i++) {
        evb_beacon b = s_beacon();
        snprintf(b.cmd, sizeof b.cmd, "%s", bad_eps[i]);
        assert_int_equal(evb_beacon_encode(&b, buf, &len, &err), EVB_EINVAL);
        assert_non_null(strstr(err.msg, "cmd endpoint"));
    }
    evb_beacon b = s_beacon();
    b.catchup[0] = '\0';
    assert_int_equal(evb_beacon_encode(&b, buf, &len, &err), EVB_EINVAL);
    b = s_beacon();
    b.pub[0] = b.catchup[0] = b.cmd[0] = '\0';
    assert_int_equal(evb_beacon_encode(&b, buf, &len, &err), EVB_EINVAL);
    b = s_beacon();
    snprintf(b.service, sizeof b.service, "Not-A-Name");
    assert_int_equal(evb_beacon_encode(&b, buf, &len, &err), EVB_EINVAL);
    b = s_beacon();
    b.interval_ms = 0;
    assert_int_equal(evb_beacon_encode(&b, buf, &len, &err), EVB_EINVAL);
    b.interval_ms = 65536;
    assert_int_equal(evb_beacon_encode(&b, buf, &len, &err), EVB_EINVAL);
}

/* ---- the announcer's checks, without the network ---- */

static void test_announce_check(void **state)
{
    (void)state;
    evb_err err = {0};
    evb_announce_opts o = {.iface = "eth0",
                           .service = "booking",
                           .pub_endpoint = "tcp://*:6101",
                           .catchup_endpoint = "tcp://0.0.0.0:6102",
                           .cmd_endpoint = "tcp://10.0.0.1:6103"};
    assert_int_equal(evb_announce_check(&o, &err), EVB_OK);
    o.iface = "*"; /* every interface: which address would * be? */
    assert_int_equal(evb_announce_check(&o, &err), EVB_EINVAL);
    assert_non_null(strstr(err.msg, "pub endpoint"));
    o.advertise_host = "10.0.0.1";
    assert_int_equal(evb_announce_check(&o, &err), EVB_OK);
    o.iface = "";
    assert_int_equal(evb_announce_check(&o, &err), EVB_EINVAL);
    o.iface = "eth0";
    o.pub_endpoint = "tcp://*:*";
    assert_int_equal(evb_announce_check(&o, &err), EVB_EINVAL);
    assert_non_null(strstr(err.msg, "ephemeral"));
    o.pub_endpoint = "tcp://*:6101";
    char big[240];
    snprintf(big, sizeof big, "ipc:///%0220d", 0);
    o.cmd_endpoint = big;
    assert_int_equal(evb_announce_check(&o, &err), EVB_ETOOBIG);
    assert_non_null(strstr(err.msg, "cmd endpoint"));
}

static void test_unknown_interface(void **state)
{
    (void)state;
    evb_err err = {0};
    evb_discover_t *d = evb_discover_new("nosuch0", 45999, &err);
    assert_null(d);
    assert_int_equal(err.code, EVB_EIO);
    assert_non_null(strstr(err.msg, "nosuch0"));
    /* The process's interface was released: another name may be tried. */
    d = evb_discover_new("nosuch1", 45999, &err);
    assert_null(d);
    assert_non_null(strstr(err.msg, "nosuch1"));
    assert_null(evb_discover_new("bad name", 45999, &err));
    assert_int_equal(err.code, EVB_EINVAL);
}

/* ---- decode ---- */

static void s_decode_fails(const uint8_t *p, size_t n, int code)
{
    evb_beacon d;
    evb_err err = {0};
    int rc = evb_beacon_decode(p, n, &d, &err);
    assert_int_equal(rc, code);
    assert_true(err.msg[0] != '\0');
}

static void test_decode_truncated(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    snprintf(b.cmd, sizeof b.cmd, "ipc:///run/evbus/res.cmd");
    uint8_t buf[EVB_BEACON_MAX_BYTES];
    size_t len = s_encode(&b, buf);
    for (size_t n = 0; n < len; n++) {
        /* a copy of exactly n bytes, so ASan sees any read past it */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        evb_beacon d;
        assert_int_not_equal(evb_beacon_decode(cut, n, &d, NULL), EVB_OK);
        free(cut);
    }
    s_decode_fails(NULL, 0, EVB_EDECODE);
}

static void test_decode_trailing_and_magic(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    uint8_t buf[EVB_BEACON_MAX_BYTES + 1];
    size_t len = s_encode(&b, buf);
    buf[len] = 0;
    s_decode_fails(buf, len + 1, EVB_EDECODE);
    buf[0] = 'Z';
    s_decode_fails(buf, len, EVB_EDECODE);
    buf[0] = 'E';
    buf[3] = 2;
    s_decode_fails(buf, len, EVB_EVERSION);
    const uint8_t zre[] = {'Z', 'R', 'E', 1, 0, 0};
    s_decode_fails(zre, sizeof zre, EVB_EDECODE);
}

static void test_decode_bad_fields(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    uint8_t buf[EVB_BEACON_MAX_BYTES], m[EVB_BEACON_MAX_BYTES];
    size_t len = s_encode(&b, buf);
    size_t ep0 = 31 + strlen(b.service); /* first endpoint's tag */
    struct {
        size_t at;
        uint8_t v;
    } cases[] = {
        {4, 0},       /* interval 0 (with byte 5 below) */
        {30, 0},      /* empty service name */
        {30, 65},     /* name longer than 64 */
        {31, 'R'},    /* upper case in the name */
        {31, 0},      /* NUL in the name */
        {ep0, 9},     /* unknown endpoint kind */
        {ep0 + 5, 0}, /* port 0 (high byte is already 0x17) */
        {ep0, 0},     /* pub missing but catchup there: shifts */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(m, buf, len);
        m[cases[i].at] = cases[i].v;
        if (cases[i].at == ep0 + 5) m[ep0 + 6] = 0;
        if (cases[i].at == 4) m[5] = 0;
        evb_beacon d;
        assert_int_not_equal(evb_beacon_decode(m, len, &d, NULL), EVB_OK);
    }
    /* A text endpoint with a control character, and one without "://". */
    evb_beacon t = s_beacon();
    snprintf(t.cmd, sizeof t.cmd, "ipc://abc");
    len = s_encode(&t, buf);
    memcpy(m, buf, len);
    m[len - 2] = '\n';
    s_decode_fails(m, len, EVB_EDECODE);
    memcpy(m, buf, len);
    m[len - 6] = 'x'; /* "ipc:x/abc" */
    s_decode_fails(m, len, EVB_EDECODE);
    /* address 0.0.0.0 is not connectable */
    len = s_encode(&b, buf);
    memcpy(m, buf, len);
    memset(m + ep0 + 1, 0, 4);
    s_decode_fails(m, len, EVB_EDECODE);
}

/* Every byte of a valid beacon set to every value: decoded or refused, and a
 * decoded one encodes again (nothing invented that encode would refuse). */
static void test_decode_every_mutation(void **state)
{
    (void)state;
    evb_beacon b = s_beacon();
    snprintf(b.cmd, sizeof b.cmd, "ipc:///run/x.cmd");
    uint8_t buf[EVB_BEACON_MAX_BYTES], m[EVB_BEACON_MAX_BYTES],
        again[EVB_BEACON_MAX_BYTES];
    size_t len = s_encode(&b, buf);
    size_t ok = 0, refused = 0;
    for (size_t at = 0; at < len; at++) {
        for (unsigned v = 0; v < 256; v++) {
            memcpy(m, buf, len);
            m[at] = (uint8_t)v;
            evb_beacon d;
            evb_err err = {0};
            if (evb_beacon_decode(m, len, &d, &err) == EVB_OK) {
                size_t l2;
                assert_int_equal(evb_beacon_encode(&d, again, &l2, &err), EVB_OK);
                ok++;
            } else {
                refused++;
            }
        }
    }
    assert_true(ok > 0 && refused > 0);
}

static void test_decode_random_garbage(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    size_t ok = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = (size_t)(x % 300);
        uint8_t *p = malloc(n ? n : 1);
        uint64_t y = x;
        for (size_t k = 0; k < n; k++) {
            y = y * 6364136223846793005ull + 1442695040888963407ull;
            p[k] = (uint8_t)(y >> 56);
        }
        if (n >= 4 && (i & 1)) memcpy(p, "EVB\x01", 4); /* get past the magic */
        evb_beacon d;
        if (evb_beacon_decode(p, n, &d, NULL) == EVB_OK) ok++;
        free(p);
    }
    (void)ok; /* almost never: random bytes are not a beacon */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_tcp4_compact),
        cmocka_unit_test(test_roundtrip_text_endpoints),
        cmocka_unit_test(test_roundtrip_without_publisher),
        cmocka_unit_test(test_limits_of_fields),
        cmocka_unit_test(test_exactly_255_bytes),
        cmocka_unit_test(test_oversized_names_the_longest),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_announce_check),
        cmocka_unit_test(test_unknown_interface),
        cmocka_unit_test(test_decode_truncated),
        cmocka_unit_test(test_decode_trailing_and_magic),
        cmocka_unit_test(test_decode_bad_fields),
        cmocka_unit_test(test_decode_every_mutation),
        cmocka_unit_test(test_decode_random_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
