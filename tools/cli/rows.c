/*
 * rows.c: the shared layout of event rows (rows.h).
 *
 * Why cut in the middle rather than at the end: the ids in one log tend to
 * share a prefix (a category, a tenant, a date) and differ at the end, so an
 * end cut would make different streams look the same. Why a fixed width
 * rather than one that grows: a row is printed as it comes (a live sniffer
 * cannot know the widest id ahead), and a column that grows shifts every
 * later row against the earlier ones.
 */
#include "rows.h"

#include <string.h>

void row_time(int64_t ts_us, char out[32])
{
    evb_ts_format(ts_us, out);
}

int row_cell(evb_buf *line, const char *s, int width, evb_err *err)
{
    size_t n = strlen(s), w = width > 1 ? (size_t)width : 1;
    if (n <= w) return evb_buf_printf(line, err, "%-*s", (int)w, s);
    /* w - 1 characters of s around one ellipsis; the head gets the odd one */
    size_t tail = (w - 1) / 2, head = w - 1 - tail;
    return evb_buf_printf(line, err, "%.*s\xe2\x80\xa6%s", (int)head, s, s + n - tail);
}
