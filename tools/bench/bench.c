/*
 * bench.c: `evbus bench`: what the store costs next to raw LevelDB,
 * both measured in the same run, the raw baseline right before ours for
 * every case, with the same LevelDB options (create_if_missing, 32 MiB write
 * buffer, no sync). Absolute rates move between runs and machines; the ratio
 * (ours / baseline, higher is better) is the figure to track.
 *
 * Workload (tools/README.md has the table): N events (default 1,000,000;
 * --quick 100,000; --scale: each case at 100 k, 1 M and 10 M, or --sizes,
 * then every case's ratio curve), each a 200-byte msgpack map, over 10,000
 * streams in 4 categories (show-, booking-, customer-, venue-<i>). A batch goes to one
 * stream; stream of batch j = j * 7919 mod 10000 (7919 is prime to 10000,
 * so every stream and category gets an even share, in scattered order).
 * The raw baseline writes the same 200 payload bytes per event under an
 * 8-byte big-endian sequential key with the same batch size.
 *
 * Cases:
 *  append_b1/b100/b1000    appends, clock stops when the last append returns
 *                          (store: EVB_INDEX_THREAD, EVB_SYNC_NONE)
 *  append_indexed_b1000    same, clock stops when evb_store_index_wait
 *                          returns; reports max_index_lag
 *  append_b1000_ids        as append_b1000, but the caller supplies every
 *                          event's id (16 random bytes), as a mirror, a
 *                          replica, `log import` or `append` with "id" do
 *  read_range              whole log through evb_store_read_range, vs. a raw
 *                          iterator scan of every raw entry
 *  read_category           one category of 4 through evb_store_read_category
 *                          (counting its events only), vs. a raw iterator
 *                          scan of as many consecutive raw entries as the
 *                          category holds: the cost of reading a category
 *                          compared with reading that many events in a row
 * The two read cases share one log and one raw db, built untimed before
 * them, closed, and reopened for each measurement. Every case works in fresh
 * directories under one mkdtemp directory, removed at the end (--keep keeps).
 * Open and close are outside the clock for both sides.
 *
 * Bus cases (publisher in a child process, subscriber here, TCP loopback;
 * tools/README.md "Bus cases" has the details):
 *  publish_deliver(_sync)  N appends in batches of 100 (sync none / group)
 *                          to the last event applied at the subscriber, vs.
 *                          the slower of raw LevelDB batch-100 writes (synced
 *                          for _sync) and raw ZeroMQ PUB->SUB between two
 *                          processes
 *  catchup                 a fresh subscriber replays an N-event log, vs.
 *                          raw LevelDB scan and raw ZeroMQ pages combined
 *                          as sequential stages, 1 / (1/L + 1/Z)
 *  latency_p50/p99/p999    one-way latency of single appends paced at
 *                          10,000/s (append included), vs. raw ZeroMQ
 *                          PUB->SUB at the same rate; ratio = baseline/ours
 *
 * Services case (tools/bench/bench_booking.c; tools/README.md "Booking case"):
 *  booking                 bookings/s end to end: evbus-reservation and
 *                          evbus-booking as child processes (ipc, --sync
 *                          none, found by --services DIR, $EVBUS_BUILD/
 *                          services or this program's ../services), 8
 *                          client threads sending `book`, clock until the
 *                          booking log's head is 2 N (every saga done);
 *                          N = 20,000 (--quick 4,000; --events E: E/50).
 *                          Lines: booking_e2e_vs_roundtrip (vs raw ZeroMQ
 *                          DEALER/ROUTER round trips/s, 8 threads, same
 *                          request size), booking_e2e_vs_append (vs raw
 *                          LevelDB single appends/s / 4: a booking is 4
 *                          appends across the two logs, BookingRequested,
 *                          SeatsHeld, BookingConfirmed, SeatsConfirmed),
 *                          booking_p99 and booking_p50 (book round trip vs
 *                          raw round trip, unit us, ratio = baseline/ours)
 */
#include "cli.h"
#include "bench_booking.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <leveldb/c.h>
#include <msgpack.h>
#include <zmq.h>

#include <evbus/evbus_bus.h>
#include <evbus/evbus_store.h>

#define S_PAYLOAD_LEN 200u
#define S_NPAYLOADS 1024u
#define S_NSTREAMS 10000u
#define S_NCATS 4u
#define S_STRIDE 7919u
#define S_WRITE_BUFFER (32u * 1024u * 1024u) /* the store's default */
#define S_DEFAULT_EVENTS 1000000u
#define S_QUICK_EVENTS 100000u
#define S_MAX_EVENTS 100000000u
#define S_READ_CATEGORY 0u /* "show" */
#define S_MAX_SEEN 128u    /* results kept for the --scale curve */

static const char *const s_cat_names[S_NCATS] = {"show", "booking", "customer", "venue"};
static const char *const s_cat_types[S_NCATS] = {"SeatsHeld", "BookingRequested",
                                                 "CustomerRegistered", "VenueOpened"};

static volatile sig_atomic_t s_interrupted;

static void s_on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

typedef struct bench {
    cli_t *cli;
    bool json;
    uint64_t events;
    char work[PATH_MAX]; /* our mkdtemp directory */
    char root[PATH_MAX]; /* where cases make their directories: work, or
                            work/N for each size of --scale */
    char placement[160];
    uint8_t *payloads; /* S_NPAYLOADS * S_PAYLOAD_LEN */
    char streams[S_NSTREAMS][24];
    const char *only; /* --case list, or NULL for all */
    bool problems;    /* a result did not check out */
    bool header_done;
    bool quick;
    size_t msg_len; /* bytes of one encoded envelope of the workload */
    const char *services; /* --services DIR for the booking case, or NULL */
    const char *to;       /* --to RES_CMD,BK_CMD for the booking case, or NULL */
    double rate;          /* --rate for the booking case; 0 = closed loop */
    bool events_set;      /* --events given: the booking case scales from it */
    uint64_t rng;         /* splitmix64 state for caller-supplied ids */
    struct {              /* --scale: every ratio, for the curve at the end */
        const char *name;
        uint64_t events;
        double ratio;
    } seen[S_MAX_SEEN];
    size_t nseen;
} bench_t;

typedef struct result {
    const char *name;
    double ours, baseline; /* events/s, or unit */
    uint64_t events;       /* events counted by ours */
    bool has_lag;
    uint64_t max_index_lag;
    const char *unit;      /* NULL: "events/s" */
    const char *sync;      /* NULL: "none" */
    const char *placement; /* NULL: b->placement */
    bool lower_better;     /* latency: ratio = baseline / ours */
    char extra[768];       /* more JSON members, each starting with ',' */
    char note[96];         /* table note */
} result_t;

/* ---- small helpers ---- */

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const uint8_t *s_payload(const bench_t *b, uint64_t seq)
{
    return b->payloads + (size_t)(seq % S_NPAYLOADS) * S_PAYLOAD_LEN;
}

static unsigned s_stream_of_batch(uint64_t j)
{
    return (unsigned)((j * S_STRIDE) % S_NSTREAMS);
}

static void s_key(uint64_t seq, uint8_t key[8])
{
    for (int i = 7; i >= 0; i--) {
        key[i] = (uint8_t)seq;
        seq >>= 8;
    }
}

static void s_progress(bench_t *b, const char *name, const char *side, uint64_t done,
                       uint64_t total, unsigned *last_pct)
{
    if (!b->cli->err_tty) return;
    unsigned pct = total > 0 ? (unsigned)(done * 100 / total) : 100;
    if (pct == *last_pct) return;
    *last_pct = pct;
    cli_progress(b->cli, "evbus bench: %s: %s %u%%", name, side, pct);
}

static int s_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) return -1;
    return 0;
}

