/*
 * evbus_conf.h: the reader of evbus config files (/etc/evbus/NAME.conf), one
 * for every program that takes --config FILE: the service runtime's daemons,
 * evbus-bridge, `evbus serve` and `evbus mirror`. It reads and checks a file
 * of `name = value` lines against the names the program knows and hands the
 * values back in file order; the program applies them as it applies its
 * flags. The grammar is services/README.md "Config files":
 *
 *   # a comment                     blank lines and '#' lines are skipped
 *   store = /var/lib/evbus/x  # c   '#' after a blank starts a comment
 *   cmd = ipc:///run/a#b            '#' inside a word is kept
 *   name = "a \"q\" \t \\ \n"       double quotes: \" \\ \n \t escapes
 *   name = 'C:\literal'             single quotes: nothing is special
 *   follow = A,B                    repeatable names: one line each
 *
 * Every error names FILE:LINE (the file alone when it cannot be read) and
 * is EVB_EINVAL, or EVB_EIO when the file cannot be read, EVB_ENOMEM.
 * Thread rules: an evb_conf_t is used by one thread at a time; the calls
 * share nothing. Limits: EVB_CONF_MAX_LINE bytes a line, EVB_CONF_MAX_ENTRIES
 * settings a file.
 */
#ifndef EVBUS_CONF_H
#define EVBUS_CONF_H

#include "evbus_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EVB_CONF_MAX_LINE 4096u    /* bytes of one line, its newline not counted */
#define EVB_CONF_MAX_ENTRIES 1024u /* settings in one file */

/* A name the program knows. repeat: may be given on several lines (each
 * line one more value, like a repeated flag); any other name given twice is
 * an error naming both lines. */
typedef struct evb_conf_key {
    const char *name;
    bool repeat;
} evb_conf_key;

/* One setting of the file: its name, its value (quotes and comment
 * removed, escapes applied; "" only when written as "" or ''), its line. */
typedef struct evb_conf_entry {
    const char *name;
    const char *value;
    unsigned line;
} evb_conf_entry;

typedef struct evb_conf evb_conf_t;

/* Read the file at path and check every line against the grammar and the
 * nkeys names in keys. Returns the settings (the caller owns them:
 * evb_conf_destroy), or NULL with err filled: "PATH:LINE: <what>", e.g.
 * "/etc/evbus/x.conf:5: unknown setting 'log_levle' (did you mean
 * 'log-level'?)", or "cannot read PATH: <errno text>" (EVB_EIO). Nothing is
 * returned unless the whole file is good. */
EVB_EXPORT evb_conf_t *evb_conf_read(const char *path, const evb_conf_key *keys, size_t nkeys,
                                     evb_err *err);

/* The number of settings, and setting i (0 <= i < count) in file order.
 * The strings are owned by c. */
EVB_EXPORT size_t evb_conf_count(const evb_conf_t *c);
EVB_EXPORT const evb_conf_entry *evb_conf_get(const evb_conf_t *c, size_t i);

/* The path the settings were read from (owned by c). */
EVB_EXPORT const char *evb_conf_path(const evb_conf_t *c);

/* Free c and set *c to NULL; NULL and *c == NULL are accepted. */
EVB_EXPORT void evb_conf_destroy(evb_conf_t **c);

/* The known name nearest to name: one it begins (at least 3 characters),
 * or one at most 2 edits away (1 for names under 6 characters; an edit is
 * an insert, a delete, a replace or a swap of neighbours). NULL when none
 * is close. */
EVB_EXPORT const char *evb_conf_nearest(const char *name, const evb_conf_key *keys,
                                        size_t nkeys);

/* A boolean setting's value: true, yes, on, 1 -> true; false, no, off, 0 ->
 * false (any case). EVB_EINVAL, *out untouched, for anything else. */
EVB_EXPORT int evb_conf_bool(const char *value, bool *out);

#ifdef __cplusplus
}
#endif

#endif
