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
 * Timers are re-derived from the log: at start the pending bookings and
 * their deadlines are read back from the events, then a 100 ms tick expires
 * those whose deadline passed. Read model (view store):
 * "cust/CUSTOMER/BOOKING" -> {booking, customer, show, seats, status}.
 */
#include <evbus/evbus_svc.h>

#include "svc_util.h"

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

/* ---- pending deadlines (a superset: the tick checks the aggregate) ---- */

typedef struct pending {
    char id[ID_MAX + 1];
    int64_t expires_at_us;
} pending;

#define EXPIRE_GRACE_US (10 * 1000000) /* see t_expire */

typedef struct app {
    int64_t started_us;
    char hold_timeout[32];
    int64_t hold_timeout_us;
    pending *p;
    size_t np, cap;
} app;

static void s_pending_add(app *a, const char *id, int64_t at)
{
    if (a->np == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        pending *t = realloc(a->p, cap * sizeof *t);
        if (t == NULL) {
            evb_log(EVB_LOG_ERROR, "out of memory tracking the deadline of %s", id);
            return;
        }
        a->p = t;
        a->cap = cap;
    }
    snprintf(a->p[a->np].id, sizeof a->p[a->np].id, "%s", id);
    a->p[a->np++].expires_at_us = at;
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
    int rc = p.data ? evb_svc_emit(c, &s_booking, stream, version, &ev, 1, err)
                    : evb_err_set(err, EVB_ENOMEM, "out of memory");
    evb_buf_free(&p);
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
    s_pending_add(ap, id, at);
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
    size_t keep = 0;
    int rc = EVB_OK;
    for (size_t i = 0; i < ap->np; i++) {
        pending *p = &ap->p[i];
        bool drop = false;
        if (rc == EVB_OK && p->expires_at_us <= now) {
            booking *b;
            uint64_t v;
            rc = s_load(c, p->id, &b, &v, err);
            if (rc != EVB_OK && rc != EVB_ENOMEM && rc != EVB_EIO) {
                /* One booking that cannot load must not block the others'
                 * expiry: say so and stop timing it. */
                evb_log(EVB_LOG_ERROR, "booking %s: cannot expire it: %s", p->id, err->msg);
                rc = EVB_OK;
                drop = true;
            } else if (rc == EVB_OK && b->status == B_REQUESTED) {
                rc = s_emit(c, p->id, v, "BookingExpired", b, "no answer before the deadline",
                            0, err);
                if (rc == EVB_OK)
                    evb_log(EVB_LOG_INFO, "booking %s expired (no answer from reservation)",
                            p->id);
            } else if (rc == EVB_OK) {
                drop = true; /* answered, cancelled or expired: nothing to time */
            }
        }
        if (!drop) ap->p[keep++] = *p;
    }
    ap->np = keep;
    return rc;
}

/* At start: the bookings still waiting for an answer, from the log. */
static int s_rebuild_pending(evb_svc_t *svc, app *ap, evb_err *err)
{
    evb_iter_t *it = evb_store_read_category(evb_svc_store(svc), "booking", 0, NULL, err);
    if (it == NULL) return err->code;
    const evb_event_t *ev;
    size_t n = 0;
    while (evb_iter_next(it, &ev, err)) {
        if (strcmp(ev->type, "BookingRequested") != 0) continue;
        int64_t at = 0;
        if (evb_map_int(ev->payload, ev->payload_len, "expires_at_us", &at, NULL) == EVB_OK) {
            s_pending_add(ap, ev->stream + 8, at);
            n++;
        }
    }
    evb_iter_destroy(&it);
    if (err->code != EVB_OK) return err->code;
    evb_log(EVB_LOG_INFO, "%zu booking deadlines re-read from the log", n);
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

/* customer {customer?}: that customer's bookings, or everyone's. */
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
    return su_reply_scan(views, pfx, (size_t)pl, "bookings", reply, err);
}

int main(int argc, char **argv)
{
    static app ap = {.hold_timeout = "10000"};
    static const evb_svc_flag flags[] = {
        {"hold-timeout", "MS", "a booking not answered by then expires", ap.hold_timeout,
         sizeof ap.hold_timeout},
    };
    static const evb_svc_def def = {
        .name = "booking",
        .summary = "Bookings as sagas: book -> the reservation service holds seats ->\n"
                   "confirmed or rejected; cancel and hold expiry release the seats.\n"
                   "Commands: book {show, seats, customer, booking?}, cancel {booking}.\n"
                   "Queries: booking {booking}, customer {customer?}, status.",
        .flags = flags,
        .nflags = 1,
        .views = true,
    };
    int code;
    evb_svc_t *svc = evb_svc_new(&def, argc, argv, &code);
    if (svc == NULL) return code;
    char *end;
    long long ms = strtoll(ap.hold_timeout, &end, 10);
    if (*end != '\0' || ms < 1 || ms > 86400000) {
        fprintf(stderr, "evbus-booking: --hold-timeout: '%s' is not 1..86400000 ms\n",
                ap.hold_timeout);
        evb_svc_destroy(&svc);
        return 2;
    }
    ap.hold_timeout_us = ms * 1000;
    ap.started_us = evb_now_us();
    evb_err err = {0};
    static const char *const show_cats[] = {"show"};
    static const char *const booking_cats[] = {"booking"};
    int rc = s_rebuild_pending(svc, &ap, &err);
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
    free(ap.p);
    return code;
}
