/*
 * crash_appender.c: a child program for the crash tests (test_crash.c) and
 * the CLI test. It opens or creates a log and appends in a loop, with mixed
 * batch sizes (1..50) across 7 streams in 3 categories, each event with a
 * random id. After each append (or transaction commit) returned EVB_OK, and
 * never before, it writes one report line to stdout in a single write(2):
 *
 *   <first_seq> <last_seq> <stream> <first_version> <hex id> ...
 *
 * A line is shorter than PIPE_BUF, so a reader of the pipe sees whole lines
 * even when the appender is killed at any instant.
 *
 * With --intent it also writes, before each append, the batch it is about to
 * try:   I <stream> <n> <ckpt> <hex id> ...
 * so the test knows the one batch that may be in flight when the process dies,
 * and can check it is either wholly in the log or wholly absent.
 *
 * --mode txn appends through a consumer transaction: events + a key
 * ("k/" + hex of the first id, value "<stream> <n> <ckpt>") + a checkpoint
 * (consumer "crash", source log 01..01, category "all", seq = ckpt, a counter
 * of committed transactions in this log), committed in one WriteBatch.
 *
 * Options: --dir DIR (required) --sync every|group|none --index thread|manual
 *          --mode append|txn --count N (0: until killed) --seed S --intent
 *          --hold (after --count appends, keep the log open until stdin ends)
 * Exit: 0 after --count appends; 2 bad usage; 3 an evbus call failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <evbus/evbus_store.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_NSTREAMS 7
#define S_MAX_BATCH 50

static const char *s_streams[S_NSTREAMS] = {
    "show-1", "show-2", "show-3", "booking-1", "booking-2", "customer-1", "customer-2"};

static uint64_t s_rng;

static uint64_t s_rand(void)
{
    /* xorshift64*: enough for choosing sizes and streams */
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ull;
}

static void s_die(const char *what, const evb_err *err)
{
    fprintf(stderr, "crash_appender: %s: %s (%s)\n", what, err->msg,
            evb_strerror(err->code));
    exit(3);
}

static void s_usage(const char *msg)
{
    fprintf(
        stderr,
        "crash_appender: %s\nusage: crash_appender --dir DIR [--sync every|group|none]"
        " [--index thread|manual] [--mode append|txn] [--count N] [--seed S]"
        " [--intent] [--hold]\n",
        msg);
    exit(2);
}

/* Write all of buf in one write(2) when possible (lines are < PIPE_BUF). */
static void s_emit(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) exit(3); /* the reader went away */
        buf += n;
        len -= (size_t)n;
    }
}

