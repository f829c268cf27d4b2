/*
 * evbus-booking: bookings as sagas by choreography.
 *
 * Aggregate: Booking, stream "booking-ID": requested -> confirmed |
 * rejected | expired; confirmed or requested -> cancelled.
 *   book {show, seats, customer, booking?}  -> BookingRequested (with the
 *        hold deadline, expires_at_us, a wall-clock time)
 *   the reservation service (which follows this log) answers in its own log:
 *   SeatsHeld     -> BookingConfirmed
 *   SeatsRejected -> BookingRejected
 *   cancel {booking}          -> BookingCancelled (the reservation service
 *                                releases the seats)
 *   no answer by the deadline -> BookingExpired (it releases them too, if
 *                                it held them after all)
 * Deadlines are an index in the service's own store, written in the same
 * transaction as the events: "dl/" deadline (8 bytes, big-endian us) ID for
 * each booking still waiting for an answer, deleted with the event that
 * ends the wait. A 100 ms tick reads the index from its start (the earliest
 * deadline) and stops at the first one in the future, so neither memory nor
 * the tick nor a restart grows with the number of bookings ever made. A log
 * written before the index existed gets it once, at start, from the events
 * (the "dl.v1" key says it is there). Read model (view store):
 * "cust/CUSTOMER/BOOKING" -> {booking, customer, show, seats, status}.
 */
#include <evbus/evbus_svc.h>

#include "svc_util.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX 64

typedef enum bstatus { B_NONE = 0, B_REQUESTED, B_CONFIRMED, B_REJECTED, B_CANCELLED, B_EXPIRED } bstatus;
static const char *const s_status_names[] = {"none",      "requested", "confirmed",
                                             "rejected",  "cancelled", "expired"};

typedef struct booking {
    bstatus status;
    char show[ID_MAX + 1], customer[ID_MAX + 1];
    uint64_t seats;
    int64_t expires_at_us;
} booking;

static void booking_init(void *st) { memset(st, 0, sizeof(booking)); }

static int booking_apply(void *st, const evb_event_t *ev, evb_err *err)
{
    booking *b = st;
    if (strcmp(ev->type, "BookingRequested") == 0) {
        const void *p = ev->payload;
        size_t pl = ev->payload_len;
        b->status = B_REQUESTED;
        int rc = evb_map_str(p, pl, "show", b->show, sizeof b->show, err);
        if (rc == EVB_OK) rc = evb_map_str(p, pl, "customer", b->customer, sizeof b->customer, err);
        if (rc == EVB_OK) rc = evb_map_uint(p, pl, "seats", &b->seats, err);
        if (rc == EVB_OK) rc = evb_map_int(p, pl, "expires_at_us", &b->expires_at_us, err);
        return rc;
    }
    if (strcmp(ev->type, "BookingConfirmed") == 0) b->status = B_CONFIRMED;
    else if (strcmp(ev->type, "BookingRejected") == 0) b->status = B_REJECTED;
    else if (strcmp(ev->type, "BookingCancelled") == 0) b->status = B_CANCELLED;
    else if (strcmp(ev->type, "BookingExpired") == 0) b->status = B_EXPIRED;
    return EVB_OK;
}

static const evb_agg_def s_booking = {
    .category = "booking",
    .state_size = sizeof(booking),
    .init = booking_init,
    .apply = booking_apply,
};

/* ---- the deadline index ---- */

#define DL_PFX "dl/"
#define DL_PFX_LEN 3
#define DL_MARK "dl.v1" /* the index covers the whole log */
#define DL_KEY_MAX (DL_PFX_LEN + 8 + ID_MAX)
#define EXPIRE_GRACE_US (10 * 1000000) /* see t_expire */
#define EXPIRE_BATCH 512               /* bookings expired per tick at most */

typedef struct app {
    int64_t started_us;
    char hold_timeout[32];
    int64_t hold_timeout_us;
} app;

static size_t s_dl_key(char k[DL_KEY_MAX], int64_t at, const char *id)
{
    memcpy(k, DL_PFX, DL_PFX_LEN);
    for (int i = 0; i < 8; i++)
        k[DL_PFX_LEN + i] = (char)((uint64_t)at >> (56 - 8 * i));
    size_t n = strlen(id);
    memcpy(k + DL_PFX_LEN + 8, id, n);
    return DL_PFX_LEN + 8 + n;
}

