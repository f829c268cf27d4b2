/*
 * rows.h (private to the evbus program): the layout of an event row that
 * `evbus log cat` and `evbus sniff` print in text mode, so one event reads
 * the same in both: the time as RFC 3339 UTC with microseconds (the "ts" of
 * --json), and text columns of a fixed width. A value longer than its column
 * is cut in the middle with an ellipsis, so every row stays aligned and both
 * ends of an id show (ids tend to differ at the end: "order-...-0042").
 * --json output is not affected: it always holds the whole values.
 *
 * Thread rules: none kept; the functions only write to what they are given.
 */
#ifndef EVB_TOOLS_ROWS_H
#define EVB_TOOLS_ROWS_H

#include <stdint.h>

#include <evbus/evbus_codec.h>

#define ROW_TIME_W 27   /* "2026-11-24T23:40:12.123456Z" */
#define ROW_STREAM_W 24 /* the stream column, unless one stream is shown */
#define ROW_TYPE_W 18   /* the type column */

/* What the columns hold, for a help screen's notes. */
#define ROW_NOTES                                                                        \
    "Columns keep their width: a stream id longer than 24 characters or a\n"             \
    "type longer than 18 is cut in the middle with '…' (--json has it whole).\n"

/* The time column of an event whose ts_us is given: evb_ts_format's text
 * (ROW_TIME_W characters for years 0000..9999), into out. */
void row_time(int64_t ts_us, char out[32]);

/* Append s to line as a cell of width columns (s is ASCII, as stream ids
 * and types are): padded with spaces when shorter, cut in the middle with
 * "…" when longer. Returns EVB_OK or the buffer's error. */
int row_cell(evb_buf *line, const char *s, int width, evb_err *err);

#endif
