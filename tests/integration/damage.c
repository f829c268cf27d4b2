/*
 * damage.c: break an evbus log on purpose, for the CLI test of
 * `evbus log verify`. It opens the LevelDB directory directly (the log must
 * not be open elsewhere) and changes the record of one event, whose key is
 * 'E' followed by its sequence as 8 bytes big-endian (store/FORMAT.md).
 *
 *   usage: damage DIR delete|garbage SEQ
 *
 * delete removes the event (a gap in the sequence); garbage overwrites its
 * value with bytes that are no msgpack envelope. Exit 0 when done, 1 when the
 * event was not there or LevelDB failed, 2 on bad usage.
 */
#include <leveldb/c.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_fail(const char *what, char *lerr)
{
    fprintf(stderr, "damage: %s: %s\n", what, lerr ? lerr : "?");
    leveldb_free(lerr);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4 ||
        (strcmp(argv[2], "delete") != 0 && strcmp(argv[2], "garbage") != 0)) {
        fprintf(stderr, "usage: damage DIR delete|garbage SEQ\n");
        return 2;
    }
    char *end;
    unsigned long long seq = strtoull(argv[3], &end, 10);
    if (*end != '\0' || seq == 0) {
        fprintf(stderr, "damage: bad SEQ %s\n", argv[3]);
        return 2;
    }
    char key[9];
    key[0] = 'E';
    for (int i = 0; i < 8; i++)
        key[1 + i] = (char)(seq >> (8 * (7 - i)));

    char *lerr = NULL;
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_create_if_missing(o, 0);
    leveldb_t *db = leveldb_open(o, argv[1], &lerr);
    if (lerr != NULL) return s_fail("open", lerr);

    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(wo, 1);
    size_t vlen = 0;
    char *val = leveldb_get(db, ro, key, sizeof key, &vlen, &lerr);
    int rc = 0;
    if (lerr != NULL) {
        rc = s_fail("get", lerr);
    } else if (val == NULL) {
        fprintf(stderr, "damage: no event at seq %llu\n", seq);
        rc = 1;
    } else if (strcmp(argv[2], "delete") == 0) {
        leveldb_delete(db, wo, key, sizeof key, &lerr);
        if (lerr != NULL) rc = s_fail("delete", lerr);
    } else {
        /* 0xc1 is the one byte msgpack never uses. */
        static const char garbage[] = "\xc1\xc1\xc1 not an envelope";
        leveldb_put(db, wo, key, sizeof key, garbage, sizeof garbage - 1, &lerr);
        if (lerr != NULL) rc = s_fail("put", lerr);
    }
    if (rc == 0) printf("damage: %s event at seq %llu (%zu bytes)\n", argv[2], seq, vlen);
    leveldb_free(val);
    leveldb_writeoptions_destroy(wo);
    leveldb_readoptions_destroy(ro);
    leveldb_close(db);
    leveldb_options_destroy(o);
    return rc;
}