/* The deadline and id of an index key; false for a malformed one. */
static bool s_dl_parse(const void *key, size_t kl, int64_t *at, char id[ID_MAX + 1])
{
    const unsigned char *k = key;
    if (kl <= DL_PFX_LEN + 8 || kl > DL_KEY_MAX) return false;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | k[DL_PFX_LEN + i];
    *at = (int64_t)v;
    memcpy(id, k + DL_PFX_LEN + 8, kl - DL_PFX_LEN - 8);
    id[kl - DL_PFX_LEN - 8] = '\0';
    return true;
}

/* ---- deciding ---- */

static int s_emit(evb_svc_ctx *c, const char *id, uint64_t version, const char *type,
                  const booking *b, const char *reason, int64_t expires_at_us, evb_err *err)
{
    char stream[ID_MAX + 12];
    snprintf(stream, sizeof stream, "booking-%s", id);
    evb_buf p = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &p, evb_svc_pack_write);
    msgpack_pack_map(&pk, 4 + (reason != NULL) + (expires_at_us != 0));
    su_kv_str(&pk, "booking", id);
    su_kv_str(&pk, "show", b->show);
    su_kv_str(&pk, "customer", b->customer);
    su_kv_uint(&pk, "seats", b->seats);
    if (reason) su_kv_str(&pk, "reason", reason);
    if (expires_at_us) su_kv_int(&pk, "expires_at_us", expires_at_us);
    evb_event_t ev;
    su_event(&ev, type, &p);
    /* The deadline index changes in the same transaction: a new request
     * enters it, any event that ends the wait leaves it. */
    bool was_open = b->status == B_REQUESTED;
    int64_t old_at = b->expires_at_us;
    int rc = p.data ? evb_svc_emit(c, &s_booking, stream, version, &ev, 1, err)
                    : evb_err_set(err, EVB_ENOMEM, "out of memory");
    evb_buf_free(&p);
    char k[DL_KEY_MAX];
    if (rc == EVB_OK && expires_at_us != 0)
        rc = evb_txn_put(evb_svc_txn(c), k, s_dl_key(k, expires_at_us, id), "", 0, err);
    else if (rc == EVB_OK && was_open)
        rc = evb_txn_delete(evb_svc_txn(c), k, s_dl_key(k, old_at, id), err);
    return rc;
}

static int s_load(evb_svc_ctx *c, const char *id, booking **b, uint64_t *v, evb_err *err)
{
    char stream[ID_MAX + 12];
    snprintf(stream, sizeof stream, "booking-%s", id);
    return evb_svc_load(c, &s_booking, stream, (void **)b, v, err);
}

/* The booking named by the request's "booking" field; EVB_ENOTFOUND when
 * it was never requested. */
static int s_load_arg(evb_svc_ctx *c, const void *a, size_t al, char id[ID_MAX + 1],
                      booking **b, uint64_t *v, evb_err *err)
{
    int rc = su_id(a, al, "booking", "booking", id, ID_MAX + 1, err);
    if (rc == EVB_OK) rc = s_load(c, id, b, v, err);
    if (rc == EVB_OK && (*b)->status == B_NONE)
        rc = evb_err_set(err, EVB_ENOTFOUND, "booking %s does not exist", id);
    return rc;
}

static void s_reply(evb_buf *reply, const char *id, const booking *b)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, reply, evb_svc_pack_write);
    reply->len = 0;
    msgpack_pack_map(&pk, 6);
    su_kv_str(&pk, "booking", id);
    su_kv_str(&pk, "status", s_status_names[b->status]);
    su_kv_str(&pk, "show", b->show);
    su_kv_str(&pk, "customer", b->customer);
    su_kv_uint(&pk, "seats", b->seats);
    su_kv_int(&pk, "expires_at_us", b->expires_at_us);
}

