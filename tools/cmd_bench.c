/*
 * cmd_bench.c: `evbus bench`: what the store costs next to raw LevelDB,
 * both measured in the same run, the raw baseline right before ours for
 * every case, with the same LevelDB options (create_if_missing, 32 MiB write
 * buffer, no sync). Absolute rates move between runs and machines; the ratio
 * (ours / baseline, higher is better) is the figure to track.
 *
 * Workload (tools/README.md has the table): N events (default 1,000,000;
 * --quick 100,000), each a 200-byte msgpack map, over 10,000 streams in 4
 * categories (show-, booking-, customer-, venue-<i>). A batch goes to one
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
 */
#include "cli.h"

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

#include <leveldb/c.h>
#include <msgpack.h>

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
    char placement[160];
    uint8_t *payloads; /* S_NPAYLOADS * S_PAYLOAD_LEN */
    char streams[S_NSTREAMS][24];
    const char *only; /* --case list, or NULL for all */
    bool problems;    /* a result did not check out */
    bool header_done;
} bench_t;

typedef struct result {
    const char *name;
    double ours, baseline; /* events/s */
    uint64_t events;       /* events counted by ours */
    bool has_lag;
    uint64_t max_index_lag;
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
    int n = snprintf(out, PATH_MAX, "%s/%s", b->work, name);
    if (n < 0 || n >= PATH_MAX) {
        cli_error(b->cli, "%s/%s: path too long", b->work, name);
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

/* Write n events in batches; *rate = events/s until the last write returns. */
static int s_raw_append(bench_t *b, const char *name, const char *dir, size_t batch,
                        double *rate)
{
    raw_t r = {0};
    if (s_raw_open(b, dir, &r) != 0) return -1;
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create(); /* sync off */
    leveldb_writebatch_t *wb = leveldb_writebatch_create();
    int ret = 0;
    unsigned pct = 101;
    uint64_t n = b->events;
    double t0 = s_now();
    for (uint64_t seq = 1; seq <= n && !s_interrupted;) {
        uint64_t m = n - seq + 1 < batch ? n - seq + 1 : batch;
        for (uint64_t k = 0; k < m; k++) {
            uint8_t key[8];
            s_key(seq + k, key);
            leveldb_writebatch_put(wb, (const char *)key, 8,
                                   (const char *)s_payload(b, seq + k), S_PAYLOAD_LEN);
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

/* Append all events in batches of `batch`. *rate = events/s until the last
 * append returns, or (wait_index) until the indexer caught up. *in_cat gets
 * how many events landed in category S_READ_CATEGORY. */
static int s_ours_append(bench_t *b, const char *name, const char *dir, size_t batch,
                         bool wait_index, double *rate, uint64_t *max_lag,
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
    double ratio = r->baseline > 0 ? r->ours / r->baseline : 0;
    cli_progress_end(cli);
    if (b->json) {
        evb_buf line = {0};
        evb_err err = {0};
        int rc = evb_buf_printf(&line, &err,
                                "{\"name\":\"%s\",\"unit\":\"events/s\",\"ours\":%.0f,"
                                "\"baseline\":%.0f,\"ratio\":%.3f,\"sync\":\"none\","
                                "\"placement\":",
                                r->name, r->ours, r->baseline, ratio);
        if (rc == EVB_OK) rc = cli_json_str(&line, b->placement, &err);
        if (rc == EVB_OK)
            rc = evb_buf_printf(&line, &err, ",\"events\":%" PRIu64, r->events);
        if (rc == EVB_OK && r->has_lag)
            rc = evb_buf_printf(&line, &err, ",\"max_index_lag\":%" PRIu64,
                                r->max_index_lag);
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
    char note[64] = "";
    if (r->has_lag)
        snprintf(note, sizeof note, "max index lag %s", cli_group(r->max_index_lag, g3));
    else if (strcmp(r->name, "read_category") == 0)
        snprintf(note, sizeof note, "%s events in category", cli_group(r->events, g3));
    cli_printf(cli, "%-22s %14s %14s %7.3f  %s\n", r->name,
               cli_group((uint64_t)r->ours, g1), cli_group((uint64_t)r->baseline, g2),
               ratio, note);
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

static int s_case_append(bench_t *b, const char *name, size_t batch, bool indexed)
{
    char raw_dir[PATH_MAX], ours_dir[PATH_MAX], sub[96];
    snprintf(sub, sizeof sub, "%s-raw", name);
    if (s_case_dir(b, sub, raw_dir) != 0) return -1;
    snprintf(sub, sizeof sub, "%s-ours", name);
    if (s_case_dir(b, sub, ours_dir) != 0) return -1;
    result_t r = {.name = name, .events = b->events, .has_lag = indexed};
    int rc = s_raw_append(b, name, raw_dir, batch, &r.baseline);
    if (rc == 0)
        rc = s_ours_append(b, name, ours_dir, batch, indexed, &r.ours, &r.max_index_lag,
                           NULL);
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
    return s_ours_append(b, "read fixture", ours_dir, 1000, true, &ignored, NULL, in_cat);
}

/* The cases, in the order they run. Read cases come last: they share one
 * fixture built after the append cases. */
typedef struct bench_case {
    const char *name;
    size_t batch; /* append cases; 0 for read cases */
    bool indexed;
} bench_case_t;

static const bench_case_t s_cases[] = {
    {"append_b1", 1, false},       {"append_b100", 100, false},
    {"append_b1000", 1000, false}, {"append_indexed_b1000", 1000, true},
    {"read_range", 0, false},      {"read_category", 0, false},
};

#define S_NCASES (sizeof s_cases / sizeof s_cases[0])

static int s_run(bench_t *b)
{
    for (size_t i = 0; i < S_NCASES; i++) {
        if (s_cases[i].batch == 0 || !s_wanted(b, s_cases[i].name)) continue;
        if (s_case_append(b, s_cases[i].name, s_cases[i].batch, s_cases[i].indexed) != 0)
            return -1;
    }
    bool range = s_wanted(b, "read_range"), cat = s_wanted(b, "read_category");
    if (!range && !cat) return 0;
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
    return 0;
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

int cmd_bench(int argc, char **argv)
{
    cli_t cli;
    cli_init(&cli, "evbus bench");
    bool json = false, quick = false, keep = false, events_set = false;
    uint64_t events = S_DEFAULT_EVENTS;
    const char *dir = NULL, *only = NULL;
    const cli_opt opts[] = {
        {"quick", CLI_FLAG, &quick, NULL, NULL, "100,000 events instead of 1,000,000"},
        {"events", CLI_U64, &events, &events_set, "N",
         "events per case (overrides --quick)"},
        {"dir", CLI_STR, &dir, NULL, "DIR",
         "work under DIR (default: $TMPDIR or /tmp); a fresh subdirectory is made"},
        {"keep", CLI_FLAG, &keep, NULL, NULL,
         "keep the logs afterwards (path on stderr)"},
        {"case", CLI_STR, &only, NULL, "NAMES", "run only these cases (comma-separated)"},
        {"json", CLI_FLAG, &json, NULL, NULL, "one JSON object per case and line"},
        {0},
    };
    const cli_usage usage = {
        "[--quick] [--events N] [--dir DIR] [--keep] [--case NAMES] [--json]",
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
        "reports max_index_lag), read_range (whole log vs. raw iterator scan),\n"
        "read_category (one category of 4 vs. a raw scan of as many consecutive\n"
        "entries). JSON fields: name, unit, ours, baseline, ratio, sync,\n"
        "placement, events, and max_index_lag where measured.\n"};
    const char *pos[1];
    size_t npos;
    int rc = cli_parse(&cli, argc, argv, opts, &usage, 0, 0, pos, &npos);
    if (rc >= 0) return rc;
    if (!events_set) events = quick ? S_QUICK_EVENTS : S_DEFAULT_EVENTS;
    if (events == 0 || events > S_MAX_EVENTS)
        return cli_usage_error(&cli, "--events: must be 1..%u", S_MAX_EVENTS);
    if (only != NULL && (rc = s_check_cases(&cli, only)) >= 0) return rc;
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
        if (!json) {
            char g[32];
            cli_printf(&cli,
                       "%s events per case, %u-byte msgpack payloads, %u streams in %u "
                       "categories, sync none\n%s\n\n",
                       cli_group(events, g), S_PAYLOAD_LEN, S_NSTREAMS, S_NCATS,
                       b->placement);
        }
        if (s_run(b) != 0) {
            if (s_interrupted) cli_error(&cli, "interrupted");
            rc = CLI_EXIT_RUNTIME;
        } else if (b->problems) {
            rc = CLI_EXIT_PROBLEMS;
        }
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
