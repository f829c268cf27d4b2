/*
 * bus_pub.c: the publisher child of the bus integration tests.
 *
 *   bus_pub DIR PUB_EP CATCHUP_EP COUNT BATCH CATS [--sync none|every|group]
 *           [--sndhwm N] [--go-on-stdin]
 *
 * Opens (or creates) the log in DIR and publishes it, appending until the
 * log holds COUNT events, in batches of BATCH events to one stream each,
 * the streams' categories taken in turn from CATS (comma-separated, e.g.
 * "show,showtime,booking"). After each append returns it prints
 * "appended <last seq>" on stdout (flushed), so a driver can wait for a
 * position and kill us at a known point. When COUNT is reached it prints
 * "done <head>" and keeps serving until SIGTERM/SIGINT (exit 0) or SIGKILL.
 * Restarted on the same DIR it goes on from the head it finds, so a driver
 * can kill it mid-append over and over.
 *
 * With --go-on-stdin it serves first and starts appending only after a line
 * arrives on stdin ("go"), so a subscriber can be connected before a flood.
 * A driver may also write "more N" lines on stdin, any time: COUNT grows by
 * N and the appends resume.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <evbus/evbus_bus.h>

#define MAX_CATS 16

static volatile sig_atomic_t s_stop;

static void s_on_stop(int sig)
{
    (void)sig;
    s_stop = 1;
}

static int s_die(const char *what, const evb_err *err)
{
    fprintf(stderr, "bus_pub: %s: %s\n", what, err->msg);
    return 1;
}

/* Non-blocking read of stdin lines: "go" and "more N". */
typedef struct input {
    char buf[256];
    size_t len;
    bool eof;
} input;

