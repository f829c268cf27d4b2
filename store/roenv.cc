// roenv.cc: the read-only view of a LevelDB directory (roenv.h). Its handle
// for LevelDB's C API is the layout ldbenv.h gives.
#include "roenv.h"

#include "ldbenv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using leveldb::Slice;
using leveldb::Status;

// A file of the snapshot: a descriptor opened at creation and the size it
// had then (what the owner appends later is not part of the view).
struct DiskFile {
    int fd;
    uint64_t size;
    const char *map; // tables: mapped whole (as LevelDB's own Env does); else NULL
};

using MemData = std::shared_ptr<std::string>;

Status ReadAt(int fd, uint64_t size, uint64_t off, size_t n, Slice *out, char *scratch,
              const std::string &name)
{
    if (off >= size) {
        *out = Slice(scratch, 0);
        return Status::OK();
    }
    if (n > size - off) n = (size_t)(size - off);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, scratch + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return Status::IOError(name, strerror(errno));
        if (r == 0) break; // shorter than at the snapshot: truncated since
        got += (size_t)r;
    }
    *out = Slice(scratch, got);
    return Status::OK();
}

class DiskSeq : public leveldb::SequentialFile {
  public:
    DiskSeq(DiskFile f, std::string name) : f_(f), name_(std::move(name)) {}
    Status Read(size_t n, Slice *out, char *scratch) override
    {
        Status s = ReadAt(f_.fd, f_.size, pos_, n, out, scratch, name_);
        if (s.ok()) pos_ += out->size();
        return s;
    }
    Status Skip(uint64_t n) override
    {
        pos_ = n > f_.size - pos_ ? f_.size : pos_ + n; // pos_ <= f_.size always
        return Status::OK();
    }

  private:
    DiskFile f_;
    std::string name_;
    uint64_t pos_ = 0;
};

class DiskRand : public leveldb::RandomAccessFile {
  public:
    DiskRand(DiskFile f, std::string name) : f_(f), name_(std::move(name)) {}
    Status Read(uint64_t off, size_t n, Slice *out, char *scratch) const override
    {
        if (f_.map == nullptr) return ReadAt(f_.fd, f_.size, off, n, out, scratch, name_);
        if (off > f_.size) off = f_.size;
        if (n > f_.size - off) n = (size_t)(f_.size - off);
        *out = Slice(f_.map + off, n);
        return Status::OK();
    }

  private:
    DiskFile f_;
    std::string name_;
};

class MemSeq : public leveldb::SequentialFile {
  public:
    MemSeq(MemData d, std::mutex *mu) : d_(std::move(d)), mu_(mu) {}
    Status Read(size_t n, Slice *out, char *scratch) override
    {
        std::lock_guard<std::mutex> g(*mu_);
        size_t left = pos_ < d_->size() ? d_->size() - pos_ : 0;
        if (n > left) n = left;
        memcpy(scratch, d_->data() + pos_, n);
        pos_ += n;
        *out = Slice(scratch, n);
        return Status::OK();
    }
    Status Skip(uint64_t n) override
    {
        pos_ += n;
        return Status::OK();
    }

  private:
    MemData d_;
    std::mutex *mu_;
    size_t pos_ = 0;
};

class MemRand : public leveldb::RandomAccessFile {
  public:
    MemRand(MemData d, std::mutex *mu) : d_(std::move(d)), mu_(mu) {}
    // LevelDB reads a file at random only once it is written whole (a table,
    // the replayed one), so the data no longer moves: slices of it, no copy.
    Status Read(uint64_t off, size_t n, Slice *out, char *) const override
    {
        std::lock_guard<std::mutex> g(*mu_);
        size_t left = off < d_->size() ? d_->size() - (size_t)off : 0;
        if (n > left) n = left;
        *out = Slice(d_->data() + (n > 0 ? off : 0), n);
        return Status::OK();
    }

  private:
    MemData d_;
    std::mutex *mu_;
};