/* A small msgpack map {"i": u64, "pad": str} written by hand. */
static size_t s_payload(uint8_t *out, uint64_t i, size_t padlen)
{
    size_t o = 0;
    out[o++] = 0x82;
    out[o++] = 0xa1;
    out[o++] = 'i';
    out[o++] = 0xcf;
    for (int b = 7; b >= 0; b--)
        out[o++] = (uint8_t)(i >> (8 * b));
    out[o++] = 0xa3;
    memcpy(out + o, "pad", 3);
    o += 3;
    out[o++] = 0xd9;
    out[o++] = (uint8_t)padlen;
    memset(out + o, 'x', padlen);
    return o + padlen;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    evb_sync sync = EVB_SYNC_EVERY;
    evb_index_mode imode = EVB_INDEX_THREAD;
    bool txn_mode = false, intent = false, hold = false;
    unsigned long long count = 0, seed = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
        if (strcmp(a, "--intent") == 0) {
            intent = true;
            continue;
        }
        if (strcmp(a, "--hold") == 0) {
            hold = true;
            continue;
        }
        if (v == NULL) s_usage("missing value");
        i++;
        if (strcmp(a, "--dir") == 0) {
            dir = v;
        } else if (strcmp(a, "--sync") == 0) {
            if (strcmp(v, "every") == 0)
                sync = EVB_SYNC_EVERY;
            else if (strcmp(v, "group") == 0)
                sync = EVB_SYNC_GROUP;
            else if (strcmp(v, "none") == 0)
                sync = EVB_SYNC_NONE;
            else
                s_usage("bad --sync");
        } else if (strcmp(a, "--index") == 0) {
            if (strcmp(v, "thread") == 0)
                imode = EVB_INDEX_THREAD;
            else if (strcmp(v, "manual") == 0)
                imode = EVB_INDEX_MANUAL;
            else
                s_usage("bad --index");
        } else if (strcmp(a, "--mode") == 0) {
            if (strcmp(v, "append") == 0)
                txn_mode = false;
            else if (strcmp(v, "txn") == 0)
                txn_mode = true;
            else
                s_usage("bad --mode");
        } else if (strcmp(a, "--count") == 0) {
            count = strtoull(v, NULL, 10);
        } else if (strcmp(a, "--seed") == 0) {
            seed = strtoull(v, NULL, 10);
        } else {
            s_usage("unknown option");
        }
    }
    if (dir == NULL) s_usage("--dir is required");
    evb_log_set_sink(NULL, NULL, EVB_LOG_WARN); /* keep the output to the point */
    s_rng = seed ? seed : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    if (s_rng == 0) s_rng = 88172645463325252ull;

    evb_err err = {0};
    evb_store_opts opts = {0};
    opts.dir = dir;
    opts.service = "crash";
    opts.create = true;
    opts.sync = sync;
    opts.index_mode = imode;
    evb_store_t *st = evb_store_open(&opts, &err);
    if (st == NULL) s_die("open", &err);

    /* Start from the versions already in the log (a reopened log). */
    uint64_t versions[S_NSTREAMS];
    for (int s = 0; s < S_NSTREAMS; s++)
        if (evb_store_stream_version(st, s_streams[s], &versions[s], &err) != EVB_OK)
            s_die("stream_version", &err);

    const evb_id src_log = {{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}};
    uint64_t ckpt = 0;
    if (txn_mode &&
        evb_store_checkpoint_get(st, "crash", &src_log, "all", &ckpt, &err) != EVB_OK)
        s_die("checkpoint_get", &err);

    static uint8_t payloads[S_MAX_BATCH][64];
    static char line[64 + EVB_MAX_STREAM_LEN + S_MAX_BATCH * (EVB_ID_HEX_LEN + 1)];
    evb_event_t evs[S_MAX_BATCH];
    uint64_t serial = 0;

    for (unsigned long long done = 0; count == 0 || done < count; done++) {
        int s = (int)(s_rand() % S_NSTREAMS);
        /* Mostly small batches, now and then large ones. */
        size_t n = (s_rand() % 2) ? 1 + s_rand() % 5 : 1 + s_rand() % S_MAX_BATCH;
        memset(evs, 0, sizeof evs);
        for (size_t i = 0; i < n; i++) {
            if (evb_id_random(&evs[i].id, &err) != EVB_OK) s_die("id_random", &err);
            evs[i].type = (i % 3 == 0) ? "Created" : "Changed";
            evs[i].schema = 1;
            evs[i].payload = payloads[i];
            evs[i].payload_len = s_payload(payloads[i], ++serial, s_rand() % 40);
        }
        /* Expected version: exact most of the time (this tests that a
         * reopened log knows its stream versions), now and then any. */
        int64_t expect = (s_rand() % 4 == 0) ? EVB_EXPECT_ANY : (int64_t)versions[s];

        char hex[EVB_ID_HEX_LEN + 1];
        size_t len;
        if (intent) {
            len = (size_t)snprintf(line, sizeof line, "I %s %zu %" PRIu64, s_streams[s],
                                   n, ckpt + 1);
            for (size_t i = 0; i < n; i++) {
                evb_id_to_hex(&evs[i].id, hex);
                len += (size_t)snprintf(line + len, sizeof line - len, " %s", hex);
            }
            line[len++] = '\n';
            s_emit(line, len);
        }

        evb_append_result res = {0};
        if (!txn_mode) {
            if (evb_store_append(st, s_streams[s], expect, evs, n, &res, &err) != EVB_OK)
                s_die("append", &err);
        } else {
            evb_txn_t *tx = evb_txn_begin(st, &err);
            if (tx == NULL) s_die("txn_begin", &err);
            char key[2 + EVB_ID_HEX_LEN + 1], val[EVB_MAX_STREAM_LEN + 48];
            evb_id_to_hex(&evs[0].id, hex);
            snprintf(key, sizeof key, "k/%s", hex);
            int vlen =
                snprintf(val, sizeof val, "%s %zu %" PRIu64, s_streams[s], n, ckpt + 1);
            if (evb_txn_append(tx, s_streams[s], expect, evs, n, &res, &err) != EVB_OK)
                s_die("txn_append", &err);
            if (evb_txn_put(tx, key, strlen(key), val, (size_t)vlen, &err) != EVB_OK)
                s_die("txn_put", &err);
            if (evb_txn_checkpoint(tx, "crash", &src_log, "all", ckpt + 1, &err) !=
                EVB_OK)
                s_die("txn_checkpoint", &err);
            if (evb_txn_commit(&tx, &err) != EVB_OK) s_die("txn_commit", &err);
            ckpt++;
        }
        if (res.duplicate || res.last_seq - res.first_seq + 1 != n ||
            res.first_version != versions[s] + 1) {
            fprintf(stderr,
                    "crash_appender: odd result for %s: seq %" PRIu64 "..%" PRIu64
                    " first_version %" PRIu64 " (expected %" PRIu64 ") dup %d n %zu\n",
                    s_streams[s], res.first_seq, res.last_seq, res.first_version,
                    versions[s] + 1, (int)res.duplicate, n);
            exit(3);
        }
        versions[s] = res.last_version;

        len = (size_t)snprintf(line, sizeof line, "%" PRIu64 " %" PRIu64 " %s %" PRIu64,
                               res.first_seq, res.last_seq, s_streams[s],
                               res.first_version);
        for (size_t i = 0; i < n; i++) {
            evb_id_to_hex(&evs[i].id, hex);
            len += (size_t)snprintf(line + len, sizeof line - len, " %s", hex);
        }
        line[len++] = '\n';
        s_emit(line, len);
    }

    if (hold) {
        /* Keep the log open (and locked) until whoever started us closes
         * our stdin: the CLI test checks "in use by another process". */
        s_emit("holding\n", 8);
        char c;
        for (;;) {
            ssize_t r = read(STDIN_FILENO, &c, 1);
            if (r > 0 || (r < 0 && errno == EINTR)) continue;
            break;
        }
    }
    evb_store_destroy(&st);
    return 0;
}
