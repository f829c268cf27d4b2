/*
 * fuzz_conf.c: libFuzzer target for evb_conf_read, the config-file reader
 * every daemon, `evbus serve` and `evbus mirror` run on /etc/evbus/NAME.conf
 * (an operator's hand edit is arbitrary bytes).
 *
 * The input is written to a memfd and read through /proc/self/fd/N, as a
 * file is. Never crash, never read past a buffer (ASan). A file that is
 * refused has a message naming the path; one that is taken gives entries
 * whose names are known keys, whose values hold no NUL and whose lines grow
 * and lie within the file. A broken property aborts.
 */
#define _GNU_SOURCE
#include <evbus/evbus_conf.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const evb_conf_key s_keys[] = {
    {"store", false}, {"follow", true}, {"log-level", false}, {"cmd", false},
    {"category", true}, {"create", false},
};
#define S_NKEYS (sizeof s_keys / sizeof s_keys[0])

static void s_die(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_conf: %s: %s\n", what, detail);
    abort();
}

static bool s_known(const char *name)
{
    for (size_t i = 0; i < S_NKEYS; i++)
        if (strcmp(s_keys[i].name, name) == 0) return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_conf", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (size > 0 && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    size_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    evb_err err = {0};
    evb_conf_t *c = evb_conf_read(path, s_keys, S_NKEYS, &err);
    if (c == NULL) {
        if (err.code == EVB_OK || strstr(err.msg, path) == NULL)
            s_die("a refusal that does not name the file", err.msg);
    } else {
        unsigned prev = 0;
        for (size_t i = 0; i < evb_conf_count(c); i++) {
            const evb_conf_entry *e = evb_conf_get(c, i);
            if (e == NULL || e->name == NULL || e->value == NULL) s_die("entry", "NULL");
            if (!s_known(e->name)) s_die("an unknown name taken", e->name);
            if (e->line <= prev || e->line > lines) s_die("line out of order", e->name);
            prev = e->line;
        }
        if (evb_conf_count(c) > EVB_CONF_MAX_ENTRIES) s_die("too many entries", path);
        evb_conf_destroy(&c);
    }
    close(fd);
    return 0;
}
