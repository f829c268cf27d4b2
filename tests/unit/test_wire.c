/*
 * test_wire: the bus's frame writers and parsers (bus/busmsg.c,
 * bus/evbus_wire.h) without sockets: each message kind written by the
 * publisher's writers reads back with the subscriber's parsers, field by
 * field; every truncation of each is refused, never read past; live topics
 * and headers; a page's events split. fuzz_wire (tests/fuzz) throws
 * arbitrary bytes at the same parsers. The publisher's writers are private:
 * built with the bus's private header (CMakeLists.txt).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "busmsg.h"

static evb_id s_id(uint8_t b)
{
    evb_id id;
    memset(id.b, b, sizeof id.b);
    return id;
}

/* buf parses as a reply; every shorter prefix of its header is refused. */
static void s_parses(const evb_buf *b, evb_wire_reply *r, size_t *used)
{
    evb_err err;
    assert_int_equal(evb_wire_parse_reply(b->data, b->len, r, used, &err), EVB_OK);
    for (size_t n = 0; n < *used; n++) {
        evb_wire_reply junk;
        size_t u;
        if (evb_wire_parse_reply(b->data, n, &junk, &u, &err) == EVB_OK)
            fail_msg("a reply cut to %zu of %zu bytes parsed", n, *used);
        assert_true(err.msg[0] != '\0');
    }
}

static void test_replies_round_trip(void **state)
{
    (void)state;
    evb_buf b = {0};
    evb_err err;
    evb_wire_reply r;
    size_t used;
    evb_id log = s_id(0x5a);

    assert_int_equal(bm_hello_reply(&b, 7, &log, 42, "booking", &err), EVB_OK);
    s_parses(&b, &r, &used);
    assert_int_equal(r.kind, EVB_WIRE_HELLO);
    assert_true(r.req_id == 7 && r.head == 42);
    assert_memory_equal(&r.log_id, &log, sizeof log);
    assert_string_equal(r.service, "booking");

    b.len = 0;
    assert_int_equal(bm_page(&b, 8, &log, 99, 55, true, 2, &err), EVB_OK);
    size_t hdr = b.len;
    static const uint8_t evs[] = {0x81, 0xa1, 'a', 0x01, 0x80}; /* {"a":1} {} */
    assert_int_equal(evb_buf_append(&b, evs, sizeof evs, &err), EVB_OK);
    s_parses(&b, &r, &used);
    assert_int_equal(r.kind, EVB_WIRE_PAGE);
    assert_true(r.req_id == 8 && r.head == 99 && r.position == 55 && r.more && r.count == 2);
    assert_int_equal(used, hdr);
    evb_wire_view v[4];
    size_t count;
    assert_int_equal(evb_wire_split(b.data + used, b.len - used, v, 4, &count, &err), EVB_OK);
    assert_int_equal(count, 2);
    assert_int_equal(v[0].len, 4);
    assert_int_equal(v[1].len, 1);
    /* more values than room, a value cut short */
    assert_int_equal(evb_wire_split(b.data + used, b.len - used, v, 1, &count, &err),
                     EVB_EDECODE);
    assert_int_equal(evb_wire_split(b.data + used, 3, v, 4, &count, &err), EVB_EDECODE);

    b.len = 0;
    assert_int_equal(bm_hole(&b, 9, &log, 300, 120, 140, &err), EVB_OK);
    s_parses(&b, &r, &used);
    assert_int_equal(r.kind, EVB_WIRE_HOLE);
    assert_true(r.req_id == 9 && r.head == 300 && r.hole_from == 120 && r.hole_to == 140);

    b.len = 0;
    assert_int_equal(bm_error(&b, 10, "EVB_EINVAL", "unknown request", &err), EVB_OK);
    s_parses(&b, &r, &used);
    assert_int_equal(r.kind, EVB_WIRE_ERROR);
    assert_true(r.req_id == 10);
    assert_string_equal(r.code, "EVB_EINVAL");
    assert_string_equal(r.message, "unknown request");

    b.len = 0;
    evb_wire_cat_head heads[2] = {{"show", 17}, {"booking", 30}};
    assert_int_equal(bm_heartbeat(&b, &log, 30, "reservation", heads, 2, &err), EVB_OK);
    s_parses(&b, &r, &used);
    assert_int_equal(r.kind, EVB_WIRE_HB);
    assert_true(r.head == 30 && r.nheads == 2);
    assert_string_equal(r.heads[0].name, "show");
    assert_true(r.heads[0].head == 17 && r.heads[1].head == 30);
    assert_string_equal(r.heads[1].name, "booking");
    assert_string_equal(r.service, "reservation");
    evb_buf_free(&b);
}

