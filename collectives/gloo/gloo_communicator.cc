#include "collectives/gloo/gloo_communicator.h"

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/alltoall.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/reduce.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <vector>

namespace cohort {
namespace {

// Cohort's Store seen through Gloo's interface. Gloo expects exceptions.
class StoreAdapter final : public gloo::rendezvous::Store {
 public:
  StoreAdapter(std::shared_ptr<cohort::Store> base, std::string prefix,
               std::chrono::milliseconds timeout)
      : base_(std::move(base)), prefix_(std::move(prefix) + "/"), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    Status s = base_->Set(prefix_ + key, std::string_view(data.data(), data.size()));
    if (!s.ok()) throw gloo::IoException("store set " + key + ": " + s.message());
  }
  std::vector<char> get(const std::string& key) override {
    auto v = base_->Get(prefix_ + key, timeout_);
    if (!v.ok()) throw gloo::IoException("store get " + key + ": " + v.status().message());
    return std::vector<char>(v->begin(), v->end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    std::vector<std::string> full;
    for (const auto& k : keys) full.push_back(prefix_ + k);
    Status s = base_->Wait(full, timeout);
    if (!s.ok()) throw gloo::IoException("store wait: " + s.message());
  }

 private:
  std::shared_ptr<cohort::Store> base_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
};

Status FromException(const std::exception& e, const std::string& what) {
  const std::string msg = e.what();
  if (msg.find("Timed out") != std::string::npos || msg.find("timed out") != std::string::npos ||
      msg.find("Timeout") != std::string::npos) {
    return DeadlineExceeded("gloo " + what + " timed out (a peer is dead or stuck): " + msg);
  }
  return Unavailable("gloo " + what + " failed: " + msg);
}

// Runs a Gloo call, turning its exceptions into a Status. The first failure
// is kept in `failed`: Gloo's pairs may be broken after it, so every later
// call fails at once with FailedPrecondition (rebuild the communicator).
template <typename Fn>
Status Guard(Status& failed, const std::string& what, Fn&& fn) {
  if (!failed.ok()) {
    return FailedPrecondition("gloo " + what + ": the communicator failed earlier (" +
                              failed.message() + "); rebuild it");
  }
  try {
    fn();
    return Status::Ok();
  } catch (const std::exception& e) {
    failed = FromException(e, what);
    return failed;
  }
}

// Gloo writes to its sockets without MSG_NOSIGNAL: a write to a peer that
// died raises SIGPIPE, whose default action kills this process, where the
// contract asks for an error. A process-wide SIG_IGN (only when nobody has
// installed a handler) turns it into EPIPE, which Gloo reports.
void IgnoreSigpipe() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old {};
    if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
      struct sigaction ign {};
      ign.sa_handler = SIG_IGN;
      ::sigemptyset(&ign.sa_mask);
      ::sigaction(SIGPIPE, &ign, nullptr);
    }
  });
}

template <typename T, typename Op>
void Elementwise(void* c, const void* a, const void* b, size_t n, Op op) {
  auto* out = static_cast<T*>(c);
  const auto* x = static_cast<const T*>(a);
  const auto* y = static_cast<const T*>(b);
  for (size_t i = 0; i < n; ++i) out[i] = op(x[i], y[i]);
}

// x + y and x * y; integers wrap like two's complement (computed unsigned,
// as the shm kernels do), so an overflowing sum is defined, not UB.
template <typename T>
T WrapAdd(T x, T y) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(x) + static_cast<U>(y));
  } else {
    return x + y;
  }
}
template <typename T>
T WrapMul(T x, T y) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(x) * static_cast<U>(y));
  } else {
    return x * y;
  }
}

template <typename T>
gloo::AllreduceOptions::Func TypedReduce(ReduceOp op) {
  switch (op) {
    case ReduceOp::kMax:
      return [](void* c, const void* a, const void* b, size_t n) {
        Elementwise<T>(c, a, b, n, [](T x, T y) { return std::max(x, y); });
      };
    case ReduceOp::kMin:
      return [](void* c, const void* a, const void* b, size_t n) {
        Elementwise<T>(c, a, b, n, [](T x, T y) { return std::min(x, y); });
      };
    case ReduceOp::kProd:
      return [](void* c, const void* a, const void* b, size_t n) {
        Elementwise<T>(c, a, b, n, WrapMul<T>);
      };
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      break;
  }
  return [](void* c, const void* a, const void* b, size_t n) {
    Elementwise<T>(c, a, b, n, WrapAdd<T>);
  };
}

