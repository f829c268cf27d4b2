/*
 * fuzz_json.c: libFuzzer target for evb_msgpack_to_json on arbitrary bytes.
 *
 * Checks: no crash or out-of-bounds read (ASan); success only ever yields
 * valid JSON (jsoncheck.h); failure carries a message and appends nothing;
 * and the rendering is a pure function of the input (a second call into a
 * buffer with a prefix appends identical bytes after the prefix).
 */
#include <evbus/evbus_codec.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsoncheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_die(const char *what, const evb_err *err)
{
    fprintf(stderr, "fuzz_json: %s: %s\n", what, err ? err->msg : "");
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    evb_err err;
    evb_buf out = {0}, again = {0};
    int rc = evb_msgpack_to_json(data, size, &out, &err);
    if (evb_buf_append(&again, "[", 1, NULL) != EVB_OK) s_die("out of memory", NULL);
    int rc2 = evb_msgpack_to_json(data, size, &again, NULL);
    if (rc != rc2) s_die("two renderings disagree", &err);
    if (rc != EVB_OK) {
        if (out.len != 0 || again.len != 1) s_die("failed rendering left output", &err);
        if (err.code != rc || err.msg[0] == '\0')
            s_die("failed rendering without a message", &err);
    } else {
        if (!jc_valid(out.data, out.len)) {
            fprintf(stderr, "%.*s\n", (int)(out.len > 4096 ? 4096 : out.len), out.data);
            s_die("invalid JSON", NULL);
        }
        if (again.len != out.len + 1 || memcmp(again.data + 1, out.data, out.len) != 0)
            s_die("rendering is not deterministic", NULL);
    }
    evb_buf_free(&out);
    evb_buf_free(&again);
    return 0;
}