static int c_book(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                  evb_err *err)
{
    app *ap = ctx;
    booking req = {0};
    char id[ID_MAX + 1];
    int rc = su_id(a, al, "show", "show", req.show, sizeof req.show, err);
    /* The customer names a key prefix of the read model: an id, no '/'. */
    if (rc == EVB_OK)
        rc = su_id(a, al, "customer", "customer", req.customer, sizeof req.customer, err);
    if (rc == EVB_OK) rc = su_uint(a, al, "seats", 1, 100, &req.seats, err);
    if (rc != EVB_OK) return rc;
    evb_err e = {0};
    const void *val;
    size_t vl;
    if (evb_map_find(a, al, "booking", &val, &vl, &e) == EVB_OK) {
        if ((rc = su_id(a, al, "booking", "booking", id, sizeof id, err)) != EVB_OK) return rc;
    } else {
        snprintf(id, sizeof id, "%s", evb_svc_cmd_id(c)); /* the command's id */
        char stream[ID_MAX + 12];
        snprintf(stream, sizeof stream, "booking-%s", id);
        if (evb_check_stream(stream, NULL) != EVB_OK)
            return evb_err_set(err, EVB_EINVAL,
                               "booking: missing, and cmd_id '%s' cannot name one", id);
    }
    booking *b;
    uint64_t v;
    if ((rc = s_load(c, id, &b, &v, err)) != EVB_OK) return rc;
    if (b->status != B_NONE)
        return evb_err_set(err, EVB_EREJECTED, "booking %s exists (%s)", id,
                           s_status_names[b->status]);
    int64_t at = evb_now_us() + ap->hold_timeout_us;
    if ((rc = s_emit(c, id, v, "BookingRequested", &req, NULL, at, err)) != EVB_OK) return rc;
    s_reply(reply, id, b);
    return EVB_OK;
}

static int c_cancel(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                    evb_err *err)
{
    (void)ctx;
    char id[ID_MAX + 1];
    booking *b;
    uint64_t v;
    int rc = s_load_arg(c, a, al, id, &b, &v, err);
    if (rc != EVB_OK) return rc;
    if (b->status != B_REQUESTED && b->status != B_CONFIRMED)
        return evb_err_set(err, EVB_EREJECTED, "booking %s is %s: nothing to cancel", id,
                           s_status_names[b->status]);
    const char *was = s_status_names[b->status];
    if ((rc = s_emit(c, id, v, "BookingCancelled", b, was, 0, err)) != EVB_OK) return rc;
    s_reply(reply, id, b);
    return EVB_OK;
}

static int q_booking(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                     evb_err *err)
{
    (void)ctx;
    char id[ID_MAX + 1];
    booking *b;
    uint64_t v;
    int rc = s_load_arg(c, a, al, id, &b, &v, err);
    if (rc == EVB_OK) s_reply(reply, id, b);
    return rc;
}

/* ---- the saga's other half: answers from the reservation log ---- */

static int e_seats(evb_svc_ctx *c, const evb_event_t *ev, void *ctx, evb_err *err)
{
    (void)ctx;
    bool held = strcmp(ev->type, "SeatsHeld") == 0;
    if (!held && strcmp(ev->type, "SeatsRejected") != 0) return EVB_OK;
    char id[ID_MAX + 1];
    evb_err e = {0};
    if (su_id(ev->payload, ev->payload_len, "booking", "booking", id, sizeof id, &e) != EVB_OK)
        return EVB_OK; /* not one of ours */
    booking *b;
    uint64_t v;
    int rc = s_load(c, id, &b, &v, err);
    if (rc != EVB_OK) return rc;
    if (b->status != B_REQUESTED) return EVB_OK; /* box office, or cancelled/expired */
    if (held) return s_emit(c, id, v, "BookingConfirmed", b, NULL, 0, err);
    char reason[200] = "no seats";
    evb_map_str(ev->payload, ev->payload_len, "reason", reason, sizeof reason, NULL);
    return s_emit(c, id, v, "BookingRejected", b, reason, 0, err);
}

/* ---- timers ---- */

typedef struct due_acc {
    int64_t now;
    size_t n;
    struct {
        int64_t at;
        char id[ID_MAX + 1];
    } due[EXPIRE_BATCH];
    size_t bad;
} due_acc;

