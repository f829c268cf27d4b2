/*
 * evbus-reservation: seat availability per show.
 *
 * Aggregate: SeatAvailability, stream "show-ID": capacity, seats held,
 * seats reserved, and the hold of each booking that has seats (held or
 * confirmed). A hold that ends (released) or never was (rejected) leaves the
 * aggregate: deciding needs only what holds seats, and so the state, its
 * snapshots and the memory of a show stay within its capacity however many
 * bookings it has seen (a booking with no hold has nothing to release or
 * confirm, as before). Every decision is made on the aggregate in the one thread that
 * owns the log, and every event carries the totals it leaves behind, so
 * held + reserved <= capacity holds after every event and a booking is
 * released at most once.
 *
 * Commands (box office): create_show {show, capacity}; hold {show, seats,
 * booking?}; confirm {show, booking}; release {show, booking}.
 * Queries: show {show} (the aggregate), holds {show} (those holding seats),
 * availability {show?, limit?, after?}
 * (the read model).
 * Reacts to the booking service's log (category "booking"):
 * BookingRequested -> SeatsHeld | SeatsRejected; BookingConfirmed ->
 * SeatsConfirmed; BookingCancelled, BookingExpired -> SeatsReleased.
 * Read model (view store): "show/ID" -> {capacity, held, reserved,
 * available, version}.
 */
#include <evbus/evbus_svc.h>

#include "svc_util.h"

#include <assert.h>
#include <czmq.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX 64

enum { H_HELD = 1, H_CONFIRMED, H_RELEASED, H_REJECTED };
static const char *const s_hold_names[] = {"", "held", "confirmed", "released", "rejected"};

typedef struct hold {
    char booking[ID_MAX + 1];
    uint32_t seats;
    uint8_t state;
} hold;

typedef struct show {
    bool exists;
    uint64_t capacity, held, reserved;
    hold *holds;
    size_t n, cap;
    zhashx_t *ix; /* booking -> index in holds + 1; NULL until the first hold */
} show;

static void show_init(void *st) { memset(st, 0, sizeof(show)); }

static void show_release(void *st)
{
    show *s = st;
    free(s->holds);
    zhashx_destroy(&s->ix);
}

/* What a show owns beyond its struct: the holds' array and their index
 * (zhashx: about 48 bytes an item and its copied key, taken as 24 bytes). An
 * estimate in O(1): it is asked after every transaction that changed it. */
static size_t show_heap_size(const void *st)
{
    const show *s = st;
    return s->cap * sizeof(hold) + (s->ix != NULL ? s->n * (48 + 24) : 0);
}

static hold *show_hold(const show *s, const char *booking)
{
    void *v = s->ix ? zhashx_lookup(s->ix, booking) : NULL;
    return v ? &s->holds[(uintptr_t)v - 1] : NULL;
}

/* Drop booking's hold (swap-remove: the last one takes its slot). */
static void show_drop_hold(show *s, const char *booking)
{
    void *v = s->ix ? zhashx_lookup(s->ix, booking) : NULL;
    if (v == NULL) return;
    size_t i = (uintptr_t)v - 1;
    zhashx_delete(s->ix, booking);
    if (i != s->n - 1) {
        s->holds[i] = s->holds[s->n - 1];
        zhashx_update(s->ix, s->holds[i].booking, (void *)(uintptr_t)(i + 1));
    }
    s->n--;
}

static int show_set_hold(show *s, const char *booking, uint32_t seats, uint8_t state,
                         evb_err *err)
{
    hold *h = show_hold(s, booking);
    if (h == NULL) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 16;
            hold *t = realloc(s->holds, cap * sizeof *t);
            if (t == NULL) return evb_err_set(err, EVB_ENOMEM, "out of memory");
            s->holds = t;
            s->cap = cap;
        }
        h = &s->holds[s->n];
        snprintf(h->booking, sizeof h->booking, "%s", booking);
        /* CZMQ aborts when out of memory (as the runtime's zloop does);
         * zhashx copies the key; the value is the index + 1 (NULL: none). */
        if (s->ix == NULL) s->ix = zhashx_new();
        int dup = zhashx_insert(s->ix, booking, (void *)(uintptr_t)(s->n + 1));
        assert(dup == 0); /* show_hold found none */
        (void)dup;
        s->n++;
    }
    h->seats = seats;
    h->state = state;
    return EVB_OK;
}

