#pragma once
// The `shm` backend: collectives among ranks on one host over POSIX shared
// memory, in the spirit of DeepSpeed's CPU shm all-reduce, for every op and
// dtype.
//
// How it works. Each rank owns one segment (/dev/shm) holding its control
// lines and three staging chunks; every rank maps every peer's segment. A
// collective is a few steps of "write my staging chunk, signal, wait for all
// peers' signals, read straight from the peers' chunks". Signals are
// monotonically increasing counters, one per cache line, polled with spin then
// sched_yield (no syscalls on the fast path). All-reduce: each rank reduces
// its slice of the chunk from all peers (vectorised, bf16/fp16 in fp32), then
// everyone gathers the slices (pipelined: one barrier per chunk). Staging
// rotates over three chunks, so one barrier per step is enough. Messages of at most kShmInlineBytes
// travel inside the control line itself (one cache miss per peer).
//
// Registered buffers (AllocateRegistered) are shared-memory segments mapped by
// every rank, so a large all-reduce, reduce-scatter, all-gather or broadcast
// whose buffers lie in them reads peers' buffers directly and copies nothing
// into staging. All ranks must use registered buffers in a call, or none
// (InvalidArgument otherwise); offsets may differ between ranks.
//
// Failure. Every wait has the per-operation deadline `op_timeout`; a peer's
// pid is checked for life every kShmLivenessPeriod, and a rank that gives up
// raises its `aborted` line so its peers give up at once too. The error is a
// Status (DeadlineExceeded or Aborted); afterwards every call fails with
// FailedPrecondition: rebuild the communicator.
//
// Thread safety: as for every Communicator, one thread at a time. Bootstrap
// goes through a Store, so ranks may be threads of one process (in-memory
// store) or processes (file store, or CreateShmFromCommunicator).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/store.h"

namespace cohort {

// Limits of the shm backend, in one place (CONTRIBUTING.md, "Limits").
inline constexpr int kShmMaxRanks = 64;
inline constexpr size_t kShmDefaultChunkBytes = size_t{2} << 20;  // staging chunk per rank
inline constexpr size_t kShmMinChunkBytes = size_t{4} << 10;
inline constexpr size_t kShmMaxChunkBytes = size_t{64} << 20;
inline constexpr size_t kShmDefaultSmallBytes = size_t{32} << 10;  // one-step all-reduce up to here
inline constexpr size_t kShmInlineBytes = 40;                      // data inside the control line
inline constexpr size_t kShmP2pSlotBytes = size_t{64} << 10;       // per ordered pair of ranks
inline constexpr int kShmMaxRegions = 4096;                        // live registered buffers
inline constexpr std::chrono::milliseconds kShmLivenessPeriod{20};

struct ShmOptions {
  // Deadline of one collective (every wait in it). A dead or stuck peer gives
  // DeadlineExceeded (or Aborted when its death is seen first) after this.
  std::chrono::milliseconds op_timeout{std::chrono::minutes(2)};
  // Deadline for all ranks to arrive at Create (store waits).
  std::chrono::milliseconds bootstrap_timeout{std::chrono::minutes(2)};
  // Staging chunk per rank, a multiple of 4 KiB in [kShmMinChunkBytes,
  // kShmMaxChunkBytes]. Large messages go through in chunks of this size.
  size_t chunk_bytes = kShmDefaultChunkBytes;
  // All-reduce / reduce of at most this many bytes use the one-step algorithm
  // (every rank reduces the whole message); larger ones split the work.
  size_t small_bytes = kShmDefaultSmallBytes;
};

class ShmCommunicator final : public Communicator {
 public:
  // Collective over `size` ranks on this host: rank r calls Create(store, r,
  // size, options) with a store that every rank sees (one Create per store
  // keyspace; wrap in PrefixStore to create more), and the same options.
  // Shares ownership of `store`. Errors:
  // DeadlineExceeded when some rank does not arrive within
  // bootstrap_timeout; IoError when /dev/shm refuses a segment.
  static Result<std::unique_ptr<ShmCommunicator>> Create(std::shared_ptr<Store> store, int rank,
                                                         int size, ShmOptions options = {});
  ~ShmCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "shm"; }