/* The index in deadline order: gather those passed, stop at the first to come. */
static int s_due(const void *key, size_t kl, const void *val, size_t vl, void *ctx)
{
    (void)val;
    (void)vl;
    due_acc *d = ctx;
    int64_t at;
    char id[ID_MAX + 1];
    if (!s_dl_parse(key, kl, &at, id)) {
        d->bad++;
        return 0;
    }
    if (at > d->now || d->n == EXPIRE_BATCH) return SU_PAGE_FULL; /* stop here */
    d->due[d->n].at = at;
    memcpy(d->due[d->n].id, id, sizeof id);
    d->n++;
    return 0;
}

static int t_expire(evb_svc_ctx *c, void *ctx, evb_err *err)
{
    app *ap = ctx;
    int64_t now = evb_now_us();
    /* After a start, the reservation log may already hold the answers of
     * bookings whose deadline passed while we were down: wait until our
     * feed has caught up, or for EXPIRE_GRACE_US at most (the reservation
     * service may be down too, and then expiring is exactly right). */
    if (!evb_svc_consumers_live(evb_svc_of(c)) && now - ap->started_us < EXPIRE_GRACE_US)
        return EVB_OK;
    static due_acc d; /* the loop's thread only; too big for its stack */
    d.now = now;
    d.n = d.bad = 0;
    evb_store_t *st = evb_svc_store(evb_svc_of(c));
    int rc = evb_store_scan(st, DL_PFX, DL_PFX_LEN, s_due, &d, err);
    if (rc == SU_PAGE_FULL) rc = EVB_OK;
    if (rc != EVB_OK) return rc;
    for (size_t i = 0; rc == EVB_OK && i < d.n; i++) {
        const char *id = d.due[i].id;
        char k[DL_KEY_MAX];
        booking *b;
        uint64_t v;
        rc = s_load(c, id, &b, &v, err);
        if (rc != EVB_OK && rc != EVB_ENOMEM && rc != EVB_EIO) {
            /* One booking that cannot load must not block the others'
             * expiry: say so and stop timing it. */
            evb_log(EVB_LOG_ERROR, "booking %s: cannot expire it: %s", id, err->msg);
            rc = evb_txn_delete(evb_svc_txn(c), k, s_dl_key(k, d.due[i].at, id), err);
        } else if (rc == EVB_OK && b->status == B_REQUESTED) {
            rc = s_emit(c, id, v, "BookingExpired", b, "no answer before the deadline", 0,
                        err);
            if (rc == EVB_OK)
                evb_log(EVB_LOG_INFO, "booking %s expired (no answer from reservation)", id);
        } else if (rc == EVB_OK) { /* ended already: nothing to time */
            rc = evb_txn_delete(evb_svc_txn(c), k, s_dl_key(k, d.due[i].at, id), err);
        }
    }
    if (d.bad > 0)
        evb_log(EVB_LOG_ERROR, "%zu malformed keys in the deadline index (\"%s\")", d.bad,
                DL_PFX);
    return rc;
}

typedef struct open_acc {
    zhashx_t *open; /* booking id -> deadline (int64_t *) */
    size_t requests;
    int rc;
} open_acc;

/* Once per log: the deadline index from the events, for a log written
 * before it existed (and the marker for a new one). Only the bookings still
 * waiting at the end go in; the walk keeps those waiting so far. */