class MemWritable : public leveldb::WritableFile {
  public:
    MemWritable(MemData d, std::mutex *mu, size_t *total)
        : d_(std::move(d)), mu_(mu), total_(total)
    {
    }
    Status Append(const Slice &s) override
    {
        std::lock_guard<std::mutex> g(*mu_);
        d_->append(s.data(), s.size());
        *total_ += s.size();
        return Status::OK();
    }
    Status Close() override { return Status::OK(); }
    Status Flush() override { return Status::OK(); }
    Status Sync() override { return Status::OK(); }

  private:
    MemData d_;
    std::mutex *mu_;
    size_t *total_;
};

// LevelDB's info log: discarded, but for the lines of a recovery that
// dropped bytes of a damaged write-ahead log ("...: dropping N bytes; ..."),
// which the view counts (st_roenv_drops).
class DropLogger : public leveldb::Logger {
  public:
    DropLogger(std::mutex *mu, size_t *drops, std::string *first)
        : mu_(mu), drops_(drops), first_(first)
    {
    }
    void Logv(const char *fmt, std::va_list ap) override
    {
        char line[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral" // LevelDB's own formats
        vsnprintf(line, sizeof line, fmt, ap);
#pragma GCC diagnostic pop
        if (strstr(line, "dropping") == nullptr) return;
        std::lock_guard<std::mutex> g(*mu_);
        static const char ignoring[] = "(ignoring error) "; /* LevelDB's prefix */
        const char *l = strncmp(line, ignoring, sizeof ignoring - 1) == 0
                            ? line + sizeof ignoring - 1
                            : line;
        if ((*drops_)++ == 0) *first_ = l;
    }

  private:
    std::mutex *mu_;
    size_t *drops_;
    std::string *first_;
};

class ViewLock : public leveldb::FileLock {};

bool IsTable(const std::string &base)
{
    size_t n = base.size();
    return n > 4 && (base.compare(n - 4, 4, ".ldb") == 0 || base.compare(n - 4, 4, ".sst") == 0);
}

class RoEnv : public leveldb::EnvWrapper {
  public:
    explicit RoEnv(std::string dir)
        : EnvWrapper(leveldb::Env::Default()), dir_(std::move(dir)),
          opener_(std::this_thread::get_id())
    {
    }
    ~RoEnv() override { Drop(); }

    // Open every file of the directory, CURRENT last, until a second listing
    // shows no file that the first did not (then CURRENT names a MANIFEST
    // whose files are all held). Returns "" or the reason it failed.
    std::string Snapshot()
    {
        for (int attempt = 0; attempt < 50; attempt++) {
            std::set<std::string> names;
            int e = List(&names);
            if (e == ENOENT) return "";
            if (e != 0) return dir_ + ": " + strerror(e);
            Drop();
            std::string why;
            for (const std::string &n : names)
                if (n != "CURRENT" && !(why = Hold(n)).empty()) return why;
            if (names.count("CURRENT") && !(why = Hold("CURRENT")).empty()) return why;
            std::set<std::string> again;
            if ((e = List(&again)) != 0) return dir_ + ": " + strerror(e);
            bool stable = true;
            for (const std::string &n : again)
                if (!names.count(n)) stable = false;
            if (stable) return "";
        }
        return dir_ + ": the directory kept changing while it was read";
    }

    void Seal()
    {
        std::lock_guard<std::mutex> g(mu_);
        sealed_ = true;
    }
    size_t MemBytes()
    {
        std::lock_guard<std::mutex> g(mu_);
        return mem_total_;
    }

