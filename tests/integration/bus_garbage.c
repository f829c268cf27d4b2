/*
 * bus_garbage.c: a hostile peer for the bus integration tests (libzmq only,
 * nothing of evbus but the frame sizes).
 *
 *   bus_garbage router CATCHUP_EP ROUNDS
 *       Connect a DEALER to a publisher's catch-up ROUTER and send ROUNDS
 *       rounds of bad requests: random bytes, truncated and malformed
 *       msgpack, valid msgpack of the wrong shape (unknown command, wrong
 *       version, huge numbers, negative and string fields), empty frames and
 *       several frames at once. Then count the replies for up to 5 s and
 *       print "replies N" (the publisher answers bad requests with an
 *       error, so N > 0 shows it kept reading). Exit 0 if N > 0.
 *   bus_garbage hitrun ROUTER_EP CLIENTS
 *       CLIENTS DEALERs, one after another, each sending one round of the
 *       bad requests above to a ROUTER (a command socket, a catch-up
 *       socket) and closing at once: every reply finds its client gone.
 *   bus_garbage pub PUB_EP
 *       Bind a PUB socket and, until SIGTERM, send every 20 ms a burst of
 *       garbage under the topics a subscriber listens to (event topics of
 *       "show" and "booking", the heartbeat topic) and others: random bytes,
 *       wrong frame counts, bad live headers, bad envelopes, bad heartbeats.
 *
 * The bursts are load, not synchronisation: the driver waits on what the
 * subscriber reports, with a deadline.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static volatile sig_atomic_t s_stop;

static void s_on_stop(int sig)
{
    (void)sig;
    s_stop = 1;
}

static uint64_t s_rng = 0x9e3779b97f4a7c15ull;

static uint64_t s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

static void s_fill(unsigned char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)s_rand();
}

typedef struct blob {
    const char *what;
    const unsigned char *data;
    size_t len;
} blob;

/* Hand-made msgpack of the wrong shape. */
static const unsigned char m_not_array[] = {0x81, 0xa1, 'k', 0x01};
static const unsigned char m_empty_array[] = {0x90};
static const unsigned char m_bad_version[] = {0x93, 0xcd, 0x01, 0x00, 0xa5, 'h',
                                              'e',  'l',  'l',  'o',  0x01};
static const unsigned char m_unknown_cmd[] = {0x93, 0x01, 0xa4, 'n', 'o', 'p', 'e', 0x01};
static const unsigned char m_hello_str_id[] = {0x93, 0x01, 0xa5, 'h',  'e',
                                               'l',  'l',  'o',  0xa1, 'x'};
static const unsigned char m_fetch_short[] = {0x93, 0x01, 0xa5, 'f', 'e',
                                              't',  'c',  'h',  0x07};
static const unsigned char m_fetch_neg[] = {0x96, 0x01, 0xa5, 'f',  'e', 't',
                                            'c',  'h',  0x07, 0xa4, 's', 'h',
                                            'o',  'w',  0xff, 0xd0, 0x80};
static const unsigned char m_fetch_badcat[] = {0x96, 0x01, 0xa5, 'f', 'e', 't',  'c', 'h',
                                               0x07, 0xa3, 'a',  ' ', 'b', 0x00, 0x10};
static const unsigned char m_fetch_huge[] = {
    0x96, 0x01, 0xa5, 'f',  'e',  't',  'c',  'h',  0x07, 0xc0, 0xcf, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xce, 0xff, 0xff, 0xff, 0xff};
static const unsigned char m_truncated[] = {0x96, 0x01, 0xa5, 'f', 'e', 't'};
static const unsigned char m_str32_lie[] = {0x93, 0x01, 0xdb, 0x7f,
                                            0xff, 0xff, 0xff, 'a'};
static const unsigned char m_deep[] = {
    0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
    0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
    0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0xc0};
static const unsigned char m_trailing[] = {0x93, 0x01, 0xa5, 'h',  'e',
                                           'l',  'l',  'o',  0x01, 0xc0};
/* A live header [1, prev] with prev as a string, and one that is fine. */
static const unsigned char m_live_bad[] = {0x92, 0x01, 0xa1, 'x'};
static const unsigned char m_live_ok[] = {0x92, 0x01, 0x00};
/* A well-formed catch-up error reply, sent where a heartbeat belongs. */
static const unsigned char m_error_reply[] = {0x95, 0x01, 0xa5, 'e', 'r',  'r', 'o',
                                              'r',  0x07, 0xa1, 'X', 0xa1, 'Y'};
static const unsigned char m_hb_bad[] = {0x96, 0x01, 0xa2, 'h',  'b',  0xc4, 0x03,
                                         1,    2,    3,    0x05, 0xa1, 's',  0x90};

#define B(x)                                                                             \
    {                                                                                    \
#x, x, sizeof x                                                                  \
    }
static const blob s_shapes[] = {
    B(m_not_array),    B(m_empty_array), B(m_bad_version), B(m_unknown_cmd),
    B(m_hello_str_id), B(m_fetch_short), B(m_fetch_neg),   B(m_fetch_badcat),
    B(m_fetch_huge),   B(m_truncated),   B(m_str32_lie),   B(m_deep),
    B(m_trailing),
};
#define NSHAPES (sizeof s_shapes / sizeof s_shapes[0])