// 16-bit floats are combined in fp32 and rounded once per combine.
template <float (*ToF)(uint16_t), uint16_t (*FromF)(float)>
gloo::AllreduceOptions::Func HalfReduce(ReduceOp op) {
  auto f = [op](float x, float y) {
    switch (op) {
      case ReduceOp::kMax:
        return std::max(x, y);
      case ReduceOp::kMin:
        return std::min(x, y);
      case ReduceOp::kProd:
        return x * y;
      default:
        return x + y;
    }
  };
  return [f](void* c, const void* a, const void* b, size_t n) {
    auto* out = static_cast<uint16_t*>(c);
    const auto* x = static_cast<const uint16_t*>(a);
    const auto* y = static_cast<const uint16_t*>(b);
    for (size_t i = 0; i < n; ++i) out[i] = FromF(f(ToF(x[i]), ToF(y[i])));
  };
}
float Bf16ToF(uint16_t v) { return BF16ToFloat({v}); }
uint16_t FToBf16(float f) { return FloatToBF16(f).bits; }
float F16ToF(uint16_t v) { return F16ToFloat({v}); }
uint16_t FToF16(float f) { return FloatToF16(f).bits; }

gloo::AllreduceOptions::Func ReduceFn(DType t, ReduceOp op) {
  switch (t) {
    case DType::kF32:
      return TypedReduce<float>(op);
    case DType::kF64:
      return TypedReduce<double>(op);
    case DType::kI32:
      return TypedReduce<int32_t>(op);
    case DType::kI64:
      return TypedReduce<int64_t>(op);
    case DType::kBF16:
      return HalfReduce<Bf16ToF, FToBf16>(op);
    case DType::kF16:
      return HalfReduce<F16ToF, FToF16>(op);
  }
  return TypedReduce<float>(op);
}

void DivideBy(void* buf, size_t count, DType t, int n) {
  switch (t) {
    case DType::kF32:
      for (size_t i = 0; i < count; ++i) static_cast<float*>(buf)[i] /= static_cast<float>(n);
      break;
    case DType::kF64:
      for (size_t i = 0; i < count; ++i) static_cast<double*>(buf)[i] /= n;
      break;
    case DType::kI32:
      for (size_t i = 0; i < count; ++i) static_cast<int32_t*>(buf)[i] /= n;
      break;
    case DType::kI64:
      for (size_t i = 0; i < count; ++i) static_cast<int64_t*>(buf)[i] /= n;
      break;
    case DType::kBF16: {
      auto* p = static_cast<uint16_t*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] = FToBf16(Bf16ToF(p[i]) / static_cast<float>(n));
      break;
    }
    case DType::kF16: {
      auto* p = static_cast<uint16_t*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] = FToF16(F16ToF(p[i]) / static_cast<float>(n));
      break;
    }
  }
}

}  // namespace