/* Fold one event into the state. */
static int show_apply(void *st, const evb_event_t *ev, evb_err *err)
{
    show *s = st;
    const void *p = ev->payload;
    size_t pl = ev->payload_len;
    if (strcmp(ev->type, "ShowCreated") == 0) {
        s->exists = true;
        return evb_map_uint(p, pl, "capacity", &s->capacity, err);
    }
    char booking[ID_MAX + 1];
    uint64_t seats = 0;
    int rc = evb_map_str(p, pl, "booking", booking, sizeof booking, err);
    if (rc == EVB_OK) rc = evb_map_uint(p, pl, "seats", &seats, err);
    if (rc != EVB_OK) return rc;
    hold *h = show_hold(s, booking);
    if (strcmp(ev->type, "SeatsHeld") == 0) {
        s->held += seats;
        return show_set_hold(s, booking, (uint32_t)seats, H_HELD, err);
    }
    if (strcmp(ev->type, "SeatsRejected") == 0) return EVB_OK; /* nothing held */
    if (h == NULL)
        return evb_err_set(err, EVB_ECORRUPT, "%s: %s for unknown booking %s", ev->stream,
                           ev->type, booking);
    if (strcmp(ev->type, "SeatsConfirmed") == 0) {
        s->held -= h->seats;
        s->reserved += h->seats;
        h->state = H_CONFIRMED;
    } else if (strcmp(ev->type, "SeatsReleased") == 0) {
        if (h->state == H_HELD) s->held -= h->seats;
        else if (h->state == H_CONFIRMED) s->reserved -= h->seats;
        show_drop_hold(s, booking); /* ended: nothing more to decide on it */
    }
    return EVB_OK;
}

/* Snapshot: [exists, capacity, held, reserved, [[booking, seats, state]...]]. */
static int show_save(const void *st, evb_buf *out, evb_err *err)
{
    (void)err;
    const show *s = st;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, evb_svc_pack_write);
    msgpack_pack_array(&pk, 5);
    if (s->exists) msgpack_pack_true(&pk);
    else msgpack_pack_false(&pk);
    msgpack_pack_uint64(&pk, s->capacity);
    msgpack_pack_uint64(&pk, s->held);
    msgpack_pack_uint64(&pk, s->reserved);
    msgpack_pack_array(&pk, (uint32_t)s->n);
    for (size_t i = 0; i < s->n; i++) {
        msgpack_pack_array(&pk, 3);
        msgpack_pack_str_with_body(&pk, s->holds[i].booking, strlen(s->holds[i].booking));
        msgpack_pack_uint32(&pk, s->holds[i].seats);
        msgpack_pack_uint8(&pk, s->holds[i].state);
    }
    return EVB_OK;
}

/* An unsigned integer of the snapshot no larger than max. */
static bool s_snap_uint(const msgpack_object *o, uint64_t max, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max) return false;
    *out = o->via.u64;
    return true;
}

