/*
 * notify.c: the sd_notify side of a long-running program (evbus_notify.h).
 *
 * libsystemd's sd_notify does the protocol: one datagram on the AF_UNIX
 * socket $NOTIFY_SOCKET names, nothing when it is unset. What is ours is
 * the rhythm: the watchdog at about half its interval (the margin
 * sd_watchdog_enabled(3) advises), and a STATUS= line rebuilt at most once
 * a second and sent only when it changed, so a busy loop neither floods the
 * manager nor spends time walking its feeds on every turn.
 *
 * The environment is read once, at the first call: a program started by
 * systemd keeps the variables it was given.
 */
#include "evbus_notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef EVB_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static struct {
    int state;                            /* 0: not looked at yet; 1 on; -1 off */
    uint64_t wd_us;                       /* the watchdog interval; 0 without one */
    int64_t pinged_us;                    /* the last WATCHDOG=1 */
    int64_t built_us;                     /* the last status line built */
    bool warned;                          /* a failed send was logged */
    char sent[EVB_NOTIFY_MAX_STATUS + 1]; /* the last STATUS= sent */
} s_n;

static int64_t s_mono_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

bool evb_notify_on(void)
{
    if (s_n.state == 0) {
        s_n.state = -1;
#ifdef EVB_HAVE_SYSTEMD
        const char *sock = getenv("NOTIFY_SOCKET");
        if (sock != NULL && sock[0] != '\0') {
            s_n.state = 1;
            uint64_t us = 0;
            /* > 0: $WATCHDOG_USEC is set and $WATCHDOG_PID is ours or unset. */
            if (sd_watchdog_enabled(0, &us) > 0) s_n.wd_us = us;
        }
#endif
    }
    return s_n.state > 0;
}

static void s_send(const char *msg)
{
#ifdef EVB_HAVE_SYSTEMD
    int rc = sd_notify(0, msg);
    if (rc < 0 && !s_n.warned) {
        s_n.warned = true;
        evb_log(EVB_LOG_WARN,
                "sd_notify (NOTIFY_SOCKET %s): %s; the service manager "
                "does not hear us",
                getenv("NOTIFY_SOCKET"), strerror(-rc));
    }
#else
    (void)msg;
#endif
}

/* The status line of fn into out (cut, one line). */
static void s_build(evb_notify_line_fn fn, void *ctx, char *out, size_t cap)
{
    evb_buf line = {0};
    line.max_cap = 4 * EVB_NOTIFY_MAX_STATUS; /* the parts stop at the bound */
    out[0] = '\0';
    if (fn != NULL) fn(&line, ctx);
    size_t n = line.len < cap - 1 ? line.len : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = line.data[i] == '\n' || line.data[i] == '\r' ? ' ' : line.data[i];
    out[n] = '\0';
    evb_buf_free(&line);
}

void evb_notify_ready(evb_notify_line_fn fn, void *ctx)
{
    if (!evb_notify_on()) return;
    char msg[EVB_NOTIFY_MAX_STATUS + 32];
    s_build(fn, ctx, s_n.sent, sizeof s_n.sent);
    s_n.built_us = s_mono_us();
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", s_n.sent);
    s_send(msg);
}

void evb_notify_tick(evb_notify_line_fn fn, void *ctx)
{
    if (!evb_notify_on()) return;
    int64_t now = s_mono_us();
    char msg[EVB_NOTIFY_MAX_STATUS + 32];
    size_t len = 0;
    msg[0] = '\0';
    /* Due a little before half the interval: a loop that ticks every half
     * interval (evb_notify_tick_ms) and comes a moment early still pings. */
    if (s_n.wd_us > 0 && (uint64_t)(now - s_n.pinged_us) >= s_n.wd_us / 10 * 4) {
        s_n.pinged_us = now;
        len = (size_t)snprintf(msg, sizeof msg, "WATCHDOG=1");
    }
    /* 90%: a loop ticking once per EVB_NOTIFY_STATUS_MS that comes a
     * moment early still rebuilds the line. */
    if (now - s_n.built_us >= (int64_t)EVB_NOTIFY_STATUS_MS * 900) {
        s_n.built_us = now;
        char line[EVB_NOTIFY_MAX_STATUS + 1];
        s_build(fn, ctx, line, sizeof line);
        if (strcmp(line, s_n.sent) != 0) {
            memcpy(s_n.sent, line, sizeof line);
            snprintf(msg + len, sizeof msg - len, "%sSTATUS=%s", len ? "\n" : "", line);
        }
    }
    if (msg[0] != '\0') s_send(msg);
}

unsigned evb_notify_tick_ms(void)
{
    if (!evb_notify_on()) return 0;
    uint64_t ms = s_n.wd_us / 2000;
    if (s_n.wd_us == 0 || ms > EVB_NOTIFY_STATUS_MS) ms = EVB_NOTIFY_STATUS_MS;
    return ms > 0 ? (unsigned)ms : 1;
}

