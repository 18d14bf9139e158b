#include "collectives/shm/shm_communicator.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <utility>

#include "collectives/shm/reduce_kernels.h"

namespace cohort {
namespace {

using Clock = std::chrono::steady_clock;
using Counter = std::atomic<uint64_t>;
static_assert(Counter::is_always_lock_free, "shm counters must be lock-free (address-free)");

constexpr uint64_t kMagic = 0x436f686f72745348ull;  // "CohortSH"
constexpr int kSpinsBeforeYield = 4096;
constexpr size_t kPageBytes = 4096;

// The control line of one operation. Two of them alternate by operation
// number, so a peer that is one operation ahead never overwrites the line a
// slower rank is still reading.
struct alignas(64) OpLine {
  Counter seq;  // operation number + 1, stored (release) after the fields below
  uint8_t kind;
  uint8_t dtype;
  uint8_t op;
  uint8_t registered;
  int32_t root;
  uint64_t count;
  unsigned char inline_data[kShmInlineBytes];
};
static_assert(sizeof(OpLine) == 64, "one cache line");

struct alignas(64) RegLine {
  int32_t send_region;
  int32_t recv_region;
  uint64_t send_offset;
  uint64_t recv_offset;
};

struct alignas(64) CounterLine {
  Counter value;
  Counter aux;  // p2p: bytes in the last chunk
};

struct SegmentHeader {
  // Written once before the segment is announced.
  uint64_t magic;
  int32_t pid;
  int32_t rank;
  int32_t size;
  uint32_t reserved;
  uint64_t chunk_bytes;
  uint64_t segment_bytes;
  alignas(64) OpLine op[2];
  RegLine reg[2];
  CounterLine phase;                    // barriers after the first of an operation
  CounterLine aborted;                  // non-zero once this rank gave up
  CounterLine p2p_sent[kShmMaxRanks];   // [q]: chunks this rank put in its slot for q
  CounterLine p2p_acked[kShmMaxRanks];  // [q]: chunks this rank took from q's slot for it
};

size_t HeaderBytes() { return (sizeof(SegmentHeader) + kPageBytes - 1) / kPageBytes * kPageBytes; }
size_t RoundToPages(size_t n) { return (n + kPageBytes - 1) / kPageBytes * kPageBytes; }

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

inline void CpuRelax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

// A mapping of a named shared-memory object; unmaps on destruction.
struct Mapping {
  void* addr = nullptr;
  size_t bytes = 0;
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr != nullptr) ::munmap(addr, bytes);
  }
};

// Creates (exclusively) and maps `name` with `bytes`, reserving the pages so
// that a full /dev/shm is an error here rather than a SIGBUS later.
Status CreateMapping(const std::string& name, size_t bytes, Mapping* m) {
  int fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return IoError(Errno("shm: shm_open(create) " + name));
  int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  if (rc != 0) {
    ::close(fd);
    ::shm_unlink(name.c_str());
    return IoError("shm: cannot reserve " + std::to_string(bytes) + " bytes for " + name + ": " +
                   std::strerror(rc) + " (is /dev/shm full?)");
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) {
    ::shm_unlink(name.c_str());
    return IoError(Errno("shm: mmap " + name));
  }
  m->addr = p;
  m->bytes = bytes;
  return Status::Ok();
}

Status OpenMapping(const std::string& name, size_t expect_bytes, Mapping* m) {
  int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return IoError(Errno("shm: shm_open " + name));
  struct stat st;
  if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != expect_bytes) {
    ::close(fd);
    return FailedPrecondition("shm: segment " + name + " has " + std::to_string(st.st_size) +
                              " bytes, expected " + std::to_string(expect_bytes) +
                              " (do all ranks use the same ShmOptions?)");
  }
  // MAP_POPULATE: page-table entries now, not as faults in the first collectives.
  void* p = ::mmap(nullptr, expect_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return IoError(Errno("shm: mmap " + name));
  m->addr = p;
  m->bytes = expect_bytes;
  return Status::Ok();
}

// Elements per slice when `count` elements are split among `n` ranks, rounded
// up to whole cache lines.
size_t SliceElems(size_t count, int n, size_t elem) {
  const size_t align = std::max<size_t>(1, 64 / elem);
  const size_t per = (count + static_cast<size_t>(n) - 1) / static_cast<size_t>(n);
  return (per + align - 1) / align * align;
}

}  // namespace

enum class ShmCommunicator::Kind : uint8_t {
  kAllReduce = 1,
  kReduce,
  kReduceScatter,
  kAllGather,
  kBroadcast,
  kAllToAll,
  kBarrier,
  kRegister,
  kUnregister,
  kSplit,
};

struct ShmCommunicator::Segment {
  Mapping map;
  SegmentHeader* hdr = nullptr;
  char* staging = nullptr;  // 2 * chunk_bytes
  char* p2p = nullptr;      // size * kShmP2pSlotBytes: slot [q] carries this rank's data to q
};

struct ShmCommunicator::Region {
  size_t bytes = 0;
  std::vector<Mapping> maps;  // [q]: rank q's buffer, as mapped here
};

ShmCommunicator::ShmCommunicator(std::shared_ptr<Store> store, int rank, int size,
                                 ShmOptions options)
    : store_(std::move(store)),
      rank_(rank),
      size_(size),
      options_(options),
      p2p_sent_(static_cast<size_t>(size), 0),
      p2p_recvd_(static_cast<size_t>(size), 0) {}