static int show_load(void *st, const void *buf, size_t len, evb_err *err)
{
    show *s = st;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = EVB_ECORRUPT;
    if (msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS) goto out;
    msgpack_object o = u.data;
    if (o.type != MSGPACK_OBJECT_ARRAY || o.via.array.size != 5) goto out;
    msgpack_object *a = o.via.array.ptr;
    /* Every field is checked for its type and range: a damaged snapshot is
     * refused (ECORRUPT), never read as some other field of msgpack's union
     * (a state byte past the names table, totals that do not add up). */
    if (a[0].type != MSGPACK_OBJECT_BOOLEAN || a[4].type != MSGPACK_OBJECT_ARRAY ||
        !s_snap_uint(&a[1], UINT64_MAX, &s->capacity) ||
        !s_snap_uint(&a[2], s->capacity, &s->held) ||
        !s_snap_uint(&a[3], s->capacity - s->held, &s->reserved))
        goto out;
    s->exists = a[0].via.boolean;
    for (uint32_t i = 0; i < a[4].via.array.size; i++) {
        msgpack_object e = a[4].via.array.ptr[i];
        uint64_t seats, state;
        if (e.type != MSGPACK_OBJECT_ARRAY || e.via.array.size != 3 ||
            e.via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
            e.via.array.ptr[0].via.str.size > ID_MAX ||
            !s_snap_uint(&e.via.array.ptr[1], UINT32_MAX, &seats) ||
            !s_snap_uint(&e.via.array.ptr[2], H_REJECTED, &state) || state < H_HELD)
            goto out;
        char b[ID_MAX + 1];
        memcpy(b, e.via.array.ptr[0].via.str.ptr, e.via.array.ptr[0].via.str.size);
        b[e.via.array.ptr[0].via.str.size] = '\0';
        if (show_hold(s, b) != NULL) goto out; /* a booking twice */
        if (state != H_HELD && state != H_CONFIRMED) continue; /* an older build's ended hold */
        if (show_set_hold(s, b, (uint32_t)seats, (uint8_t)state, err) != EVB_OK) goto out;
    }
    rc = EVB_OK;
out:
    msgpack_unpacked_destroy(&u);
    return rc == EVB_OK ? rc : evb_err_set(err, rc, "show snapshot does not decode");
}

static const evb_agg_def s_show = {
    .category = "show",
    .state_size = sizeof(show),
    .init = show_init,
    .release = show_release,
    .apply = show_apply,
    .save = show_save,
    .load = show_load,
    .snapshot_every = 500,
    .heap_size = show_heap_size,
};

/* ---- deciding ---- */

/* Emit one event on show-ID with the totals it leaves: fields first, then
 * held/reserved/available as they will be after it. */
static int s_emit(evb_svc_ctx *c, const char *show_id, uint64_t version, const char *type,
                  const char *booking, uint64_t seats, int64_t dheld, int64_t dreserved,
                  const show *s, const char *reason, evb_err *err)
{
    char stream[ID_MAX + 8];
    snprintf(stream, sizeof stream, "show-%s", show_id);
    evb_buf p = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &p, evb_svc_pack_write);
    uint64_t held = s->held + (uint64_t)dheld, reserved = s->reserved + (uint64_t)dreserved;
    msgpack_pack_map(&pk, reason ? 8 : 7);
    su_kv_str(&pk, "show", show_id);
    su_kv_str(&pk, "booking", booking);
    su_kv_uint(&pk, "seats", seats);
    su_kv_uint(&pk, "capacity", s->capacity);
    su_kv_uint(&pk, "held", held);
    su_kv_uint(&pk, "reserved", reserved);
    su_kv_uint(&pk, "available", s->capacity - held - reserved);
    if (reason) su_kv_str(&pk, "reason", reason);
    evb_event_t ev;
    su_event(&ev, type, &p);
    int rc = p.data ? evb_svc_emit(c, &s_show, stream, version, &ev, 1, err)
                    : evb_err_set(err, EVB_ENOMEM, "out of memory");
    evb_buf_free(&p);
    return rc;
}

static int s_load(evb_svc_ctx *c, const char *show_id, show **s, uint64_t *version,
                  evb_err *err)
{
    char stream[ID_MAX + 8];
    snprintf(stream, sizeof stream, "show-%s", show_id);
    return evb_svc_load(c, &s_show, stream, (void **)s, version, err);
}

/* Hold seats for booking. A booking that holds seats keeps them when asked
 * again; one whose hold ended (or was refused) is asked anew.
 * record_refusal: a refusal is an event (the booking service waits for it)
 * rather than a command error. */
