/*
 * js_raw_pub: the baseline of the bridge's benchmark (tools/scripts/
 * bench_bridge.py): N messages of BYTES bytes published with
 * js_PublishMsgAsync (a Nats-Msg-Id each, at most 4096 in flight, as the
 * bridge) into a stream it creates, then js_PublishAsyncComplete. Prints one
 * JSON object: {"messages": N, "seconds": S, "per_second": R}.
 *
 *   js_raw_pub NATS_URL STREAM SUBJECT N BYTES REPLICAS
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: js_raw_pub NATS_URL STREAM SUBJECT N BYTES REPLICAS\n");
        return 2;
    }
    const char *url = argv[1], *stream = argv[2], *subject = argv[3];
    long n = atol(argv[4]), bytes = atol(argv[5]);
    int replicas = atoi(argv[6]);
    if (n <= 0 || bytes <= 0 || bytes > 1 << 20 || replicas < 1) {
        fprintf(stderr, "js_raw_pub: bad N, BYTES or REPLICAS\n");
        return 2;
    }
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    jo.PublishAsync.StallWait = 5000; /* a full window waits, as the bridge's does */
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, &jo);
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {subject};
    cfg.Name = stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Replicas = replicas;
    jsErrCode jerr = 0;
    if (s == NATS_OK) s = js_AddStream(NULL, js, &cfg, NULL, &jerr);
    char *body = malloc((size_t)bytes);
    if (s != NATS_OK || body == NULL) {
        fprintf(stderr, "js_raw_pub: %s: %s\n", url, natsStatus_GetText(s));
        return 1;
    }
    memset(body, 'x', (size_t)bytes);
    double t0 = s_now();
    for (long i = 0; i < n && s == NATS_OK; i++) {
        natsMsg *m = NULL;
        char id[32];
        snprintf(id, sizeof id, "raw-%ld", i);
        s = natsMsg_Create(&m, subject, NULL, body, (int)bytes);
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = id;
        /* A window still full after StallWait: wait again, do not give up
         * (the bridge waits too). */
        for (int tries = 0; s == NATS_OK || (s == NATS_TIMEOUT && tries < 60); tries++) {
            s = js_PublishMsgAsync(js, &m, &po);
            if (s != NATS_TIMEOUT) break;
        }
        natsMsg_Destroy(m);
    }
    if (s == NATS_OK) s = js_PublishAsyncComplete(js, NULL);
    double secs = s_now() - t0;
    if (s != NATS_OK) {
        fprintf(stderr, "js_raw_pub: publishing: %s\n", natsStatus_GetText(s));
        return 1;
    }
    printf("{\"messages\":%ld,\"seconds\":%.3f,\"per_second\":%.0f}\n", n, secs,
           (double)n / secs);
    free(body);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return 0;
}