ShmCommunicator::~ShmCommunicator() { StopAsync(); }

Result<std::unique_ptr<ShmCommunicator>> ShmCommunicator::Create(std::shared_ptr<Store> store,
                                                                 int rank, int size,
                                                                 ShmOptions options) {
  if (size < 1 || size > kShmMaxRanks || rank < 0 || rank >= size) {
    return InvalidArgument("shm: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                           "; need 0 <= rank < size <= kShmMaxRanks (" +
                           std::to_string(kShmMaxRanks) + ")");
  }
  if (options.chunk_bytes < kShmMinChunkBytes || options.chunk_bytes > kShmMaxChunkBytes ||
      options.chunk_bytes % kPageBytes != 0) {
    return InvalidArgument("shm: chunk_bytes " + std::to_string(options.chunk_bytes) +
                           " must be a multiple of 4096 in [kShmMinChunkBytes, kShmMaxChunkBytes]");
  }
  if (options.small_bytes > options.chunk_bytes) options.small_bytes = options.chunk_bytes;
  if (options.op_timeout.count() <= 0 || options.bootstrap_timeout.count() <= 0) {
    return InvalidArgument("shm: timeouts must be positive");
  }
  if (store == nullptr) return InvalidArgument("shm: null store");
  std::unique_ptr<ShmCommunicator> comm(new ShmCommunicator(std::move(store), rank, size, options));
  COHORT_RETURN_IF_ERROR(comm->Bootstrap());
  return comm;
}

Status ShmCommunicator::Bootstrap() {
  // A job-unique segment name from rank 0; arrival through the store.
  if (rank_ == 0) {
    std::random_device rd;
    char buf[64];
    std::snprintf(buf, sizeof(buf), "/cohort-%d-%08x%08x", static_cast<int>(::getpid()), rd(),
                  static_cast<unsigned>(Clock::now().time_since_epoch().count()));
    name_ = buf;
    COHORT_RETURN_IF_ERROR(store_->Set("shm/name", name_));
  } else {
    Result<std::string> name = store_->Get("shm/name", options_.bootstrap_timeout);
    if (!name.ok()) {
      (void)store_->Set("shm/ready/" + std::to_string(rank_), name.status().ToString());
      return name.status();
    }
    name_ = *name;
  }
  // Every rank announces its outcome ("1" or the error), so that a rank that
  // could not create its segment makes the others fail at once, not time out.
  return Connect(
      [this](const Status& created) -> Status {
        COHORT_RETURN_IF_ERROR(store_->Set("shm/ready/" + std::to_string(rank_),
                                           created.ok() ? "1" : created.ToString()));
        COHORT_RETURN_IF_ERROR(created);
        for (int q = 0; q < size_; ++q) {
          if (q == rank_) continue;
          COHORT_ASSIGN_OR_RETURN(std::string v, store_->Get("shm/ready/" + std::to_string(q),
                                                             options_.bootstrap_timeout));
          if (v != "1") {
            return FailedPrecondition("shm bootstrap: rank " + std::to_string(q) + " failed: " + v);
          }
        }
        return Status::Ok();
      },
      nullptr);
}

Status ShmCommunicator::Connect(const std::function<Status(const Status&)>& all_created,
                                const std::function<Status(const Status&)>& all_mapped) {
  // Our segment: header, two staging chunks, p2p slots.
  const size_t staging_off = HeaderBytes();
  const size_t p2p_off = staging_off + kStagingBuffers * options_.chunk_bytes;
  const size_t seg_bytes = p2p_off + static_cast<size_t>(size_) * kShmP2pSlotBytes;
  peers_.resize(static_cast<size_t>(size_));
  auto own = std::make_unique<Segment>();
  const std::string own_name = name_ + "-r" + std::to_string(rank_);
  Status s = CreateMapping(own_name, seg_bytes, &own->map);
  if (s.ok()) {
    auto* hdr = new (own->map.addr) SegmentHeader();
    hdr->magic = kMagic;
    hdr->pid = static_cast<int32_t>(::getpid());
    hdr->rank = rank_;
    hdr->size = size_;
    hdr->chunk_bytes = options_.chunk_bytes;
    hdr->segment_bytes = seg_bytes;
    peers_[static_cast<size_t>(rank_)] = std::move(own);
  }
  const bool created = s.ok();
  s = all_created(s);
  // Map every peer's segment.
  for (int q = 0; q < size_ && s.ok(); ++q) {
    if (q == rank_) continue;
    auto seg = std::make_unique<Segment>();
    s = OpenMapping(name_ + "-r" + std::to_string(q), seg_bytes, &seg->map);
    if (!s.ok()) break;
    const auto* h = static_cast<const SegmentHeader*>(seg->map.addr);
    if (h->magic != kMagic || h->rank != q || h->size != size_ ||
        h->chunk_bytes != options_.chunk_bytes) {
      s = FailedPrecondition("shm: segment of rank " + std::to_string(q) +
                             " does not match (same size and ShmOptions on every rank?)");
      break;
    }
    peers_[static_cast<size_t>(q)] = std::move(seg);
  }
  for (auto& seg : peers_) {
    if (seg == nullptr) continue;
    seg->hdr = static_cast<SegmentHeader*>(seg->map.addr);
    seg->staging = static_cast<char*>(seg->map.addr) + staging_off;
    seg->p2p = static_cast<char*>(seg->map.addr) + p2p_off;
  }
  if (all_mapped) s = all_mapped(s);
  // Once everyone has mapped everything, the names can go: nothing is left
  // in /dev/shm after this, whatever happens to the processes later.
  if (s.ok()) {
    s = BeginOp("bootstrap");
    if (s.ok()) {
      s = FirstSync(Kind::kBarrier, DType::kI32, ReduceOp::kSum, 0, 0, nullptr, 0, {}, {}, false);
    }
  }
  if (created) ::shm_unlink(own_name.c_str());
  return s;
}

// ---- Waiting ------------------------------------------------------------------

Status ShmCommunicator::BeginOp(const char* what) {
  if (!failed_.ok()) {
    return FailedPrecondition(std::string("shm ") + what + ": the communicator failed earlier (" +
                              failed_.ToString() + "); rebuild it");
  }
  op_name_ = what;
  deadline_ = Clock::now() + options_.op_timeout;
  next_liveness_ = Clock::now() + kShmLivenessPeriod;
  return Status::Ok();
}

Status ShmCommunicator::Fail(Status s) {
  if (failed_.ok()) failed_ = s;
  peers_[static_cast<size_t>(rank_)]->hdr->aborted.value.store(1, std::memory_order_release);
  return s;
}

bool ShmCommunicator::PeerAlive(int peer) const {
  const pid_t pid = peers_[static_cast<size_t>(peer)]->hdr->pid;
  if (pid == ::getpid()) return true;  // ranks are threads of this process
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  // A killed child that its parent has not reaped yet is a zombie: dead too.
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return false;
  char buf[256] = {0};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  const char* close_paren = std::strrchr(buf, ')');
  if (n == 0 || close_paren == nullptr || close_paren[1] == '\0') return true;
  const char state = close_paren[2];
  return state != 'Z' && state != 'X';
}

Status ShmCommunicator::WaitAtLeast(int peer, const void* counter, uint64_t target) {
  const auto* c = static_cast<const Counter*>(counter);
  if (c->load(std::memory_order_acquire) >= target) return Status::Ok();
  const SegmentHeader* ph = peers_[static_cast<size_t>(peer)]->hdr;
  for (int spins = 0;; spins += 64) {
    for (int i = 0; i < 64; ++i) {
      if (c->load(std::memory_order_acquire) >= target) return Status::Ok();
      CpuRelax();
    }
    if (spins >= kSpinsBeforeYield) sched_yield();
    if (ph->aborted.value.load(std::memory_order_acquire) != 0) {
      // The peer may have signalled before giving up (on a later check).
      if (c->load(std::memory_order_acquire) >= target) return Status::Ok();
      return Fail(Aborted(std::string("shm ") + op_name_ + ": rank " + std::to_string(peer) +
                          " gave up on this communicator (it saw a failure); rebuild it"));
    }
    const auto now = Clock::now();
    if (now >= deadline_) {
      return Fail(DeadlineExceeded(std::string("shm ") + op_name_ + " on rank " +
                                   std::to_string(rank_) + ": rank " + std::to_string(peer) +
                                   " did not arrive within " +
                                   std::to_string(options_.op_timeout.count()) +
                                   " ms (dead, stuck, or calling a different collective?)"));
    }
    if (now >= next_liveness_) {
      next_liveness_ = now + kShmLivenessPeriod;
      if (!PeerAlive(peer)) {
        return Fail(Aborted(std::string("shm ") + op_name_ + ": rank " + std::to_string(peer) +
                            " (pid " + std::to_string(ph->pid) + ") has exited"));
      }
    }
  }
}

Status ShmCommunicator::FirstSync(Kind kind, DType dtype, ReduceOp op, int root, uint64_t count,
                                  const void* inline_data, size_t inline_bytes, Located send,
                                  Located recv, bool registered) {
  const int line = static_cast<int>(ops_ & 1);
  const uint64_t target = ++ops_;
  SegmentHeader* me = peers_[static_cast<size_t>(rank_)]->hdr;
  OpLine& mine = me->op[line];
  mine.kind = static_cast<uint8_t>(kind);
  mine.dtype = static_cast<uint8_t>(dtype);
  mine.op = static_cast<uint8_t>(op);
  mine.registered = registered ? 1 : 0;
  mine.root = root;
  mine.count = count;
  if (inline_bytes > 0) std::memcpy(mine.inline_data, inline_data, inline_bytes);
  if (registered) {
    me->reg[line].send_region = send.region;
    me->reg[line].send_offset = send.offset;
    me->reg[line].recv_region = recv.region;
    me->reg[line].recv_offset = recv.offset;
  }
  mine.seq.store(target, std::memory_order_release);
  bool same = true;
  for (int q = 0; q < size_; ++q) {
    if (q == rank_) continue;
    const OpLine& theirs = peers_[static_cast<size_t>(q)]->hdr->op[line];
    COHORT_RETURN_IF_ERROR(WaitAtLeast(q, &theirs.seq, target));
    same = same && theirs.kind == mine.kind && theirs.dtype == mine.dtype && theirs.op == mine.op &&
           theirs.root == mine.root && theirs.count == mine.count &&
           theirs.registered == mine.registered;
  }
  if (!same) {
    // Every rank sees every line, so every rank returns this error here. The
    // ranks may have staged different amounts already: the communicator is done.
    return Fail(InvalidArgument(std::string("shm ") + op_name_ +
                                ": ranks called different collectives, counts, dtypes, ops or "
                                "roots, or not all used registered buffers"));
  }
  return Status::Ok();
}

Status ShmCommunicator::Sync() {
  const uint64_t target = ++phases_;
  peers_[static_cast<size_t>(rank_)]->hdr->phase.value.store(target, std::memory_order_release);
  for (int q = 0; q < size_; ++q) {
    if (q == rank_) continue;
    COHORT_RETURN_IF_ERROR(
        WaitAtLeast(q, &peers_[static_cast<size_t>(q)]->hdr->phase.value, target));
  }
  return Status::Ok();
}

// ---- Addresses ----------------------------------------------------------------

ShmCommunicator::Located ShmCommunicator::Locate(const void* p, size_t bytes) const {
  const char* c = static_cast<const char*>(p);
  for (size_t id = 0; id < regions_.size(); ++id) {
    const Region* r = regions_[id].get();
    if (r == nullptr) continue;
    const char* base = static_cast<const char*>(r->maps[static_cast<size_t>(rank_)].addr);
    if (c >= base && c + bytes <= base + r->bytes) {
      return Located{static_cast<int32_t>(id), static_cast<uint64_t>(c - base)};
    }
  }
  return {};
}

char* ShmCommunicator::PeerAddress(int peer, Located where) const {
  return static_cast<char*>(
             regions_[static_cast<size_t>(where.region)]->maps[static_cast<size_t>(peer)].addr) +
         where.offset;
}

char* ShmCommunicator::Staging(int peer, int buffer) const {
  return peers_[static_cast<size_t>(peer)]->staging +
         static_cast<size_t>(buffer) * options_.chunk_bytes;
}

const void* ShmCommunicator::PeerInline(int peer) const {
  return peers_[static_cast<size_t>(peer)]->hdr->op[(ops_ - 1) & 1].inline_data;
}

// ---- Collectives ----------------------------------------------------------------

Status ShmCommunicator::AllReduce(const void* send, void* recv, size_t count, DType dtype,
                                  ReduceOp op) {
  return ReduceImpl(send, recv, count, dtype, op, -1, "all-reduce");
}

Status ShmCommunicator::Reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                               int root) {
  COHORT_RETURN_IF_ERROR(CheckRoot(root, size_, "reduce"));
  return ReduceImpl(send, recv, count, dtype, op, root, "reduce");
}

