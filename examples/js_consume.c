/*
 * js_consume: read what evbus-bridge exported into a JetStream stream, in
 * order, with libnats alone (no evbus library): one JSON line per message
 * with the JetStream sequence, the subject and the evbus headers (and the
 * body itself when it is a JSON object, as `evbus-bridge --json` writes).
 *
 *   js_consume NATS_URL STREAM [SUBJECT_FILTER]
 *
 * It reads the stream from its first message to the last one there when it
 * started (an ephemeral pull consumer, batches of 256, each message acked)
 * and exits 0; 1 when the stream is missing or a message goes missing. The
 * bridge's tests use it to check the stream message by message; it is also
 * the smallest consumer in another runtime a reader can start from.
 *
 * Build: cc js_consume.c $(pkg-config --cflags --libs libnats) -o js_consume
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <nats/nats.h>

static const char *s_hdr(natsMsg *m, const char *key)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK && v != NULL ? v : "";
}

/* A header value as a JSON string body: the bridge's values are ids,
 * numbers and evbus names, which need no escaping; anything else is
 * replaced, so the line stays JSON. */
static void s_json_safe(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in && n + 1 < cap; in++)
        out[n++] = (*in == '"' || *in == '\\' || (unsigned char)*in < 0x20) ? '?' : *in;
    out[n] = '\0';
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: js_consume NATS_URL STREAM [SUBJECT_FILTER]\n");
        return 2;
    }
    const char *url = argv[1], *stream = argv[2];
    const char *filter = argc == 4 ? argv[3] : ">";
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    int rc = 1;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, NULL);
    if (s != NATS_OK) {
        fprintf(stderr, "js_consume: %s: %s\n", url, natsStatus_GetText(s));
        goto out;
    }
    s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
    if (s != NATS_OK) {
        fprintf(stderr, "js_consume: stream %s: %s\n", stream, natsStatus_GetText(s));
        goto out;
    }
    uint64_t last = si->State.LastSeq;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckPolicy = js_AckExplicit;
    s = js_PullSubscribe(&sub, js, filter, NULL, NULL, &so, &jerr);
    if (s != NATS_OK) {
        fprintf(stderr, "js_consume: consumer on %s: %s\n", stream,
                natsStatus_GetText(s));
        goto out;
    }
    uint64_t got = 0, prev = 0;
    while (prev < last) {
        natsMsgList list = {0};
        s = natsSubscription_Fetch(&list, sub, 256, 5000, &jerr);
        if (s != NATS_OK) {
            fprintf(stderr, "js_consume: fetch after %" PRIu64 " of %" PRIu64 ": %s\n",
                    prev, last, natsStatus_GetText(s));
            goto out;
        }
        for (int i = 0; i < list.Count; i++) {
            natsMsg *m = list.Msgs[i];
            jsMsgMetaData *md = NULL;
            if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
                prev = md->Sequence.Stream;
                jsMsgMetaData_Destroy(md);
            }
            char id[80], lid[80], seq[32], st[300], ty[300];
            s_json_safe(s_hdr(m, "Nats-Msg-Id"), id, sizeof id);
            s_json_safe(s_hdr(m, "Evbus-Log-Id"), lid, sizeof lid);
            s_json_safe(s_hdr(m, "Evbus-Seq"), seq, sizeof seq);
            s_json_safe(s_hdr(m, "Evbus-Stream"), st, sizeof st);
            s_json_safe(s_hdr(m, "Evbus-Type"), ty, sizeof ty);
            /* A body of `evbus-bridge --json` is a JSON object: shown as is. */
            const char *data = natsMsg_GetData(m);
            int dlen = natsMsg_GetDataLength(m);
            bool json = dlen > 1 && data[0] == '{' && data[dlen - 1] == '}';
            printf("{\"js_seq\":%" PRIu64 ",\"subject\":\"%s\",\"id\":\"%s\","
                   "\"log_id\":\"%s\",\"seq\":%s,\"stream\":\"%s\",\"type\":\"%s\","
                   "\"bytes\":%d%s%.*s}\n",
                   prev, natsMsg_GetSubject(m), id, lid, seq[0] ? seq : "null", st, ty,
                   dlen, json ? ",\"body\":" : "", json ? dlen : 0, json ? data : "");
            natsMsg_Ack(m, NULL);
            got++;
        }
        natsMsgList_Destroy(&list);
    }
    fprintf(stderr,
            "js_consume: %" PRIu64 " messages of %s (last sequence %" PRIu64 ")\n", got,
            stream, last);
    rc = 0;
out:
    natsSubscription_Destroy(sub);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
