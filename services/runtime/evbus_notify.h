/*
 * evbus_notify.h: what a long-running program tells its service manager,
 * systemd, over the sd_notify protocol (through libsystemd): READY=1 once it
 * serves (sockets bound, store open), STATUS= a short line of its state
 * ("head 1,234; feeds: reservation/show live"), WATCHDOG=1 while its loop
 * turns, STOPPING=1 when a signal ends it. The service runtime (evbus_svc.h)
 * does all of it; `evbus serve`, `evbus mirror` and evbus-bridge call it from
 * their own loops. services/README.md, "Running under systemd", says what a
 * unit sees.
 *
 * Without $NOTIFY_SOCKET (the program was not started by systemd with
 * Type=notify) every call does nothing and costs a branch. A libevbus built
 * without libsystemd (EVBUS_SYSTEMD=OFF) has the same calls, doing nothing.
 *
 * Threads: the state is the process's (one service manager, one main
 * process); call these from the thread that runs the program's loop. The
 * library never prints: a failed send is logged once through evb_log.
 */
#ifndef EVBUS_NOTIFY_H
#define EVBUS_NOTIFY_H

#include "evbus_bus.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A STATUS= line is cut to this many bytes (feeds past it are counted:
 * "(+3 more)"); systemctl status shows it on one line. */
#define EVB_NOTIFY_MAX_STATUS 200u
/* How often the STATUS= line is rebuilt (at most; sent when it changed). */
#define EVB_NOTIFY_STATUS_MS 1000u

/* Writes the program's STATUS= line into line (empty on entry; the
 * evb_notify_add* calls below write its parts). Called by evb_notify_ready
 * and evb_notify_tick, at most once per EVB_NOTIFY_STATUS_MS. */
typedef void (*evb_notify_line_fn)(evb_buf *line, void *ctx);

/* Is a service manager listening ($NOTIFY_SOCKET set)? */
EVB_EXPORT bool evb_notify_on(void);
/* READY=1, with the STATUS= line fn writes (fn may be NULL). Call once the
 * program serves: its sockets are bound and its store is open. */
EVB_EXPORT void evb_notify_ready(evb_notify_line_fn fn, void *ctx);
/* Call from the program's loop, at least every evb_notify_tick_ms(): sends
 * WATCHDOG=1 every half of the watchdog interval when the manager asked for
 * one (WatchdogSec=, i.e. $WATCHDOG_USEC, and $WATCHDOG_PID naming this
 * process or unset), and once per EVB_NOTIFY_STATUS_MS rebuilds the status
 * line with fn, sending it when it differs from the last one sent. */
EVB_EXPORT void evb_notify_tick(evb_notify_line_fn fn, void *ctx);
/* How often evb_notify_tick must run, in ms: half the watchdog interval, at
 * most EVB_NOTIFY_STATUS_MS; 0 when no manager listens (no need to tick). */
EVB_EXPORT unsigned evb_notify_tick_ms(void);
/* STOPPING=1, with status (may be NULL) as the STATUS= line: the loop has
 * ended (a signal, or a fatal error) and the program is closing down. */
EVB_EXPORT void evb_notify_stopping(const char *status);

/* ---- the parts of a STATUS= line ----
 * Each appends "; " first unless line is empty. They never fail: past
 * EVB_NOTIFY_MAX_STATUS (or out of memory) the line is only shorter. */

/* "LABEL 1,234" (n in groups of three). */
EVB_EXPORT void evb_notify_add_num(evb_buf *line, const char *label, uint64_t n);
/* "LABEL: " and each feed of sub as SERVICE/CATEGORY STATE, comma-separated:
 * "reservation/show live", "reservation/show catching-up 120/4,000",
 * "reservation/show stalled at 121", "reservation/show lost" (nothing heard
 * from the publisher for a while), "reservation/show stopped"; before the
 * publisher is heard from, "show waiting for HOST:PORT" (or the ipc
 * socket's path). "LABEL: none" without feeds; nothing when sub is NULL. */
EVB_EXPORT void evb_notify_add_feeds(evb_buf *line, const char *label, evb_sub_t *sub);
/* Free text. */
EVB_EXPORT void evb_notify_add(evb_buf *line, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
