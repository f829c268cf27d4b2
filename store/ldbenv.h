/*
 * ldbenv.h (private, C++): the handle LevelDB's C API takes an Env as.
 *
 * leveldb_options_set_env takes a leveldb_env_t, a struct that LevelDB's
 * c.cc defines as { Env *rep; bool is_default; } and no header exports. The
 * store's own Envs (roenv.cc, bgenv.cc) make handles of that layout and
 * fill them themselves; LevelDB reads only `rep`. The library linked is the
 * one these headers come from (Debian's libleveldb-dev 1.23).
 */
#if !defined(EVB_BUILDING_STORE)
#error "store/ldbenv.h is private to libevbus's store module; programs include <evbus/evbus_store.h>"
#endif
#ifndef EVB_STORE_LDBENV_H
#define EVB_STORE_LDBENV_H

#include <leveldb/env.h>

struct leveldb_env_t {
    leveldb::Env *rep;
    bool is_default;
};

#endif