static int s_hold(evb_svc_ctx *c, const char *show_id, const char *booking, uint64_t seats,
                  bool record_refusal, evb_err *err)
{
    show *s;
    uint64_t v;
    int rc = s_load(c, show_id, &s, &v, err);
    if (rc != EVB_OK) return rc;
    if (show_hold(s, booking) != NULL) return EVB_OK; /* holds seats already */
    const char *why = NULL;
    char msg[160];
    uint64_t avail = s->capacity - s->held - s->reserved;
    if (!s->exists) {
        snprintf(msg, sizeof msg, "show %s does not exist", show_id);
        why = msg;
    } else if (seats > avail) {
        snprintf(msg, sizeof msg, "show %s has %llu seats free, %llu asked", show_id,
                 (unsigned long long)avail, (unsigned long long)seats);
        why = msg;
    }
    if (why == NULL)
        return s_emit(c, show_id, v, "SeatsHeld", booking, seats, (int64_t)seats, 0, s,
                      NULL, err);
    if (!record_refusal) return evb_err_set(err, EVB_EREJECTED, "%s", why);
    return s_emit(c, show_id, v, "SeatsRejected", booking, seats, 0, 0, s, why, err);
}

static int s_confirm(evb_svc_ctx *c, const char *show_id, const char *booking, bool quiet,
                     evb_err *err)
{
    show *s;
    uint64_t v;
    int rc = s_load(c, show_id, &s, &v, err);
    if (rc != EVB_OK) return rc;
    hold *h = show_hold(s, booking);
    if (h != NULL && h->state == H_HELD)
        return s_emit(c, show_id, v, "SeatsConfirmed", booking, h->seats,
                      -(int64_t)h->seats, (int64_t)h->seats, s, NULL, err);
    if (h != NULL && h->state == H_CONFIRMED) return EVB_OK;
    if (quiet) return EVB_OK;
    return evb_err_set(err, EVB_EREJECTED, "booking %s on show %s is %s, not held", booking,
                       show_id, h ? s_hold_names[h->state] : "unknown");
}

static int s_release(evb_svc_ctx *c, const char *show_id, const char *booking,
                     const char *reason, bool quiet, evb_err *err)
{
    show *s;
    uint64_t v;
    int rc = s_load(c, show_id, &s, &v, err);
    if (rc != EVB_OK) return rc;
    hold *h = show_hold(s, booking);
    if (h != NULL && (h->state == H_HELD || h->state == H_CONFIRMED)) {
        bool was_held = h->state == H_HELD;
        int64_t n = h->seats;
        return s_emit(c, show_id, v, "SeatsReleased", booking, h->seats,
                      was_held ? -n : 0, was_held ? 0 : -n, s, reason, err);
    }
    if (quiet) return EVB_OK; /* never held, or released already: nothing to undo */
    return evb_err_set(err, EVB_EREJECTED, "booking %s on show %s is %s: nothing to release",
                       booking, show_id, h ? s_hold_names[h->state] : "unknown");
}

/* ---- commands ---- */

static void s_reply_show(evb_buf *reply, const char *show_id, const show *s)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, reply, evb_svc_pack_write);
    reply->len = 0;
    msgpack_pack_map(&pk, 6);
    su_kv_str(&pk, "show", show_id);
    su_kv_str(&pk, "state", s->exists ? "open" : "unknown");
    su_kv_uint(&pk, "capacity", s->capacity);
    su_kv_uint(&pk, "held", s->held);
    su_kv_uint(&pk, "reserved", s->reserved);
    su_kv_uint(&pk, "available", s->capacity - s->held - s->reserved);
}

