#pragma once
// The `auto` backend: one Communicator over several backends of the same
// ranks (for example mpi and shm), which routes each call to the backend that
// was fastest for that operation and message size when measured on these
// ranks, at creation.
//
// Calibration (collective, at Create): for every routed operation (all-reduce
// in fp32 and bf16, reduce-scatter, all-gather, broadcast), on plain and on
// registered buffers, and for sizes 8 B * 8^k up to `max_calibration_bytes`
// (fp32 all-reduce up to `max_allreduce_calibration_bytes`),
// each member runs the operation a few times; a member's time is its fastest
// run (noise only adds time), the slowest rank's counts (all-reduce max over
// the first member), and another member takes the cell from the first only
// when it is at least 10% faster (near-ties are noise). Every rank computes
// the same table from the same numbers, so all ranks route a call alike (they
// must: a collective cannot start on one backend and end on another). A call
// of B bytes takes the winner of the measured size nearest B on a log scale.
// Operations not measured (reduce, all-to-all, point-to-point, barrier)
// go to the first member, which must support every operation (mpi).
//
// Registered memory comes from the first member that places it in shared
// memory (shm); a call counts as registered when its buffers lie in such
// allocations, and is routed by the registered row of the table. A call on a
// registered buffer routed to another backend is fine: registered memory is
// ordinary memory to it.
//
// Sub-communicators (SplitGroup) split every member and keep the table.
//
// With AutoOptions::cache_dir, rank 0 reads the table measured for the same
// build, members, hosts and options from the cache (auto_cache.h) and
// broadcasts it; without a valid one, the ranks measure and rank 0 writes it.
#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"

namespace cohort {

struct AutoOptions {
  // Largest size measured (8 B * 8^k up to here); larger calls take the
  // winner at this size, where both backends are bandwidth-bound already.
  size_t max_calibration_bytes = size_t{4} << 20;
  // fp32 all-reduce (the gradient path) is measured further: Open MPI's
  // shared-memory all-reduce falls from ~5 GB/s at 16 MiB to ~0.4 GB/s at
  // 32 MiB here, which no smaller size predicts. Cells above
  // max_calibration_bytes run once after the warm-up.
  size_t max_allreduce_calibration_bytes = size_t{32} << 20;
  int iterations_small = 10;  // timed runs per cell up to 256 KiB
  int iterations_large = 3;   // timed runs per cell above
  // The calibration cache (collectives/auto/auto_cache.h): a directory, or
  // empty to measure at every start.
  std::string cache_dir;
  bool recalibrate = false;  // measure even when the cache holds a table, and rewrite it
};

// The operations the table routes.
enum class AutoOp : uint8_t {
  kAllReduce = 0,
  kAllReduce16 = 1,
  kReduceScatter = 2,
  kAllGather = 3,
  kBroadcast = 4
};
inline constexpr int kAutoOps = 5;
std::string_view AutoOpName(AutoOp op);

class AutoCommunicator final : public Communicator {
 public:
  struct Member {
    std::string name;              // e.g. "mpi", "shm"
    Communicator* comm = nullptr;  // not owned unless `owned` holds it
    std::unique_ptr<Communicator> owned;
  };
  // One measured cell: per member, the slowest rank's median time (us).
  struct Cell {
    size_t bytes = 0;
    std::vector<double> time_us;
    int winner = 0;  // index into members
  };

  // Collective over every member: all ranks call it with members of the same
  // names in the same order. The first member must support every operation.
  static Result<std::unique_ptr<AutoCommunicator>> Create(std::vector<Member> members,
                                                          const AutoOptions& options = {});
  ~AutoCommunicator() override;

  int rank() const override { return members_[0].comm->rank(); }
  int size() const override { return members_[0].comm->size(); }
  std::string_view backend() const override { return "auto"; }

  // The member a call of this operation and size would use.
  const std::string& Choice(AutoOp op, size_t bytes, bool registered) const;
  // The measured table, one line per (operation, buffers, size) with each
  // member's time and the winner; for logs and `cohort bench`.
  std::string DescribeTable() const;
  // The table as rows of (op, registered, size, member times, winner).
  const std::array<std::array<std::vector<Cell>, 2>, kAutoOps>& table() const { return table_; }
  const std::vector<Member>& members() const { return members_; }
  // Whether the table came from the calibration cache (not measured), and
  // the cache file it came from or was written to (empty: no cache).
  bool from_cache() const { return from_cache_; }
  const std::string& cache_path() const { return cache_path_; }

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
  Result<std::unique_ptr<Communicator>> SplitGroup(int color, int key) override;
  Result<void*> AllocateRegistered(size_t bytes) override;
  Status FreeRegistered(void* ptr) override;

 private:
  AutoCommunicator() = default;
  Status Calibrate(const AutoOptions& options);
  // The cached table when rank 0 has a valid one, else Calibrate (and rank
  // 0 writes the cache). Collective.
  Status LoadOrCalibrate(const AutoOptions& options);
  Result<double> TimeCell(int member, AutoOp op, size_t bytes, char* a, char* b, int iterations);
  bool IsRegistered(const void* p, size_t bytes) const;
  int Pick(AutoOp op, size_t bytes, bool registered) const;  // member index
  Communicator& Route(AutoOp op, size_t bytes, bool registered);

  std::vector<Member> members_;
  int registrar_ = -1;  // member that allocates registered memory; -1: none (heap)
  std::map<const char*, size_t> registered_;                      // start -> bytes
  std::array<std::array<std::vector<Cell>, 2>, kAutoOps> table_;  // [op][registered]
  bool from_cache_ = false;
  std::string cache_path_;
};

}  // namespace cohort
