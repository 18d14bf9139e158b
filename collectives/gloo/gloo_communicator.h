#pragma once
// The Gloo backend: CPU collectives over Gloo's TCP transport.
//
// Bootstrap goes through a rendezvous Store (collectives/store.h): every rank
// publishes its address under `<prefix>/...` and connects a full mesh. A new
// prefix per membership epoch lets an elastic job rebuild the communicator
// for new members without restarting the process.
//
// Only Gloo's newer collective API (gloo::allreduce, gloo::broadcast, ...) is
// used on a context: mixing it with the older algorithm classes on one
// context made operations of 32 KiB and more take 30-100 ms here (MEASURED.md).
// Reduce-scatter is an all-reduce plus a copy of the own block (Gloo's new API
// has none), so it moves twice the bytes of a true reduce-scatter.
//
// Errors: Gloo throws; every call catches at this boundary and returns
// DeadlineExceeded (a timeout: a peer is dead or stuck) or Unavailable (a
// connection failed). After an error the communicator must be rebuilt.
// Not thread-safe: one thread at a time.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/store.h"

namespace gloo {
class Context;
namespace transport {
class Device;
}
}  // namespace gloo

namespace cohort {

struct GlooOptions {
  std::string prefix = "gloo";  // Store key prefix, e.g. "epoch-7"
  std::string hostname =
      "127.0.0.1";  // address this rank listens on (use the host's address across hosts)
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};  // bootstrap and every operation
};

class GlooCommunicator final : public Communicator {
 public:
  static Result<std::unique_ptr<GlooCommunicator>> Create(std::shared_ptr<Store> store, int rank,
                                                          int size,
                                                          const GlooOptions& options = {});
  ~GlooCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string_view backend() const override { return "gloo"; }

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
  // A new full mesh among the ranks of each color, bootstrapped through the
  // same Store under "<prefix>/split-<n>-<color>" (collective over this one).
  Result<std::unique_ptr<Communicator>> SplitGroup(int color, int key) override;

 private:
  GlooCommunicator() = default;
  uint32_t NextTag() { return next_tag_++; }

  std::shared_ptr<Store> store_;
  GlooOptions options_;
  std::shared_ptr<gloo::transport::Device> device_;
  std::shared_ptr<gloo::Context> context_;
  int rank_ = 0, size_ = 1;
  uint32_t next_tag_ = 1;
  int splits_ = 0;
  std::vector<uint64_t> send_seq_, recv_seq_;  // per peer, for point-to-point slots
  Status failed_;  // the first failure; non-OK makes every later call fail
};

}  // namespace cohort