    Status NewSequentialFile(const std::string &f, leveldb::SequentialFile **r) override
    {
        std::string b;
        if (!Base(f, &b)) return target()->NewSequentialFile(f, r);
        return OpenView<MemSeq, DiskSeq>(f, b, r);
    }
    Status NewRandomAccessFile(const std::string &f, leveldb::RandomAccessFile **r) override
    {
        std::string b;
        if (!Base(f, &b)) return target()->NewRandomAccessFile(f, r);
        return OpenView<MemRand, DiskRand>(f, b, r);
    }
    Status NewWritableFile(const std::string &f, leveldb::WritableFile **r) override
    {
        std::string b;
        if (!Base(f, &b)) return Status::IOError(f, "read-only view");
        std::lock_guard<std::mutex> g(mu_);
        // Tables only from the open's replay of the log, in the opening
        // thread: a compaction would copy the log into memory.
        if (IsTable(b) && (sealed_ || std::this_thread::get_id() != opener_))
            return Status::IOError(f, "read-only view: no compaction");
        MemData d = std::make_shared<std::string>();
        mem_[b] = d;
        disk_.erase(b);
        *r = new MemWritable(d, &mu_, &mem_total_);
        return Status::OK();
    }
    // Only used with Options::reuse_logs, which the store never sets.
    Status NewAppendableFile(const std::string &f, leveldb::WritableFile **) override
    {
        return Status::IOError(f, "read-only view: no appending to old files");
    }
    bool FileExists(const std::string &f) override
    {
        std::string b;
        if (!Base(f, &b)) return target()->FileExists(f);
        std::lock_guard<std::mutex> g(mu_);
        return mem_.count(b) || disk_.count(b);
    }
    Status GetChildren(const std::string &dir, std::vector<std::string> *r) override
    {
        if (dir != dir_) return target()->GetChildren(dir, r);
        std::lock_guard<std::mutex> g(mu_);
        r->clear();
        for (auto &kv : disk_) r->push_back(kv.first);
        for (auto &kv : mem_)
            if (!disk_.count(kv.first)) r->push_back(kv.first);
        return Status::OK();
    }
    Status RemoveFile(const std::string &f) override
    {
        std::string b;
        if (!Base(f, &b)) return Status::IOError(f, "read-only view");
        std::lock_guard<std::mutex> g(mu_);
        if (!mem_.erase(b) && !disk_.erase(b)) return Status::NotFound(f, "no such file");
        return Status::OK();
    }
    Status CreateDir(const std::string &) override { return Status::OK(); }
    Status RemoveDir(const std::string &) override { return Status::OK(); }
    Status GetFileSize(const std::string &f, uint64_t *s) override
    {
        std::string b;
        if (!Base(f, &b)) return target()->GetFileSize(f, s);
        std::lock_guard<std::mutex> g(mu_);
        MemData m;
        DiskFile d{-1, 0, nullptr};
        Status st = Find(f, b, &m, &d);
        if (st.ok()) *s = m ? m->size() : d.size;
        return st;
    }
    Status RenameFile(const std::string &src, const std::string &dst) override
    {
        std::string sb, db;
        if (!Base(src, &sb) || !Base(dst, &db)) return Status::IOError(src, "read-only view");
        std::lock_guard<std::mutex> g(mu_);
        auto m = mem_.find(sb);
        if (m != mem_.end()) {
            MemData d = m->second;
            mem_.erase(m);
            disk_.erase(db);
            mem_[db] = d;
            return Status::OK();
        }
        auto d = disk_.find(sb);
        if (d == disk_.end()) return Status::NotFound(src, "no such file");
        DiskFile f = d->second;
        disk_.erase(d);
        mem_.erase(db);
        disk_[db] = f;
        return Status::OK();
    }
    Status LockFile(const std::string &, leveldb::FileLock **l) override
    {
        *l = new ViewLock;
        return Status::OK();
    }
    Status UnlockFile(leveldb::FileLock *l) override
    {
        delete l;
        return Status::OK();
    }
    Status NewLogger(const std::string &, leveldb::Logger **r) override
    {
        *r = new DropLogger(&mu_, &drops_, &first_drop_);
        return Status::OK();
    }

    size_t Drops(std::string *first)
    {
        std::lock_guard<std::mutex> g(mu_);
        *first = first_drop_;
        return drops_;
    }