// All-reduce (root < 0) and reduce to `root`.
Status ShmCommunicator::ReduceImpl(const void* send, void* recv, size_t count, DType dtype,
                                   ReduceOp op, int root, const char* what) {
  COHORT_RETURN_IF_ERROR(BeginOp(what));
  const Kind kind = root < 0 ? Kind::kAllReduce : Kind::kReduce;
  const size_t elem = DTypeSize(dtype);
  const size_t bytes = count * elem;
  const bool wants_result = root < 0 || rank_ == root;
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  const void* inputs[kShmMaxRanks];

  // Tiny: the data rides in the control line.
  if (bytes <= kShmInlineBytes) {
    COHORT_RETURN_IF_ERROR(FirstSync(kind, dtype, op, root, count, send, bytes, {}, {}, false));
    if (wants_result && count > 0) {
      for (int q = 0; q < size_; ++q) inputs[q] = q == rank_ ? send : PeerInline(q);
      // Our own input may be `out` itself; ReduceInto allows that.
      shm::ReduceInto(dtype, op, inputs, size_, out, count, size_);
    }
    return Status::Ok();
  }
  // Small: one staging step, every rank reduces everything (in rank order, so
  // all ranks get the same bits).
  if (bytes <= options_.small_bytes) {
    const int p = NextBuffer();
    std::memcpy(Staging(rank_, p), in, bytes);
    COHORT_RETURN_IF_ERROR(FirstSync(kind, dtype, op, root, count, nullptr, 0, {}, {}, false));
    if (wants_result) {
      for (int q = 0; q < size_; ++q) inputs[q] = Staging(q, p);
      shm::ReduceInto(dtype, op, inputs, size_, out, count, size_);
    }
    return Status::Ok();
  }
  // Large: a registered all-reduce, or chunk by chunk through staging.
  const Located ls = Locate(send, bytes);
  const Located lr = Locate(recv, bytes);
  if (kind == Kind::kAllReduce && ls.region >= 0 && lr.region >= 0) {
    return RegisteredAllReduce(recv, count, dtype, op, ls, lr);
  }
  return ChunkedReduce(send, recv, count, dtype, op, root);
}

