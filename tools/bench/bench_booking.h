/*
 * bench_booking.h (private to the evbus program): the `booking` case of
 * `evbus bench` (bench_booking.c): bookings through the reservation and
 * booking services end to end, next to raw ZeroMQ DEALER/ROUTER round trips
 * and raw LevelDB appends measured in the same run. bench.c runs it and
 * prints its lines as it prints the other cases'.
 *
 * Thread rules: call from the bench's main thread; the case makes and joins
 * its own threads and starts and reaps its own processes. Limits:
 * BENCH_BOOKING_MIN..BENCH_BOOKING_MAX bookings.
 */
#ifndef EVB_TOOLS_BENCH_BOOKING_H
#define EVB_TOOLS_BENCH_BOOKING_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

#define BENCH_BOOKING_DEFAULT 20000u
#define BENCH_BOOKING_QUICK 4000u
#define BENCH_BOOKING_PER_EVENTS 50u /* --events N: N / 50 bookings */
#define BENCH_BOOKING_MIN 8u         /* one per client thread */
#define BENCH_BOOKING_MAX 2000000u
#define BENCH_SOAK_DEFAULT 200000u /* the soak case without --events */
#define BENCH_SOAK_MAX 2000000u /* what --events (at most 100 M) allows */
#define BENCH_BOOKING_LINES 4

typedef struct bench_booking_opts {
    cli_t *cli;           /* errors and progress */
    const char *work;     /* the bench's work directory; the case makes WORK/booking */
    const char *services; /* --services DIR, or NULL: $EVBUS_BUILD/services, else
                             the running program's directory + "/../services" */
    const char *to;       /* --to RES_CMD,BK_CMD: running services, or NULL */
    double rate;          /* --rate: bookings/s in all, paced; 0 = closed loop */
    bool soak;            /* the soak case: a fixed set of shows, each booking
                             cancelled S_SOAK_LAG bookings later */
    uint64_t events;      /* the bench's --events, used when events_set */
    bool events_set, quick;
    volatile sig_atomic_t *interrupted; /* set by the bench's SIGINT handler */
} bench_booking_opts;

typedef struct bench_booking_line {
    const char *name, *unit; /* static strings */
    double ours, baseline;
    bool lower_better; /* latency: ratio = baseline / ours */
    char extra[768];   /* more JSON members, each starting with ',' */
    char note[96];     /* table note */
} bench_booking_line;

typedef struct bench_booking_result {
    bench_booking_line lines[BENCH_BOOKING_LINES];
    size_t nlines;
    uint64_t bookings;
    char placement[160];
    bool problems; /* a check failed; the figures are still there */
} bench_booking_result;

/* Run the case and fill *r. Returns 0, or -1 after printing why on the
 * bench's cli (interrupted included). Both services are stopped (SIGTERM,
 * SIGKILL after a deadline) and reaped on every path. */
int bench_booking_run(const bench_booking_opts *o, bench_booking_result *r);

/* ---- shared with bench.c, which defines them ---- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
/* qsort comparator for uint64_t. */
int bench_cmp_u64(const void *a, const void *b);
/* Nearest-rank percentile q (0..1] of sorted v[0..n), in us (v in ns); 0
 * when n is 0. */
double bench_pct_us(const uint64_t *v, size_t n, double q);

#endif