static int s_read_cmds(input *in, bool *go, uint64_t *count)
{
    if (in->eof) return 0;
    struct pollfd pf = {STDIN_FILENO, POLLIN, 0};
    while (poll(&pf, 1, 0) == 1) {
        ssize_t n = read(STDIN_FILENO, in->buf + in->len, sizeof in->buf - 1 - in->len);
        if (n <= 0) {
            in->eof = true;
            return 0;
        }
        in->len += (size_t)n;
        char *nl;
        while ((nl = memchr(in->buf, '\n', in->len)) != NULL) {
            *nl = '\0';
            unsigned long long more;
            if (strcmp(in->buf, "go") == 0)
                *go = true;
            else if (sscanf(in->buf, "more %llu", &more) == 1)
                *count += more;
            else
                fprintf(stderr, "bus_pub: unknown command '%s'\n", in->buf);
            size_t used = (size_t)(nl - in->buf) + 1;
            memmove(in->buf, nl + 1, in->len - used);
            in->len -= used;
        }
        if (in->len == sizeof in->buf - 1) in->len = 0; /* a line too long: drop */
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: bus_pub DIR PUB_EP CATCHUP_EP COUNT BATCH CATS "
                        "[--sync none|every|group] [--sndhwm N] [--go-on-stdin]\n");
        return 2;
    }
    const char *dir = argv[1], *pub_ep = argv[2], *cu_ep = argv[3];
    uint64_t count = strtoull(argv[4], NULL, 10);
    size_t batch = (size_t)strtoull(argv[5], NULL, 10);
    if (batch == 0 || batch > EVB_MAX_BATCH) {
        fprintf(stderr, "bus_pub: BATCH must be 1..%u\n", EVB_MAX_BATCH);
        return 2;
    }
    char catbuf[512];
    snprintf(catbuf, sizeof catbuf, "%s", argv[6]);
    const char *cats[MAX_CATS];
    size_t ncats = 0;
    for (char *save = NULL, *t = strtok_r(catbuf, ",", &save); t && ncats < MAX_CATS;
         t = strtok_r(NULL, ",", &save))
        cats[ncats++] = t;
    if (ncats == 0) {
        fprintf(stderr, "bus_pub: no categories\n");
        return 2;
    }
    evb_sync sync = EVB_SYNC_NONE;
    int sndhwm = 0;
    bool go = true;
    for (int i = 7; i < argc; i++) {
        if (strcmp(argv[i], "--sync") == 0 && i + 1 < argc) {
            const char *v = argv[++i];
            sync = strcmp(v, "every") == 0   ? EVB_SYNC_EVERY
                   : strcmp(v, "group") == 0 ? EVB_SYNC_GROUP
                                             : EVB_SYNC_NONE;
        } else if (strcmp(argv[i], "--sndhwm") == 0 && i + 1 < argc) {
            sndhwm = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--go-on-stdin") == 0) {
            go = false;
        } else {
            fprintf(stderr, "bus_pub: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    evb_err err = {0};
    evb_store_opts so = {0};
    so.dir = dir;
    so.service = "buspub";
    so.create = true;
    so.sync = sync;
    so.index_mode = EVB_INDEX_THREAD;
    evb_store_t *st = evb_store_open(&so, &err);
    if (st == NULL) return s_die("open", &err);
    evb_pub_opts po = {0};
    po.store = st;
    po.pub_endpoint = pub_ep;
    po.catchup_endpoint = cu_ep;
    po.heartbeat_ms = 100;
    po.sndhwm = sndhwm;
    evb_pub_t *pub = evb_pub_new(&po, &err);
    if (pub == NULL) {
        evb_store_destroy(&st);
        return s_die("publisher", &err);
    }
    printf("ready %" PRIu64 "\n", evb_store_head(st));
    fflush(stdout);

    /* Payload: {"n": <seq-to-be>, "pad": "<48 letters>"}; n lets a reader
     * check what it got without trusting the envelope. */
    evb_event_t *evs = calloc(batch, sizeof *evs);
    uint8_t(*payloads)[80] = calloc(batch, sizeof *payloads);
    if (evs == NULL || payloads == NULL) {
        fprintf(stderr, "bus_pub: out of memory\n");
        return 1;
    }
    input in = {0};
    int rc = 0;
    bool done_said = false;
    while (!s_stop) {
        s_read_cmds(&in, &go, &count);
        uint64_t head = evb_store_head(st);
        if (go && head < count) {
            size_t n = count - head < batch ? (size_t)(count - head) : batch;
            uint64_t b = head / batch; /* batch number: picks stream and category */
            char stream[64];
            snprintf(stream, sizeof stream, "%s-%" PRIu64, cats[b % ncats], b % 97);
            for (size_t i = 0; i < n; i++) {
                uint8_t *p = payloads[i];
                uint64_t v = head + 1 + i;
                size_t k = 0;
                p[k++] = 0x82; /* map of 2 */
                p[k++] = 0xa1;
                p[k++] = 'n';  /* "n" */
                p[k++] = 0xcf; /* uint64 */
                for (int s = 56; s >= 0; s -= 8)
                    p[k++] = (uint8_t)(v >> s);
                p[k++] = 0xa3;
                p[k++] = 'p';
                p[k++] = 'a';
                p[k++] = 'd';
                p[k++] = 0xd9;
                p[k++] = 48; /* str8 of 48 */
                for (int j = 0; j < 48; j++)
                    p[k++] = (uint8_t)('a' + (v + (uint64_t)j) % 26);
                memset(&evs[i], 0, sizeof evs[i]);
                evs[i].type = "Tick";
                evs[i].payload = p;
                evs[i].payload_len = k;
            }
            evb_append_result res;
            if (evb_store_append(st, stream, EVB_EXPECT_ANY, evs, n, &res, &err) !=
                EVB_OK) {
                rc = s_die("append", &err);
                break;
            }
            printf("appended %" PRIu64 "\n", res.last_seq);
            fflush(stdout);
            done_said = false;
            if (evb_pub_poll(pub, 0, &err) != EVB_OK) {
                rc = s_die("poll", &err);
                break;
            }
            continue;
        }
        if (!done_said && go) {
            printf("done %" PRIu64 "\n", head);
            fflush(stdout);
            done_said = true;
        }
        if (evb_pub_poll(pub, 50, &err) != EVB_OK) {
            rc = s_die("poll", &err);
            break;
        }
    }
    free(evs);
    free(payloads);
    evb_pub_destroy(&pub);
    evb_store_destroy(&st);
    return rc;
}