// Registered all-reduce: reduce our slice straight from the peers' buffers
// into ours, then gather the others' slices from their buffers.
Status ShmCommunicator::RegisteredAllReduce(void* recv, size_t count, DType dtype, ReduceOp op,
                                            Located ls, Located lr) {
  const size_t elem = DTypeSize(dtype);
  char* out = static_cast<char*>(recv);
  const void* inputs[kShmMaxRanks];
  COHORT_RETURN_IF_ERROR(
      FirstSync(Kind::kAllReduce, dtype, op, -1, count, nullptr, 0, ls, lr, true));
  const int line = static_cast<int>((ops_ - 1) & 1);
  const size_t per = SliceElems(count, size_, elem);
  auto send_of = [&](int q) {
    const RegLine& rl = peers_[static_cast<size_t>(q)]->hdr->reg[line];
    return PeerAddress(q, Located{rl.send_region, rl.send_offset});
  };
  auto recv_of = [&](int q) {
    const RegLine& rl = peers_[static_cast<size_t>(q)]->hdr->reg[line];
    return PeerAddress(q, Located{rl.recv_region, rl.recv_offset});
  };
  const size_t lo = std::min(count, per * static_cast<size_t>(rank_));
  const size_t hi = std::min(count, lo + per);
  if (hi > lo) {
    for (int q = 0; q < size_; ++q) inputs[q] = send_of(q) + lo * elem;
    shm::ReduceInto(dtype, op, inputs, size_, out + lo * elem, hi - lo, size_);
  }
  COHORT_RETURN_IF_ERROR(Sync());
  for (int q = 0; q < size_; ++q) {
    if (q == rank_) continue;
    const size_t qlo = std::min(count, per * static_cast<size_t>(q));
    const size_t qhi = std::min(count, qlo + per);
    if (qhi > qlo) std::memcpy(out + qlo * elem, recv_of(q) + qlo * elem, (qhi - qlo) * elem);
  }
  // Nobody may touch its buffer again until everyone has read from it.
  return Sync();
}