Result<std::unique_ptr<GlooCommunicator>> GlooCommunicator::Create(std::shared_ptr<Store> store,
                                                                   int rank, int size,
                                                                   const GlooOptions& options) {
  if (size < 1 || rank < 0 || rank >= size) {
    return InvalidArgument("gloo: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                           " is out of range");
  }
  IgnoreSigpipe();
  auto c = std::unique_ptr<GlooCommunicator>(new GlooCommunicator());
  c->store_ = store;
  c->options_ = options;
  c->rank_ = rank;
  c->size_ = size;
  c->send_seq_.assign(static_cast<size_t>(size), 0);
  c->recv_seq_.assign(static_cast<size_t>(size), 0);
  COHORT_RETURN_IF_ERROR(Guard(
      c->failed_, "bootstrap of rank " + std::to_string(rank) + " of " + std::to_string(size), [&] {
        gloo::transport::tcp::attr attr;
        attr.hostname = options.hostname;
        c->device_ = gloo::transport::tcp::CreateDevice(attr);
        auto ctx = std::make_shared<gloo::rendezvous::Context>(rank, size);
        ctx->setTimeout(options.timeout);
        StoreAdapter adapter(store, options.prefix, options.timeout);
        ctx->connectFullMesh(adapter, c->device_);
        // connectFullMesh can return on one rank while a peer's pair is still
        // finishing its handshake; a rank that then failed fast and closed its
        // sockets would break the peer's bootstrap. A barrier makes Create
        // return everywhere or nowhere.
        gloo::BarrierOptions barrier(ctx);
        barrier.setTag(0xFFFFFFFFu);  // apart from the ops, which count up from 0
        barrier.setTimeout(options.timeout);
        gloo::barrier(barrier);
        c->context_ = ctx;
      }));
  return c;
}

GlooCommunicator::~GlooCommunicator() { StopAsync(); }

Status GlooCommunicator::AllReduce(const void* send, void* recv, size_t count, DType dtype,
                                   ReduceOp op) {
  if (count == 0) return Status::Ok();
  if (send != recv) std::memcpy(recv, send, count * DTypeSize(dtype));
  COHORT_RETURN_IF_ERROR(Guard(failed_, "all-reduce", [&] {
    gloo::AllreduceOptions opts(context_);
    // Typed as bytes-of-elements through the element type's size.
    switch (DTypeSize(dtype)) {
      case 2:
        opts.setOutput(static_cast<uint16_t*>(recv), count);
        break;
      case 4:
        opts.setOutput(static_cast<uint32_t*>(recv), count);
        break;
      default:
        opts.setOutput(static_cast<uint64_t*>(recv), count);
        break;
    }
    opts.setReduceFunction(ReduceFn(dtype, op));
    opts.setTag(NextTag());
    opts.setTimeout(options_.timeout);
    gloo::allreduce(opts);
  }));
  if (op == ReduceOp::kAvg) DivideBy(recv, count, dtype, size_);
  return Status::Ok();
}

Status GlooCommunicator::Broadcast(void* buf, size_t count, DType dtype, int root) {
  COHORT_RETURN_IF_ERROR(CheckRoot(root, size_, "broadcast"));
  if (count == 0) return Status::Ok();
  return Guard(failed_, "broadcast", [&] {
    gloo::BroadcastOptions opts(context_);
    opts.setOutput(static_cast<char*>(buf), count * DTypeSize(dtype));
    opts.setRoot(root);
    opts.setTag(NextTag());
    opts.setTimeout(options_.timeout);
    gloo::broadcast(opts);
  });
}

Status GlooCommunicator::AllGather(const void* send, void* recv, size_t count, DType dtype) {
  if (count == 0) return Status::Ok();
  const size_t bytes = count * DTypeSize(dtype);
  return Guard(failed_, "all-gather", [&] {
    char* out = static_cast<char*>(recv);
    gloo::AllgatherOptions opts(context_);
    if (send != out + bytes * static_cast<size_t>(rank_)) {
      opts.setInput(const_cast<char*>(static_cast<const char*>(send)), bytes);
    }  // else in place: Gloo reads this rank's block from the output
    opts.setOutput(out, bytes * static_cast<size_t>(size_));
    opts.setTag(NextTag());
    opts.setTimeout(options_.timeout);
    gloo::allgather(opts);
  });
}

Status GlooCommunicator::ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                                       ReduceOp op) {
  if (count == 0) return Status::Ok();
  const size_t bytes = count * DTypeSize(dtype);
  std::vector<char> all(bytes * static_cast<size_t>(size_));
  std::memcpy(all.data(), send, all.size());
  COHORT_RETURN_IF_ERROR(
      AllReduce(all.data(), all.data(), count * static_cast<size_t>(size_), dtype, op));
  std::memcpy(recv, all.data() + bytes * static_cast<size_t>(rank_), bytes);
  return Status::Ok();
}