static int c_create_show(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                         evb_err *err)
{
    (void)ctx;
    char id[ID_MAX + 1];
    uint64_t cap;
    int rc = su_id(a, al, "show", "show", id, sizeof id, err);
    if (rc == EVB_OK) rc = su_uint(a, al, "capacity", 1, 1000000, &cap, err);
    show *s;
    uint64_t v;
    if (rc == EVB_OK) rc = s_load(c, id, &s, &v, err);
    if (rc != EVB_OK) return rc;
    if (s->exists)
        return evb_err_set(err, EVB_EREJECTED, "show %s exists (capacity %llu)", id,
                           (unsigned long long)s->capacity);
    char stream[ID_MAX + 8];
    snprintf(stream, sizeof stream, "show-%s", id);
    evb_buf p = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &p, evb_svc_pack_write);
    msgpack_pack_map(&pk, 2);
    su_kv_str(&pk, "show", id);
    su_kv_uint(&pk, "capacity", cap);
    evb_event_t ev;
    su_event(&ev, "ShowCreated", &p);
    rc = evb_svc_emit(c, &s_show, stream, v, &ev, 1, err);
    evb_buf_free(&p);
    if (rc == EVB_OK) s_reply_show(reply, id, s);
    return rc;
}

/* hold / confirm / release from the box office. */
static int c_seats(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                   evb_err *err)
{
    const char *what = ctx;
    char id[ID_MAX + 1], booking[ID_MAX + 1];
    int rc = su_id(a, al, "show", "show", id, sizeof id, err);
    if (rc != EVB_OK) return rc;
    uint64_t seats = 0;
    if (strcmp(what, "hold") == 0) {
        rc = su_uint(a, al, "seats", 1, 100000, &seats, err);
        if (rc != EVB_OK) return rc;
        evb_err e = {0};
        if (evb_map_find(a, al, "booking", &(const void *){NULL}, &(size_t){0}, &e) ==
            EVB_ENOTFOUND) {
            /* The booking is named after the command id: it must fit whole
             * (a truncated one could name another command's hold, and that
             * hold would answer this one) and be an id confirm/release take. */
            const char *cid = evb_svc_cmd_id(c);
            char stream[ID_MAX + 16];
            if (strlen(cid) > ID_MAX - 4 ||
                (snprintf(booking, sizeof booking, "box-%s", cid),
                 snprintf(stream, sizeof stream, "booking-%s", booking),
                 evb_check_stream(stream, NULL) != EVB_OK))
                return evb_err_set(err, EVB_EINVAL,
                                   "booking: missing, and cmd_id '%s' cannot name one "
                                   "(at most %d bytes of letters, digits and _.:@-)",
                                   cid, ID_MAX - 4);
        } else if ((rc = su_id(a, al, "booking", "booking", booking, sizeof booking, err)) !=
                 EVB_OK)
            return rc;
        rc = s_hold(c, id, booking, seats, false, err);
    } else {
        rc = su_id(a, al, "booking", "booking", booking, sizeof booking, err);
        if (rc != EVB_OK) return rc;
        rc = strcmp(what, "confirm") == 0 ? s_confirm(c, id, booking, false, err)
                                          : s_release(c, id, booking, "box office", false, err);
    }
    if (rc != EVB_OK) return rc;
    show *s;
    uint64_t v;
    if ((rc = s_load(c, id, &s, &v, err)) != EVB_OK) return rc;
    s_reply_show(reply, id, s);
    if (reply->len == 0) return evb_err_set(err, EVB_ENOMEM, "out of memory");
    msgpack_packer pk;
    msgpack_packer_init(&pk, reply, evb_svc_pack_write);
    /* The map has 6 entries; rewrite its header to 7 and add the booking. */
    ((uint8_t *)reply->data)[0] = 0x87;
    su_kv_str(&pk, "booking", booking);
    return EVB_OK;
}

/* The show named by the request's "show" field. */
static int s_load_arg(evb_svc_ctx *c, const void *a, size_t al, char id[ID_MAX + 1],
                      show **s, uint64_t *v, evb_err *err)
{
    int rc = su_id(a, al, "show", "show", id, ID_MAX + 1, err);
    return rc == EVB_OK ? s_load(c, id, s, v, err) : rc;
}