// Large, unregistered: chunk by chunk, copy in, reduce our slice in the
// staging chunk; the slices of chunk k are gathered after the barrier of
// chunk k+1 (three rotating staging chunks make that safe), so each chunk
// costs one barrier.
Status ShmCommunicator::ChunkedReduce(const void* send, void* recv, size_t count, DType dtype,
                                      ReduceOp op, int root) {
  const Kind kind = root < 0 ? Kind::kAllReduce : Kind::kReduce;
  const size_t elem = DTypeSize(dtype);
  const bool wants_result = root < 0 || rank_ == root;
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  const void* inputs[kShmMaxRanks];
  const size_t chunk_elems = options_.chunk_bytes / elem;
  struct Pending {
    int buffer = -1;
    size_t off = 0, len = 0;
  } pending;
  auto gather = [&](const Pending& g) {
    if (!wants_result || g.buffer < 0) return;
    const size_t per = SliceElems(g.len, size_, elem);
    for (int q = 0; q < size_; ++q) {
      const size_t qlo = std::min(g.len, per * static_cast<size_t>(q));
      const size_t qhi = std::min(g.len, qlo + per);
      if (qhi > qlo) {
        std::memcpy(out + (g.off + qlo) * elem, Staging(q, g.buffer) + qlo * elem,
                    (qhi - qlo) * elem);
      }
    }
  };
  for (size_t off = 0; off < count; off += chunk_elems) {
    const size_t len = std::min(chunk_elems, count - off);
    const int b = NextBuffer();
    std::memcpy(Staging(rank_, b), in + off * elem, len * elem);
    if (off == 0) {
      COHORT_RETURN_IF_ERROR(FirstSync(kind, dtype, op, root, count, nullptr, 0, {}, {}, false));
    } else {
      COHORT_RETURN_IF_ERROR(Sync());
    }
    gather(pending);  // every rank reduced its slice of the previous chunk before this barrier
    const size_t per = SliceElems(len, size_, elem);
    const size_t lo = std::min(len, per * static_cast<size_t>(rank_));
    const size_t hi = std::min(len, lo + per);
    if (hi > lo) {
      for (int q = 0; q < size_; ++q) inputs[q] = Staging(q, b) + lo * elem;
      shm::ReduceInto(dtype, op, inputs, size_, Staging(rank_, b) + lo * elem, hi - lo, size_);
    }
    pending = Pending{b, off, len};
  }
  COHORT_RETURN_IF_ERROR(Sync());
  gather(pending);
  return Status::Ok();
}

Status ShmCommunicator::ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                                      ReduceOp op) {
  COHORT_RETURN_IF_ERROR(BeginOp("reduce-scatter"));
  const size_t elem = DTypeSize(dtype);
  const size_t n = static_cast<size_t>(size_);
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  const void* inputs[kShmMaxRanks];
  const Located ls = Locate(send, count * n * elem);
  const bool registered = send != recv && ls.region >= 0 && count * n * elem > options_.small_bytes;
  if (registered) {
    // Reduce our block straight from the peers' send buffers.
    COHORT_RETURN_IF_ERROR(
        FirstSync(Kind::kReduceScatter, dtype, op, -1, count, nullptr, 0, ls, {}, true));
    const int line = static_cast<int>((ops_ - 1) & 1);
    for (int q = 0; q < size_; ++q) {
      const RegLine& rl = peers_[static_cast<size_t>(q)]->hdr->reg[line];
      inputs[q] = PeerAddress(q, Located{rl.send_region, rl.send_offset}) +
                  static_cast<size_t>(rank_) * count * elem;
    }
    shm::ReduceInto(dtype, op, inputs, size_, out, count, size_);
    return Sync();
  }
  const size_t block_elems = std::max<size_t>(1, options_.chunk_bytes / (n * elem));
  bool first = true;
  for (size_t off = 0; off < count || first; off += block_elems) {
    const size_t len = count == 0 ? 0 : std::min(block_elems, count - off);
    const int p = NextBuffer();
    char* mine = Staging(rank_, p);
    for (size_t q = 0; q < n; ++q) {
      std::memcpy(mine + q * len * elem, in + (q * count + off) * elem, len * elem);
    }
    if (first) {
      COHORT_RETURN_IF_ERROR(
          FirstSync(Kind::kReduceScatter, dtype, op, -1, count, nullptr, 0, {}, {}, false));
      first = false;
    } else {
      COHORT_RETURN_IF_ERROR(Sync());
    }
    if (len == 0) break;
    for (int q = 0; q < size_; ++q) {
      inputs[q] = Staging(q, p) + static_cast<size_t>(rank_) * len * elem;
    }
    shm::ReduceInto(dtype, op, inputs, size_, out + off * elem, len, size_);
  }
  return Status::Ok();
}

