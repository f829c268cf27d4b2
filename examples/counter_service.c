/*
 * counter_service.c: a whole evbus service in one file.
 *
 * Counters that only go up. Command `add {counter, n}` appends an `Added`
 * event to the stream "counter-NAME" (refused when the total would pass
 * 1,000,000); query `get {counter}` reads the aggregate; a read model keeps
 * every counter's total in the view store (query `totals`). What the runtime
 * gives for free: flags/env/config file, the event log, publishing, command
 * ids (a retried `add` is applied once), the aggregate cache, `status`,
 * SIGTERM handling and structured logs.
 *
 *   ./counter_service --store /tmp/counters --cmd ipc:///tmp/counters.cmd \
 *       --pub ipc:///tmp/counters.pub --catchup ipc:///tmp/counters.cu
 *   evbus call ipc:///tmp/counters.cmd add counter=visits n=3
 *   evbus call ipc:///tmp/counters.cmd get counter=visits
 */
#include <evbus/evbus_svc.h>

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#define LIMIT 1000000u

typedef struct counter {
    uint64_t total;
} counter;

static int counter_apply(void *state, const evb_event_t *ev, evb_err *err)
{
    uint64_t n;
    int rc = evb_map_uint(ev->payload, ev->payload_len, "n", &n, err);
    if (rc == EVB_OK) ((counter *)state)->total += n;
    return rc;
}

static const evb_agg_def s_counter = {
    .category = "counter", .state_size = sizeof(counter), .apply = counter_apply};

/* Read {counter} (a name usable in a stream id) into stream "counter-NAME". */
static int s_stream(const void *args, size_t len, char *stream, size_t cap, evb_err *err)
{
    char name[65];
    if (evb_map_str(args, len, "counter", name, sizeof name, NULL) != EVB_OK || !name[0])
        return evb_err_set(err, EVB_EINVAL, "counter: missing, or not a string");
    snprintf(stream, cap, "counter-%s", name);
    if (evb_check_stream(stream, NULL) != EVB_OK)
        return evb_err_set(err, EVB_EINVAL, "counter: '%s' is not a valid name", name);
    return EVB_OK;
}

static void s_reply(evb_buf *reply, uint64_t total, uint64_t version)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, reply, evb_svc_pack_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "total", 5);
    msgpack_pack_uint64(&pk, total);
    msgpack_pack_str_with_body(&pk, "version", 7);
    msgpack_pack_uint64(&pk, version);
}

static int c_add(evb_svc_ctx *c, const void *args, size_t len, evb_buf *reply, void *ctx,
                 evb_err *err)
{
    (void)ctx;
    char stream[80];
    uint64_t n;
    int rc = s_stream(args, len, stream, sizeof stream, err);
    if (rc != EVB_OK) return rc;
    if (evb_map_uint(args, len, "n", &n, NULL) != EVB_OK || n == 0 || n > LIMIT)
        return evb_err_set(err, EVB_EINVAL, "n: must be an integer in 1..%u", LIMIT);
    counter *st; /* load: cached state, else snapshot + events */
    uint64_t version;
    if ((rc = evb_svc_load(c, &s_counter, stream, (void **)&st, &version, err)) != EVB_OK)
        return rc;
    if (st->total + n > LIMIT) /* decide */
        return evb_err_set(err, EVB_EREJECTED, "%s: %llu + %llu passes %u", stream,
                           (unsigned long long)st->total, (unsigned long long)n, LIMIT);
    evb_buf payload = {0}; /* append, expecting the version we decided on */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &payload, evb_svc_pack_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_uint64(&pk, n);
    msgpack_pack_str_with_body(&pk, "total", 5);
    msgpack_pack_uint64(&pk, st->total + n);
    evb_event_t ev = {.type = "Added", .payload = payload.data, .payload_len = payload.len};
    rc = evb_svc_emit(c, &s_counter, stream, version, &ev, 1, err);
    evb_buf_free(&payload);
    if (rc == EVB_OK) s_reply(reply, st->total, version + 1);
    return rc;
}

static int q_get(evb_svc_ctx *c, const void *args, size_t len, evb_buf *reply, void *ctx,
                 evb_err *err)
{
    (void)ctx;
    char stream[80];
    counter *st;
    uint64_t version;
    int rc = s_stream(args, len, stream, sizeof stream, err);
    if (rc == EVB_OK) rc = evb_svc_load(c, &s_counter, stream, (void **)&st, &version, err);
    if (rc == EVB_OK) s_reply(reply, st->total, version);
    return rc;
}

/* The read model: "total/STREAM" -> the total, in the view store. The event
 * carries the total it leaves, so the projection only writes: a
 * read-modify-write would not see earlier puts of the same batch. */
static int p_totals(evb_svc_ctx *c, const evb_event_t *ev, void *ctx, evb_err *err)
{
    (void)ctx;
    uint64_t total;
    char key[96];
    int kl = snprintf(key, sizeof key, "total/%s", ev->stream);
    int rc = evb_map_uint(ev->payload, ev->payload_len, "total", &total, err);
    if (rc != EVB_OK) return rc;
    evb_buf v = {0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &v, evb_svc_pack_write);
    msgpack_pack_uint64(&pk, total);
    rc = evb_txn_put(evb_svc_txn(c), key, (size_t)kl, v.data, v.len, err);
    evb_buf_free(&v);
    return rc;
}

static int s_total_one(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    msgpack_packer *pk = ctx;
    msgpack_pack_str_with_body(pk, (const char *)k + 14, kl - 14); /* "total/counter-" */
    msgpack_pack_bin_body(pk, v, vl);                               /* a msgpack uint */
    return 0;
}

static int s_count_one(const void *k, size_t kl, const void *v, size_t vl, void *ctx)
{
    (void)k, (void)kl, (void)v, (void)vl;
    ++*(uint32_t *)ctx;
    return 0;
}

static int q_totals(evb_svc_ctx *c, const void *args, size_t len, evb_buf *reply,
                    void *ctx, evb_err *err)
{
    (void)args, (void)len, (void)ctx;
    evb_store_t *views = evb_svc_view_store(evb_svc_of(c));
    uint32_t n = 0;
    int rc = evb_store_scan(views, "total/", 6, s_count_one, &n, err);
    if (rc != EVB_OK) return rc;
    msgpack_packer pk;
    msgpack_packer_init(&pk, reply, evb_svc_pack_write);
    msgpack_pack_map(&pk, n);
    return evb_store_scan(views, "total/", 6, s_total_one, &pk, err);
}

int main(int argc, char **argv)
{
    static const evb_svc_def def = {
        .name = "counter",
        .summary = "Counters that only go up: add {counter, n}, get {counter}.",
        .views = true,
    };
    int code;
    evb_svc_t *svc = evb_svc_new(&def, argc, argv, &code);
    if (svc == NULL) return code;
    static const char *const cats[] = {"counter"};
    evb_err err = {0};
    if (evb_svc_command(svc, "add", c_add, NULL, &err) != EVB_OK ||
        evb_svc_query(svc, "get", q_get, NULL, &err) != EVB_OK ||
        evb_svc_query(svc, "totals", q_totals, NULL, &err) != EVB_OK ||
        evb_svc_project(svc, cats, 1, p_totals, NULL, &err) != EVB_OK) {
        fprintf(stderr, "counter: %s\n", err.msg);
        evb_svc_destroy(&svc);
        return 4;
    }
    code = evb_svc_run(svc);
    evb_svc_destroy(&svc);
    return code;
}