    // Write the view as a LevelDB directory at dest (made; it must not
    // exist): tables hard-linked where the file system allows (they never
    // change), everything else copied as the view holds it, each file and
    // the directory fsynced. Returns "" or the reason; *bytes and *linked
    // get what was copied and how many files were linked.
    std::string CopyTo(const std::string &dest, uint64_t *bytes, unsigned *linked)
    {
        std::lock_guard<std::mutex> g(mu_);
        if (mkdir(dest.c_str(), 0755) != 0) return dest + ": " + strerror(errno);
        for (auto &kv : disk_) {
            std::string to = dest + "/" + kv.first;
            if (IsTable(kv.first) && link((dir_ + "/" + kv.first).c_str(), to.c_str()) == 0) {
                ++*linked;
                continue;
            }
            std::string why = CopyFd(kv.second, to, bytes);
            if (!why.empty()) return why;
        }
        for (auto &kv : mem_) {
            DiskFile none{-1, 0, kv.second->data()};
            none.size = kv.second->size();
            std::string why = CopyFd(none, dest + "/" + kv.first, bytes);
            if (!why.empty()) return why;
        }
        int dfd = open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) != 0) {
            std::string why = dest + ": " + strerror(errno);
            if (dfd >= 0) close(dfd);
            return why;
        }
        close(dfd);
        return "";
    }

  private:
    template <class Mem, class Disk, class File>
    Status OpenView(const std::string &f, const std::string &b, File **r)
    {
        std::lock_guard<std::mutex> g(mu_);
        MemData m;
        DiskFile d{-1, 0, nullptr};
        Status st = Find(f, b, &m, &d);
        if (st.ok()) *r = m ? static_cast<File *>(new Mem(m, &mu_)) : new Disk(d, f);
        return st;
    }

    // The view's file b (mu_ held): in memory (*m set) or on disk (*d).
    Status Find(const std::string &f, const std::string &b, MemData *m, DiskFile *d)
    {
        auto mi = mem_.find(b);
        if (mi != mem_.end()) {
            *m = mi->second;
            return Status::OK();
        }
        auto di = disk_.find(b);
        if (di == disk_.end()) return Status::NotFound(f, "not in the read-only view");
        *d = di->second;
        return Status::OK();
    }

    // Copy f (its mapping when it has one, else its descriptor, up to its
    // size) into a new file `to`, fsynced.
    static std::string CopyFd(const DiskFile &f, const std::string &to, uint64_t *bytes)
    {
        int out = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (out < 0) return to + ": " + strerror(errno);
        std::vector<char> buf(1 << 20);
        std::string why;
        for (uint64_t off = 0; off < f.size && why.empty();) {
            size_t n = (size_t)std::min<uint64_t>(buf.size(), f.size - off);
            const char *p = f.map != nullptr ? f.map + off : buf.data();
            Slice got;
            if (f.map == nullptr) {
                Status s = ReadAt(f.fd, f.size, off, n, &got, buf.data(), to);
                if (!s.ok() || got.size() == 0) {
                    why = to + ": " + (s.ok() ? "source shorter than its snapshot" : s.ToString());
                    break;
                }
                n = got.size();
            }
            for (size_t w = 0; w < n && why.empty();) {
                ssize_t k = write(out, p + w, n - w);
                if (k < 0 && errno == EINTR) continue;
                if (k < 0) why = to + ": " + strerror(errno);
                else w += (size_t)k;
            }
            off += n;
            *bytes += n;
        }
        if (why.empty() && fsync(out) != 0) why = to + ": " + strerror(errno);
        close(out);
        return why;
    }

    // f names a file directly in dir_: *base gets its name.
    bool Base(const std::string &f, std::string *base) const
    {
        if (f.size() <= dir_.size() + 1 || f.compare(0, dir_.size(), dir_) != 0 ||
            f[dir_.size()] != '/')
            return false;
        *base = f.substr(dir_.size() + 1);
        return base->find('/') == std::string::npos;
    }

    // Regular files of dir_ that LevelDB reads (not LOCK, LOG, LOG.old).
    int List(std::set<std::string> *out) const
    {
        DIR *d = opendir(dir_.c_str());
        if (d == nullptr) return errno;
        while (struct dirent *de = readdir(d)) {
            std::string n = de->d_name;
            if (n == "." || n == ".." || n == "LOCK" || n == "LOG" || n == "LOG.old") continue;
            struct stat sb;
            if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISREG(sb.st_mode))
                out->insert(n);
        }
        closedir(d);
        return 0;
    }

    // Open dir_/n into the snapshot; a file gone meanwhile is left out.
    std::string Hold(const std::string &n)
    {
        std::string path = dir_ + "/" + n;
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            disk_.erase(n);
            return "";
        }
        if (fd < 0) return path + ": " + (errno == EACCES ? "permission denied" : strerror(errno));
        struct stat sb;
        if (fstat(fd, &sb) != 0) {
            int e = errno;
            close(fd);
            return path + ": " + strerror(e);
        }
        fds_.push_back(fd);
        DiskFile f{fd, (uint64_t)sb.st_size, nullptr};
        // Tables never change once written: map them, so reads are slices of
        // the mapping (a pread per block made `log verify` 1.5 times slower).
        if (IsTable(n) && f.size > 0) {
            void *m = mmap(nullptr, (size_t)f.size, PROT_READ, MAP_SHARED, fd, 0);
            if (m != MAP_FAILED) {
                maps_.emplace_back(m, (size_t)f.size);
                f.map = static_cast<const char *>(m);
            }
        }
        disk_[n] = f;
        return "";
    }

    void Drop()
    {
        for (auto &m : maps_) munmap(m.first, m.second);
        maps_.clear();
        for (int fd : fds_) close(fd);
        fds_.clear();
        disk_.clear();
    }

    std::mutex mu_;
    const std::string dir_;
    const std::thread::id opener_;
    std::map<std::string, DiskFile> disk_;
    std::map<std::string, MemData> mem_;
    std::vector<int> fds_; // every descriptor opened: closed with the view
    std::vector<std::pair<void *, size_t>> maps_; // every table mapped
    size_t mem_total_ = 0;
    bool sealed_ = false;
    size_t drops_ = 0;       // recovery lines that dropped bytes
    std::string first_drop_; // the first of them
};

} // namespace

