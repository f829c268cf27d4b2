/*
 * fuzz_beacon.c: libFuzzer target for evb_beacon_decode on arbitrary bytes
 * (a UDP beacon is the one input any host on the LAN can send us).
 *
 * Never crash, never read past the buffer (ASan). Whatever decodes must have
 * NUL-terminated fields within their arrays, must encode again, and that
 * encoding must decode to the same beacon and be a fixed point (encoding the
 * decoded copy gives the same bytes). A broken property aborts.
 */
#include <evbus/evbus_discovery.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_die(const char *what, const evb_err *err)
{
    fprintf(stderr, "fuzz_beacon: %s: %s\n", what, err ? err->msg : "");
    abort();
}

static bool s_terminated(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

static bool s_same(const evb_beacon *a, const evb_beacon *b)
{
    return a->version == b->version && a->interval_ms == b->interval_ms &&
           a->started_us == b->started_us &&
           memcmp(&a->log_id, &b->log_id, sizeof a->log_id) == 0 &&
           strcmp(a->service, b->service) == 0 && strcmp(a->pub, b->pub) == 0 &&
           strcmp(a->catchup, b->catchup) == 0 && strcmp(a->cmd, b->cmd) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    evb_beacon b;
    evb_err err = {0};
    if (evb_beacon_decode(data, size, &b, &err) != EVB_OK) return 0;
    if (!s_terminated(b.service, sizeof b.service) || !s_terminated(b.pub, sizeof b.pub) ||
        !s_terminated(b.catchup, sizeof b.catchup) || !s_terminated(b.cmd, sizeof b.cmd))
        s_die("a decoded field is not terminated", NULL);
    uint8_t out[EVB_BEACON_MAX_BYTES], again[EVB_BEACON_MAX_BYTES];
    size_t n = 0, m = 0;
    if (evb_beacon_encode(&b, out, &n, &err) != EVB_OK) s_die("decoded beacon does not encode", &err);
    evb_beacon c;
    if (evb_beacon_decode(out, n, &c, &err) != EVB_OK) s_die("re-encoding does not decode", &err);
    if (!s_same(&b, &c)) s_die("re-encoding decodes to another beacon", NULL);
    if (evb_beacon_encode(&c, again, &m, &err) != EVB_OK || m != n || memcmp(out, again, n) != 0)
        s_die("encoding is not a fixed point", &err);
    return 0;
}