static int q_show(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                  evb_err *err)
{
    (void)ctx;
    char id[ID_MAX + 1];
    show *s;
    uint64_t v;
    int rc = s_load_arg(c, a, al, id, &s, &v, err);
    if (rc != EVB_OK) return rc;
    if (!s->exists) return evb_err_set(err, EVB_ENOTFOUND, "show %s does not exist", id);
    s_reply_show(reply, id, s);
    return EVB_OK;
}

static int q_holds(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply, void *ctx,
                   evb_err *err)
{
    (void)ctx;
    char id[ID_MAX + 1];
    show *s;
    uint64_t v;
    int rc = s_load_arg(c, a, al, id, &s, &v, err);
    if (rc != EVB_OK) return rc;
    msgpack_packer pk;
    msgpack_packer_init(&pk, reply, evb_svc_pack_write);
    msgpack_pack_map(&pk, 3);
    su_kv_str(&pk, "show", id);
    su_kv_uint(&pk, "version", v);
    su_key(&pk, "holds");
    msgpack_pack_array(&pk, (uint32_t)s->n);
    for (size_t i = 0; i < s->n; i++) {
        msgpack_pack_map(&pk, 3);
        su_kv_str(&pk, "booking", s->holds[i].booking);
        su_kv_uint(&pk, "seats", s->holds[i].seats);
        su_kv_str(&pk, "state", s_hold_names[s->holds[i].state]);
    }
    return EVB_OK;
}

/* ---- the read model ---- */

static int q_availability(evb_svc_ctx *c, const void *a, size_t al, evb_buf *reply,
                          void *ctx, evb_err *err)
{
    (void)ctx;
    evb_store_t *views = evb_svc_view_store(evb_svc_of(c));
    char id[ID_MAX + 1];
    evb_err e = {0};
    char key[ID_MAX + 8];
    int kl;
    if (evb_map_str(a, al, "show", id, sizeof id, &e) == EVB_OK) {
        kl = snprintf(key, sizeof key, "show/%s", id);
        int rc = evb_store_get(views, key, (size_t)kl, reply, err);
        if (rc == EVB_ENOTFOUND)
            return evb_err_set(err, EVB_ENOTFOUND, "show %s: not in the read model", id);
        return rc;
    }
    return su_reply_scan(views, "show/", 5, "shows", a, al, reply, err);
}

static int p_views(evb_svc_ctx *c, const evb_event_t *ev, void *ctx, evb_err *err)
{
    (void)ctx;
    char id[ID_MAX + 1];
    uint64_t capacity, held = 0, reserved = 0;
    const void *p = ev->payload;
    size_t pl = ev->payload_len;
    int rc = evb_map_str(p, pl, "show", id, sizeof id, err);
    if (rc == EVB_OK) rc = evb_map_uint(p, pl, "capacity", &capacity, err);
    if (rc != EVB_OK) return rc;
    if (strcmp(ev->type, "ShowCreated") != 0) {
        if ((rc = evb_map_uint(p, pl, "held", &held, err)) != EVB_OK ||
            (rc = evb_map_uint(p, pl, "reserved", &reserved, err)) != EVB_OK)
            return rc;
    }
    evb_buf v = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &v, evb_svc_pack_write);
    msgpack_pack_map(&pk, 6);
    su_kv_str(&pk, "show", id);
    su_kv_uint(&pk, "capacity", capacity);
    su_kv_uint(&pk, "held", held);
    su_kv_uint(&pk, "reserved", reserved);
    su_kv_uint(&pk, "available", capacity - held - reserved);
    su_kv_uint(&pk, "version", ev->version);
    char key[ID_MAX + 8];
    int kl = snprintf(key, sizeof key, "show/%s", id);
    rc = evb_txn_put(evb_svc_txn(c), key, (size_t)kl, v.data, v.len, err);
    evb_buf_free(&v);
    return rc;
}

/* ---- reacting to the booking service ---- */