Status ShmCommunicator::AllGather(const void* send, void* recv, size_t count, DType dtype) {
  COHORT_RETURN_IF_ERROR(BeginOp("all-gather"));
  const size_t elem = DTypeSize(dtype);
  const size_t bytes = count * elem;
  char* out = static_cast<char*>(recv);
  const char* in = static_cast<const char*>(send);
  const bool in_place = in == out + static_cast<size_t>(rank_) * bytes;
  const Located ls = Locate(send, bytes);
  const bool registered = ls.region >= 0 && bytes > options_.small_bytes;
  if (registered) {
    COHORT_RETURN_IF_ERROR(
        FirstSync(Kind::kAllGather, dtype, ReduceOp::kSum, -1, count, nullptr, 0, ls, {}, true));
    const int line = static_cast<int>((ops_ - 1) & 1);
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) {
        if (!in_place) std::memcpy(out + static_cast<size_t>(q) * bytes, in, bytes);
        continue;
      }
      const RegLine& rl = peers_[static_cast<size_t>(q)]->hdr->reg[line];
      std::memcpy(out + static_cast<size_t>(q) * bytes,
                  PeerAddress(q, Located{rl.send_region, rl.send_offset}), bytes);
    }
    return Sync();
  }
  const size_t chunk_elems = options_.chunk_bytes / elem;
  bool first = true;
  for (size_t off = 0; off < count || first; off += chunk_elems) {
    const size_t len = count == 0 ? 0 : std::min(chunk_elems, count - off);
    const int p = NextBuffer();
    std::memcpy(Staging(rank_, p), in + off * elem, len * elem);
    if (first) {
      COHORT_RETURN_IF_ERROR(
          FirstSync(Kind::kAllGather, dtype, ReduceOp::kSum, -1, count, nullptr, 0, {}, {}, false));
      first = false;
    } else {
      COHORT_RETURN_IF_ERROR(Sync());
    }
    if (len == 0) break;
    for (int q = 0; q < size_; ++q) {
      if (q == rank_ && in_place) continue;
      std::memcpy(out + (static_cast<size_t>(q) * count + off) * elem, Staging(q, p), len * elem);
    }
  }
  return Status::Ok();
}

Status ShmCommunicator::Broadcast(void* buf, size_t count, DType dtype, int root) {
  COHORT_RETURN_IF_ERROR(CheckRoot(root, size_, "broadcast"));
  COHORT_RETURN_IF_ERROR(BeginOp("broadcast"));
  const size_t elem = DTypeSize(dtype);
  const size_t bytes = count * elem;
  char* b = static_cast<char*>(buf);
  if (bytes <= kShmInlineBytes) {
    COHORT_RETURN_IF_ERROR(FirstSync(Kind::kBroadcast, dtype, ReduceOp::kSum, root, count, buf,
                                     rank_ == root ? bytes : 0, {}, {}, false));
    if (rank_ != root && bytes > 0) std::memcpy(b, PeerInline(root), bytes);
    return Status::Ok();
  }
  const Located lb = Locate(buf, bytes);
  const bool registered = lb.region >= 0 && bytes > options_.small_bytes;
  if (registered) {
    COHORT_RETURN_IF_ERROR(
        FirstSync(Kind::kBroadcast, dtype, ReduceOp::kSum, root, count, nullptr, 0, lb, {}, true));
    const int line = static_cast<int>((ops_ - 1) & 1);
    if (rank_ != root) {
      const RegLine& rl = peers_[static_cast<size_t>(root)]->hdr->reg[line];
      std::memcpy(b, PeerAddress(root, Located{rl.send_region, rl.send_offset}), bytes);
    }
    return Sync();
  }
  const size_t chunk_elems = options_.chunk_bytes / elem;
  bool first = true;
  for (size_t off = 0; off < count; off += chunk_elems) {
    const size_t len = std::min(chunk_elems, count - off);
    const int p = NextBuffer();
    if (rank_ == root) std::memcpy(Staging(rank_, p), b + off * elem, len * elem);
    if (first) {
      COHORT_RETURN_IF_ERROR(FirstSync(Kind::kBroadcast, dtype, ReduceOp::kSum, root, count,
                                       nullptr, 0, {}, {}, false));
      first = false;
    } else {
      COHORT_RETURN_IF_ERROR(Sync());
    }
    if (rank_ != root) std::memcpy(b + off * elem, Staging(root, p), len * elem);
  }
  return Status::Ok();
}