static int s_dl_build(evb_svc_t *svc, evb_err *err)
{
    evb_store_t *st = evb_svc_store(svc);
    evb_buf mark = {0};
    int rc = evb_store_get(st, DL_MARK, strlen(DL_MARK), &mark, err);
    evb_buf_free(&mark);
    if (rc == EVB_OK) return EVB_OK;
    if (rc != EVB_ENOTFOUND) return rc;
    evb_err_clear(err);
    zhashx_t *open = zhashx_new();
    if (open == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
    zhashx_set_destructor(open, (zhashx_destructor_fn *)zstr_free);
    size_t requests = 0;
    evb_iter_t *it = evb_store_read_category(st, "booking", 0, NULL, err);
    const evb_event_t *ev;
    while (it != NULL && evb_iter_next(it, &ev, err)) {
        const char *id = ev->stream + 8; /* "booking-" */
        if (strcmp(ev->type, "BookingRequested") == 0) {
            int64_t at = 0;
            if (evb_map_int(ev->payload, ev->payload_len, "expires_at_us", &at, NULL) != EVB_OK)
                continue;
            char *v = malloc(sizeof at);
            if (v == NULL) break;
            memcpy(v, &at, sizeof at);
            zhashx_update(open, id, v);
            requests++;
        } else {
            zhashx_delete(open, id); /* confirmed, rejected, cancelled or expired */
        }
    }
    evb_iter_destroy(&it);
    rc = err->code;
    evb_txn_t *tx = rc == EVB_OK ? evb_txn_begin(st, err) : NULL;
    if (rc == EVB_OK && tx == NULL) rc = err->code ? err->code : EVB_EBUSY;
    for (char *v = tx ? zhashx_first(open) : NULL; rc == EVB_OK && v != NULL;
         v = zhashx_next(open)) {
        int64_t at;
        memcpy(&at, v, sizeof at);
        char k[DL_KEY_MAX];
        rc = evb_txn_put(tx, k, s_dl_key(k, at, zhashx_cursor(open)), "", 0, err);
    }
    if (rc == EVB_OK) rc = evb_txn_put(tx, DL_MARK, strlen(DL_MARK), "", 0, err);
    if (rc == EVB_OK) rc = evb_txn_commit(&tx, err);
    evb_txn_destroy(&tx);
    if (rc == EVB_OK)
        evb_log(EVB_LOG_INFO, "deadline index built from the log: %zu of %zu bookings wait "
                "for an answer", zhashx_size(open), requests);
    zhashx_destroy(&open);
    return rc;
}

static int s_count(const void *key, size_t kl, const void *val, size_t vl, void *ctx)
{
    (void)key;
    (void)kl;
    (void)val;
    (void)vl;
    ++*(size_t *)ctx;
    return 0;
}

/* At start: the index is there (made once if needed); say how many wait. */
static int s_deadlines(evb_svc_t *svc, evb_err *err)
{
    int64_t t0 = evb_now_us();
    int rc = s_dl_build(svc, err);
    size_t n = 0;
    if (rc == EVB_OK) rc = evb_store_scan(evb_svc_store(svc), DL_PFX, DL_PFX_LEN, s_count, &n, err);
    if (rc != EVB_OK) return rc;
    evb_log(EVB_LOG_INFO, "%zu bookings wait for an answer (deadline index read in %.1f ms)", n,
            (double)(evb_now_us() - t0) / 1000.0);
    return EVB_OK;
}

/* ---- the read model: bookings per customer ---- */

static int p_views(evb_svc_ctx *c, const evb_event_t *ev, void *ctx, evb_err *err)
{
    (void)ctx;
    booking b = {0};
    char id[ID_MAX + 1];
    const void *p = ev->payload;
    size_t pl = ev->payload_len;
    int rc = evb_map_str(p, pl, "booking", id, sizeof id, err);
    if (rc == EVB_OK) rc = evb_map_str(p, pl, "customer", b.customer, sizeof b.customer, err);
    if (rc == EVB_OK) rc = evb_map_str(p, pl, "show", b.show, sizeof b.show, err);
    if (rc == EVB_OK) rc = evb_map_uint(p, pl, "seats", &b.seats, err);
    if (rc != EVB_OK) return rc;
    booking_apply(&b, ev, NULL);
    evb_buf v = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &v, evb_svc_pack_write);
    msgpack_pack_map(&pk, 6);
    su_kv_str(&pk, "booking", id);
    su_kv_str(&pk, "customer", b.customer);
    su_kv_str(&pk, "show", b.show);
    su_kv_uint(&pk, "seats", b.seats);
    su_kv_str(&pk, "status", s_status_names[b.status]);
    su_kv_uint(&pk, "version", ev->version);
    char key[2 * ID_MAX + 8];
    int kl = snprintf(key, sizeof key, "cust/%s/%s", b.customer, id);
    rc = evb_txn_put(evb_svc_txn(c), key, (size_t)kl, v.data, v.len, err);
    evb_buf_free(&v);
    return rc;
}

