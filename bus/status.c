/*
 * status.c: a subscriber's feeds as msgpack maps (evbus_http.h), the one
 * shape every program's "status" command and /status.json give a feed.
 */
#include "evbus_http.h"
#include "busmsg.h"

#include <string.h>

static void s_kstr(msgpack_packer *pk, const char *k, const char *v)
{
    bm_str(pk, k);
    bm_str(pk, v);
}

static void s_ku64(msgpack_packer *pk, const char *k, uint64_t v)
{
    bm_str(pk, k);
    msgpack_pack_uint64(pk, v);
}

int evb_feed_status_pack(evb_buf *b, const evb_feed_status *fs, unsigned flags,
                         evb_err *err)
{
    bm_writer w;
    msgpack_packer p, *pk = &p;
    bm_packer_init(pk, &w, b);
    bool hole = fs->hole_from != 0, hist = (flags & EVB_FEED_PACK_HISTORY) != 0;
    msgpack_pack_map(pk, 19 + hole + hist);
    char hex[EVB_ID_HEX_LEN + 1];
    evb_id_to_hex(&fs->log_id, hex);
    s_kstr(pk, "publisher", fs->publisher);
    s_kstr(pk, "publisher_service", fs->publisher_service);
    bm_str(pk, "publisher_up");
    if (fs->publisher_lost)
        msgpack_pack_false(pk);
    else
        msgpack_pack_true(pk);
    s_kstr(pk, "category", fs->category);
    s_kstr(pk, "log_id", hex);
    s_kstr(pk, "state", evb_feed_state_name(fs->state));
    s_kstr(pk, "reason", fs->reason);
    s_ku64(pk, "applied", fs->applied);
    s_ku64(pk, "applied_events", fs->applied_events);
    s_ku64(pk, "head", fs->head);
    s_ku64(pk, "lag", fs->lag);
    bm_str(pk, "lag_seconds"); /* nil: the oldest missing event not received yet */
    if (fs->lag_seconds != fs->lag_seconds)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_double(pk, fs->lag_seconds);
    s_ku64(pk, "duplicates", fs->duplicates);
    s_ku64(pk, "gaps", fs->gaps);
    s_ku64(pk, "pages", fs->pages);
    s_ku64(pk, "bad_frames", fs->bad_frames);
    s_ku64(pk, "refusals", fs->refusals);
    s_ku64(pk, "handshake_refusals", fs->handshake_refusals);
    bm_str(pk, "heartbeat_age_ms");
    msgpack_pack_int64(pk, fs->heartbeat_age_ms);
    if (hole) { /* stalled at events the publisher cannot read */
        bm_str(pk, "hole");
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint64(pk, fs->hole_from);
        msgpack_pack_uint64(pk, fs->hole_to);
    }
    if (hist) {
        bm_str(pk, "history");
        msgpack_pack_array(pk, (uint32_t)fs->nhistory);
        for (size_t i = 0; i < fs->nhistory; i++) {
            const evb_feed_change *h = &fs->history[i];
            msgpack_pack_map(pk, 3);
            bm_str(pk, "at_ms");
            msgpack_pack_int64(pk, h->at_ms);
            s_kstr(pk, "what", h->what);
            s_kstr(pk, "why", h->why);
        }
    }
    return w.rc == EVB_OK ? EVB_OK : evb_err_set(err, w.rc, "feed status: out of memory");
}

typedef struct {
    evb_buf *b;
    unsigned flags;
    uint32_t n;
    int rc;
    evb_err *err;
} feeds_acc;

static int s_feed(const evb_feed_status *fs, void *ctx)
{
    feeds_acc *a = ctx;
    a->n++;
    if (a->b != NULL) a->rc = evb_feed_status_pack(a->b, fs, a->flags, a->err);
    return a->rc;
}

int evb_sub_status_pack(evb_buf *b, evb_sub_t *sub, unsigned flags, evb_err *err)
{
    feeds_acc a = {NULL, flags, 0, EVB_OK, err};
    if (sub != NULL) evb_sub_status(sub, s_feed, &a, err); /* count them */
    bm_writer w;
    msgpack_packer pk;
    bm_packer_init(&pk, &w, b);
    msgpack_pack_array(&pk, a.n);
    if (w.rc != EVB_OK) return evb_err_set(err, w.rc, "feed status: out of memory");
    if (sub == NULL || a.n == 0) return EVB_OK;
    a.b = b;
    a.n = 0;
    int rc = evb_sub_status(sub, s_feed, &a, err);
    return rc != EVB_OK ? rc : a.rc;
}