/* Remove a directory tree we made. */
static int s_rmtree(const char *path)
{
    return nftw(path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Make a fresh directory WORK/name into out. */
static int s_case_dir(bench_t *b, const char *name, char out[PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/%s", b->root, name);
    if (n < 0 || n >= PATH_MAX) {
        cli_error(b->cli, "%s/%s: path too long", b->root, name);
        return -1;
    }
    if (mkdir(out, 0700) != 0) {
        cli_error(b->cli, "%s: %s", out, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- workload ---- */

static int s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    if (msgpack_pack_str(pk, n) != 0) return -1;
    return msgpack_pack_str_body(pk, s, n);
}

/* One payload: a 7-entry map padded to exactly S_PAYLOAD_LEN bytes by a
 * "note" of pseudo-random letters. */
static int s_make_payload(unsigned i, uint8_t *out)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    char v[64];
    int rc = msgpack_pack_map(&pk, 7);
    rc |= s_pack_str(&pk, "booking_id");
    snprintf(v, sizeof v, "bk-%08x-%04x", i * 2654435761u, i);
    rc |= s_pack_str(&pk, v);
    rc |= s_pack_str(&pk, "show");
    snprintf(v, sizeof v, "show-%u", i % (S_NSTREAMS / S_NCATS));
    rc |= s_pack_str(&pk, v);
    rc |= s_pack_str(&pk, "customer");
    snprintf(v, sizeof v, "customer-%u", (i * 7u) % (S_NSTREAMS / S_NCATS));
    rc |= s_pack_str(&pk, v);
    rc |= s_pack_str(&pk, "seats");
    rc |= msgpack_pack_array(&pk, 3);
    for (unsigned k = 0; k < 3; k++)
        rc |= msgpack_pack_uint32(&pk, 100 + (i + k) % 400);
    rc |= s_pack_str(&pk, "amount_cents");
    rc |= msgpack_pack_uint32(&pk, 1000 + i * 37u);
    rc |= s_pack_str(&pk, "currency");
    rc |= s_pack_str(&pk, "EUR");
    rc |= s_pack_str(&pk, "note");
    /* pad: a str8 (2-byte header, 32..255 bytes) fills the rest exactly */
    size_t left = S_PAYLOAD_LEN - sb.size;
    if (rc == 0 && sb.size < S_PAYLOAD_LEN && left >= 34 && left <= 257) {
        /* pseudo-random letters: a run of one byte would let snappy shrink
         * both sides' tables to little and flatter the I/O of each */
        static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        char pad[256];
        uint32_t x = i * 2654435761u + 1u;
        for (size_t k = 0; k < left - 2; k++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            pad[k] = alnum[x % 36u];
        }
        rc |= msgpack_pack_str(&pk, left - 2);
        rc |= msgpack_pack_str_body(&pk, pad, left - 2);
    } else {
        rc = -1;
    }
    if (rc == 0 && sb.size == S_PAYLOAD_LEN)
        memcpy(out, sb.data, S_PAYLOAD_LEN);
    else
        rc = -1;
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int s_setup(bench_t *b)
{
    b->payloads = malloc((size_t)S_NPAYLOADS * S_PAYLOAD_LEN);
    if (b->payloads == NULL) {
        cli_error(b->cli, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < S_NPAYLOADS; i++) {
        if (s_make_payload(i, b->payloads + (size_t)i * S_PAYLOAD_LEN) != 0) {
            cli_error(b->cli, "building payload %u: not %u bytes", i, S_PAYLOAD_LEN);
            return -1;
        }
    }
    for (unsigned k = 0; k < S_NSTREAMS; k++)
        snprintf(b->streams[k], sizeof b->streams[k], "%s-%u", s_cat_names[k % S_NCATS],
                 k / S_NCATS);

    /* The size of one stored envelope of the workload: what the bus sends
     * per event, and the raw ZeroMQ and LevelDB baselines' message size. */
    evb_event_t ev = {0};
    memset(ev.id.b, 0xab, sizeof ev.id.b);
    memset(ev.log_id.b, 0xcd, sizeof ev.log_id.b);
    ev.service = "bench";
    ev.seq = 1000000;
    ev.stream = b->streams[S_NSTREAMS - 1];
    ev.version = 100;
    ev.type = s_cat_types[(S_NSTREAMS - 1) % S_NCATS];
    ev.schema = 1;
    ev.ts_us = evb_now_us();
    ev.payload = b->payloads;
    ev.payload_len = S_PAYLOAD_LEN;
    evb_buf enc = {0};
    evb_err err = {0};
    if (evb_event_encode(&ev, &enc, &err) != EVB_OK || enc.len > 2 * S_PAYLOAD_LEN) {
        cli_error(b->cli, "encoding a sample envelope: %s", err.msg);
        evb_buf_free(&enc);
        return -1;
    }
    b->msg_len = enc.len;
    evb_buf_free(&enc);

    cpu_set_t set;
    CPU_ZERO(&set);
    int allowed = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (allowed < 0 || allowed == online)
        snprintf(b->placement, sizeof b->placement,
                 "1 process, store threads unpinned, %ld cpus", online);
    else
        snprintf(b->placement, sizeof b->placement,
                 "1 process, store threads unpinned, affinity %d of %ld cpus", allowed,
                 online);
    return 0;
}

/* ---- raw LevelDB ---- */

typedef struct raw {
    leveldb_options_t *opts;
    leveldb_t *db;
} raw_t;

static int s_raw_open(bench_t *b, const char *dir, raw_t *r)
{
    char *errp = NULL;
    r->opts = leveldb_options_create();
    leveldb_options_set_create_if_missing(r->opts, 1);
    leveldb_options_set_write_buffer_size(r->opts, S_WRITE_BUFFER);
    r->db = leveldb_open(r->opts, dir, &errp);
    if (r->db == NULL) {
        cli_error(b->cli, "raw LevelDB %s: %s", dir, errp != NULL ? errp : "open failed");
        leveldb_free(errp);
        leveldb_options_destroy(r->opts);
        r->opts = NULL;
        return -1;
    }
    return 0;
}

static void s_raw_close(raw_t *r)
{
    if (r->db != NULL) leveldb_close(r->db);
    if (r->opts != NULL) leveldb_options_destroy(r->opts);
    r->db = NULL;
    r->opts = NULL;
}

/* Value bytes of raw entry seq: the 200-byte payload, or for longer values
 * (the bus cases' envelope-sized values, at most 2 payloads) as many bytes
 * of consecutive payloads. */
static const uint8_t *s_raw_value(const bench_t *b, uint64_t seq, size_t vlen)
{
    if (vlen <= S_PAYLOAD_LEN) return s_payload(b, seq);
    return b->payloads + (size_t)(seq % (S_NPAYLOADS - 2)) * S_PAYLOAD_LEN;
}

/* Write n values of vlen bytes in batches (sync: every batch fsynced);
 * *rate = events/s until the last write returns. */
static int s_raw_write(bench_t *b, const char *name, const char *dir, size_t batch,
                       bool sync, size_t vlen, uint64_t n, double *rate)
{
    raw_t r = {0};
    if (s_raw_open(b, dir, &r) != 0) return -1;
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(wo, sync ? 1 : 0);
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    int ret = 0;
    unsigned pct = 101;
    double t0 = s_now();
    for (uint64_t seq = 1; seq <= n && !s_interrupted;) {
        uint64_t m = n - seq + 1 < batch ? n - seq + 1 : batch;
        for (uint64_t k = 0; k < m; k++) {
            uint8_t key[8];
            s_key(seq + k, key);
            leveldb_writebatch_put(wb, (const char *)key, 8,
                                   (const char *)s_raw_value(b, seq + k, vlen), vlen);
        }
        char *errp = NULL;
        leveldb_write(r.db, wo, wb, &errp);
        if (errp != NULL) {
            cli_error(b->cli, "%s: raw LevelDB write at key %" PRIu64 " in %s: %s", name,
                      seq, dir, errp);
            leveldb_free(errp);
            ret = -1;
            break;
        }
        leveldb_writebatch_clear(wb);
        seq += m;
        s_progress(b, name, "raw", seq - 1, n, &pct);
    }
    double t1 = s_now();
    *rate = (double)n / (t1 - t0);
    leveldb_writebatch_destroy(wb);
    leveldb_writeoptions_destroy(wo);
    s_raw_close(&r);
    return s_interrupted ? -1 : ret;
}

static int s_raw_append(bench_t *b, const char *name, const char *dir, size_t batch,
                        double *rate)
{
    return s_raw_write(b, name, dir, batch, false, S_PAYLOAD_LEN, b->events, rate);
}

/* Scan the first `limit` entries (0 = all); *rate = entries/s. */
static int s_raw_scan(bench_t *b, const char *name, const char *dir, uint64_t limit,
                      uint64_t *count, double *rate)
{
    raw_t r = {0};
    if (s_raw_open(b, dir, &r) != 0) return -1;
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    uint64_t n = 0, sum = 0;
    unsigned pct = 101;
    uint64_t total = limit != 0 ? limit : b->events;
    double t0 = s_now();
    leveldb_iterator_t *it = leveldb_create_iterator(r.db, ro);
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen, vlen;
        const char *v = leveldb_iter_value(it, &vlen);
        (void)leveldb_iter_key(it, &klen);
        sum += vlen + klen + (vlen > 0 ? (unsigned char)v[0] : 0u); /* touch the bytes */
        if (++n == limit || s_interrupted) break;
        if ((n & 0xffff) == 0) s_progress(b, name, "raw", n, total, &pct);
    }
    char *errp = NULL;
    leveldb_iter_get_error(it, &errp);
    leveldb_iter_destroy(it);
    double t1 = s_now();
    leveldb_readoptions_destroy(ro);
    s_raw_close(&r);
    if (errp != NULL) {
        cli_error(b->cli, "%s: raw LevelDB scan of %s: %s", name, dir, errp);
        leveldb_free(errp);
        return -1;
    }
    *count = n;
    *rate = (double)n / (t1 - t0);
    return sum == 0 && n > 0 ? -1 : 0; /* sum keeps the reads from being elided */
}

/* ---- ours ---- */

static evb_store_t *s_open(bench_t *b, const char *name, const char *dir, bool create)
{
    evb_store_opts o = {0};
    o.dir = dir;
    o.service = "bench";
    o.create = create;
    o.sync = EVB_SYNC_NONE;
    o.index_mode = EVB_INDEX_THREAD;
    evb_err err = {0};
    evb_store_t *st = evb_store_open(&o, &err);
    if (st == NULL)
        cli_error(b->cli, "%s: opening the store in %s: %s (%s)", name, dir, err.msg,
                  evb_strerror(err.code));
    return st;
}

/* splitmix64: 16 random-looking id bytes per call, cheap enough not to
 * show in the figures (the store's own ids come from a CSPRNG in batches). */
static void s_random_id(bench_t *b, evb_id *id)
{
    for (int h = 0; h < 2; h++) {
        uint64_t z = (b->rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        memcpy(id->b + 8 * h, &z, 8);
    }
}

/* Append all events in batches of `batch`. *rate = events/s until the last
 * append returns, or (wait_index) until the indexer caught up. *in_cat gets
 * how many events landed in category S_READ_CATEGORY. With ids, the caller
 * (this) supplies every event's id. */
static int s_ours_append(bench_t *b, const char *name, const char *dir, size_t batch,
                         bool wait_index, bool ids, double *rate, uint64_t *max_lag,
                         uint64_t *in_cat)
{
    evb_store_t *st = s_open(b, name, dir, true);
    if (st == NULL) return -1;
    evb_event_t *evs = calloc(batch, sizeof *evs);
    if (evs == NULL) {
        cli_error(b->cli, "%s: out of memory", name);
        evb_store_destroy(&st);
        return -1;
    }
    int ret = 0;
    unsigned pct = 101;
    uint64_t n = b->events, cat = 0;
    evb_err err = {0};
    double t0 = s_now();
    uint64_t j = 0;
    for (uint64_t seq = 1; seq <= n && !s_interrupted; j++) {
        uint64_t m = n - seq + 1 < batch ? n - seq + 1 : batch;
        unsigned k = s_stream_of_batch(j);
        /* the store writes ids, positions and names back into events[]:
         * start every batch from zero so each gets a fresh random id */
        memset(evs, 0, (size_t)m * sizeof *evs);
        for (uint64_t i = 0; i < m; i++) {
            evs[i].type = s_cat_types[k % S_NCATS];
            evs[i].schema = 1;
            evs[i].payload = s_payload(b, seq + i);
            evs[i].payload_len = S_PAYLOAD_LEN;
            if (ids) s_random_id(b, &evs[i].id);
        }
        evb_append_result res;
        int rc = evb_store_append(st, b->streams[k], EVB_EXPECT_ANY, evs, (size_t)m, &res,
                                  &err);
        if (rc != EVB_OK) {
            cli_error(b->cli, "%s: append to %s at seq %" PRIu64 " in %s: %s (%s)", name,
                      b->streams[k], seq, dir, err.msg, evb_strerror(rc));
            ret = -1;
            break;
        }
        if (res.duplicate || res.first_seq != seq || res.last_seq != seq + m - 1) {
            cli_error(b->cli,
                      "%s: append to %s returned seq %" PRIu64 "..%" PRIu64
                      "%s, expected %" PRIu64 "..%" PRIu64,
                      name, b->streams[k], res.first_seq, res.last_seq,
                      res.duplicate ? " (duplicate)" : "", seq, seq + m - 1);
            ret = -1;
            break;
        }
        if (k % S_NCATS == S_READ_CATEGORY) cat += m;
        seq += m;
        s_progress(b, name, "ours", seq - 1, n, &pct);
    }
    if (ret == 0 && !s_interrupted && wait_index) {
        cli_progress(b->cli, "evbus bench: %s: ours, waiting for the indexer", name);
        if (evb_store_index_wait(st, &err) != EVB_OK) {
            cli_error(b->cli, "%s: index wait in %s: %s (%s)", name, dir, err.msg,
                      evb_strerror(err.code));
            ret = -1;
        }
    }
    double t1 = s_now();
    *rate = (double)n / (t1 - t0);
    evb_store_info in;
    evb_store_get_info(st, &in);
    if (max_lag != NULL) *max_lag = in.max_index_lag;
    if (in_cat != NULL) *in_cat = cat;
    if (ret == 0 && in.head != n) {
        cli_error(b->cli, "%s: head is %" PRIu64 " after appending %" PRIu64 " events",
                  name, in.head, n);
        b->problems = true;
    }
    cli_progress(b->cli, "evbus bench: %s: closing the store", name);
    free(evs);
    evb_store_destroy(&st);
    return s_interrupted ? -1 : ret;
}

/* Read the whole log (category NULL) or one category; *rate = events/s. */
static int s_ours_read(bench_t *b, const char *name, const char *dir,
                       const char *category, uint64_t expect, uint64_t *count,
                       double *rate)
{
    evb_store_t *st = s_open(b, name, dir, false);
    if (st == NULL) return -1;
    evb_err err = {0};
    uint64_t n = 0, sum = 0, last = 0;
    unsigned pct = 101;
    bool order_ok = true;
    double t0 = s_now();
    evb_iter_t *it = category != NULL
                         ? evb_store_read_category(st, category, 0, NULL, &err)
                         : evb_store_read_range(st, 1, 0, NULL, &err);
    int ret = 0;
    if (it == NULL) {
        cli_error(b->cli, "%s: reading %s: %s (%s)", name, dir, err.msg,
                  evb_strerror(err.code));
        evb_store_destroy(&st);
        return -1;
    }
    const evb_event_t *ev;
    evb_err_clear(&err);
    while (!s_interrupted && evb_iter_next(it, &ev, &err)) {
        sum += ev->payload_len;
        if (ev->seq <= last) order_ok = false;
        last = ev->seq;
        if ((++n & 0xffff) == 0) s_progress(b, name, "ours", n, expect, &pct);
    }
    double t1 = s_now();
    if (err.code != EVB_OK) {
        cli_error(b->cli, "%s: reading %s after %" PRIu64 " events: %s (%s)", name, dir,
                  n, err.msg, evb_strerror(err.code));
        ret = -1;
    } else if (!s_interrupted && (n != expect || sum != n * S_PAYLOAD_LEN || !order_ok)) {
        cli_error(b->cli,
                  "%s: read %" PRIu64 " events (%" PRIu64
                  " payload bytes%s), expected %" PRIu64 " of %u bytes",
                  name, n, sum, order_ok ? "" : ", out of order", expect, S_PAYLOAD_LEN);
        b->problems = true;
    }
    evb_iter_destroy(&it);
    evb_store_destroy(&st);
    *count = n;
    *rate = (double)n / (t1 - t0);
    return s_interrupted ? -1 : ret;
}

/* ---- output ---- */

static void s_emit(bench_t *b, const result_t *r)
{
    cli_t *cli = b->cli;
    double ratio = r->lower_better ? (r->ours > 0 ? r->baseline / r->ours : 0)
                                   : (r->baseline > 0 ? r->ours / r->baseline : 0);
    if (b->nseen < S_MAX_SEEN) {
        b->seen[b->nseen].name = r->name;
        b->seen[b->nseen].events = b->events;
        b->seen[b->nseen].ratio = ratio;
        b->nseen++;
    }
    const char *unit = r->unit != NULL ? r->unit : "events/s";
    cli_progress_end(cli);
    if (b->json) {
        evb_buf line = {0};
        evb_err err = {0};
        int prec = r->lower_better ? 1 : 0;
        int rc = evb_buf_printf(&line, &err,
                                "{\"name\":\"%s\",\"unit\":\"%s\",\"ours\":%.*f,"
                                "\"baseline\":%.*f,\"ratio\":%.3f,\"sync\":",
                                r->name, unit, prec, r->ours, prec, r->baseline, ratio);
        if (rc == EVB_OK)
            rc = cli_json_str(&line, r->sync != NULL ? r->sync : "none", &err);
        if (rc == EVB_OK) rc = evb_buf_append(&line, ",\"placement\":", 13, &err);
        if (rc == EVB_OK)
            rc = cli_json_str(&line, r->placement != NULL ? r->placement : b->placement,
                              &err);
        if (rc == EVB_OK)
            rc = evb_buf_printf(&line, &err, ",\"events\":%" PRIu64, r->events);
        if (rc == EVB_OK && r->has_lag)
            rc = evb_buf_printf(&line, &err, ",\"max_index_lag\":%" PRIu64,
                                r->max_index_lag);
        if (rc == EVB_OK && r->extra[0] != '\0')
            rc = evb_buf_append(&line, r->extra, strlen(r->extra), &err);
        if (rc == EVB_OK) rc = evb_buf_append(&line, "}\n", 2, &err);
        if (rc == EVB_OK) cli_write(cli, line.data, line.len);
        evb_buf_free(&line);
        fflush(stdout); /* one line per case, as it finishes */
        return;
    }
    char g1[32], g2[32], g3[32];
    if (!b->header_done) {
        cli_printf(cli, "%s%-22s %14s %14s %7s  %s%s\n", cli_bold(cli), "case",
                   "ours ev/s", "raw ev/s", "ratio", "notes", cli_reset(cli));
        b->header_done = true;
    }
    char note[96] = "";
    if (r->note[0] != '\0')
        snprintf(note, sizeof note, "%s", r->note);
    else if (r->has_lag)
        snprintf(note, sizeof note, "max index lag %s", cli_group(r->max_index_lag, g3));
    else if (strcmp(r->name, "read_category") == 0)
        snprintf(note, sizeof note, "%s events in category", cli_group(r->events, g3));
    if (r->unit != NULL && strcmp(r->unit, "us") == 0) {
        snprintf(g1, sizeof g1, "%.1f us", r->ours);
        snprintf(g2, sizeof g2, "%.1f us", r->baseline);
    } else {
        cli_group((uint64_t)r->ours, g1);
        cli_group((uint64_t)r->baseline, g2);
    }
    cli_printf(cli, "%-22s %14s %14s %7.3f  %s\n", r->name, g1, g2, ratio, note);
    fflush(stdout);
}

/* ---- cases ---- */

static bool s_wanted(const bench_t *b, const char *name)
{
    if (b->only == NULL) return true;
    size_t n = strlen(name);
    for (const char *p = b->only; *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return true;
        p += l + (e != NULL ? 1 : 0);
    }
    return false;
}

static int s_case_append(bench_t *b, const char *name, size_t batch, bool indexed,
                         bool ids)
{
    char raw_dir[PATH_MAX], ours_dir[PATH_MAX], sub[96];
    snprintf(sub, sizeof sub, "%s-raw", name);
    if (s_case_dir(b, sub, raw_dir) != 0) return -1;
    snprintf(sub, sizeof sub, "%s-ours", name);
    if (s_case_dir(b, sub, ours_dir) != 0) return -1;
    /* Caller ids make the indexer's work: its lag tells whether appends
     * waited for it (at EVB_STORE_MAX_INDEX_LAG). */
    result_t r = {.name = name, .events = b->events, .has_lag = indexed || ids};
    int rc = s_raw_append(b, name, raw_dir, batch, &r.baseline);
    if (rc == 0)
        rc = s_ours_append(b, name, ours_dir, batch, indexed, ids, &r.ours,
                           &r.max_index_lag, NULL);
    if (rc == 0) s_emit(b, &r);
    return rc;
}

/* Build the log and raw db the read cases share (untimed). */
static int s_read_fixture(bench_t *b, char raw_dir[PATH_MAX], char ours_dir[PATH_MAX],
                          uint64_t *in_cat)
{
    double ignored;
    if (s_case_dir(b, "read-raw", raw_dir) != 0 ||
        s_case_dir(b, "read-ours", ours_dir) != 0)
        return -1;
    if (s_raw_append(b, "read fixture", raw_dir, 1000, &ignored) != 0) return -1;
    return s_ours_append(b, "read fixture", ours_dir, 1000, true, false, &ignored, NULL,
                         in_cat);
}

/* ---- bus cases: processes ----
 * Every bus case runs two processes: the parent (this one) is the
 * subscriber side, a child is the publisher side. Children are this program
 * again (fork + execve of /proc/self/exe with EVBUS_BENCH_CHILD set), not a
 * bare fork: by the time a bus case runs, the parent has LevelDB's
 * background thread and ZeroMQ's I/O threads, and a forked copy of a
 * threaded process must not open a store (its compactions would never run).
 * Parent and child talk over a socketpair in text lines:
 *   child -> parent: "ready EP [EP]", "t0 NS" (clock of the first append or
 *                    send, CLOCK_MONOTONIC ns), "done SENT LATE",
 *                    "rss KB" (its VmHWM), "err MESSAGE"
 *   parent -> child: "go", "quit"
 * A child dies with its parent (PR_SET_PDEATHSIG) and stops when the
 * socketpair closes; the parent kills and reaps it on every error path. */

#define S_CHILD_ENV "EVBUS_BENCH_CHILD"
#define S_BUS_BATCH 100u
#define S_CATCHUP_BUILD_BATCH 1000u
#define S_ZMQ_PAGE 2000u  /* frames per raw catch-up page */
#define S_ZMQ_INFLIGHT 4u /* raw pages asked ahead: one per feed, as the bus */
#define S_LAT_RATE 10000u /* events/s */
#define S_LAT_WARM_S 1u
#define S_LAT_MEASURE_S 5u
#define S_LAT_QUICK_S 2u
#define S_LAT_PAYLOAD_TS 5u /* offset of the 8 ts bytes in the latency payload */
#define S_STALL_S 30.0      /* no progress this long: the case fails */
#define S_MAX_MSG 1024u     /* raw message bodies (envelope-sized) */

typedef struct ctl {
    int fd;
    char buf[1024];
    size_t len;
} ctl_t;

/* What a child is asked to do; passed in S_CHILD_ENV, dir last. */
typedef struct child_spec {
    char role[16]; /* pub, serve, lat, zpub, zlat, zrouter */
    int fd;
    uint64_t n;
    int sync;      /* evb_sync */
    int pin;       /* cpu, or -1 */
    unsigned secs; /* lat, zlat: seconds of sending, warm-up included */
    unsigned mlen; /* raw message body bytes */
    char dir[PATH_MAX];
} child_spec;

typedef struct child {
    pid_t pid;
    ctl_t ctl;
    bool ready, done, eof, failed;
    char ep1[128], ep2[128];
    uint64_t t0_ns, sent, late;
    long rss_kb;
    long anon_kb, file_kb; /* sampled peaks of RssAnon, RssFile; -1 unknown */
    char err[512];
} child_t;

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* VmHWM of this process in kB, -1 if unknown. */
static long s_vm_hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* RssAnon (the process's own memory: heap, stacks, anonymous maps) and
 * RssFile (mapped files resident: LevelDB's tables, libraries) in kB; -1 if
 * unknown. Peaks are sampled: VmHWM has no split. */
static void s_rss_split_kb(long *anon, long *file)
{
    *anon = *file = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return;
    char line[256];
    while (fgets(line, sizeof line, f) != NULL) {
        long kb;
        if (sscanf(line, "RssAnon: %ld kB", &kb) == 1)
            *anon = kb;
        else if (sscanf(line, "RssFile: %ld kB", &kb) == 1)
            *file = kb;
    }
    fclose(f);
}

/* Reset VmHWM to the current RSS (Linux >= 4.0); false if it cannot. */
static bool s_reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f == NULL) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static int s_ctl_send(ctl_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int s_ctl_send(ctl_t *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    for (int off = 0; off < n;) {
        ssize_t w = send(c->fd, line + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        off += (int)w;
    }
    return 0;
}

/* One line (without '\n') into line: 1, 0 when none came within timeout_ms,
 * -1 at end of file or on error. */
static int s_ctl_line(ctl_t *c, char *line, size_t cap, int timeout_ms)
{
    uint64_t deadline =
        bench_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->len);
        if (nl != NULL) {
            size_t l = (size_t)(nl - c->buf);
            size_t k = l < cap - 1 ? l : cap - 1;
            memcpy(line, c->buf, k);
            line[k] = '\0';
            memmove(c->buf, nl + 1, c->len - l - 1);
            c->len -= l + 1;
            return 1;
        }
        if (c->len == sizeof c->buf) c->len = 0; /* an overlong line: drop it */
        uint64_t now = bench_now_ns();
        int wait = now >= deadline ? 0 : (int)((deadline - now + 999999u) / 1000000u);
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int r = poll(&pfd, 1, wait);
        if (r < 0 && errno != EINTR) return -1;
        if (r <= 0) {
            if (bench_now_ns() >= deadline || s_interrupted) return 0;
            continue;
        }
        ssize_t got = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        c->len += (size_t)got;
    }
}

/* Read what the child said within timeout_ms into c's fields. Returns -1
 * once the child failed or went away, else 0. */
static int s_child_pump(child_t *c, int timeout_ms)
{
    char line[512];
    int r;
    while ((r = s_ctl_line(&c->ctl, line, sizeof line, timeout_ms)) == 1) {
        timeout_ms = 0;
        unsigned long long a = 0, bb = 0;
        long kb, kb2;
        if (strncmp(line, "err ", 4) == 0) {
            snprintf(c->err, sizeof c->err, "%s", line + 4);
            c->failed = true;
        } else if (strncmp(line, "ready ", 6) == 0) {
            c->ready = true;
            c->ep1[0] = c->ep2[0] = '\0';
            sscanf(line + 6, "%127s %127s", c->ep1, c->ep2);
        } else if (sscanf(line, "t0 %llu", &a) == 1) {
            c->t0_ns = a;
        } else if (sscanf(line, "done %llu %llu", &a, &bb) == 2) {
            c->done = true;
            c->sent = a;
            c->late = bb;
        } else if (sscanf(line, "rss %ld", &kb) == 1) {
            c->rss_kb = kb;
        } else if (sscanf(line, "mem %ld %ld", &kb, &kb2) == 2) {
            c->anon_kb = kb;
            c->file_kb = kb2;
        }
    }
    if (r < 0) c->eof = true;
    return c->failed || c->eof ? -1 : 0;
}

/* Report why a child let us down. */
static void s_child_report(bench_t *b, const char *name, const child_t *c)
{
    if (s_interrupted) return;
    if (c->failed)
        cli_error(b->cli, "%s: publisher process: %s", name, c->err);
    else if (c->eof)
        cli_error(b->cli, "%s: publisher process ended unexpectedly", name);
}

/* Start this program again as a child doing sp (sp->fd is filled in). */
static int s_child_start(bench_t *b, const char *name, child_spec *sp, child_t *c)
{
    memset(c, 0, sizeof *c);
    c->pid = -1;
    c->ctl.fd = -1;
    c->rss_kb = c->anon_kb = c->file_kb = -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        cli_error(b->cli, "%s: socketpair: %s", name, strerror(errno));
        return -1;
    }
    sp->fd = sv[1];
    char *var = malloc(PATH_MAX + 256);
    size_t nenv = 0;
    while (environ[nenv] != NULL)
        nenv++;
    char **envp = calloc(nenv + 2, sizeof *envp);
    if (var == NULL || envp == NULL) {
        cli_error(b->cli, "%s: out of memory", name);
        free(var);
        free(envp);
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    snprintf(var, PATH_MAX + 256, "%s=%s %d %" PRIu64 " %d %d %u %u %s", S_CHILD_ENV,
             sp->role, sp->fd, sp->n, sp->sync, sp->pin, sp->secs, sp->mlen, sp->dir);
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], S_CHILD_ENV "=", sizeof S_CHILD_ENV) != 0)
            envp[k++] = environ[i];
    envp[k++] = var;
    envp[k] = NULL;
    char *argv[] = {(char *)"evbus", (char *)"bench", NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { /* only async-signal-safe calls until execve */
        if (fcntl(sv[1], F_SETFD, 0) != 0) _exit(127);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execve("/proc/self/exe", argv, envp);
        _exit(127);
    }
    int saved = errno;
    free(var);
    free(envp);
    close(sv[1]);
    if (pid < 0) {
        cli_error(b->cli, "%s: fork: %s", name, strerror(saved));
        close(sv[0]);
        return -1;
    }
    c->pid = pid;
    c->ctl.fd = sv[0];
    return 0;
}

/* Wait for the child to exit (up to wait_ms), then kill it; close the pipe.
 * Returns 0 when it exited 0 by itself. */
static int s_child_reap(child_t *c, int wait_ms)
{
    int ret = -1;
    if (c->pid > 0) {
        int st = 0;
        pid_t r = 0;
        for (int i = 0; i <= wait_ms / 10; i++) {
            r = waitpid(c->pid, &st, WNOHANG);
            if (r != 0) break;
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        if (r == 0) {
            kill(c->pid, SIGKILL);
            while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {
            }
        } else if (r > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            ret = 0;
        }
        c->pid = -1;
    }
    if (c->ctl.fd >= 0) close(c->ctl.fd);
    c->ctl.fd = -1;
    return ret;
}

/* Ask the child to stop and collect its "rss" line; 0 when it ended well. */
static int s_child_finish(bench_t *b, const char *name, child_t *c)
{
    if (s_ctl_send(&c->ctl, "quit") == 0) {
        for (int i = 0; i < 100 && c->rss_kb < 0 && !c->failed && !c->eof; i++)
            s_child_pump(c, 100);
    }
    bool failed = c->failed;
    if (s_child_reap(c, 5000) != 0 || failed) {
        s_child_report(b, name, c);
        if (!failed && !s_interrupted)
            cli_error(b->cli, "%s: publisher process did not exit cleanly", name);
        return -1;
    }
    return 0;
}

/* Wait up to timeout_s for "ready". */
static int s_child_ready(bench_t *b, const char *name, child_t *c, double timeout_s)
{
    double until = s_now() + timeout_s;
    while (!c->ready) {
        if (s_interrupted || s_child_pump(c, 100) != 0) {
            s_child_report(b, name, c);
            return -1;
        }
        if (!c->ready && s_now() > until) {
            cli_error(b->cli, "%s: publisher process not ready after %.0f s", name,
                      timeout_s);
            return -1;
        }
    }
    return 0;
}

/* Placement of a two-process case: both pinned (pub cpu0, sub cpu1) when
 * pin, else unpinned. */
static void s_bus_placement(char *out, size_t cap, bool pinned)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (pinned)
        snprintf(out, cap,
                 "2 processes: pub cpu0, sub cpu1 (all threads of each, %ld cpus)",
                 online);
    else
        snprintf(out, cap, "2 processes (pub child, sub parent), unpinned, %ld cpus",
                 online);
}

/* ---- bus cases: the child side ---- */

typedef struct kid {
    bench_t *b;
    child_spec sp;
    ctl_t ctl;
    long anon_kb, file_kb; /* peaks of RssAnon and RssFile, sampled */
} kid_t;

static int s_kid_fail(kid_t *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int s_kid_fail(kid_t *k, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s_ctl_send(&k->ctl, "err %s", msg);
    return CLI_EXIT_RUNTIME;
}

/* A free loopback TCP port (bound and released: another process may take it
 * before we bind again, so callers retry). */
static int s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static evb_store_t *s_kid_store(kid_t *k, bool create)
{
    evb_store_opts o = {0};
    o.dir = k->sp.dir;
    o.service = "bench";
    o.create = create;
    o.sync = (evb_sync)k->sp.sync;
    o.index_mode = EVB_INDEX_THREAD;
    evb_err err = {0};
    evb_store_t *st = evb_store_open(&o, &err);
    if (st == NULL)
        s_kid_fail(k, "opening the store in %s: %s (%s)", k->sp.dir, err.msg,
                   evb_strerror(err.code));
    return st;
}

/* Bind a publisher on two free loopback ports and say "ready". */
static evb_pub_t *s_kid_pub(kid_t *k, evb_store_t *st)
{
    evb_err err = {0};
    for (int attempt = 0; attempt < 20; attempt++) {
        int p1 = s_free_port(), p2 = s_free_port();
        if (p1 < 0 || p2 < 0 || p1 == p2) continue;
        char pub_ep[64], cu_ep[64];
        snprintf(pub_ep, sizeof pub_ep, "tcp://127.0.0.1:%d", p1);
        snprintf(cu_ep, sizeof cu_ep, "tcp://127.0.0.1:%d", p2);
        evb_pub_opts o = {.store = st, .pub_endpoint = pub_ep, .catchup_endpoint = cu_ep};
        evb_pub_t *pub = evb_pub_new(&o, &err);
        if (pub != NULL) {
            if (s_ctl_send(&k->ctl, "ready %s %s", pub_ep, cu_ep) != 0) {
                evb_pub_destroy(&pub);
                return NULL;
            }
            return pub;
        }
        if (err.code != EVB_EIO) break;
    }
    s_kid_fail(k, "no publisher: %s (%s)", err.msg, evb_strerror(err.code));
    return NULL;
}

/* Poll the publisher (timeout_ms per turn) until the parent says `word`
 * ("go" or "quit"). False when the parent went away or reading failed. */
static bool s_kid_serve_until(kid_t *k, evb_pub_t *pub, const char *word, int timeout_ms)
{
    char line[64];
    evb_err err = {0};
    uint64_t next_sample = 0;
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= next_sample) { /* every 50 ms: a few syscalls */
            long anon, file;
            s_rss_split_kb(&anon, &file);
            if (anon > k->anon_kb) k->anon_kb = anon;
            if (file > k->file_kb) k->file_kb = file;
            next_sample = now + 50000000u;
        }
        if (evb_pub_poll(pub, timeout_ms, &err) != EVB_OK) {
            s_kid_fail(k, "evb_pub_poll: %s (%s)", err.msg, evb_strerror(err.code));
            return false;
        }
        int r = s_ctl_line(&k->ctl, line, sizeof line, 0);
        if (r < 0) return false;
        if (r == 1 && strcmp(line, word) == 0) return true;
        if (r == 1 && strcmp(line, "quit") == 0) return false;
    }
}

/* Events seq..seq+m-1 as batch j of the workload (lent payloads). */
static void s_fill_batch(const bench_t *b, evb_event_t *evs, uint64_t seq, uint64_t m,
                         unsigned k)
{
    memset(evs, 0, (size_t)m * sizeof *evs);
    for (uint64_t i = 0; i < m; i++) {
        evs[i].type = s_cat_types[k % S_NCATS];
        evs[i].schema = 1;
        evs[i].payload = s_payload(b, seq + i);
        evs[i].payload_len = S_PAYLOAD_LEN;
    }
}

/* Append n events in batches, polling pub (if any) between them. */
static int s_kid_append(kid_t *k, evb_store_t *st, evb_pub_t *pub, uint64_t n,
                        size_t batch)
{
    evb_event_t *evs = calloc(batch, sizeof *evs);
    if (evs == NULL) return s_kid_fail(k, "out of memory");
    evb_err err = {0};
    int ret = 0;
    uint64_t j = 0;
    for (uint64_t seq = 1; seq <= n && ret == 0; j++) {
        uint64_t m = n - seq + 1 < batch ? n - seq + 1 : batch;
        unsigned sk = s_stream_of_batch(j);
        s_fill_batch(k->b, evs, seq, m, sk);
        evb_append_result res;
        if (evb_store_append(st, k->b->streams[sk], EVB_EXPECT_ANY, evs, (size_t)m, &res,
                             &err) != EVB_OK)
            ret = s_kid_fail(k, "append at seq %" PRIu64 ": %s (%s)", seq, err.msg,
                             evb_strerror(err.code));
        else if (res.first_seq != seq)
            ret = s_kid_fail(k, "append returned seq %" PRIu64 ", expected %" PRIu64,
                             res.first_seq, seq);
        else if (pub != NULL && evb_pub_poll(pub, 0, &err) != EVB_OK)
            ret = s_kid_fail(k, "evb_pub_poll: %s (%s)", err.msg, evb_strerror(err.code));
        seq += m;
    }
    free(evs);
    return ret;
}

/* The latency payload: {"ts": uint64 (0xcf, 8 bytes big-endian), "note":
 * str8 padding} of exactly S_PAYLOAD_LEN bytes; ts sits at
 * S_LAT_PAYLOAD_TS. */
static void s_lat_payload(uint8_t *p)
{
    size_t n = 0;
    p[n++] = 0x82;
    p[n++] = 0xa2;
    p[n++] = 't';
    p[n++] = 's';
    p[n++] = 0xcf;
    n += 8;
    p[n++] = 0xa4;
    memcpy(p + n, "note", 4);
    n += 4;
    p[n++] = 0xd9;
    p[n] = (uint8_t)(S_PAYLOAD_LEN - n - 1);
    n++;
    memset(p + n, 'x', S_PAYLOAD_LEN - n);
}

static void s_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t s_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Pace `total` sends at S_LAT_RATE with absolute deadlines; send() gets the
 * timestamp to carry. Counts sends that started over 100 us late. */
typedef int (*s_send_fn)(kid_t *k, void *ctx, uint64_t ts);

static int s_kid_pace(kid_t *k, void *ctx, s_send_fn send_one, uint64_t total,
                      uint64_t *late)
{
    const uint64_t period = 1000000000u / S_LAT_RATE;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    uint64_t start = (uint64_t)dl.tv_sec * 1000000000u + (uint64_t)dl.tv_nsec;
    *late = 0;
    for (uint64_t i = 0; i < total; i++) {
        uint64_t at = start + (i + 1) * period;
        dl.tv_sec = (time_t)(at / 1000000000u);
        dl.tv_nsec = (long)(at % 1000000000u);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL) == EINTR) {
        }
        uint64_t ts = bench_now_ns();
        if (ts > at + 100000u) (*late)++;
        int rc = send_one(k, ctx, ts);
        if (rc != 0) return rc;
    }
    return 0;
}

typedef struct kid_lat {
    evb_store_t *st;
    evb_pub_t *pub;
    evb_event_t ev;
    uint8_t payload[S_PAYLOAD_LEN];
    uint64_t j;
} kid_lat_t;

static int s_kid_lat_send(kid_t *k, void *ctx, uint64_t ts)
{
    kid_lat_t *l = ctx;
    unsigned sk = s_stream_of_batch(l->j++);
    s_put_be64(l->payload + S_LAT_PAYLOAD_TS, ts);
    memset(&l->ev, 0, sizeof l->ev);
    l->ev.type = s_cat_types[sk % S_NCATS];
    l->ev.schema = 1;
    l->ev.payload = l->payload;
    l->ev.payload_len = S_PAYLOAD_LEN;
    evb_err err = {0};
    evb_append_result res;
    if (evb_store_append(l->st, k->b->streams[sk], EVB_EXPECT_ANY, &l->ev, 1, &res,
                         &err) != EVB_OK)
        return s_kid_fail(k, "append: %s (%s)", err.msg, evb_strerror(err.code));
    if (evb_pub_poll(l->pub, 0, &err) != EVB_OK)
        return s_kid_fail(k, "evb_pub_poll: %s (%s)", err.msg, evb_strerror(err.code));
    return 0;
}

/* pub: throughput publisher; serve: catch-up publisher over a log it builds
 * first; lat: paced single appends. */
static int s_kid_bus(kid_t *k)
{
    const child_spec *sp = &k->sp;
    bool serve = strcmp(sp->role, "serve") == 0, lat = strcmp(sp->role, "lat") == 0;
    evb_store_t *st = s_kid_store(k, true);
    if (st == NULL) return CLI_EXIT_RUNTIME;
    int ret = 0;
    evb_pub_t *pub = NULL;
    evb_err err = {0};
    if (serve) {
        /* Build untimed, close, reopen as a restarted publisher would, and
         * count peak memory from there. */
        ret = s_kid_append(k, st, NULL, sp->n, S_CATCHUP_BUILD_BATCH);
        if (ret == 0 && evb_store_index_wait(st, &err) != EVB_OK)
            ret = s_kid_fail(k, "index wait: %s", err.msg);
        evb_store_destroy(&st);
        if (ret != 0) return ret;
        if ((st = s_kid_store(k, false)) == NULL) return CLI_EXIT_RUNTIME;
        s_reset_hwm();
    }
    if ((pub = s_kid_pub(k, st)) == NULL) {
        evb_store_destroy(&st);
        return CLI_EXIT_RUNTIME;
    }
    if (serve) {
        (void)s_kid_serve_until(k, pub, "quit", 100);
    } else if (s_kid_serve_until(k, pub, "go", 5)) {
        if (lat) {
            kid_lat_t l = {.st = st, .pub = pub};
            s_lat_payload(l.payload);
            uint64_t late = 0, total = (uint64_t)sp->secs * S_LAT_RATE;
            ret = s_kid_pace(k, &l, s_kid_lat_send, total, &late);
            if (ret == 0) s_ctl_send(&k->ctl, "done %" PRIu64 " %" PRIu64, total, late);
        } else {
            uint64_t t0 = bench_now_ns();
            ret = s_kid_append(k, st, pub, sp->n, S_BUS_BATCH);
            if (ret == 0) s_ctl_send(&k->ctl, "t0 %" PRIu64, t0);
        }
        if (ret == 0) (void)s_kid_serve_until(k, pub, "quit", 1);
    }
    s_ctl_send(&k->ctl, "mem %ld %ld", k->anon_kb, k->file_kb);
    s_ctl_send(&k->ctl, "rss %ld", s_vm_hwm_kb());
    evb_pub_destroy(&pub);
    evb_store_destroy(&st);
    return ret;
}

/* A raw ZeroMQ socket bound to an ephemeral loopback port; "ready EP". */
static void *s_kid_zbind(kid_t *k, void *zctx, int type)
{
    void *s = zmq_socket(zctx, type);
    int zero = 0;
    char ep[128];
    size_t epl = sizeof ep;
    if (s == NULL) {
        s_kid_fail(k, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero);
    if (zmq_bind(s, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &epl) != 0) {
        s_kid_fail(k, "zmq_bind: %s", zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    if (s_ctl_send(&k->ctl, "ready %s", ep) != 0) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

typedef struct kid_z {
    void *sock;
    uint8_t body[S_MAX_MSG];
    size_t mlen;
    uint8_t hdr[10];
} kid_z_t;

/* Three frames like a live event: topic, a small header, the body. */
static int s_kid_z_send(kid_t *k, void *ctx, uint64_t ts)
{
    kid_z_t *z = ctx;
    s_put_be64(z->body, ts);
    if (zmq_send(z->sock, "Ebooking", 9, ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, z->hdr, sizeof z->hdr, ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, z->body, z->mlen, 0) < 0)
        return s_kid_fail(k, "zmq_send: %s", zmq_strerror(errno));
    return 0;
}

/* zpub: N messages as fast as PUB takes them; zlat: paced. Both send probes
 * (topic "P") every millisecond until the parent, having received one, says
 * "go": PUB drops everything sent before a subscription arrives. */
static int s_kid_zpub(kid_t *k, void *zctx)
{
    kid_z_t z = {.mlen = k->sp.mlen};
    memcpy(z.body, k->b->payloads, z.mlen);
    memset(z.hdr, 0x11, sizeof z.hdr);
    if ((z.sock = s_kid_zbind(k, zctx, ZMQ_PUB)) == NULL) return CLI_EXIT_RUNTIME;
    char line[64];
    int r, ret = 0;
    while ((r = s_ctl_line(&k->ctl, line, sizeof line, 1)) == 0 ||
           (r == 1 && strcmp(line, "go") != 0))
        zmq_send(z.sock, "P", 1, ZMQ_DONTWAIT);
    if (r < 0) {
        zmq_close(z.sock);
        return CLI_EXIT_RUNTIME;
    }
    if (strcmp(k->sp.role, "zlat") == 0) {
        uint64_t late = 0, total = (uint64_t)k->sp.secs * S_LAT_RATE;
        ret = s_kid_pace(k, &z, s_kid_z_send, total, &late);
        if (ret == 0) s_ctl_send(&k->ctl, "done %" PRIu64 " %" PRIu64, total, late);
    } else {
        uint64_t t0 = bench_now_ns();
        for (uint64_t i = 0; i < k->sp.n && ret == 0; i++)
            ret = s_kid_z_send(k, &z, i);
        if (ret == 0) s_ctl_send(&k->ctl, "t0 %" PRIu64, t0);
    }
    while (ret == 0 && (r = s_ctl_line(&k->ctl, line, sizeof line, 1000)) >= 0 &&
           !(r == 1 && strcmp(line, "quit") == 0)) {
    }
    zmq_close(z.sock);
    return ret;
}

/* zrouter: answers "AFTER COUNT" requests (8 + 4 bytes) with a header frame
 * and COUNT frames of mlen bytes, until "quit". */
static int s_kid_zrouter(kid_t *k, void *zctx)
{
    void *r = s_kid_zbind(k, zctx, ZMQ_ROUTER);
    if (r == NULL) return CLI_EXIT_RUNTIME;
    int one = 1;
    zmq_setsockopt(r, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    size_t mlen = k->sp.mlen;
    const uint8_t *body = k->b->payloads;
    int ret = 0;
    for (;;) {
        zmq_pollitem_t items[2] = {{r, 0, ZMQ_POLLIN, 0},
                                   {NULL, k->ctl.fd, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, 1000) < 0 && errno != EINTR) {
            ret = s_kid_fail(k, "zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            char line[64];
            int lr = s_ctl_line(&k->ctl, line, sizeof line, 0);
            if (lr < 0 || (lr == 1 && strcmp(line, "quit") == 0)) break;
        }
        if (!(items[0].revents & ZMQ_POLLIN)) continue;
        uint8_t id[256], rq[16];
        int idl = zmq_recv(r, id, sizeof id, 0);
        int rql = idl >= 0 ? zmq_recv(r, rq, sizeof rq, 0) : -1;
        if (idl < 0 || idl > (int)sizeof id || rql != 12) {
            ret = s_kid_fail(k, "raw catch-up: bad request");
            break;
        }
        uint32_t count = (uint32_t)rq[8] << 24 | (uint32_t)rq[9] << 16 |
                         (uint32_t)rq[10] << 8 | rq[11];
        bool ok = zmq_send(r, id, (size_t)idl, ZMQ_SNDMORE) >= 0 &&
                  zmq_send(r, rq, 12, count > 0 ? ZMQ_SNDMORE : 0) >= 0;
        for (uint32_t i = 0; ok && i < count; i++)
            ok = zmq_send(r, body + (size_t)(i % 64) * S_PAYLOAD_LEN, mlen,
                          i + 1 < count ? ZMQ_SNDMORE : 0) >= 0;
        if (!ok) {
            ret = s_kid_fail(k, "raw catch-up: zmq_send: %s", zmq_strerror(errno));
            break;
        }
    }
    zmq_close(r);
    return ret;
}

/* The child's main: set up from S_CHILD_ENV and play its role. */
static int s_child_main(const char *spec)
{
    cli_t cli;
    cli_init(&cli, "evbus bench (publisher process)");
    bench_t *b = calloc(1, sizeof *b);
    kid_t k = {.b = b, .anon_kb = -1, .file_kb = -1};
    k.ctl.fd = -1;
    int used = 0;
    if (b == NULL ||
        sscanf(spec, "%15s %d %" SCNu64 " %d %d %u %u %n", k.sp.role, &k.sp.fd, &k.sp.n,
               &k.sp.sync, &k.sp.pin, &k.sp.secs, &k.sp.mlen, &used) != 7 ||
        used <= 0 || k.sp.mlen > S_MAX_MSG || k.sp.mlen > 2 * S_PAYLOAD_LEN) {
        free(b);
        cli_error(&cli, "bad %s (internal to evbus bench)", S_CHILD_ENV);
        return CLI_EXIT_USAGE;
    }
    snprintf(k.sp.dir, sizeof k.sp.dir, "%s", spec + used);
    k.ctl.fd = k.sp.fd;
    b->cli = &cli;
    prctl(PR_SET_TIMERSLACK, 1UL); /* clock_nanosleep wakes on time */
    cli_install_log_sink(&cli);
    int ret = 0;
    if (k.sp.pin >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(k.sp.pin, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            ret =
                s_kid_fail(&k, "sched_setaffinity cpu %d: %s", k.sp.pin, strerror(errno));
    }
    if (ret == 0 && s_setup(b) != 0) ret = s_kid_fail(&k, "building payloads");
    if (ret == 0) {
        if (k.sp.role[0] == 'z') {
            void *zctx = zmq_ctx_new();
            if (zctx == NULL)
                ret = s_kid_fail(&k, "zmq_ctx_new: %s", zmq_strerror(errno));
            else if (strcmp(k.sp.role, "zrouter") == 0)
                ret = s_kid_zrouter(&k, zctx);
            else
                ret = s_kid_zpub(&k, zctx);
            if (zctx != NULL) zmq_ctx_term(zctx);
            if (ret == 0) s_ctl_send(&k.ctl, "rss %ld", s_vm_hwm_kb());
        } else {
            ret = s_kid_bus(&k);
        }
    }
    close(k.ctl.fd);
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
    free(b->payloads);
    free(b);
    return cli_finish(&cli, ret);
}

/* ---- bus cases: the parent side ---- */

/* A raw ZeroMQ socket connected to ep, in a fresh context. */
static void *s_zconnect(bench_t *b, const char *name, void *zctx, int type,
                        const char *ep)
{
    void *s = zmq_socket(zctx, type);
    if (s == NULL) {
        cli_error(b->cli, "%s: zmq_socket: %s", name, zmq_strerror(errno));
        return NULL;
    }
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero);
    if (type == ZMQ_SUB) zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect(s, ep) != 0) {
        cli_error(b->cli, "%s: zmq_connect %s: %s", name, ep, zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* Receive one message of up to 3 frames; the last frame's first 8 bytes
 * into *ts when it has them. Returns frames received, 0 when none waits. */
static int s_zrecv3(void *s, char *topic, uint64_t *ts, size_t *body_len)
{
    uint8_t body[S_MAX_MSG];
    int frames = 0, more = 1;
    size_t ml = sizeof more;
    while (more) {
        int n = zmq_recv(s, frames == 0 ? (void *)topic : (void *)body,
                         frames == 0 ? 16 : sizeof body, frames == 0 ? ZMQ_DONTWAIT : 0);
        if (n < 0) return frames;
        frames++;
        if (frames > 1) {
            *body_len = (size_t)n;
            if (n >= 8) *ts = s_get_be64(body);
        }
        if (zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml) != 0) more = 0;
    }
    return frames;
}

/* Raw PUB->SUB between two processes: n messages (zpub), or paced for secs
 * seconds (zlat, pinned when pin) with one-way latencies into lat[]. *rate
 * = messages/s at the subscriber from the first send to the last receive. */
static int s_zmq_pubsub(bench_t *b, const char *name, uint64_t n, unsigned secs, bool pin,
                        uint64_t *lat, size_t *nlat, uint64_t warm_ns, uint64_t *late,
                        double *rate)
{
    child_spec sp = {.n = n, .pin = pin ? 0 : -1, .secs = secs, .mlen = b->msg_len};
    snprintf(sp.role, sizeof sp.role, "%s", secs > 0 ? "zlat" : "zpub");
    snprintf(sp.dir, sizeof sp.dir, "-");
    child_t c;
    if (s_child_start(b, name, &sp, &c) != 0) return -1;
    int ret = -1;
    void *zctx = zmq_ctx_new(), *s = NULL;
    if (zctx == NULL || s_child_ready(b, name, &c, 30) != 0) goto out;
    if ((s = s_zconnect(b, name, zctx, ZMQ_SUB, c.ep1)) == NULL) goto out;
    uint64_t got = 0, first_ts = 0, t_last = 0;
    bool going = false;
    size_t cap = *nlat;
    *nlat = 0;
    double last_progress = s_now();
    uint64_t last_got = 0;
    for (;;) {
        if (s_interrupted) goto out;
        if (secs == 0 && going && got == n) break;
        if (secs > 0 && c.done && got >= c.sent) break;
        zmq_pollitem_t it[2] = {{s, 0, ZMQ_POLLIN, 0}, {NULL, c.ctl.fd, ZMQ_POLLIN, 0}};
        zmq_poll(it, 2, 100);
        if ((it[1].revents & ZMQ_POLLIN) && s_child_pump(&c, 0) != 0) {
            s_child_report(b, name, &c);
            goto out;
        }
        char topic[16];
        uint64_t ts = 0;
        size_t blen = 0;
        int fr;
        while ((fr = s_zrecv3(s, topic, &ts, &blen)) > 0) {
            uint64_t now = bench_now_ns();
            if (topic[0] == 'P') {
                if (!going && s_ctl_send(&c.ctl, "go") != 0) goto out;
                going = true;
                continue;
            }
            if (fr != 3 || blen != b->msg_len) {
                cli_error(b->cli, "%s: raw message of %d frames, %zu bytes", name, fr,
                          blen);
                goto out;
            }
            got++;
            t_last = now;
            if (secs > 0) {
                if (first_ts == 0) first_ts = ts;
                if (ts >= first_ts + warm_ns && *nlat < cap) lat[(*nlat)++] = now - ts;
            }
            if (secs == 0 && got == n) break;
        }
        double tn = s_now();
        if (got != last_got) {
            last_got = got;
            last_progress = tn;
        } else if (tn - last_progress > (c.done ? 2.0 : S_STALL_S)) {
            cli_error(b->cli, "%s: raw subscriber stuck at %" PRIu64 " messages", name,
                      got);
            goto out;
        }
    }
    while (secs == 0 && c.t0_ns == 0) {
        if (s_interrupted || s_child_pump(&c, 100) != 0) {
            s_child_report(b, name, &c);
            goto out;
        }
    }
    if (secs == 0) *rate = (double)n / ((double)(t_last - c.t0_ns) / 1e9);
    if (late != NULL) *late = c.late;
    ret = 0;
out:
    if (s != NULL) zmq_close(s);
    if (zctx != NULL) zmq_ctx_term(zctx);
    if (ret == 0)
        ret = s_child_finish(b, name, &c);
    else
        s_child_reap(&c, 0);
    return ret;
}

/* Raw catch-up transfer: n frames of msg_len bytes in pages of S_ZMQ_PAGE,
 * DEALER -> ROUTER, S_ZMQ_INFLIGHT pages asked ahead. */
static int s_zmq_pages(bench_t *b, const char *name, uint64_t n, double *rate)
{
    child_spec sp = {.n = n, .pin = -1, .mlen = b->msg_len};
    snprintf(sp.role, sizeof sp.role, "zrouter");
    snprintf(sp.dir, sizeof sp.dir, "-");
    child_t c;
    if (s_child_start(b, name, &sp, &c) != 0) return -1;
    int ret = -1;
    void *zctx = zmq_ctx_new(), *d = NULL;
    uint8_t *frame = malloc(S_MAX_MSG);
    if (zctx == NULL || frame == NULL || s_child_ready(b, name, &c, 30) != 0) goto out;
    if ((d = s_zconnect(b, name, zctx, ZMQ_DEALER, c.ep1)) == NULL) goto out;
    uint64_t asked = 0, got = 0, pages_out = 0;
    double t0 = 0;
    bool started = false; /* the first request (count 0) times the connect out */
    uint8_t rq[12];
    s_put_be64(rq, 0);
    memset(rq + 8, 0, 4);
    if (zmq_send(d, rq, 12, 0) < 0) {
        cli_error(b->cli, "%s: raw catch-up request: %s", name, zmq_strerror(errno));
        goto out;
    }
    pages_out = 1;
    double last_progress = s_now();
    while (got < n) {
        if (s_interrupted) goto out;
        while (started && pages_out < S_ZMQ_INFLIGHT && asked < n) {
            uint32_t cnt = n - asked < S_ZMQ_PAGE ? (uint32_t)(n - asked) : S_ZMQ_PAGE;
            s_put_be64(rq, asked);
            rq[8] = (uint8_t)(cnt >> 24);
            rq[9] = (uint8_t)(cnt >> 16);
            rq[10] = (uint8_t)(cnt >> 8);
            rq[11] = (uint8_t)cnt;
            if (zmq_send(d, rq, 12, 0) < 0) {
                cli_error(b->cli, "%s: raw catch-up request: %s", name,
                          zmq_strerror(errno));
                goto out;
            }
            asked += cnt;
            pages_out++;
        }
        zmq_pollitem_t it[2] = {{d, 0, ZMQ_POLLIN, 0}, {NULL, c.ctl.fd, ZMQ_POLLIN, 0}};
        zmq_poll(it, 2, 100);
        if ((it[1].revents & ZMQ_POLLIN) && s_child_pump(&c, 0) != 0) {
            s_child_report(b, name, &c);
            goto out;
        }
        if (!(it[0].revents & ZMQ_POLLIN)) {
            if (s_now() - last_progress > S_STALL_S) {
                cli_error(b->cli, "%s: raw catch-up stuck at %" PRIu64, name, got);
                goto out;
            }
            continue;
        }
        uint8_t hdr[16];
        if (zmq_recv(d, hdr, sizeof hdr, 0) != 12) {
            cli_error(b->cli, "%s: raw catch-up reply: bad header", name);
            goto out;
        }
        int more = 0;
        size_t ml = sizeof more;
        zmq_getsockopt(d, ZMQ_RCVMORE, &more, &ml);
        uint64_t sum = 0;
        while (more) {
            int fl = zmq_recv(d, frame, S_MAX_MSG, 0);
            if (fl != (int)b->msg_len) {
                cli_error(b->cli, "%s: raw page frame of %d bytes", name, fl);
                goto out;
            }
            sum += frame[0];
            got++;
            zmq_getsockopt(d, ZMQ_RCVMORE, &more, &ml);
        }
        (void)sum;
        pages_out--;
        last_progress = s_now();
        if (!started) {
            started = true;
            t0 = s_now();
        }
    }
    *rate = (double)n / (s_now() - t0);
    ret = 0;
out:
    free(frame);
    if (d != NULL) zmq_close(d);
    if (zctx != NULL) zmq_ctx_term(zctx);
    if (ret == 0)
        ret = s_child_finish(b, name, &c);
    else
        s_child_reap(&c, 0);
    return ret;
}

/* The subscriber's side of a bus case. */
typedef struct subside {
    uint64_t count;
    uint64_t first_ns; /* when the handler saw the first event */
    uint64_t *lat;     /* latency cases: samples (ns) */
    size_t nlat, cap;
    uint64_t first_ts, warm_ns;
    uint64_t bad; /* latency payloads without a timestamp */
} subside_t;

static int s_count_handler(const evb_event_t *ev, evb_txn_t *tx, void *ctx, evb_err *err)
{
    (void)ev;
    (void)tx;
    (void)err;
    subside_t *s = ctx;
    if (s->count++ == 0) s->first_ns = bench_now_ns();
    return EVB_OK;
}

static int s_lat_handler(const evb_event_t *ev, evb_txn_t *tx, void *ctx, evb_err *err)
{
    (void)tx;
    (void)err;
    subside_t *s = ctx;
    uint64_t now = bench_now_ns();
    const uint8_t *p = ev->payload;
    s->count++;
    if (ev->payload_len != S_PAYLOAD_LEN || p[0] != 0x82 || p[4] != 0xcf) {
        s->bad++;
        return EVB_OK;
    }
    uint64_t ts = s_get_be64(p + S_LAT_PAYLOAD_TS);
    if (s->first_ts == 0) s->first_ts = ts;
    if (ts >= s->first_ts + s->warm_ns && s->nlat < s->cap) s->lat[s->nlat++] = now - ts;
    return EVB_OK;
}

typedef struct feeds_seen {
    unsigned feeds, live, heard;
    uint64_t applied_events, gaps, pages, duplicates, bad_frames, lag;
} feeds_seen_t;

static int s_on_feed(const evb_feed_status *fs, void *ctx)
{
    feeds_seen_t *f = ctx;
    f->feeds++;
    f->live += fs->state == EVB_FEED_LIVE;
    f->heard += fs->heartbeat_age_ms >= 0;
    f->applied_events += fs->applied_events;
    f->gaps += fs->gaps;
    f->pages += fs->pages;
    f->duplicates += fs->duplicates;
    f->bad_frames = fs->bad_frames; /* per publisher */
    f->lag += fs->lag;
    return 0;
}

/* A fresh consumer store in dir and a subscriber on it. */
static int s_sub_open(bench_t *b, const char *name, const char *dir, evb_handler_fn fn,
                      void *ctx, evb_store_t **st, evb_sub_t **sub)
{
    *sub = NULL;
    if ((*st = s_open(b, name, dir, true)) == NULL) return -1;
    evb_sub_opts o = {.store = *st, .consumer = "bench", .handler = fn, .ctx = ctx};
    evb_err err = {0};
    if ((*sub = evb_sub_new(&o, &err)) == NULL) {
        cli_error(b->cli, "%s: evb_sub_new: %s (%s)", name, err.msg,
                  evb_strerror(err.code));
        evb_store_destroy(st);
        return -1;
    }
    return 0;
}

static int s_sub_follow(bench_t *b, const char *name, evb_sub_t *sub, const child_t *c)
{
    evb_err err = {0};
    const char *const cats[S_NCATS] = {s_cat_names[0], s_cat_names[1], s_cat_names[2],
                                       s_cat_names[3]};
    evb_follow_opts fo = {.categories = cats, .ncategories = S_NCATS};
    if (evb_sub_follow(sub, c->ep1, c->ep2, &fo, &err) != EVB_OK) {
        cli_error(b->cli, "%s: evb_sub_follow: %s (%s)", name, err.msg,
                  evb_strerror(err.code));
        return -1;
    }
    return 0;
}

/* Poll the subscriber until cond(ctx) holds; checks the child every 100 ms
 * and fails after S_STALL_S (or stall_s when the child is done) without
 * progress in *progress. */
typedef bool (*s_cond_fn)(void *ctx, const child_t *c);

static int s_sub_until(bench_t *b, const char *name, evb_sub_t *sub, child_t *c,
                       s_cond_fn cond, void *ctx, const uint64_t *progress,
                       double stall_s)
{
    evb_err err = {0};
    double next_check = 0, last_progress = s_now();
    uint64_t last = progress != NULL ? *progress : 0;
    while (!cond(ctx, c)) {
        if (s_interrupted) return -1;
        if (evb_sub_poll(sub, 100, &err) != EVB_OK) {
            cli_error(b->cli, "%s: evb_sub_poll: %s (%s)", name, err.msg,
                      evb_strerror(err.code));
            return -1;
        }
        double now = s_now();
        if (now < next_check) continue;
        next_check = now + 0.1;
        if (s_child_pump(c, 0) != 0) {
            s_child_report(b, name, c);
            return -1;
        }
        if (progress != NULL && *progress != last) {
            last = *progress;
            last_progress = now;
        } else if (now - last_progress > (c->done ? stall_s : S_STALL_S)) {
            cli_error(b->cli, "%s: subscriber stuck at %" PRIu64 " events", name, last);
            return -1;
        }
    }
    return 0;
}

static bool s_cond_live(void *ctx, const child_t *c)
{
    (void)c;
    feeds_seen_t f = {0};
    evb_sub_status(ctx, s_on_feed, &f, NULL);
    return f.feeds == S_NCATS && f.live == S_NCATS && f.heard == S_NCATS;
}

typedef struct until_n {
    const subside_t *s;
    uint64_t n;
} until_n_t;

static bool s_cond_count(void *ctx, const child_t *c)
{
    (void)c;
    const until_n_t *u = ctx;
    return u->s->count >= u->n;
}

static bool s_cond_lat_done(void *ctx, const child_t *c)
{
    return c->done && ((const subside_t *)ctx)->count >= c->sent;
}

/* Subscriber: the feeds must account for exactly n events. */
static void s_sub_check(bench_t *b, const char *name, evb_sub_t *sub, uint64_t n,
                        const subside_t *ss, feeds_seen_t *f)
{
    memset(f, 0, sizeof *f);
    evb_sub_status(sub, s_on_feed, f, NULL);
    if (ss->count != n || f->applied_events != n) {
        cli_error(b->cli,
                  "%s: the handler saw %" PRIu64 " events, the feeds applied %" PRIu64
                  ", expected %" PRIu64,
                  name, ss->count, f->applied_events, n);
        b->problems = true;
    }
}

/* publish_deliver(_sync): ours. */
static int s_bus_deliver(bench_t *b, const char *name, evb_sync sync, double *rate,
                         feeds_seen_t *f)
{
    char pdir[PATH_MAX], sdir[PATH_MAX], sub_name[96];
    snprintf(sub_name, sizeof sub_name, "%s-pub", name);
    if (s_case_dir(b, sub_name, pdir) != 0) return -1;
    snprintf(sub_name, sizeof sub_name, "%s-sub", name);
    if (s_case_dir(b, sub_name, sdir) != 0) return -1;
    child_spec sp = {.n = b->events, .sync = (int)sync, .pin = -1, .mlen = b->msg_len};
    snprintf(sp.role, sizeof sp.role, "pub");
    snprintf(sp.dir, sizeof sp.dir, "%s", pdir);
    child_t c;
    if (s_child_start(b, name, &sp, &c) != 0) return -1;
    subside_t ss = {0};
    evb_store_t *st = NULL;
    evb_sub_t *sub = NULL;
    int ret = -1;
    if (s_child_ready(b, name, &c, 60) != 0 ||
        s_sub_open(b, name, sdir, s_count_handler, &ss, &st, &sub) != 0 ||
        s_sub_follow(b, name, sub, &c) != 0)
        goto out;
    cli_progress(b->cli, "evbus bench: %s: waiting for the feeds to go live", name);
    if (s_sub_until(b, name, sub, &c, s_cond_live, sub, NULL, 0) != 0) goto out;
    cli_progress(b->cli, "evbus bench: %s: ours", name);
    if (s_ctl_send(&c.ctl, "go") != 0) goto out;
    until_n_t u = {&ss, b->events};
    if (s_sub_until(b, name, sub, &c, s_cond_count, &u, &ss.count, S_STALL_S) != 0)
        goto out;
    uint64_t t1 = bench_now_ns();
    while (c.t0_ns == 0) {
        if (s_interrupted || s_child_pump(&c, 100) != 0) {
            s_child_report(b, name, &c);
            goto out;
        }
    }
    *rate = (double)b->events / ((double)(t1 - c.t0_ns) / 1e9);
    s_sub_check(b, name, sub, b->events, &ss, f);
    ret = 0;
out:
    evb_sub_destroy(&sub);
    evb_store_destroy(&st);
    if (ret == 0)
        ret = s_child_finish(b, name, &c);
    else
        s_child_reap(&c, 0);
    return ret;
}

static int s_case_deliver(bench_t *b, const char *name, evb_sync sync)
{
    char dir[PATH_MAX], sub[96];
    snprintf(sub, sizeof sub, "%s-raw", name);
    if (s_case_dir(b, sub, dir) != 0) return -1;
    double ldb = 0, zmq = 0, ours = 0;
    cli_progress(b->cli, "evbus bench: %s: raw LevelDB", name);
    if (s_raw_write(b, name, dir, S_BUS_BATCH, sync != EVB_SYNC_NONE, S_PAYLOAD_LEN,
                    b->events, &ldb) != 0)
        return -1;
    cli_progress(b->cli, "evbus bench: %s: raw ZeroMQ", name);
    size_t nlat = 0;
    if (s_zmq_pubsub(b, name, b->events, 0, false, NULL, &nlat, 0, NULL, &zmq) != 0)
        return -1;
    feeds_seen_t f;
    if (s_bus_deliver(b, name, sync, &ours, &f) != 0) return -1;
    char placement[160];
    s_bus_placement(placement, sizeof placement, false);
    bool ldb_slower = ldb <= zmq;
    result_t r = {.name = name,
                  .ours = ours,
                  .baseline = ldb_slower ? ldb : zmq,
                  .events = b->events,
                  .sync = sync == EVB_SYNC_NONE ? "none" : "group (2 ms fsync)",
                  .placement = placement};
    snprintf(r.extra, sizeof r.extra,
             ",\"baseline_stage\":\"%s\",\"leveldb\":%.0f,\"zeromq\":%.0f,"
             "\"message_bytes\":%zu,\"gaps\":%" PRIu64 ",\"pages\":%" PRIu64
             ",\"duplicates\":%" PRIu64,
             ldb_slower ? (sync == EVB_SYNC_NONE ? "leveldb" : "leveldb_sync") : "zeromq",
             ldb, zmq, b->msg_len, f.gaps, f.pages, f.duplicates);
    snprintf(r.note, sizeof r.note, "vs %s; gaps %" PRIu64 ", pages %" PRIu64,
             ldb_slower ? "LevelDB" : "ZeroMQ", f.gaps, f.pages);
    s_emit(b, &r);
    return 0;
}

/* catchup: raw LevelDB scan + raw ZeroMQ pages, then ours. */
static int s_case_catchup(bench_t *b, const char *name)
{
    char raw[PATH_MAX], pdir[PATH_MAX], sdir[PATH_MAX];
    if (s_case_dir(b, "catchup-raw", raw) != 0 ||
        s_case_dir(b, "catchup-pub", pdir) != 0 ||
        s_case_dir(b, "catchup-sub", sdir) != 0)
        return -1;
    double ignored, ldb = 0, zmq = 0;
    uint64_t scanned = 0;
    cli_progress(b->cli, "evbus bench: %s: raw LevelDB", name);
    if (s_raw_write(b, name, raw, 1000, false, b->msg_len, b->events, &ignored) != 0 ||
        s_raw_scan(b, name, raw, 0, &scanned, &ldb) != 0)
        return -1;
    if (scanned != b->events) {
        cli_error(b->cli, "%s: raw scan saw %" PRIu64 " entries", name, scanned);
        b->problems = true;
    }
    cli_progress(b->cli, "evbus bench: %s: raw ZeroMQ", name);
    if (s_zmq_pages(b, name, b->events, &zmq) != 0) return -1;

    cli_progress(b->cli, "evbus bench: %s: building the publisher's log", name);
    child_spec sp = {
        .n = b->events, .sync = EVB_SYNC_NONE, .pin = -1, .mlen = b->msg_len};
    snprintf(sp.role, sizeof sp.role, "serve");
    snprintf(sp.dir, sizeof sp.dir, "%s", pdir);
    child_t c;
    if (s_child_start(b, name, &sp, &c) != 0) return -1;
    subside_t ss = {0};
    evb_store_t *st = NULL;
    evb_sub_t *sub = NULL;
    int ret = -1;
    long sub_hwm = -1;
    feeds_seen_t f = {0};
    double ours = 0, first_ms = 0;
    if (s_child_ready(b, name, &c, 600) != 0) goto out;
    bool reset = s_reset_hwm();
    cli_progress(b->cli, "evbus bench: %s: ours", name);
    if (s_sub_open(b, name, sdir, s_count_handler, &ss, &st, &sub) != 0) goto out;
    double t0 = s_now();
    uint64_t t0_ns = bench_now_ns();
    if (s_sub_follow(b, name, sub, &c) != 0) goto out;
    until_n_t u = {&ss, b->events};
    if (s_sub_until(b, name, sub, &c, s_cond_count, &u, &ss.count, S_STALL_S) != 0)
        goto out;
    ours = (double)b->events / (s_now() - t0);
    first_ms = (double)(ss.first_ns - t0_ns) / 1e6;
    sub_hwm = reset ? s_vm_hwm_kb() : -1;
    s_sub_check(b, name, sub, b->events, &ss, &f);
    ret = 0;
out:
    evb_sub_destroy(&sub);
    evb_store_destroy(&st);
    if (ret == 0)
        ret = s_child_finish(b, name, &c);
    else
        s_child_reap(&c, 0);
    if (ret != 0) return -1;
    char placement[160];
    s_bus_placement(placement, sizeof placement, false);
    result_t r = {.name = name,
                  .ours = ours,
                  .baseline = 1.0 / (1.0 / ldb + 1.0 / zmq),
                  .events = b->events,
                  .placement = placement};
    snprintf(r.extra, sizeof r.extra,
             ",\"baseline_stage\":\"leveldb+zeromq\",\"leveldb\":%.0f,\"zeromq\":%.0f,"
             "\"message_bytes\":%zu,\"pages\":%" PRIu64
             ",\"first_event_ms\":%.1f,\"peak_rss_kb\":{\"sub\":%ld,\"pub\":%ld,"
             "\"pub_anon\":%ld,\"pub_file\":%ld}",
             ldb, zmq, b->msg_len, f.pages, first_ms, sub_hwm, c.rss_kb, c.anon_kb,
             c.file_kb);
    snprintf(r.note, sizeof r.note,
             "peak RSS sub %ld kB, pub %ld kB (anon %ld, file %ld)", sub_hwm, c.rss_kb,
             c.anon_kb, c.file_kb);
    s_emit(b, &r);
    return 0;
}

int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double bench_pct_us(const uint64_t *v, size_t n, double q)
{
    if (n == 0) return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)v[rank - 1] / 1000.0;
}

/* latency_p50/p99/p999: raw PUB/SUB, then ours; both pinned alike. */
static int s_case_latency(bench_t *b)
{
    const char *name = "latency";
    unsigned measure = b->quick ? S_LAT_QUICK_S : S_LAT_MEASURE_S;
    unsigned secs = S_LAT_WARM_S + measure;
    size_t cap = (size_t)secs * S_LAT_RATE + 1000;
    uint64_t warm_ns = (uint64_t)S_LAT_WARM_S * 1000000000u;
    cpu_set_t saved, set;
    CPU_ZERO(&saved);
    bool pin = sched_getaffinity(0, sizeof saved, &saved) == 0 && CPU_ISSET(0, &saved) &&
               CPU_ISSET(1, &saved);
    if (pin) {
        CPU_ZERO(&set);
        CPU_SET(1, &set);
        pin = sched_setaffinity(0, sizeof set, &set) == 0;
    }
    uint64_t *raw = malloc(cap * sizeof *raw), *ours = malloc(cap * sizeof *ours);
    char pdir[PATH_MAX], sdir[PATH_MAX];
    subside_t ss = {.lat = ours, .cap = cap, .warm_ns = warm_ns};
    evb_store_t *st = NULL;
    evb_sub_t *sub = NULL;
    child_t c = {.pid = -1, .ctl = {.fd = -1}};
    feeds_seen_t f = {0};
    size_t nraw = cap;
    uint64_t raw_late = 0;
    int ret = -1;
    if (raw == NULL || ours == NULL) {
        cli_error(b->cli, "%s: out of memory", name);
        goto out;
    }
    if (s_case_dir(b, "latency-pub", pdir) != 0 ||
        s_case_dir(b, "latency-sub", sdir) != 0)
        goto out;
    cli_progress(b->cli, "evbus bench: %s: raw ZeroMQ (%u s)", name, secs);
    if (s_zmq_pubsub(b, name, 0, secs, pin, raw, &nraw, warm_ns, &raw_late, NULL) != 0)
        goto out;
    child_spec sp = {
        .sync = EVB_SYNC_NONE, .pin = pin ? 0 : -1, .secs = secs, .mlen = b->msg_len};
    snprintf(sp.role, sizeof sp.role, "lat");
    snprintf(sp.dir, sizeof sp.dir, "%s", pdir);
    if (s_child_start(b, name, &sp, &c) != 0) goto out;
    if (s_child_ready(b, name, &c, 60) != 0 ||
        s_sub_open(b, name, sdir, s_lat_handler, &ss, &st, &sub) != 0 ||
        s_sub_follow(b, name, sub, &c) != 0)
        goto out;
    if (s_sub_until(b, name, sub, &c, s_cond_live, sub, NULL, 0) != 0) goto out;
    cli_progress(b->cli, "evbus bench: %s: ours (%u s)", name, secs);
    if (s_ctl_send(&c.ctl, "go") != 0) goto out;
    if (s_sub_until(b, name, sub, &c, s_cond_lat_done, &ss, &ss.count, 2.0) != 0)
        goto out;
    s_sub_check(b, name, sub, c.sent, &ss, &f);
    if (ss.bad > 0) {
        cli_error(b->cli, "%s: %" PRIu64 " events without a timestamp", name, ss.bad);
        b->problems = true;
    }
    ret = 0;
out:
    evb_sub_destroy(&sub);
    evb_store_destroy(&st);
    if (ret == 0)
        ret = s_child_finish(b, name, &c);
    else
        s_child_reap(&c, 0);
    if (pin) sched_setaffinity(0, sizeof saved, &saved);
    if (ret == 0) {
        qsort(raw, nraw, sizeof *raw, bench_cmp_u64);
        qsort(ours, ss.nlat, sizeof *ours, bench_cmp_u64);
        char placement[160];
        s_bus_placement(placement, sizeof placement, pin);
        static const char *const names[3] = {"latency_p50", "latency_p99",
                                             "latency_p999"};
        static const double qs[3] = {0.50, 0.99, 0.999};
        for (int i = 0; i < 3; i++) {
            result_t r = {.name = names[i],
                          .unit = "us",
                          .ours = bench_pct_us(ours, ss.nlat, qs[i]),
                          .baseline = bench_pct_us(raw, nraw, qs[i]),
                          .events = ss.nlat,
                          .lower_better = true,
                          .placement = placement};
            snprintf(
                r.extra, sizeof r.extra,
                ",\"rate\":%u,\"warmup_s\":%u,\"measure_s\":%u,\"message_bytes\":%zu,"
                "\"raw_samples\":%zu,\"max_us\":%.1f,\"raw_max_us\":%.1f,"
                "\"late_sends\":%" PRIu64 ",\"raw_late_sends\":%" PRIu64
                ",\"gaps\":%" PRIu64,
                S_LAT_RATE, S_LAT_WARM_S, measure, b->msg_len, nraw,
                bench_pct_us(ours, ss.nlat, 1.0), bench_pct_us(raw, nraw, 1.0), c.late, raw_late,
                f.gaps);
            snprintf(r.note, sizeof r.note, "append included, %u/s, %s", S_LAT_RATE,
                     pin ? "pinned" : "unpinned");
            s_emit(b, &r);
        }
    }
    free(raw);
    free(ours);
    return ret;
}

/* booking: the two services end to end (bench_booking.c), printed here. */
static int s_case_booking(bench_t *b, bool soak)
{
    bench_booking_opts o = {.cli = b->cli,
                            .soak = soak,
                            .work = b->root,
                            .services = b->services,
                            .to = b->to,
                            .rate = b->rate,
                            .events = b->events,
                            .events_set = b->events_set,
                            .quick = b->quick,
                            .interrupted = &s_interrupted};
    bench_booking_result res;
    if (bench_booking_run(&o, &res) != 0) return -1;
    if (res.problems) b->problems = true;
    for (size_t i = 0; i < res.nlines; i++) {
        const bench_booking_line *l = &res.lines[i];
        result_t r = {.name = l->name,
                      .unit = l->unit,
                      .ours = l->ours,
                      .baseline = l->baseline,
                      .events = res.bookings,
                      .lower_better = l->lower_better,
                      .placement = res.placement};
        snprintf(r.extra, sizeof r.extra, "%s", l->extra);
        snprintf(r.note, sizeof r.note, "%s", l->note);
        s_emit(b, &r);
    }
    return 0;
}

/* The cases, in the order they run. Read cases come last: they share one
 * fixture built after the append cases. */
typedef struct bench_case {
    const char *name;
    size_t batch; /* append cases; 0 for the others */
    bool indexed, ids;
} bench_case_t;

static const bench_case_t s_cases[] = {
    {"append_b1", 1, false, false},
    {"append_b100", 100, false, false},
    {"append_b1000", 1000, false, false},
    {"append_indexed_b1000", 1000, true, false},
    {"append_b1000_ids", 1000, false, true},
    {"read_range", 0, false, false},
    {"read_category", 0, false, false},
    {"publish_deliver", 0, false, false},
    {"publish_deliver_sync", 0, false, false},
    {"catchup", 0, false, false},
    {"latency_p50", 0, false, false},
    {"latency_p99", 0, false, false},
    {"latency_p999", 0, false, false},
    {"booking", 0, false, false},
    {"soak", 0, false, false}, /* only when named: it runs for minutes */
};

/* The bus cases, after the store's: each starts a publisher process. The
 * three latency lines come from one measurement, run when any is asked. */
static int s_run_bus(bench_t *b)
{
    if (s_wanted(b, "publish_deliver") &&
        s_case_deliver(b, "publish_deliver", EVB_SYNC_NONE) != 0)
        return -1;
    if (s_wanted(b, "publish_deliver_sync") &&
        s_case_deliver(b, "publish_deliver_sync", EVB_SYNC_GROUP) != 0)
        return -1;
    if (s_wanted(b, "catchup") && s_case_catchup(b, "catchup") != 0) return -1;
    if ((s_wanted(b, "latency_p50") || s_wanted(b, "latency_p99") ||
         s_wanted(b, "latency_p999")) &&
        s_case_latency(b) != 0)
        return -1;
    if (s_wanted(b, "booking") && s_case_booking(b, false) != 0) return -1;
    if (b->only != NULL && s_wanted(b, "soak") && s_case_booking(b, true) != 0) return -1;
    return 0;
}

#define S_NCASES (sizeof s_cases / sizeof s_cases[0])

static int s_run(bench_t *b)
{
    for (size_t i = 0; i < S_NCASES; i++) {
        if (s_cases[i].batch == 0 || !s_wanted(b, s_cases[i].name)) continue;
        if (s_case_append(b, s_cases[i].name, s_cases[i].batch, s_cases[i].indexed,
                          s_cases[i].ids) != 0)
            return -1;
    }
    bool range = s_wanted(b, "read_range"), cat = s_wanted(b, "read_category");
    if (!range && !cat) return s_run_bus(b);
    char raw_dir[PATH_MAX], ours_dir[PATH_MAX];
    uint64_t in_cat = 0;
    if (s_read_fixture(b, raw_dir, ours_dir, &in_cat) != 0) return -1;
    if (range) {
        result_t r = {.name = "read_range"};
        uint64_t raw_n = 0;
        if (s_raw_scan(b, "read_range", raw_dir, 0, &raw_n, &r.baseline) != 0 ||
            s_ours_read(b, "read_range", ours_dir, NULL, b->events, &r.events, &r.ours) !=
                0)
            return -1;
        if (raw_n != b->events) {
            cli_error(b->cli,
                      "read_range: raw scan saw %" PRIu64 " entries, expected %" PRIu64,
                      raw_n, b->events);
            b->problems = true;
        }
        s_emit(b, &r);
    }
    if (cat) {
        result_t r = {.name = "read_category"};
        uint64_t raw_n = 0;
        if (s_raw_scan(b, "read_category", raw_dir, in_cat, &raw_n, &r.baseline) != 0 ||
            s_ours_read(b, "read_category", ours_dir, s_cat_names[S_READ_CATEGORY],
                        in_cat, &r.events, &r.ours) != 0)
            return -1;
        s_emit(b, &r);
    }
    return s_run_bus(b);
}

/* Check a --case list against s_cases; returns -1 or the usage exit code. */
static int s_check_cases(cli_t *cli, const char *only)
{
    for (const char *p = only; *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        bool known = false;
        for (size_t i = 0; i < S_NCASES; i++)
            known |= strlen(s_cases[i].name) == l && memcmp(s_cases[i].name, p, l) == 0;
        if (!known) {
            char list[256] = "";
            for (size_t i = 0; i < S_NCASES; i++) {
                size_t used = strlen(list);
                snprintf(list + used, sizeof list - used, "%s%s", i > 0 ? ", " : "",
                         s_cases[i].name);
            }
            return cli_usage_error(cli, "--case: unknown case '%.*s' (cases: %s)", (int)l,
                                   p, list);
        }
        p += l + (e != NULL ? 1 : 0);
    }
    return -1;
}

/* --scale, text: each case's ratio at every size, and the last size's ratio
 * over the first's (1.0: flat with history). */
static void s_print_curve(bench_t *b, const uint64_t *sizes, size_t nsizes)
{
    cli_t *cli = b->cli;
    char g[32];
    cli_printf(cli, "\n%s%-22s", cli_bold(cli), "ratio curve");
    for (size_t j = 0; j < nsizes; j++)
        cli_printf(cli, " %11s", cli_group(sizes[j], g));
    cli_printf(cli, " %9s%s\n", "last/first", cli_reset(cli));
    for (size_t i = 0; i < b->nseen; i++) {
        bool first = true;
        for (size_t p = 0; p < i; p++)
            first &= strcmp(b->seen[p].name, b->seen[i].name) != 0;
        if (!first) continue;
        cli_printf(cli, "%-22s", b->seen[i].name);
        double r0 = -1, rl = -1;
        for (size_t j = 0; j < nsizes; j++) {
            double r = -1;
            for (size_t q = 0; q < b->nseen; q++)
                if (b->seen[q].events == sizes[j] &&
                    strcmp(b->seen[q].name, b->seen[i].name) == 0)
                    r = b->seen[q].ratio;
            if (r < 0) {
                cli_printf(cli, " %11s", "-");
                continue;
            }
            cli_printf(cli, " %11.3f", r);
            if (r0 < 0) r0 = r;
            rl = r;
        }
        if (r0 > 0 && rl >= 0)
            cli_printf(cli, " %9.2f\n", rl / r0);
        else
            cli_printf(cli, " %9s\n", "-");
    }
}

int cmd_bench(int argc, char **argv)
{
    const char *child = getenv(S_CHILD_ENV);
    if (child != NULL) return s_child_main(child);
    cli_t cli;
    cli_init(&cli, "evbus bench");
    bool json = false, quick = false, keep = false, events_set = false, scale = false;
    uint64_t events = S_DEFAULT_EVENTS;
    const char *dir = NULL, *only = NULL, *sizes_arg = NULL;
    const char *services = NULL, *to = NULL, *rate_arg = NULL;
    const cli_opt opts[] = {
        {"quick", CLI_FLAG, &quick, NULL, NULL, "100,000 events instead of 1,000,000"},
        {"events", CLI_U64, &events, &events_set, "N",
         "events per case (overrides --quick)"},
        {"scale", CLI_FLAG, &scale, NULL, NULL,
         "run the cases at 100,000, 1,000,000 and 10,000,000 events and print each "
         "case's ratio curve (10 M takes long: pick cases with --case)"},
        {"sizes", CLI_STR, &sizes_arg, NULL, "N,N,...",
         "with --scale: these sizes instead (up to 8, increasing)"},
        {"dir", CLI_STR, &dir, NULL, "DIR",
         "work under DIR (default: $TMPDIR or /tmp); a fresh subdirectory is made"},
        {"keep", CLI_FLAG, &keep, NULL, NULL,
         "keep the logs afterwards (path on stderr)"},
        {"case", CLI_STR, &only, NULL, "NAMES", "run only these cases (comma-separated)"},
        {"json", CLI_FLAG, &json, NULL, NULL, "one JSON object per case and line"},
        {"services", CLI_STR, &services, NULL, "DIR",
         "booking case: where evbus-booking and evbus-reservation are (default: "
         "$EVBUS_BUILD/services, else ../services next to this program)"},
        {"to", CLI_STR, &to, NULL, "RES_CMD,BK_CMD",
         "booking case: load running services at these command endpoints "
         "(reservation's, booking's) instead of starting private ones"},
        {"rate", CLI_STR, &rate_arg, NULL, "N",
         "booking case: N bookings/s in all, paced (open loop: each latency counts "
         "from the booking's due time); default: as fast as the clients go"},
        {0},
    };
    const cli_usage usage = {
        CLI_EXITS_BASE | CLI_EXITS(CLI_EXIT_PROBLEMS),
        "[--quick | --events N | --scale [--sizes N,N,...]] [--dir DIR] [--keep]\n"
        "       [--case NAMES] [--json]",
        "Measure the store next to raw LevelDB in the same run: for each case\n"
        "the raw baseline runs right before ours, with the same LevelDB options\n"
        "(32 MiB write buffer, no sync). The ratio is ours / baseline: higher is\n"
        "better, 1.0 means as fast as raw LevelDB.\n\n"
        "Workload: 200-byte msgpack payloads, 10,000 streams in 4 categories,\n"
        "appends with EVB_EXPECT_ANY, store with EVB_INDEX_THREAD and\n"
        "EVB_SYNC_NONE; raw: one value per event under an 8-byte big-endian\n"
        "sequential key, same batch size.",
        "Cases: append_b1, append_b100, append_b1000 (clock stops when append\n"
        "returns), append_indexed_b1000 (clock stops when the indexer caught up;\n"
        "reports max_index_lag), append_b1000_ids (as append_b1000 with ids\n"
        "the caller supplies: 16 random bytes per event; reports max_index_lag),\n"
        "read_range (whole log vs. raw iterator scan),\n"
        "read_category (one category of 4 vs. a raw scan of as many consecutive\n"
        "entries). JSON fields: name, unit, ours, baseline, ratio, sync,\n"
        "placement, events, and max_index_lag where measured.\n\n"
        "Booking case (booking): evbus-reservation and evbus-booking run as\n"
        "child processes (ipc, --sync none; --services DIR), 8 client threads\n"
        "send `book`; bookings/s from the first book until the booking log\n"
        "holds 2 events per booking (every saga done). N = 20,000 (--quick\n"
        "4,000, --events E: E/50). booking_e2e_vs_roundtrip: vs raw ZeroMQ\n"
        "DEALER/ROUTER round trips/s (8 threads, same request size);\n"
        "booking_e2e_vs_append: vs raw LevelDB single appends/s / 4, since a\n"
        "booking is 4 appends across the two logs (BookingRequested,\n"
        "SeatsHeld, BookingConfirmed, SeatsConfirmed); booking_p99,\n"
        "booking_p50: book round trip vs raw round trip, unit us, ratio =\n"
        "baseline / ours.\n\n"
        "Bus cases (a publisher process and this one as subscriber, TCP\n"
        "loopback): publish_deliver, publish_deliver_sync (appends to applied\n"
        "events/s vs. the slower of raw LevelDB batch writes and raw ZeroMQ\n"
        "PUB/SUB; baseline_stage names it), catchup (replay of an N-event log\n"
        "vs. raw LevelDB scan + raw ZeroMQ pages; peak_rss_kb), latency_p50,\n"
        "latency_p99, latency_p999 (one measurement at 10,000 events/s, unit us,\n"
        "ratio = baseline / ours; pub cpu0, sub cpu1 when possible).\n\n"
        "Load on a running deployment: --case booking --to RES_CMD,BK_CMD sends\n"
        "the bookings to services already running (started by you, by systemd,\n"
        "on other hosts) over 8 persistent connections; this run's shows,\n"
        "bookings and customers are named with a run tag (run_tag in the JSON)\n"
        "so runs don't meet. The clock stops when the booking log has grown by\n"
        "2 events per booking, so give it no other load meanwhile. Add --rate N\n"
        "to pace the load. The baselines still run here; no RssAnon series.\n\n"
        "Soak (soak, only when named): as booking, on a fixed set of 100 shows,\n"
        "each client cancelling its booking of 64 books ago (and its last ones\n"
        "at the end), so the data the services hold stays the same size while\n"
        "their logs grow; N = 200,000 (--events E: E/50, up to 2 M). RssAnon\n"
        "of both services every second for up to 4,096 s (a line every 10 s on\n"
        "stderr); the first line's rss_slope_mb_per_100k leaves out the first\n"
        "minute (runs of 2 minutes or more). The clock stops when every seat\n"
        "is free again (checked). With --rate and enough --events it runs as\n"
        "long as you want, up to 2 M bookings, e.g. 10 minutes:\n"
        "  evbus bench --case soak --rate 2000 --events 60000000 --json\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    if (scale && (events_set || quick))
        return cli_usage_error(&cli, "--scale: runs 100,000, 1,000,000 and 10,000,000 "
                                     "events; leave out --events and --quick");
    uint64_t sizes[8] = {100000u, 1000000u, 10000000u};
    size_t nsizes = scale ? 3 : 1;
    if (sizes_arg != NULL) {
        if (!scale) return cli_usage_error(&cli, "--sizes: only with --scale");
        nsizes = 0;
        for (const char *p = sizes_arg; *p != '\0';) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p, &end, 10);
            if (end == p || errno != 0 || (*end != ',' && *end != '\0') || v == 0 ||
                v > S_MAX_EVENTS || nsizes == 8 || (nsizes > 0 && v <= sizes[nsizes - 1]))
                return cli_usage_error(&cli,
                                       "--sizes %s: give 1 to 8 increasing event counts "
                                       "of 1..%u, comma-separated",
                                       sizes_arg, S_MAX_EVENTS);
            sizes[nsizes++] = v;
            p = *end == ',' ? end + 1 : end;
        }
        if (nsizes == 0)
            return cli_usage_error(&cli, "--sizes: give at least one event count");
    }
    if (!events_set) events = quick ? S_QUICK_EVENTS : S_DEFAULT_EVENTS;
    if (events == 0 || events > S_MAX_EVENTS)
        return cli_usage_error(&cli, "--events: must be 1..%u", S_MAX_EVENTS);
    if (only != NULL && (rc = s_check_cases(&cli, only)) >= 0) return rc;
    double rate = 0;
    if ((to != NULL || rate_arg != NULL) &&
        (only == NULL || (strcmp(only, "booking") != 0 && strcmp(only, "soak") != 0)))
        return cli_usage_error(&cli,
                               "%s: only for the booking or soak case: add --case booking "
                               "or --case soak",
                               to != NULL ? "--to" : "--rate");
    if (to != NULL) {
        const char *comma = strchr(to, ',');
        if (comma == NULL || comma == to || comma[1] == '\0' ||
            strchr(comma + 1, ',') != NULL)
            return cli_usage_error(&cli,
                                   "--to %s: give the two services' command endpoints, "
                                   "reservation's then booking's, comma-separated",
                                   to);
    }
    if (rate_arg != NULL) {
        char *end;
        errno = 0;
        rate = strtod(rate_arg, &end);
        if (end == rate_arg || *end != '\0' || errno != 0 || !(rate >= 1 && rate <= 1e7))
            return cli_usage_error(&cli, "--rate %s: give bookings per second, 1..10000000",
                                   rate_arg);
    }
    if (dir == NULL) {
        dir = getenv("TMPDIR");
        if (dir == NULL || dir[0] == '\0') dir = "/tmp";
    }

    bench_t *b = calloc(1, sizeof *b);
    if (b == NULL) {
        cli_error(&cli, "out of memory");
        return CLI_EXIT_RUNTIME;
    }
    b->cli = &cli;
    b->json = json;
    b->events = events;
    b->only = only;
    b->quick = quick;
    b->services = services;
    b->to = to;
    b->rate = rate;
    b->events_set = events_set;
    b->rng = (uint64_t)evb_now_us() ^ ((uint64_t)getpid() << 40);
    int n = snprintf(b->work, sizeof b->work, "%s/evbus-bench-XXXXXX", dir);
    if (n < 0 || (size_t)n >= sizeof b->work) {
        free(b);
        return cli_usage_error(&cli, "--dir: path too long");
    }
    if (mkdtemp(b->work) == NULL) {
        cli_error(&cli, "--dir %s: cannot make a work directory there: %s", dir,
                  strerror(errno));
        free(b);
        return CLI_EXIT_RUNTIME;
    }
    cli_install_log_sink(&cli);
    struct sigaction sa = {0};
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rc = CLI_EXIT_OK;
    if (s_setup(b) != 0) {
        rc = CLI_EXIT_RUNTIME;
    } else {
        for (size_t j = 0; j < nsizes && rc == CLI_EXIT_OK; j++) {
            snprintf(b->root, sizeof b->root, "%s", b->work);
            if (scale) {
                /* one directory per size; without --keep it goes when done
                 * (10 M events take several GB per case) */
                b->events = sizes[j];
                int m =
                    snprintf(b->root, sizeof b->root, "%s/%" PRIu64, b->work, b->events);
                if (m < 0 || (size_t)m >= sizeof b->root || mkdir(b->root, 0700) != 0) {
                    cli_error(&cli, "%s: cannot make it: %s", b->root, strerror(errno));
                    rc = CLI_EXIT_RUNTIME;
                    break;
                }
            }
            b->header_done = false;
            if (!json) {
                char g[32];
                cli_printf(
                    &cli,
                    "%s%s events per case, %u-byte msgpack payloads, %u streams in "
                    "%u categories, sync none\n%s\n\n",
                    j > 0 ? "\n" : "", cli_group(b->events, g), S_PAYLOAD_LEN, S_NSTREAMS,
                    S_NCATS, b->placement);
            }
            if (s_run(b) != 0) {
                if (s_interrupted) cli_error(&cli, "interrupted");
                rc = CLI_EXIT_RUNTIME;
            }
            if (scale && !keep && s_rmtree(b->root) != 0) {
                cli_error(&cli, "removing %s: %s", b->root, strerror(errno));
                rc = CLI_EXIT_RUNTIME;
            }
        }
        if (rc == CLI_EXIT_OK && scale && !json) s_print_curve(b, sizes, nsizes);
        if (rc == CLI_EXIT_OK && b->problems) rc = CLI_EXIT_PROBLEMS;
    }
    cli_progress_end(&cli);
    if (keep) {
        fprintf(stderr, "evbus bench: logs kept in %s\n", b->work);
    } else if (s_rmtree(b->work) != 0) {
        cli_error(&cli, "removing %s: %s", b->work, strerror(errno));
        if (rc == CLI_EXIT_OK) rc = CLI_EXIT_RUNTIME;
    }
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    free(b->payloads);
    free(b);
    return cli_finish(&cli, rc);
}
