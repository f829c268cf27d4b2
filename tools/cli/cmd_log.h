/*
 * cmd_log.h (private to the evbus program): what the files of `evbus log`
 * share. cmd_log.c holds the dispatcher and info, cat and verify;
 * cmd_log_io.c export and import; cmd_log_state.c state and checkpoints.
 *
 * Thread rules: single-threaded, like the rest of the program.
 */
#ifndef EVB_TOOLS_CMD_LOG_H
#define EVB_TOOLS_CMD_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"

/* "<what>: <message>" on stderr, with dir in front unless the store's
 * message names it already. */
void log_report(cli_t *cli, const char *dir, const char *what, const evb_err *err);

/* Open the log in dir for reading (read_only_intent, manual indexing, never
 * create): a missing path is reported as missing, never made. Returns -1
 * with *out set, or the exit code to return after naming the problem. */
int log_open_ro(cli_t *cli, const char *dir, evb_store_t **out);

/* Apply --color auto|always|never to cli->color (auto keeps what cli_init
 * decided: a terminal and NO_COLOR unset). Returns -1, or CLI_EXIT_USAGE
 * after naming a bad value. */
int log_color_opt(cli_t *cli, const char *when);

/* Column layout of an event row: seq, ts, stream, version, type, payload. */
typedef struct log_row_fmt {
    int wseq, wstream, wver, wtype;
    unsigned width; /* terminal columns, 0 = do not truncate the payload */
} log_row_fmt;

/* Layout for a log whose head is head (stream: the one stream shown, or
 * NULL). */
void log_row_fmt_init(const cli_t *cli, log_row_fmt *f, uint64_t head,
                      const char *stream);
/* Print the header row. */
void log_row_header(cli_t *cli, const log_row_fmt *f);
/* Render one event as a row (with a newline) into line (replaced);
 * payload is scratch. Colours only when cli->color. */
int log_row(const cli_t *cli, const log_row_fmt *f, const evb_event_t *ev, evb_buf *line,
            evb_buf *payload, evb_err *err);

/* Write one rendered row. erc is the rendering's result (err its message,
 * what the failed step for the message: "" or "rendering: "). Returns -1 to
 * go on, else the exit code to stop the loop with: CLI_EXIT_RUNTIME after
 * naming a failure, CLI_EXIT_OK when the reader closed the pipe. */
int log_write_row(cli_t *cli, const char *dir, const evb_event_t *ev, int erc,
                  const evb_err *err, const evb_buf *line, const char *what);

/* The exit code once a read loop ended: rc, unless rc is CLI_EXIT_OK, the
 * pipe is open and the iterator stopped on an error (err): then that error
 * is named and the code is CLI_EXIT_PROBLEMS for damage, CLI_EXIT_RUNTIME
 * otherwise. */
int log_read_end(cli_t *cli, const char *dir, int rc, const evb_err *err);

/* After a read loop stopped: when it stopped at events that cannot be read
 * (evb_iter_hole), name them, set *holes, *next past them and clear err;
 * true when the iterator goes on after them (evb_iter_resume). */
bool log_hole(cli_t *cli, evb_iter_t *it, evb_err *err, uint64_t *next, bool *holes);

/* The verbs (argv[0] is the verb's word). */
int log_cmd_export(cli_t *cli, int argc, char **argv);
int log_cmd_import(cli_t *cli, int argc, char **argv);
int log_cmd_state(cli_t *cli, int argc, char **argv);
int log_cmd_checkpoints(cli_t *cli, int argc, char **argv);

#endif
