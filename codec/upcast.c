/*
 * upcast.c: the schema upcaster registry.
 *
 * Entries live in one array sorted by (type, from_schema) and are found by
 * binary search: registries are small, filled once at start-up and then only
 * read, so a sorted array beats a hash map on simplicity and memory.
 *
 * apply runs the whole chain on scratch buffers first and touches the event
 * only once every step succeeded, so an error leaves the event unchanged. The
 * event owns one block (priv.block) holding all of its strings and its
 * payload; the new payload may be larger, so the result is built as a fresh
 * block with evb_event_dup and the blocks are swapped.
 */
#include "evbus_codec.h"

#include <stdlib.h>
#include <string.h>

typedef struct s_entry {
    char *type; /* owned copy */
    uint32_t from_schema;
    evb_upcast_fn fn;
    void *ctx;
} s_entry;

struct evb_upcasters {
    s_entry *v; /* sorted by (type, from_schema) */
    size_t n;
    size_t cap;
};

static int s_cmp(const char *type, uint32_t schema, const s_entry *e)
{
    int c = strcmp(type, e->type);
    if (c != 0) return c;
    return schema < e->from_schema ? -1 : schema > e->from_schema ? 1 : 0;
}

/* Index of (type, schema) if present (*found = true), else where it would
 * be inserted. */
static size_t s_find(const evb_upcasters_t *reg, const char *type, uint32_t schema,
                     bool *found)
{
    size_t lo = 0, hi = reg->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = s_cmp(type, schema, &reg->v[mid]);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

evb_upcasters_t *evb_upcasters_new(evb_err *err)
{
    evb_upcasters_t *reg = calloc(1, sizeof *reg);
    if (reg == NULL)
        evb_err_set(err, EVB_ENOMEM, "out of memory allocating an upcaster registry");
    return reg;
}

void evb_upcasters_destroy(evb_upcasters_t **regp)
{
    if (regp == NULL || *regp == NULL) return;
    evb_upcasters_t *reg = *regp;
    for (size_t i = 0; i < reg->n; i++)
        free(reg->v[i].type);
    free(reg->v);
    free(reg);
    *regp = NULL;
}

int evb_upcasters_add(evb_upcasters_t *reg, const char *type, uint32_t from_schema,
                      evb_upcast_fn fn, void *ctx, evb_err *err)
{
    if (reg == NULL || fn == NULL)
        return evb_err_set(err, EVB_EINVAL, "upcasters_add: NULL registry or function");
    int rc = evb_check_type(type, err);
    if (rc != EVB_OK) return rc;
    bool found;
    size_t at = s_find(reg, type, from_schema, &found);
    if (found)
        return evb_err_set(err, EVB_EINVAL,
                           "an upcaster for type %s schema %u is already registered",
                           type, from_schema);
    if (reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 8;
        if (cap > SIZE_MAX / sizeof *reg->v)
            return evb_err_set(err, EVB_ENOMEM, "upcaster registry too large");
        s_entry *v = realloc(reg->v, cap * sizeof *v);
        if (v == NULL)
            return evb_err_set(err, EVB_ENOMEM,
                               "out of memory growing upcaster registry");
        reg->v = v;
        reg->cap = cap;
    }
    char *copy = strdup(type);
    if (copy == NULL)
        return evb_err_set(err, EVB_ENOMEM, "out of memory copying upcaster type");
    memmove(&reg->v[at + 1], &reg->v[at], (reg->n - at) * sizeof *reg->v);
    reg->v[at] =
        (s_entry){.type = copy, .from_schema = from_schema, .fn = fn, .ctx = ctx};
    reg->n++;
    return EVB_OK;
}

/* One step: run e->fn on view (payload and schema of the current stage) into
 * out, then check what it produced. */
static int s_step(const s_entry *e, const evb_event_t *view, evb_buf *out,
                  uint32_t *to_schema, evb_err *err)
{
    evb_err fe;
    evb_err_clear(&fe);
    *to_schema = 0;
    int rc = e->fn(view, out, to_schema, e->ctx, &fe);
    if (rc != EVB_OK) {
        /* Keep the upcaster's own code; fall back to EINVAL if it returned
         * something that is not an evb_code. */
        if (rc < 0 || rc >= EVB_CODE_COUNT) rc = EVB_EINVAL;
        return evb_err_set(err, rc, "upcaster %s schema %u failed: %s", e->type,
                           e->from_schema, fe.msg[0] ? fe.msg : evb_strerror(rc));
    }
    if (*to_schema <= e->from_schema)
        return evb_err_set(err, EVB_EINVAL,
                           "upcaster %s schema %u produced schema %u (must be greater)",
                           e->type, e->from_schema, *to_schema);
    if (out->len > EVB_MAX_PAYLOAD_BYTES)
        return evb_err_set(err, EVB_ETOOBIG,
                           "upcaster %s schema %u produced %zu bytes (limit %u)", e->type,
                           e->from_schema, out->len, EVB_MAX_PAYLOAD_BYTES);
    rc = evb_check_map(out->data, out->len, "upcast payload", &fe);
    if (rc != EVB_OK)
        return evb_err_set(err, rc, "upcaster %s schema %u: %s", e->type, e->from_schema,
                           fe.msg);
    return EVB_OK;
}

int evb_upcasters_apply(const evb_upcasters_t *reg, evb_event_t *ev, evb_err *err)
{
    if (reg == NULL || ev == NULL)
        return evb_err_set(err, EVB_EINVAL, "upcasters_apply: NULL argument");
    if (ev->type == NULL)
        return evb_err_set(err, EVB_EINVAL, "upcasters_apply: event has no type");

    /* view: the event as the next upcaster sees it. cur holds the payload of
     * the current stage once the first step ran (before that, ev's own). */
    evb_event_t view = *ev;
    evb_buf cur = {0}, next = {0};
    int rc = EVB_OK;
    unsigned steps = 0;
    for (;;) {
        bool found;
        size_t i = s_find(reg, view.type, view.schema, &found);
        if (!found) break;
        if (steps == EVB_MAX_UPCAST_STEPS) {
            rc = evb_err_set(err, EVB_EINVAL,
                             "upcasters for %s: chain longer than %d steps at schema %u",
                             view.type, EVB_MAX_UPCAST_STEPS, view.schema);
            goto done;
        }
        uint32_t to;
        next.len = 0;
        next.max_cap = EVB_MAX_PAYLOAD_BYTES;
        rc = s_step(&reg->v[i], &view, &next, &to, err);
        if (rc != EVB_OK) goto done;
        evb_buf t = cur;
        cur = next;
        next = t;
        view.payload = cur.data;
        view.payload_len = cur.len;
        view.schema = to;
        steps++;
    }
    if (steps > 0) {
        /* Build the new block, then swap it into ev; the old block leaves
         * with the temporary struct. */
        view.priv.block = NULL;
        view.priv.cap = 0;
        evb_err de;
        evb_err_clear(&de);
        evb_event_t *fresh = evb_event_dup(&view, &de);
        if (fresh == NULL) {
            rc = evb_err_set(err, de.code != EVB_OK ? de.code : EVB_ENOMEM,
                             "upcasters_apply: %s", de.msg);
            goto done;
        }
        evb_event_t old = *ev;
        *ev = *fresh;
        *fresh = old;
        evb_event_destroy(&fresh);
    }
done:
    evb_buf_free(&cur);
    evb_buf_free(&next);
    return rc;
}