static void test_requests_round_trip(void **state)
{
    (void)state;
    evb_buf b = {0};
    evb_err err;
    bm_request rq;
    assert_int_equal(evb_wire_fetch(&b, 11, "show", 1000, 500, &err), EVB_OK);
    assert_int_equal(bm_parse_request(b.data, b.len, &rq, &err), EVB_OK);
    assert_int_equal(rq.kind, EVB_WIRE_FETCH);
    assert_true(rq.req_id == 11 && rq.after == 1000 && rq.max_events == 500);
    assert_string_equal(rq.category, "show");
    for (size_t n = 0; n < b.len; n++)
        assert_int_not_equal(bm_parse_request(b.data, n, &rq, &err), EVB_OK);
    b.len = 0;
    assert_int_equal(evb_wire_fetch(&b, 12, "", 0, 10, &err), EVB_OK); /* every category */
    assert_int_equal(bm_parse_request(b.data, b.len, &rq, &err), EVB_OK);
    assert_string_equal(rq.category, "");
    b.len = 0;
    assert_int_equal(evb_wire_hello(&b, 13, &err), EVB_OK);
    assert_int_equal(bm_parse_request(b.data, b.len, &rq, &err), EVB_OK);
    assert_int_equal(rq.kind, EVB_WIRE_HELLO);
    assert_true(rq.req_id == 13);
    evb_buf_free(&b);
}

static void test_live_topics_and_header(void **state)
{
    (void)state;
    char topic[EVB_WIRE_TOPIC_MAX + 16];
    size_t tl = evb_wire_topic_event(topic, "show");
    assert_int_equal(tl, 6); /* "E" "show" NUL */
    evb_buf b = {0};
    evb_err err;
    assert_int_equal(evb_buf_append(&b, topic, tl, &err), EVB_OK);
    assert_int_equal(bm_live_header(&b, 41, &err), EVB_OK);
    char cat[EVB_MAX_CATEGORY_LEN + 1];
    const uint8_t *body;
    size_t blen;
    const char *why = NULL;
    assert_int_equal(evb_wire_live_topic(b.data, b.len, cat, &body, &blen, &why),
                     EVB_WIRE_LIVE_EVENT);
    assert_string_equal(cat, "show");
    uint64_t prev;
    size_t hlen;
    assert_int_equal(evb_wire_parse_live_header(body, blen, &prev, &hlen, &err), EVB_OK);
    assert_true(prev == 41 && hlen == blen);
    for (size_t n = 0; n < blen; n++)
        assert_int_not_equal(evb_wire_parse_live_header(body, n, &prev, &hlen, &err), EVB_OK);
    assert_int_equal(evb_wire_live_topic("H", 2, cat, &body, &blen, &why), EVB_WIRE_LIVE_HB);
    /* not topics of this protocol */
    static const struct {
        const char *t;
        size_t n;
    } bad[] = {{"", 0}, {"X", 2}, {"Eshow", 5}, {"E", 2}, {"Esh ow", 7}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(evb_wire_live_topic(bad[i].t, bad[i].n, cat, &body, &blen, &why),
                         EVB_WIRE_LIVE_BAD);
        assert_non_null(why);
    }
    assert_int_equal(evb_wire_topic_event(topic, ""), 0);
    evb_buf_free(&b);
}

/* Revision 2 (PROTOCOL.md, "Versions"): b's message (a fixarray) with one
 * more element, {"rev": [3, "x"]}, inserted at byte `at` (the end of its
 * array: for a page the events follow). */
static void s_append_field(evb_buf *b, size_t at)
{
    static const uint8_t extra[] = {0x81, 0xa3, 'r', 'e', 'v', 0x92, 0x03, 0xa1, 'x'};
    assert_true((b->data[0] & 0xf0) == 0x90 && (b->data[0] & 0x0f) < 15);
    evb_err err;
    evb_buf out = {0};
    assert_int_equal(evb_buf_append(&out, b->data, at, &err), EVB_OK);
    out.data[0]++;
    assert_int_equal(evb_buf_append(&out, extra, sizeof extra, &err), EVB_OK);
    assert_int_equal(evb_buf_append(&out, b->data + at, b->len - at, &err), EVB_OK);
    evb_buf_free(b);
    *b = out;
}

/* A message of a later revision, with a field appended, reads as the
 * fields this revision knows (a 3c467a6 build refused it: "want 6
 * elements"); every truncation is still refused. */