static int e_booking(evb_svc_ctx *c, const evb_event_t *ev, void *ctx, evb_err *err)
{
    (void)ctx;
    const void *p = ev->payload;
    size_t pl = ev->payload_len;
    char show_id[ID_MAX + 1], booking[ID_MAX + 1];
    bool requested = strcmp(ev->type, "BookingRequested") == 0;
    bool confirmed = strcmp(ev->type, "BookingConfirmed") == 0;
    bool undo = strcmp(ev->type, "BookingCancelled") == 0 ||
                strcmp(ev->type, "BookingExpired") == 0;
    if (!requested && !confirmed && !undo) return EVB_OK;
    evb_err e = {0};
    if (su_id(p, pl, "show", "show", show_id, sizeof show_id, &e) != EVB_OK ||
        su_id(p, pl, "booking", "booking", booking, sizeof booking, &e) != EVB_OK) {
        /* A malformed event of another service cannot be fixed by waiting:
         * log it and go on (refusing would stall the feed forever). */
        evb_log(EVB_LOG_WARN, "%s seq %llu (%s): %s; ignored", ev->stream,
                (unsigned long long)ev->seq, ev->type, e.msg);
        return EVB_OK;
    }
    if (requested) {
        uint64_t seats;
        if (su_uint(p, pl, "seats", 1, 100000, &seats, &e) != EVB_OK) {
            evb_log(EVB_LOG_WARN, "%s: %s; rejecting", ev->stream, e.msg);
            seats = 0;
        }
        if (seats == 0) {
            show *s;
            uint64_t v;
            int rc = s_load(c, show_id, &s, &v, err);
            if (rc != EVB_OK) return rc;
            return show_hold(s, booking) ? EVB_OK
                                         : s_emit(c, show_id, v, "SeatsRejected", booking, 0,
                                                  0, 0, s, "bad seat count", err);
        }
        return s_hold(c, show_id, booking, seats, true, err);
    }
    if (confirmed) return s_confirm(c, show_id, booking, true, err);
    return s_release(c, show_id, booking,
                     strcmp(ev->type, "BookingExpired") == 0 ? "expired" : "cancelled", true,
                     err);
}

int main(int argc, char **argv)
{
    static const evb_svc_def def = {
        .name = "reservation",
        .summary = "Seat availability per show: holds, confirms and releases seats for the\n"
                   "booking service's sagas and for the box office; never oversells.\n"
                   "Commands: create_show {show, capacity}, hold {show, seats, booking?},\n"
                   "confirm {show, booking}, release {show, booking}. Queries: show {show},\n"
                   "holds {show}, availability {show?}, status.",
        .views = true,
    };
    int code;
    evb_svc_t *svc = evb_svc_new(&def, argc, argv, &code);
    if (svc == NULL) return code;
    evb_err err = {0};
    static const char *const booking_cats[] = {"booking"};
    static const char *const show_cats[] = {"show"};
    int rc = evb_svc_command(svc, "create_show", c_create_show, NULL, &err);
    if (rc == EVB_OK) rc = evb_svc_command(svc, "hold", c_seats, "hold", &err);
    if (rc == EVB_OK) rc = evb_svc_command(svc, "confirm", c_seats, "confirm", &err);
    if (rc == EVB_OK) rc = evb_svc_command(svc, "release", c_seats, "release", &err);
    if (rc == EVB_OK) rc = evb_svc_query(svc, "show", q_show, NULL, &err);
    if (rc == EVB_OK) rc = evb_svc_query(svc, "holds", q_holds, NULL, &err);
    if (rc == EVB_OK) rc = evb_svc_query(svc, "availability", q_availability, NULL, &err);
    if (rc == EVB_OK) rc = evb_svc_consume(svc, booking_cats, 1, e_booking, NULL, &err);
    if (rc == EVB_OK) rc = evb_svc_project(svc, show_cats, 1, p_views, NULL, &err);
    if (rc != EVB_OK) {
        evb_log(EVB_LOG_ERROR, "%s", err.msg);
        evb_svc_destroy(&svc);
        return 4;
    }
    code = evb_svc_run(svc);
    evb_svc_destroy(&svc);
    return code;
}