/* customer {customer?, limit?, after?}: that customer's bookings, or
 * everyone's, a page at a time (svc_util.h, su_reply_scan). */
static int q_customer(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                      evb_err *err)
{
    (void)ctx;
    evb_store_t *views = evb_svc_view_store(evb_svc_of(c));
    char cust[ID_MAX + 1], pfx[ID_MAX + 8];
    evb_err e = {0};
    int rc = evb_map_str(a, al, "customer", cust, sizeof cust, &e);
    if (rc != EVB_OK && rc != EVB_ENOTFOUND)
        return evb_err_set(err, EVB_EINVAL, "customer: must be a string of at most %d bytes",
                           ID_MAX);
    int pl = rc == EVB_OK ? snprintf(pfx, sizeof pfx, "cust/%s/", cust)
                          : snprintf(pfx, sizeof pfx, "cust/");
    return su_reply_scan(views, pfx, (size_t)pl, "bookings", a, al, reply, err);
}

int main(int argc, char **argv)
{
    static app ap = {.hold_timeout = "10s"};
    static const evb_svc_flag flags[] = {
        {"hold-timeout", "DURATION", "a booking not answered by then expires", ap.hold_timeout,
         sizeof ap.hold_timeout},
    };
    static const evb_svc_def def = {
        .name = "booking",
        .summary = "Bookings as sagas: book -> the reservation service holds seats ->\n"
                   "confirmed or rejected; cancel and hold expiry release the seats.\n"
                   "Commands: book {show, seats, customer, booking?}, cancel {booking}.\n"
                   "Queries: booking {booking}, customer {customer?, limit?, after?} (a page:\n"
                   "{bookings, next}: ask again with after=next while next is not nil), status.",
        .flags = flags,
        .nflags = 1,
        .views = true,
    };
    int code;
    evb_svc_t *svc = evb_svc_new(&def, argc, argv, &code);
    if (svc == NULL) return code;
    uint64_t ms = 0;
    evb_err derr;
    if (evb_duration_is_bare(ap.hold_timeout)) {
        fprintf(stderr, "evbus-booking: --hold-timeout %s: give a unit, e.g. %sms (a bare "
                "number used to mean milliseconds)\n", ap.hold_timeout, ap.hold_timeout);
        evb_svc_destroy(&svc);
        return 2;
    }
    bool parsed = evb_duration_parse(ap.hold_timeout, &ms, &derr) == EVB_OK;
    if (!parsed || ms < 1 || ms > 86400000) {
        fprintf(stderr, "evbus-booking: --hold-timeout: %s\n",
                parsed ? "want 1ms..1d" : derr.msg);
        evb_svc_destroy(&svc);
        return 2;
    }
    ap.hold_timeout_us = (int64_t)ms * 1000;
    ap.started_us = evb_now_us();
    evb_err err = {0};
    static const char *const show_cats[] = {"show"};
    static const char *const booking_cats[] = {"booking"};
    int rc = s_deadlines(svc, &err);
    if (rc == EVB_OK) rc = evb_svc_command(svc, "book", c_book, &ap, &err);
    if (rc == EVB_OK) rc = evb_svc_command(svc, "cancel", c_cancel, &ap, &err);
    if (rc == EVB_OK) rc = evb_svc_query(svc, "booking", q_booking, NULL, &err);
    if (rc == EVB_OK) rc = evb_svc_query(svc, "customer", q_customer, NULL, &err);
    if (rc == EVB_OK) rc = evb_svc_consume(svc, show_cats, 1, e_seats, NULL, &err);
    if (rc == EVB_OK) rc = evb_svc_project(svc, booking_cats, 1, p_views, NULL, &err);
    if (rc == EVB_OK) rc = evb_svc_every(svc, 100, t_expire, &ap, &err);
    if (rc != EVB_OK) {
        evb_log(EVB_LOG_ERROR, "%s", err.msg);
        evb_svc_destroy(&svc);
        return 4;
    }
    code = evb_svc_run(svc);
    evb_svc_destroy(&svc);
    return code;
}