extern "C" {

leveldb_env_t *st_roenv_new(const char *dir, char *why, size_t cap)
{
    try {
        std::unique_ptr<RoEnv> env(new RoEnv(dir));
        std::string w = env->Snapshot();
        if (!w.empty()) {
            snprintf(why, cap, "%s", w.c_str());
            return nullptr;
        }
        leveldb_env_t *e = new leveldb_env_t;
        e->rep = env.release();
        e->is_default = false;
        return e;
    } catch (const std::exception &x) {
        snprintf(why, cap, "%s: %s", dir, x.what());
        return nullptr;
    }
}

void st_roenv_seal(leveldb_env_t *env)
{
    if (env != nullptr) static_cast<RoEnv *>(env->rep)->Seal();
}

size_t st_roenv_mem_bytes(leveldb_env_t *env)
{
    return env != nullptr ? static_cast<RoEnv *>(env->rep)->MemBytes() : 0;
}

int st_roenv_copy(leveldb_env_t *env, const char *dest, uint64_t *bytes, unsigned *linked,
                  char *why, size_t cap)
{
    try {
        std::string w = static_cast<RoEnv *>(env->rep)->CopyTo(dest, bytes, linked);
        if (w.empty()) return 0;
        snprintf(why, cap, "%s", w.c_str());
    } catch (const std::exception &x) {
        snprintf(why, cap, "%s: %s", dest, x.what());
    }
    return -1;
}

size_t st_roenv_drops(leveldb_env_t *env, char *first, size_t cap)
{
    std::string f;
    size_t n = static_cast<RoEnv *>(env->rep)->Drops(&f);
    snprintf(first, cap, "%s", f.c_str());
    return n;
}

void st_roenv_destroy(leveldb_env_t *env)
{
    if (env == nullptr) return;
    delete static_cast<RoEnv *>(env->rep);
    delete env;
}

} // extern "C"