Status GlooCommunicator::Reduce(const void* send, void* recv, size_t count, DType dtype,
                                ReduceOp op, int root) {
  COHORT_RETURN_IF_ERROR(CheckRoot(root, size_, "reduce"));
  if (count == 0) return Status::Ok();
  const size_t bytes = count * DTypeSize(dtype);
  std::vector<char> out(bytes);
  std::vector<char> in(static_cast<const char*>(send), static_cast<const char*>(send) + bytes);
  COHORT_RETURN_IF_ERROR(Guard(failed_, "reduce", [&] {
    gloo::ReduceOptions opts(context_);
    switch (DTypeSize(dtype)) {  // typed by element size, so segments never split an element
      case 2:
        opts.setInput(reinterpret_cast<uint16_t*>(in.data()), count);
        opts.setOutput(reinterpret_cast<uint16_t*>(out.data()), count);
        break;
      case 4:
        opts.setInput(reinterpret_cast<uint32_t*>(in.data()), count);
        opts.setOutput(reinterpret_cast<uint32_t*>(out.data()), count);
        break;
      default:
        opts.setInput(reinterpret_cast<uint64_t*>(in.data()), count);
        opts.setOutput(reinterpret_cast<uint64_t*>(out.data()), count);
        break;
    }
    opts.setRoot(root);
    opts.setReduceFunction(ReduceFn(dtype, op));
    opts.setTag(NextTag());
    opts.setTimeout(options_.timeout);
    gloo::reduce(opts);
  }));
  if (rank_ == root) {
    std::memcpy(recv, out.data(), bytes);
    if (op == ReduceOp::kAvg) DivideBy(recv, count, dtype, size_);
  }
  return Status::Ok();
}

Status GlooCommunicator::AllToAll(const void* send, void* recv, size_t count, DType dtype) {
  if (count == 0) return Status::Ok();
  const size_t bytes = count * DTypeSize(dtype) * static_cast<size_t>(size_);
  std::vector<char> in(static_cast<const char*>(send), static_cast<const char*>(send) + bytes);
  return Guard(failed_, "all-to-all", [&] {
    gloo::AlltoallOptions opts(context_);
    opts.setInput(in.data(), bytes);
    opts.setOutput(static_cast<char*>(recv), bytes);
    opts.setTag(NextTag());
    opts.setTimeout(options_.timeout);
    gloo::alltoall(opts);
  });
}

Status GlooCommunicator::Send(const void* buf, size_t count, DType dtype, int peer) {
  COHORT_RETURN_IF_ERROR(CheckPeer(peer, rank_, size_, "send"));
  if (count == 0) return Status::Ok();
  const uint64_t slot = send_seq_[static_cast<size_t>(peer)]++;
  return Guard(failed_, "send to rank " + std::to_string(peer), [&] {
    auto ub = context_->createUnboundBuffer(const_cast<void*>(buf), count * DTypeSize(dtype));
    ub->send(peer, slot);
    if (!ub->waitSend(options_.timeout)) throw gloo::IoException("Timed out waiting for send");
  });
}

Status GlooCommunicator::Recv(void* buf, size_t count, DType dtype, int peer) {
  COHORT_RETURN_IF_ERROR(CheckPeer(peer, rank_, size_, "recv"));
  if (count == 0) return Status::Ok();
  const uint64_t slot = recv_seq_[static_cast<size_t>(peer)]++;
  return Guard(failed_, "recv from rank " + std::to_string(peer), [&] {
    auto ub = context_->createUnboundBuffer(buf, count * DTypeSize(dtype));
    ub->recv(peer, slot);
    if (!ub->waitRecv(options_.timeout)) throw gloo::IoException("Timed out waiting for recv");
  });
}

Status GlooCommunicator::Barrier() {
  return Guard(failed_, "barrier", [&] {
    gloo::BarrierOptions opts(context_);
    opts.setTag(NextTag());
    opts.setTimeout(options_.timeout);
    gloo::barrier(opts);
  });
}

Result<std::unique_ptr<Communicator>> GlooCommunicator::SplitGroup(int color, int key) {
  // Learn every rank's (color, key), then bootstrap a mesh per color.
  const int64_t mine[2] = {color, key};
  std::vector<int64_t> all(static_cast<size_t>(2 * size_));
  COHORT_RETURN_IF_ERROR(AllGather(mine, all.data(), 2, DType::kI64));
  std::vector<std::pair<int64_t, int>> members;  // (key, old rank) of my color
  for (int r = 0; r < size_; ++r) {
    if (all[static_cast<size_t>(2 * r)] == color)
      members.emplace_back(all[static_cast<size_t>(2 * r + 1)], r);
  }
  std::sort(members.begin(), members.end());
  int new_rank = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == rank_) new_rank = static_cast<int>(i);
  }
  GlooOptions o = options_;
  o.prefix = options_.prefix + "/split-" + std::to_string(splits_++) + "-" + std::to_string(color);
  COHORT_ASSIGN_OR_RETURN(auto sub, Create(store_, new_rank, static_cast<int>(members.size()), o));
  return std::unique_ptr<Communicator>(std::move(sub));
}

}  // namespace cohort
