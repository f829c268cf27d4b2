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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replies_round_trip),
        cmocka_unit_test(test_requests_round_trip),
        cmocka_unit_test(test_live_topics_and_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