  Status AllReduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op) override;
  Status Broadcast(void* buf, size_t count, DType dtype, int root) override;
  Status AllGather(const void* send, void* recv, size_t count, DType dtype) override;
  Status ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                       ReduceOp op) override;
  Status Barrier() override;
  Status Reduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                int root) override;
  Status AllToAll(const void* send, void* recv, size_t count, DType dtype) override;
  Status Send(const void* buf, size_t count, DType dtype, int peer) override;
  Status Recv(void* buf, size_t count, DType dtype, int peer) override;
  // A new shm communicator; bootstraps through this one (no store needed).
  Result<std::unique_ptr<Communicator>> SplitGroup(int color, int key) override;

  // Collective (same sizes, same order on every rank): shared memory that
  // every rank maps. Rounded up to whole pages; zero-filled.
  Result<void*> AllocateRegistered(size_t bytes) override;
  Status FreeRegistered(void* ptr) override;

  const ShmOptions& options() const { return options_; }

 private:
  struct Segment;  // one mapping of a rank's control segment
  struct Region;   // one registered buffer, mapped from every rank
  struct Located {
    int32_t region = -1;  // -1: not in a registered buffer
    uint64_t offset = 0;
  };
  enum class Kind : uint8_t;

  ShmCommunicator(std::shared_ptr<Store> store, int rank, int size, ShmOptions options);
  Status Bootstrap();
  // Creates our segment, calls all_created(status of that) which must return
  // once every rank's segment exists (or an error), maps the peers', calls
  // all_mapped (may be null) to agree on the outcome, then a first barrier.
  Status Connect(const std::function<Status(const Status&)>& all_created,
                 const std::function<Status(const Status&)>& all_mapped);

  // Every call starts with BeginOp (deadline, earlier failure) and its first
  // barrier is FirstSync, which also checks that all ranks called the same
  // operation; later barriers are Sync.
  Status BeginOp(const char* what);
  Status FirstSync(Kind kind, DType dtype, ReduceOp op, int root, uint64_t count,
                   const void* inline_data, size_t inline_bytes, Located send, Located recv,
                   bool registered);
  Status Sync();
  Status WaitAtLeast(int peer, const void* counter, uint64_t target);
  Status Fail(Status s);
  bool PeerAlive(int peer) const;

  Located Locate(const void* p, size_t bytes) const;
  char* PeerAddress(int peer, Located where) const;
  // Staging chunks rotate over kStagingBuffers: a rank rewrites a chunk only
  // after a barrier that every peer passed after its last read of that chunk.
  static constexpr int kStagingBuffers = 3;
  char* Staging(int peer, int buffer) const;
  int NextBuffer() { return static_cast<int>(steps_++ % kStagingBuffers); }
  // Reads the peer's inline data of the current operation (valid after FirstSync).
  const void* PeerInline(int peer) const;

  Status ReduceImpl(const void* send, void* recv, size_t count, DType dtype, ReduceOp op, int root,
                    const char* what);
  // ReduceImpl's paths for large messages: an all-reduce whose buffers are
  // both registered (`ls`, `lr`: where send and recv lie), and the chunked
  // path through the staging buffers.
  Status RegisteredAllReduce(void* recv, size_t count, DType dtype, ReduceOp op, Located ls,
                             Located lr);
  Status ChunkedReduce(const void* send, void* recv, size_t count, DType dtype, ReduceOp op,
                       int root);

  std::shared_ptr<Store> store_;
  const int rank_;
  const int size_;
  const ShmOptions options_;
  std::string name_;                              // segment name prefix, from rank 0
  std::vector<std::unique_ptr<Segment>> peers_;   // indexed by rank; [rank_] is ours
  std::vector<std::unique_ptr<Region>> regions_;  // by region id; null once freed
  uint64_t ops_ = 0;                 // operations begun on this rank (same on every rank)
  uint64_t phases_ = 0;              // barriers after the first of an operation
  uint64_t steps_ = 0;               // staging steps; picks the staging chunk
  std::vector<uint64_t> p2p_sent_;   // chunks sent to each peer
  std::vector<uint64_t> p2p_recvd_;  // chunks received from each peer
  int splits_ = 0;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::steady_clock::time_point next_liveness_;
  Status failed_;  // the first error; non-OK makes every later call fail
  const char* op_name_ = "";
};

// Builds a shm communicator over the ranks of `boot` (for example the MPI
// world; all on one host): rank 0 makes a fresh directory under
// $TMPDIR (or /tmp), sends its name with boot.Broadcast, every rank opens a
// FileStore there, and rank 0 removes the directory once all are connected.
Result<std::unique_ptr<ShmCommunicator>> CreateShmFromCommunicator(Communicator& boot,
                                                                   ShmOptions options = {});

}  // namespace cohort
