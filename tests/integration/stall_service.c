/*
 * stall_service.c: a service on the runtime whose handler can be made to
 * block, for the slow-reader test (test_sniff.py slow_service).
 *
 * It consumes the category "show" of every --follow publisher. An event of
 * type "Stall" with payload {s: N} blocks the handler (the service's one
 * thread) for N seconds, as a handler waiting on a slow disk or a remote
 * call would; every other event is only applied (its checkpoint moves).
 * Everything else (flags, store, checkpoints, `status` with each feed's
 * applied count) is the runtime's.
 */
#include <evbus/evbus_svc.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int e_show(evb_svc_ctx *c, const evb_event_t *ev, void *ctx, evb_err *err)
{
    (void)c, (void)ctx, (void)err;
    uint64_t s = 0;
    if (strcmp(ev->type, "Stall") == 0 &&
        evb_map_uint(ev->payload, ev->payload_len, "s", &s, NULL) == EVB_OK && s <= 60) {
        evb_log(EVB_LOG_INFO, "stalling for %llu s at seq %llu", (unsigned long long)s,
                (unsigned long long)ev->seq);
        struct timespec ts = {.tv_sec = (time_t)s};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        evb_log(EVB_LOG_INFO, "stalled %llu s", (unsigned long long)s);
    }
    return EVB_OK;
}

int main(int argc, char **argv)
{
    static const evb_svc_def def = {
        .name = "stall",
        .summary = "For tests: consumes \"show\" events; a Stall event {s} blocks the\n"
                   "handler s seconds. Query: status.",
    };
    int code;
    evb_svc_t *svc = evb_svc_new(&def, argc, argv, &code);
    if (svc == NULL) return code;
    static const char *const cats[] = {"show"};
    evb_err err = {0};
    int rc = evb_svc_consume(svc, cats, 1, e_show, NULL, &err);
    if (rc != EVB_OK) {
        evb_log(EVB_LOG_ERROR, "%s", err.msg);
        evb_svc_destroy(&svc);
        return 4;
    }
    code = evb_svc_run(svc);
    evb_svc_destroy(&svc);
    return code;
}
