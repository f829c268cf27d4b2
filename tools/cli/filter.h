/*
 * filter.h (private to the evbus program): the event filters and the
 * --from position that `evbus sniff` and `evbus log cat` share, with the
 * same flags, help text and meaning in both:
 *   --type T            the event's type is T (repeatable: any of them)
 *   --stream GLOB       the stream id matches GLOB (fnmatch; any of them)
 *   --where FIELD=VALUE the payload's top-level FIELD equals VALUE
 *                       (repeatable: all of them)
 *   --from SEQ | -N     a sequence, or the last N events (kcat's -o -N)
 * One difference, on purpose: `log cat` with a single --stream naming one
 * stream (no glob characters) reads that stream through its index, so its
 * --from/--to are versions there (as before globs); sniff has no index and
 * always filters the log's events.
 *
 * Thread rules: single-threaded; a filter_t belongs to one loop (its
 * scratch buffer is reused on every match). Limits: CLI_MAX_LIST values of
 * each flag (the parser's).
 */
#ifndef EVB_TOOLS_FILTER_H
#define EVB_TOOLS_FILTER_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"

/* The three rows of a command's cli_opt table (types, streams and wheres
 * point to cli_list). A table, so clang-format keeps off it. */
/* clang-format off */
#define FILTER_OPTS(types, streams, wheres)                                              \
    {"type", CLI_LIST, (types), NULL, "T",                                               \
     "only events of type T (may repeat: any of them)"},                                 \
    {"stream", CLI_LIST, (streams), NULL, "GLOB",                                        \
     "only streams matching GLOB (fnmatch; may repeat)"},                                \
    {"where", CLI_LIST, (wheres), NULL, "FIELD=VALUE",                                   \
     "only if the payload's FIELD equals VALUE (may repeat)"}
/* clang-format on */

/* What the filters mean, for a help screen's notes. */
#define FILTER_NOTES                                                                     \
    "Filters: --type and --stream match any of their values; every --where\n"            \
    "must match: the payload's top-level FIELD equals VALUE as a string, a\n"            \
    "number (3 = 3.0) or a JSON literal (true, false, null). Every filter\n"             \
    "given must hold.\n"

typedef struct filter_where {
    const char *field, *value;
} filter_where;

typedef struct filter {
    const cli_list *types, *streams;
    filter_where where[CLI_MAX_LIST];
    size_t nwhere;
    evb_buf tmp; /* scratch of --where (owned; filter_free) */
} filter_t;

/* Check the flags' values and fill f (borrowing the lists, which stay
 * argv's): each --type must be a valid type, each --where FIELD=VALUE with a
 * FIELD (cut out of argv in place). Returns -1 to go on, or CLI_EXIT_USAGE
 * after naming the first bad value. */
int filter_init(cli_t *cli, filter_t *f, const cli_list *types, const cli_list *streams,
                const cli_list *wheres);

/* True when ev passes every filter given (no filter: always). */
bool filter_match(filter_t *f, const evb_event_t *ev);

/* True when some filter was given. */
bool filter_any(const filter_t *f);

void filter_free(filter_t *f);

/* Parse --from's value val: a sequence ("5", *seq = 5, *last = 0; 0 is
 * left to the command to refuse) or "-N", the last N events (*seq = 0,
 * *last = N >= 1). Returns -1, or CLI_EXIT_USAGE after naming the value
 * ("-0", "-", "x" and the like). */
int filter_parse_from(cli_t *cli, const char *val, uint64_t *seq, uint64_t *last);

#endif
