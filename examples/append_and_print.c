/*
 * append_and_print.c: the smallest useful evbus program. Copy it to start.
 *
 * It opens (or creates) an event log in the directory given on the command
 * line, appends a few events to two streams, shows what the store does with
 * an expected-version conflict and with a retried append (idempotent by
 * event id), then reads everything back and prints each event as one JSON
 * line.
 *
 *   usage: append_and_print DIR      (DIR: a new or empty directory)
 *
 * Build outside the tree against an installed evbus:
 *   cc append_and_print.c $(pkg-config --cflags --libs evbus msgpack)
 *
 * Every evbus call returns an evb_code (EVB_OK == 0) and fills the evb_err
 * passed last, whose msg says what went wrong in words.
 */
#include <evbus/evbus_store.h>

#include <msgpack.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print the error and leave. A real service would log and go on. */
static int s_fail(const char *what, const evb_err *err)
{
    fprintf(stderr, "example: %s: %s (%s)\n", what, err->msg, evb_strerror(err->code));
    return 1;
}

/* Payloads are msgpack maps. msgpack-c's packer writes into an sbuffer that
 * we own; the event only borrows sbuf->data during the append call. */
static void s_pack_booking(msgpack_sbuffer *sbuf, const char *customer, int seats)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sbuf);
    msgpack_packer_init(&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "customer", 8);
    msgpack_pack_str_with_body(&pk, customer, strlen(customer));
    msgpack_pack_str_with_body(&pk, "seats", 5);
    msgpack_pack_int(&pk, seats);
}

/* Print every event an iterator yields, one JSON object per line. The
 * iterator lends each event until the next call: copy out what you keep. */
static int s_print_all(evb_iter_t *it, const char *label)
{
    evb_err err = {0};
    evb_buf json = {0};
    const evb_event_t *ev;
    int n = 0;
    while (evb_iter_next(it, &ev, &err)) {
        json.len = 0; /* reuse the buffer */
        if (evb_event_to_json(ev, &json, &err) != EVB_OK) break;
        printf("%s %.*s\n", label, (int)json.len, json.data);
        n++;
    }
    evb_buf_free(&json);
    if (err.code != EVB_OK) return -s_fail("read", &err);
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    evb_err err = {0};

    /* 1. Open the log, creating it on first use. The service name is stored
     *    in the log and in every event. */
    evb_store_opts opts = {0};
    opts.dir = argv[1];
    opts.service = "example";
    opts.create = true;
    opts.sync = EVB_SYNC_EVERY; /* fsync each append before it returns */
    opts.index_mode = EVB_INDEX_THREAD;
    evb_store_t *st = evb_store_open(&opts, &err);
    if (st == NULL) return s_fail("open", &err);

    /* 2. Two events on stream "show-42" (category "show"). The stream must
     *    not exist yet: expected version EVB_EXPECT_NONE. Ids left zero are
     *    made by the store and written back into the events. */
    msgpack_sbuffer p1, p2, p3;
    s_pack_booking(&p1, "ann", 2);
    s_pack_booking(&p2, "bob", 3);
    s_pack_booking(&p3, "ann", 2);
    evb_event_t show[2] = {0}; /* zeroed: no id yet, no metadata */
    show[0].type = "SeatsHeld";
    show[0].payload = p1.data;
    show[0].payload_len = p1.size;
    show[1].type = "SeatsHeld";
    show[1].payload = p2.data;
    show[1].payload_len = p2.size;

    evb_append_result res;
    int rc = evb_store_append(st, "show-42", EVB_EXPECT_NONE, show, 2, &res, &err);
    if (rc != EVB_OK) return s_fail("append show-42", &err);
    printf("appended show-42: seq %" PRIu64 "..%" PRIu64 ", versions %" PRIu64
           "..%" PRIu64 "\n",
           res.first_seq, res.last_seq, res.first_version, res.last_version);

    /*    One event on "booking-7" (category "booking"), any version. */
    evb_event_t booking = {0};
    booking.type = "BookingRequested";
    booking.payload = p3.data;
    booking.payload_len = p3.size;
    rc = evb_store_append(st, "booking-7", EVB_EXPECT_ANY, &booking, 1, &res, &err);
    if (rc != EVB_OK) return s_fail("append booking-7", &err);
    printf("appended booking-7: seq %" PRIu64 ", version %" PRIu64 "\n", res.first_seq,
           res.first_version);

    /* 3. Optimistic concurrency: a writer that still believes show-42 is at
     *    version 1 gets EVB_ECONFLICT and nothing is written. It would reload
     *    the stream, decide again and retry. */
    evb_event_t late = {0};
    late.type = "SeatsHeld";
    late.payload = p1.data;
    late.payload_len = p1.size;
    rc = evb_store_append(st, "show-42", 1, &late, 1, &res, &err);
    if (rc != EVB_ECONFLICT) {
        fprintf(stderr, "example: expected a conflict, got %s\n", evb_strerror(rc));
        return 1;
    }
    printf("conflict: %s\n", err.msg);
    evb_err_clear(&err);

    /* 4. Idempotent retry: a client that timed out sends the same events
     *    again (same ids). Nothing is written twice; the store answers with
     *    the original positions and duplicate = true. */
    evb_event_t retry[2] = {0};
    for (int i = 0; i < 2; i++) {
        retry[i].id = show[i].id; /* the ids the first append wrote back */
        retry[i].type = show[i].type;
        retry[i].payload = show[i].payload;
        retry[i].payload_len = show[i].payload_len;
    }
    rc = evb_store_append(st, "show-42", EVB_EXPECT_NONE, retry, 2, &res, &err);
    if (rc != EVB_OK) return s_fail("retry show-42", &err);
    printf("retry: duplicate=%s seq %" PRIu64 "..%" PRIu64 "\n",
           res.duplicate ? "true" : "false", res.first_seq, res.last_seq);
    if (!res.duplicate) return 1;

    /* 5. Read back: the whole log in order, then one stream. */
    evb_iter_t *it = evb_store_read_range(st, 1, 0, NULL, &err);
    if (it == NULL) return s_fail("read_range", &err);
    int n_all = s_print_all(it, "log");
    evb_iter_destroy(&it);

    it = evb_store_read_stream(st, "show-42", 1, 0, NULL, &err);
    if (it == NULL) return s_fail("read_stream", &err);
    int n_show = s_print_all(it, "show-42");
    evb_iter_destroy(&it);

    printf("head %" PRIu64 ", %d events in the log, %d in show-42\n", evb_store_head(st),
           n_all, n_show);

    msgpack_sbuffer_destroy(&p1);
    msgpack_sbuffer_destroy(&p2);
    msgpack_sbuffer_destroy(&p3);
    evb_store_destroy(&st); /* st is NULL now */
    return (n_all == 3 && n_show == 2) ? 0 : 1;
}
