// bgenv.cc: a LevelDB Env with a background thread of its own (bgenv.h).
//
// LevelDB's default Env runs every database's flushes and compactions on
// one thread per process. The store's two databases then queue behind each
// other: the index's compactions of randomly keyed ids held up the flushes
// of the events' memtables, and appends waited for those ("Current memtable
// full; waiting" in the events' LOG). This Env forwards everything to the
// default one except Schedule, which it runs on its own thread, in order.
#include "bgenv.h"

#include <leveldb/env.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <new>
#include <thread>
#include <utility>

struct leveldb_env_t { // as in roenv.cc: the layout LevelDB's c.cc defines
    leveldb::Env *rep;
    bool is_default;
};

namespace {

class BgEnv : public leveldb::EnvWrapper {
  public:
    BgEnv() : EnvWrapper(leveldb::Env::Default()) {}

    ~BgEnv() override
    {
        {
            std::lock_guard<std::mutex> l(mu_);
            stop_ = true;
        }
        cv_.notify_one();
        if (thread_.joinable()) thread_.join();
    }

    void Schedule(void (*fn)(void *), void *arg) override
    {
        std::lock_guard<std::mutex> l(mu_);
        if (!thread_.joinable()) thread_ = std::thread(&BgEnv::Run, this);
        work_.emplace_back(fn, arg);
        cv_.notify_one();
    }

  private:
    void Run()
    {
        std::unique_lock<std::mutex> l(mu_);
        for (;;) {
            cv_.wait(l, [this] { return stop_ || !work_.empty(); });
            if (work_.empty()) return; // stopping, nothing left
            auto job = work_.front();
            work_.pop_front();
            l.unlock();
            st_bgenv_call(job.first, job.second);
            l.lock();
        }
    }

    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::pair<void (*)(void *), void *>> work_;
    std::thread thread_;
    bool stop_ = false;
};

} // namespace

extern "C" {

leveldb_env_t *st_bgenv_new(void)
{
    try {
        leveldb_env_t *e = new leveldb_env_t;
        e->rep = new BgEnv();
        e->is_default = false;
        return e;
    } catch (...) {
        return nullptr;
    }
}

void st_bgenv_destroy(leveldb_env_t *env)
{
    if (env == nullptr) return;
    delete static_cast<BgEnv *>(env->rep);
    delete env;
}

} // extern "C"