static void test_appended_fields_are_skipped(void **state)
{
    (void)state;
    evb_buf b = {0};
    evb_err err;
    evb_wire_reply r;
    size_t used;
    evb_id log = s_id(0x11);

    assert_int_equal(bm_hello_reply(&b, 7, &log, 42, "booking", &err), EVB_OK);
    s_append_field(&b, b.len);
    s_parses(&b, &r, &used);
    assert_true(r.kind == EVB_WIRE_HELLO && r.req_id == 7 && r.head == 42);
    assert_string_equal(r.service, "booking");

    b.len = 0;
    evb_wire_cat_head heads[1] = {{"show", 17}};
    assert_int_equal(bm_heartbeat(&b, &log, 30, "reservation", heads, 1, &err), EVB_OK);
    s_append_field(&b, b.len);
    s_parses(&b, &r, &used);
    assert_true(r.kind == EVB_WIRE_HB && r.head == 30 && r.nheads == 1 &&
                r.heads[0].head == 17);

    b.len = 0;
    assert_int_equal(bm_page(&b, 8, &log, 99, 55, false, 1, &err), EVB_OK);
    size_t hdr = b.len;
    static const uint8_t ev[] = {0x81, 0xa1, 'a', 0x01};
    assert_int_equal(evb_buf_append(&b, ev, sizeof ev, &err), EVB_OK);
    s_append_field(&b, hdr);
    s_parses(&b, &r, &used);
    assert_true(r.kind == EVB_WIRE_PAGE && r.position == 55 && r.count == 1);
    assert_int_equal(b.len - used, sizeof ev); /* the events start after the field */
    assert_memory_equal(b.data + used, ev, sizeof ev);

    b.len = 0;
    assert_int_equal(bm_hole(&b, 9, &log, 300, 120, 140, &err), EVB_OK);
    s_append_field(&b, b.len);
    s_parses(&b, &r, &used);
    assert_true(r.kind == EVB_WIRE_HOLE && r.hole_from == 120 && r.hole_to == 140);

    b.len = 0;
    assert_int_equal(bm_error(&b, 10, "EVB_EINVAL", "no", &err), EVB_OK);
    s_append_field(&b, b.len);
    s_parses(&b, &r, &used);
    assert_true(r.kind == EVB_WIRE_ERROR && r.req_id == 10);
    assert_string_equal(r.message, "no");

    bm_request rq;
    b.len = 0;
    assert_int_equal(evb_wire_hello(&b, 13, &err), EVB_OK);
    s_append_field(&b, b.len);
    assert_int_equal(bm_parse_request(b.data, b.len, &rq, &err), EVB_OK);
    assert_true(rq.kind == EVB_WIRE_HELLO && rq.req_id == 13);
    b.len = 0;
    assert_int_equal(evb_wire_fetch(&b, 14, "show", 5, 0, &err), EVB_OK);
    s_append_field(&b, b.len);
    assert_int_equal(bm_parse_request(b.data, b.len, &rq, &err), EVB_OK);
    assert_true(rq.kind == EVB_WIRE_FETCH && rq.req_id == 14 && rq.after == 5 &&
                rq.max_events == 0);
    for (size_t n = 0; n < b.len; n++)
        assert_int_not_equal(bm_parse_request(b.data, n, &rq, &err), EVB_OK);

    b.len = 0;
    assert_int_equal(bm_live_header(&b, 41, &err), EVB_OK);
    s_append_field(&b, b.len);
    uint64_t prev;
    size_t hlen;
    assert_int_equal(evb_wire_parse_live_header(b.data, b.len, &prev, &hlen, &err),
                     EVB_OK);
    assert_true(prev == 41 && hlen == b.len);
    /* An appended field that is not whole is refused. */
    b.data[0]++;
    assert_int_equal(evb_wire_parse_live_header(b.data, b.len, &prev, &hlen, &err),
                     EVB_EDECODE);
    evb_buf_free(&b);
}

/* Another protocol version is EVB_EVERSION, and the message names both
 * versions, for every kind of message. */
static void test_other_version_names_both(void **state)
{
    (void)state;
    evb_buf b = {0};
    evb_err err;
    evb_wire_reply r;
    size_t used;
    evb_id log = s_id(0x22);
    evb_wire_cat_head heads[1] = {{"show", 1}};
    for (int kind = 0; kind < 4; kind++) {
        b.len = 0;
        if (kind == 0)
            assert_int_equal(bm_hello_reply(&b, 1, &log, 2, "x", &err), EVB_OK);
        if (kind == 1)
            assert_int_equal(bm_heartbeat(&b, &log, 1, "x", heads, 1, &err), EVB_OK);
        if (kind == 2) assert_int_equal(bm_live_header(&b, 3, &err), EVB_OK);
        if (kind == 3) assert_int_equal(evb_wire_fetch(&b, 5, NULL, 0, 1, &err), EVB_OK);
        assert_int_equal(b.data[1], EVB_BUS_PROTOCOL);
        b.data[1] = 2; /* version 2 */
        int rc;
        bm_request rq;
        if (kind == 2) {
            uint64_t prev;
            rc = evb_wire_parse_live_header(b.data, b.len, &prev, &used, &err);
        } else if (kind == 3) {
            rc = bm_parse_request(b.data, b.len, &rq, &err);
            assert_true(rq.req_id == 5); /* the error can name the request */
        } else {
            rc = evb_wire_parse_reply(b.data, b.len, &r, &used, &err);
        }
        assert_int_equal(rc, EVB_EVERSION);
        if (strstr(err.msg, "version 2") == NULL || strstr(err.msg, "speaks 1") == NULL)
            fail_msg("kind %d: \"%s\" does not name both versions", kind, err.msg);
    }
    evb_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replies_round_trip),
        cmocka_unit_test(test_requests_round_trip),
        cmocka_unit_test(test_live_topics_and_header),
        cmocka_unit_test(test_appended_fields_are_skipped),
        cmocka_unit_test(test_other_version_names_both),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