void evb_notify_stopping(const char *status)
{
    if (!evb_notify_on()) return;
    char line[EVB_NOTIFY_MAX_STATUS + 1];
    snprintf(line, sizeof line, "%s", status ? status : "");
    for (char *p = line; *p; p++) /* one line: a newline would start a variable */
        if (*p == '\n' || *p == '\r') *p = ' ';
    char msg[EVB_NOTIFY_MAX_STATUS + 32];
    snprintf(msg, sizeof msg, "STOPPING=1%s%s", line[0] ? "\nSTATUS=" : "", line);
    s_send(msg);
}

/* ---- the parts of a line ---- */

static __attribute__((format(printf, 2, 0))) void s_vadd(evb_buf *line, const char *fmt,
                                                          va_list ap)
{
    if (line->len >= EVB_NOTIFY_MAX_STATUS) return;
    char part[EVB_NOTIFY_MAX_STATUS + 1];
    vsnprintf(part, sizeof part, fmt, ap);
    evb_buf_printf(line, NULL, "%s%s", line->len > 0 ? "; " : "", part);
}

void evb_notify_add(evb_buf *line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vadd(line, fmt, ap);
    va_end(ap);
}

/* "1,234,567" */
static const char *s_group(uint64_t v, char out[32])
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    int o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    return out;
}

void evb_notify_add_num(evb_buf *line, const char *label, uint64_t n)
{
    char g[32];
    evb_notify_add(line, "%s %s", label, s_group(n, g));
}

/* One feed as evb_notify_add_feeds writes it. */
static void s_feed_text(const evb_feed_status *fs, char *out, size_t cap)
{
    /* The publisher: the name its heartbeats give, else its live endpoint
     * without the scheme ("host:port", an ipc socket's path). */
    char who[EVB_BUS_MAX_ENDPOINT];
    const char *p = fs->publisher ? fs->publisher : "?";
    size_t n = strcspn(p, ",");
    const char *sep = strstr(p, "://");
    if (sep != NULL && sep < p + n) {
        n -= (size_t)(sep + 3 - p);
        p = sep + 3;
    }
    if (evb_id_is_zero(&fs->log_id)) { /* not heard from yet */
        snprintf(out, cap, "%s waiting for %.*s", fs->category, (int)n, p);
        return;
    }
    if (fs->publisher_service != NULL && fs->publisher_service[0] != '\0')
        snprintf(who, sizeof who, "%s", fs->publisher_service);
    else
        snprintf(who, sizeof who, "%.*s", (int)n, p);
    char a[32], h[32];
    if (fs->publisher_lost && fs->state != EVB_FEED_STOPPED)
        snprintf(out, cap, "%s/%s lost", who, fs->category);
    else if (fs->state == EVB_FEED_CATCHING_UP)
        snprintf(out, cap, "%s/%s catching-up %s/%s", who, fs->category,
                 s_group(fs->applied, a), s_group(fs->head, h));
    else if (fs->state == EVB_FEED_STALLED)
        snprintf(out, cap, "%s/%s stalled at %s", who, fs->category,
                 s_group(fs->applied + 1, a));
    else
        snprintf(out, cap, "%s/%s %s", who, fs->category, evb_feed_state_name(fs->state));
}

typedef struct feeds_acc {
    evb_buf *line;
    size_t n, more;
} feeds_acc;

static int s_on_feed(const evb_feed_status *fs, void *ctx)
{
    feeds_acc *a = ctx;
    char t[EVB_BUS_MAX_ENDPOINT + EVB_MAX_CATEGORY_LEN + 96]; /* never cut here */
    s_feed_text(fs, t, sizeof t);
    /* Keep room for " (+N more)". */
    if (a->more > 0 || a->line->len + 2 + strlen(t) > EVB_NOTIFY_MAX_STATUS - 12) {
        a->more++;
        return 0;
    }
    evb_buf_printf(a->line, NULL, "%s%s", a->n > 0 ? ", " : "", t);
    a->n++;
    return 0;
}

void evb_notify_add_feeds(evb_buf *line, const char *label, evb_sub_t *sub)
{
    if (sub == NULL || line->len >= EVB_NOTIFY_MAX_STATUS - 12) return;
    evb_notify_add(line, "%s: ", label);
    feeds_acc a = {line, 0, 0};
    evb_sub_status(sub, s_on_feed, &a, NULL);
    if (a.n == 0 && a.more == 0)
        evb_buf_printf(line, NULL, "none");
    else if (a.more > 0)
        evb_buf_printf(line, NULL, "%s(+%zu more)", a.n > 0 ? " " : "", a.more);
}
