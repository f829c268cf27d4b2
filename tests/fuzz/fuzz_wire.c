/*
 * fuzz_wire.c: libFuzzer target for the bus's frame parsers (evbus_wire.h)
 * on arbitrary bytes: what a publisher, or anything that connects to a
 * subscriber's sockets, can send.
 *
 * The first byte picks the parser; the rest is the frame:
 *   0  a catch-up reply or heartbeat body (evb_wire_parse_reply); for a page,
 *      its events are split (evb_wire_split) as a subscriber does
 *   1  a live message: its topic (evb_wire_live_topic), then for an event the
 *      live header (evb_wire_parse_live_header)
 * Never crash, never read past the buffer (ASan). What parses must hold
 * together, else abort: a reply's strings are terminated within their
 * arrays, a page's header length lies within the frame, a hole has
 * 0 < from <= to, a heartbeat's category count is within bounds, split views
 * lie within the buffer end to end, a live header's length within the body.
 */
#include <evbus/evbus_wire.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_die(const char *what)
{
    fprintf(stderr, "fuzz_wire: %s\n", what);
    abort();
}

static bool s_terminated(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

static void s_reply(const uint8_t *p, size_t n)
{
    static evb_wire_reply r; /* big: not on the stack */
    static evb_wire_view views[EVB_BUS_MAX_PAGE_EVENTS];
    size_t used = 0;
    evb_err err = {0};
    if (evb_wire_parse_reply(p, n, &r, &used, &err) != EVB_OK) {
        if (!s_terminated(err.msg, sizeof err.msg)) s_die("error message not terminated");
        return;
    }
    if (!s_terminated(r.service, sizeof r.service) || !s_terminated(r.code, sizeof r.code) ||
        !s_terminated(r.message, sizeof r.message))
        s_die("a reply's string is not terminated");
    if (used > n) s_die("header longer than the frame");
    switch (r.kind) {
    case EVB_WIRE_PAGE: {
        if (r.count > EVB_BUS_MAX_PAGE_EVENTS) s_die("page count beyond a page");
        size_t count = 0;
        if (evb_wire_split(p + used, n - used, views, r.count, &count, &err) != EVB_OK) return;
        if (count > r.count) s_die("split more views than asked");
        const uint8_t *at = p + used;
        for (size_t i = 0; i < count; i++) {
            if ((const uint8_t *)views[i].p != at || views[i].len == 0 ||
                views[i].len > (size_t)(p + n - at))
                s_die("split views are not end to end within the buffer");
            at += views[i].len;
        }
        break;
    }
    case EVB_WIRE_HOLE:
        if (r.hole_from == 0 || r.hole_to < r.hole_from) s_die("hole range out of order");
        break;
    case EVB_WIRE_HB:
        if (r.nheads > EVB_WIRE_MAX_HB_CATS) s_die("too many heartbeat categories");
        for (size_t i = 0; i < r.nheads; i++)
            if (!s_terminated(r.names[i], sizeof r.names[i]) || r.heads[i].name != r.names[i])
                s_die("a heartbeat category is not terminated in its slot");
        break;
    default:
        break;
    }
}

static void s_live(const uint8_t *p, size_t n)
{
    char cat[EVB_MAX_CATEGORY_LEN + 1];
    const uint8_t *body = NULL;
    size_t blen = 0;
    const char *why = NULL;
    evb_wire_live_kind k = evb_wire_live_topic(p, n, cat, &body, &blen, &why);
    if (k == EVB_WIRE_LIVE_BAD) {
        if (why == NULL) s_die("a bad topic without a reason");
        return;
    }
    if (body < p || body + blen != p + n) s_die("the body is not the rest of the message");
    if (k != EVB_WIRE_LIVE_EVENT) return;
    if (!s_terminated(cat, sizeof cat)) s_die("category not terminated");
    uint64_t prev;
    size_t hlen = 0;
    evb_err err = {0};
    if (evb_wire_parse_live_header(body, blen, &prev, &hlen, &err) == EVB_OK && hlen > blen)
        s_die("live header longer than the body");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1)
        s_live(data + 1, size - 1);
    else
        s_reply(data + 1, size - 1);
    return 0;
}