Status ShmCommunicator::AllToAll(const void* send, void* recv, size_t count, DType dtype) {
  COHORT_RETURN_IF_ERROR(BeginOp("all-to-all"));
  const size_t elem = DTypeSize(dtype);
  const size_t n = static_cast<size_t>(size_);
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);
  const size_t block_elems = std::max<size_t>(1, options_.chunk_bytes / (n * elem));
  bool first = true;
  for (size_t off = 0; off < count || first; off += block_elems) {
    const size_t len = count == 0 ? 0 : std::min(block_elems, count - off);
    const int p = NextBuffer();
    char* mine = Staging(rank_, p);
    for (size_t q = 0; q < n; ++q) {
      std::memcpy(mine + q * len * elem, in + (q * count + off) * elem, len * elem);
    }
    if (first) {
      COHORT_RETURN_IF_ERROR(
          FirstSync(Kind::kAllToAll, dtype, ReduceOp::kSum, -1, count, nullptr, 0, {}, {}, false));
      first = false;
    } else {
      COHORT_RETURN_IF_ERROR(Sync());
    }
    if (len == 0) break;
    for (size_t q = 0; q < n; ++q) {
      std::memcpy(out + (q * count + off) * elem,
                  Staging(static_cast<int>(q), p) + static_cast<size_t>(rank_) * len * elem,
                  len * elem);
    }
  }
  return Status::Ok();
}

Status ShmCommunicator::Barrier() {
  COHORT_RETURN_IF_ERROR(BeginOp("barrier"));
  return FirstSync(Kind::kBarrier, DType::kI32, ReduceOp::kSum, -1, 0, nullptr, 0, {}, {}, false);
}

// ---- Point to point -------------------------------------------------------------

Status ShmCommunicator::Send(const void* buf, size_t count, DType dtype, int peer) {
  COHORT_RETURN_IF_ERROR(CheckPeer(peer, rank_, size_, "send"));
  COHORT_RETURN_IF_ERROR(BeginOp("send"));
  const size_t bytes = count * DTypeSize(dtype);
  const char* in = static_cast<const char*>(buf);
  const size_t q = static_cast<size_t>(peer);
  SegmentHeader* me = peers_[static_cast<size_t>(rank_)]->hdr;
  char* slot = peers_[static_cast<size_t>(rank_)]->p2p + q * kShmP2pSlotBytes;
  for (size_t off = 0; off < bytes; off += kShmP2pSlotBytes) {
    const size_t len = std::min(kShmP2pSlotBytes, bytes - off);
    // The peer must have taken the previous chunk out of the slot.
    COHORT_RETURN_IF_ERROR(
        WaitAtLeast(peer, &peers_[q]->hdr->p2p_acked[rank_].value, p2p_sent_[q]));
    std::memcpy(slot, in + off, len);
    me->p2p_sent[q].aux.store(len, std::memory_order_relaxed);
    me->p2p_sent[q].value.store(++p2p_sent_[q], std::memory_order_release);
  }
  return Status::Ok();
}

Status ShmCommunicator::Recv(void* buf, size_t count, DType dtype, int peer) {
  COHORT_RETURN_IF_ERROR(CheckPeer(peer, rank_, size_, "recv"));
  COHORT_RETURN_IF_ERROR(BeginOp("recv"));
  const size_t bytes = count * DTypeSize(dtype);
  char* out = static_cast<char*>(buf);
  const size_t q = static_cast<size_t>(peer);
  SegmentHeader* me = peers_[static_cast<size_t>(rank_)]->hdr;
  const SegmentHeader* them = peers_[q]->hdr;
  const char* slot = peers_[q]->p2p + static_cast<size_t>(rank_) * kShmP2pSlotBytes;
  for (size_t off = 0; off < bytes; off += kShmP2pSlotBytes) {
    const size_t len = std::min(kShmP2pSlotBytes, bytes - off);
    COHORT_RETURN_IF_ERROR(WaitAtLeast(peer, &them->p2p_sent[rank_].value, p2p_recvd_[q] + 1));
    const uint64_t sent_len = them->p2p_sent[rank_].aux.load(std::memory_order_relaxed);
    if (sent_len != len) {
      return Fail(InvalidArgument("shm recv from rank " + std::to_string(peer) + ": got a " +
                                  std::to_string(sent_len) + "-byte chunk, expected " +
                                  std::to_string(len) + " (send and recv sizes differ)"));
    }
    std::memcpy(out + off, slot, len);
    me->p2p_acked[q].value.store(++p2p_recvd_[q], std::memory_order_release);
  }
  return Status::Ok();
}

// ---- Registered memory and splits ---------------------------------------------------

