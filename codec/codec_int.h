/*
 * codec_int.h (private to libevbus): codec entry points for the other modules
 * of the library, not for users.
 */
#ifndef EVB_CODEC_INT_H
#define EVB_CODEC_INT_H

#include "evbus_codec.h"

/* Encode an event whose fields the caller has already validated (the store
 * checks names and payloads once per append, before assigning positions).
 * Same output as evb_event_encode. */
int evb__event_encode_checked(const evb_event_t *ev, evb_buf *out, evb_err *err);

#endif
