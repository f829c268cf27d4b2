// bgenv.cc: the Env of the store's writable databases (bgenv.h).
//
// Two jobs, each optional:
// - A background thread of its own. LevelDB's default Env runs every
//   database's flushes and compactions on one thread per process. The
//   store's two databases then queue behind each other: the index's
//   compactions of randomly keyed ids held up the flushes of the events'
//   memtables, and appends waited for those ("Current memtable full;
//   waiting" in the events' LOG). Schedule runs jobs on this Env's thread,
//   in order.
// - Block checksums in hardware. Debian's LevelDB checks a table block's
//   CRC-32C with portable code (it is built without a CRC library). Every
//   block LevelDB reads from a table comes through RandomAccessFile::Read as
//   the block, its type byte and its 4-byte masked CRC (table/format.cc,
//   ReadBlock); the only other read of a table is its 48-byte footer at the
//   end. This Env checks the CRC of every such read with the SSE 4.2
//   instruction and answers a mismatch as LevelDB does ("block checksum
//   mismatch", a corruption), so reads can leave verify_checksums off.
#include "bgenv.h"

#include "crc32c.h"
#include "ldbenv.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace {

using leveldb::Slice;
using leveldb::Status;

constexpr size_t kFooterLen = 48;         // leveldb::Footer::kEncodedLength
constexpr uint32_t kMaskDelta = 0xa282ead8u; // leveldb::crc32c::kMaskDelta

uint32_t Unmask(uint32_t masked)
{
    uint32_t rot = masked - kMaskDelta;
    return (rot >> 17) | (rot << 15);
}

class CheckedFile : public leveldb::RandomAccessFile {
  public:
    CheckedFile(leveldb::RandomAccessFile *f, std::string name, uint64_t size)
        : f_(f), name_(std::move(name)), size_(size)
    {
    }
    ~CheckedFile() override { delete f_; }

    Status Read(uint64_t off, size_t n, Slice *result, char *scratch) const override
    {
        Status s = f_->Read(off, n, result, scratch);
        if (!s.ok() || result->size() != n || n < 5) return s; // LevelDB says what is short
        if (n == kFooterLen && off + n == size_) return s;      // the footer: no CRC
        const unsigned char *p = reinterpret_cast<const unsigned char *>(result->data());
        uint32_t stored = (uint32_t)p[n - 4] | (uint32_t)p[n - 3] << 8 |
                          (uint32_t)p[n - 2] << 16 | (uint32_t)p[n - 1] << 24;
        if (st_crc32c(p, n - 4) != Unmask(stored))
            return Status::Corruption("block checksum mismatch", name_);
        return s;
    }

  private:
    leveldb::RandomAccessFile *f_;
    std::string name_;
    uint64_t size_;
};

bool IsTable(const std::string &name)
{
    auto ends = [&](const char *suf) {
        size_t n = std::char_traits<char>::length(suf);
        return name.size() >= n && name.compare(name.size() - n, n, suf) == 0;
    };
    return ends(".ldb") || ends(".sst");
}

class BgEnv : public leveldb::EnvWrapper {
  public:
    BgEnv(bool own_thread, bool check)
        : EnvWrapper(leveldb::Env::Default()), own_(own_thread), check_(check)
    {
    }

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
        if (!own_) {
            target()->Schedule(fn, arg);
            return;
        }
        std::lock_guard<std::mutex> l(mu_);
        if (!thread_.joinable()) thread_ = std::thread(&BgEnv::Run, this);
        work_.emplace_back(fn, arg);
        cv_.notify_one();
    }

    Status NewRandomAccessFile(const std::string &name,
                               leveldb::RandomAccessFile **result) override
    {
        Status s = target()->NewRandomAccessFile(name, result);
        if (!s.ok() || !check_ || !IsTable(name)) return s;
        uint64_t size = 0;
        Status z = target()->GetFileSize(name, &size);
        if (!z.ok()) { // no table is read unchecked
            delete *result;
            *result = nullptr;
            return z;
        }
        try {
            *result = new CheckedFile(*result, name, size);
        } catch (...) {
            delete *result;
            *result = nullptr;
            return Status::IOError(name, "out of memory");
        }
        return s;
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

    const bool own_, check_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::pair<void (*)(void *), void *>> work_;
    std::thread thread_;
    bool stop_ = false;
};

} // namespace

extern "C" {

leveldb_env_t *st_bgenv_new(bool own_thread)
{
    try {
        leveldb_env_t *e = new leveldb_env_t;
        e->rep = new BgEnv(own_thread, st_crc32c_fast());
        e->is_default = false;
        return e;
    } catch (...) {
        return nullptr;
    }
}

bool st_bgenv_checks_blocks(void)
{
    return st_crc32c_fast();
}

void st_bgenv_destroy(leveldb_env_t *env)
{
    if (env == nullptr) return;
    delete static_cast<BgEnv *>(env->rep);
    delete env;
}

} // extern "C"