Result<void*> ShmCommunicator::AllocateRegistered(size_t bytes) {
  if (bytes == 0 || bytes > kMaxRegisteredBytes) {
    return InvalidArgument("shm AllocateRegistered: " + std::to_string(bytes) +
                           " bytes outside [1, kMaxRegisteredBytes]");
  }
  size_t live = 0;
  for (const auto& r : regions_) live += r != nullptr ? 1 : 0;
  if (live >= static_cast<size_t>(kShmMaxRegions)) {
    return InvalidArgument("shm AllocateRegistered: kShmMaxRegions buffers already live");
  }
  const size_t mapped = RoundToPages(bytes);
  const size_t id = regions_.size();
  const std::string name = name_ + "-r" + std::to_string(rank_) + "-m" + std::to_string(id);
  auto region = std::make_unique<Region>();
  region->bytes = bytes;
  region->maps = std::vector<Mapping>(static_cast<size_t>(size_));
  COHORT_RETURN_IF_ERROR(BeginOp("register"));
  Status created = CreateMapping(name, mapped, &region->maps[static_cast<size_t>(rank_)]);
  // The first barrier also checks that every rank asks for the same size; a
  // rank whose creation failed still takes part, with count 0, so all fail.
  Status s = FirstSync(Kind::kRegister, DType::kI32, ReduceOp::kSum, -1, created.ok() ? bytes : 0,
                       nullptr, 0, {}, {}, false);
  if (s.ok() && !created.ok()) s = created;
  for (int q = 0; q < size_ && s.ok(); ++q) {
    if (q == rank_) continue;
    s = OpenMapping(name_ + "-r" + std::to_string(q) + "-m" + std::to_string(id), mapped,
                    &region->maps[static_cast<size_t>(q)]);
  }
  // Everyone has mapped (or failed) before the names go away.
  Status all = Sync();
  if (created.ok()) ::shm_unlink(name.c_str());
  COHORT_RETURN_IF_ERROR(all);
  COHORT_RETURN_IF_ERROR(s);
  void* p = region->maps[static_cast<size_t>(rank_)].addr;
  regions_.push_back(std::move(region));
  return p;
}

Status ShmCommunicator::FreeRegistered(void* ptr) {
  const Located where = Locate(ptr, 1);
  if (where.region < 0 || where.offset != 0) {
    return InvalidArgument("shm FreeRegistered: pointer was not returned by AllocateRegistered");
  }
  COHORT_RETURN_IF_ERROR(BeginOp("unregister"));
  // Nobody may read our buffer once it is gone.
  COHORT_RETURN_IF_ERROR(FirstSync(Kind::kUnregister, DType::kI32, ReduceOp::kSum, where.region, 0,
                                   nullptr, 0, {}, {}, false));
  regions_[static_cast<size_t>(where.region)].reset();
  return Status::Ok();
}

Result<std::unique_ptr<Communicator>> ShmCommunicator::SplitGroup(int color, int key) {
  std::vector<int32_t> mine = {color, key};
  std::vector<int32_t> all(2 * static_cast<size_t>(size_));
  COHORT_RETURN_IF_ERROR(AllGather(mine.data(), all.data(), 2, DType::kI32));
  std::vector<std::pair<int32_t, int>> members;  // (key, old rank) of our colour
  for (int q = 0; q < size_; ++q) {
    if (all[2 * static_cast<size_t>(q)] == color) {
      members.emplace_back(all[2 * static_cast<size_t>(q) + 1], q);
    }
  }
  std::sort(members.begin(), members.end());
  int new_rank = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == rank_) new_rank = static_cast<int>(i);
  }
  // The sub-group meets through this communicator, not the store (which may
  // be gone, see CreateShmFromCommunicator): the name is derived, arrival is
  // a barrier here, and every rank of this group learns every outcome.
  std::unique_ptr<ShmCommunicator> sub(
      new ShmCommunicator(store_, new_rank, static_cast<int>(members.size()), options_));
  sub->name_ = name_ + "-s" + std::to_string(splits_++) + "c" + std::to_string(color);
  Status s = sub->Connect(
      [this](const Status& created) -> Status {
        Status b = Barrier();  // every rank of every colour has created its segment
        return created.ok() ? b : created;
      },
      [this](const Status& mapped) { return AgreeOnStatus(*this, mapped); });
  COHORT_RETURN_IF_ERROR(s);
  return std::unique_ptr<Communicator>(std::move(sub));
}

// ---- Bootstrap over another communicator ----------------------------------------------

Result<std::unique_ptr<ShmCommunicator>> CreateShmFromCommunicator(Communicator& boot,
                                                                   ShmOptions options) {
  constexpr size_t kPathBytes = 512;
  std::vector<char> path(kPathBytes, 0);
  Status made;
  if (boot.rank() == 0) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/cohort-shm-XXXXXX";
    if (pattern.size() >= kPathBytes) pattern = "/tmp/cohort-shm-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
      made = IoError(Errno("shm bootstrap: mkdtemp " + pattern));
    } else {
      std::memcpy(path.data(), buf.data(), buf.size());
    }
  }
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(boot, made));
  COHORT_RETURN_IF_ERROR(boot.Broadcast(path.data(), kPathBytes / 4, DType::kI32, 0));
  const std::string dir(path.data());
  Status status;
  std::unique_ptr<ShmCommunicator> comm;
  Result<std::unique_ptr<FileStore>> fs = FileStore::Open(dir);
  if (fs.ok()) {
    std::shared_ptr<Store> store(std::move(fs).value());
    Result<std::unique_ptr<ShmCommunicator>> made_comm =
        ShmCommunicator::Create(store, boot.rank(), boot.size(), options);
    if (made_comm.ok()) {
      comm = std::move(made_comm).value();
    } else {
      status = made_comm.status();
    }
  } else {
    status = fs.status();
  }
  Status agreed = AgreeOnStatus(boot, status);
  if (boot.rank() == 0) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  COHORT_RETURN_IF_ERROR(agreed);
  return comm;
}

}  // namespace cohort