static int s_router(const char *ep, long rounds)
{
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(d, ep) != 0) {
        fprintf(stderr, "bus_garbage: connect %s: %s\n", ep, zmq_strerror(zmq_errno()));
        return 2;
    }
    unsigned char rnd[512];
    long sent = 0;
    for (long r = 0; r < rounds; r++) {
        for (size_t i = 0; i < NSHAPES; i++, sent++)
            zmq_send(d, s_shapes[i].data, s_shapes[i].len, 0);
        size_t n = (size_t)(s_rand() % sizeof rnd);
        s_fill(rnd, n);
        zmq_send(d, rnd, n, 0), sent++;
        zmq_send(d, "", 0, 0), sent++; /* empty frame */
        zmq_send(d, m_unknown_cmd, sizeof m_unknown_cmd, ZMQ_SNDMORE);
        zmq_send(d, rnd, n, ZMQ_SNDMORE); /* three frames */
        zmq_send(d, "", 0, 0), sent++;
    }
    printf("sent %ld\n", sent);
    fflush(stdout);
    long replies = 0;
    zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms >= 5000 || replies >= sent) break;
        if (zmq_poll(&it, 1, 5000 - ms) <= 0) continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, d, ZMQ_DONTWAIT) >= 0) {
            if (!zmq_msg_more(&m)) replies++;
        }
        zmq_msg_close(&m);
    }
    printf("replies %ld\n", replies);
    fflush(stdout);
    zmq_close(d);
    zmq_ctx_term(ctx);
    return replies > 0 ? 0 : 1;
}

/* Hit and run: CLIENTS DEALERs one after another, each sends one round of
 * bad requests and leaves at once, before any reply can reach it. */
static int s_hitrun(const char *ep, long clients)
{
    void *ctx = zmq_ctx_new();
    int linger = 1000; /* the requests go out; the replies find no one */
    long sent = 0;
    for (long k = 0; k < clients; k++) {
        void *d = zmq_socket(ctx, ZMQ_DEALER);
        zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
        if (zmq_connect(d, ep) != 0) {
            fprintf(stderr, "bus_garbage: connect %s: %s\n", ep, zmq_strerror(zmq_errno()));
            return 2;
        }
        for (size_t i = 0; i < NSHAPES; i++, sent++)
            zmq_send(d, s_shapes[i].data, s_shapes[i].len, 0);
        zmq_close(d);
    }
    printf("sent %ld from %ld clients\n", sent, clients);
    fflush(stdout);
    zmq_ctx_term(ctx); /* waits for the lingering sends */
    return 0;
}

static void s_send3(void *p, const void *a, size_t al, const void *b, size_t bl,
                    const void *c, size_t cl)
{
    zmq_send(p, a, al, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(p, b, bl, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(p, c, cl, ZMQ_DONTWAIT);
}

static int s_pub(const char *ep)
{
    void *ctx = zmq_ctx_new();
    void *p = zmq_socket(ctx, ZMQ_PUB);
    int zero = 0;
    zmq_setsockopt(p, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(p, ep) != 0) {
        fprintf(stderr, "bus_garbage: bind %s: %s\n", ep, zmq_strerror(zmq_errno()));
        return 2;
    }
    printf("ready\n");
    fflush(stdout);
    static const char t_show[] = "Eshow", t_booking[] = "Ebooking", t_hb[] = "H";
    unsigned char rnd[600];
    uint64_t bursts = 0;
    while (!s_stop) {
        size_t n = (size_t)(s_rand() % sizeof rnd);
        s_fill(rnd, n);
        /* right topics, wrong bodies; first a well-formed reply of the wrong
         * kind on the heartbeat topic (first in the burst: the subscriber
         * logs one bad frame a second, so this one gets its reason logged) */
        zmq_send(p, t_hb, sizeof t_hb, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(p, m_error_reply, sizeof m_error_reply, ZMQ_DONTWAIT);
        s_send3(p, t_show, sizeof t_show, m_live_bad, sizeof m_live_bad, rnd, n);
        s_send3(p, t_booking, sizeof t_booking, m_live_ok, sizeof m_live_ok, rnd, n);
        s_send3(p, t_show, sizeof t_show, rnd, n, m_not_array, sizeof m_not_array);
        zmq_send(p, t_show, sizeof t_show, ZMQ_DONTWAIT); /* one frame only */
        zmq_send(p, t_show, sizeof t_show, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(p, m_live_ok, sizeof m_live_ok, ZMQ_DONTWAIT); /* two frames */
        zmq_send(p, t_hb, sizeof t_hb, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(p, m_hb_bad, sizeof m_hb_bad, ZMQ_DONTWAIT);
        zmq_send(p, t_hb, sizeof t_hb, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(p, rnd, n, ZMQ_DONTWAIT);
        zmq_send(p, t_hb, sizeof t_hb, ZMQ_DONTWAIT); /* heartbeat without body */
        /* a topic that only prefix-matches, and raw noise */
        zmq_send(p, "Eshowtime", 10, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(p, m_live_ok, sizeof m_live_ok, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(p, rnd, n, ZMQ_DONTWAIT);
        zmq_send(p, rnd, n, ZMQ_DONTWAIT);
        bursts++;
        usleep(20000);
    }
    fprintf(stderr, "bus_garbage: %llu bursts\n", (unsigned long long)bursts);
    zmq_close(p);
    zmq_ctx_term(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    s_rng ^= (uint64_t)getpid() << 20;
    if (argc == 4 && strcmp(argv[1], "router") == 0)
        return s_router(argv[2], atol(argv[3]));
    if (argc == 4 && strcmp(argv[1], "hitrun") == 0)
        return s_hitrun(argv[2], atol(argv[3]));
    if (argc == 3 && strcmp(argv[1], "pub") == 0) return s_pub(argv[2]);
    fprintf(stderr, "usage: bus_garbage router CATCHUP_EP ROUNDS | bus_garbage hitrun "
                    "ROUTER_EP CLIENTS | bus_garbage pub PUB_EP\n");
    return 2;
}
