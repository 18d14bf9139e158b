#include "collectives/bench/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

namespace cohort::bench {
namespace {

using Clock = std::chrono::steady_clock;

// What one collective contributes to the harness.
struct Spec {
  Collective collective;
  bool has_redop;
  bool has_root;
  // nccl-tests' bus-bandwidth factor for n ranks.
  double (*bus_factor)(int n);
  // Elements per rank's block for a message of `bytes` (nccl-tests' count).
  size_t (*param_count)(size_t bytes, size_t elem, int n);
  // Elements in the send and receive buffers for `count` per block.
  size_t (*send_elems)(size_t count, int n);
  size_t (*recv_elems)(size_t count, int n);
};

double FactorAllReduce(int n) { return 2.0 * (n - 1) / n; }
double FactorSpread(int n) { return static_cast<double>(n - 1) / n; }
double FactorOne(int) { return 1.0; }
size_t CountWhole(size_t bytes, size_t elem, int) { return bytes / elem; }
size_t CountPerRank(size_t bytes, size_t elem, int n) {
  return bytes / elem / static_cast<size_t>(n);
}
size_t Times1(size_t count, int) { return count; }
size_t TimesN(size_t count, int n) { return count * static_cast<size_t>(n); }

const Spec& SpecOf(Collective c) {
  static const Spec kSpecs[] = {
      {Collective::kAllReduce, true, false, FactorAllReduce, CountWhole, Times1, Times1},
      {Collective::kReduceScatter, true, false, FactorSpread, CountPerRank, TimesN, TimesN},
      {Collective::kAllGather, false, false, FactorSpread, CountPerRank, Times1, TimesN},
      {Collective::kBroadcast, false, true, FactorOne, CountWhole, Times1, Times1},
      {Collective::kReduce, true, true, FactorOne, CountWhole, Times1, Times1},
      {Collective::kAllToAll, false, false, FactorSpread, CountPerRank, TimesN, TimesN},
  };
  return kSpecs[static_cast<int>(c)];
}

// The seeded input: rank r's element i. Small positive integers, so every
// reduction over a few ranks is exact (or within rounding) in every dtype.
constexpr uint64_t kSeed = 0x5eed;
double Input(int r, size_t i) {
  uint64_t x = (static_cast<uint64_t>(i) + 1) * 0x9e3779b97f4a7c15ull ^
               (static_cast<uint64_t>(r) + kSeed) * 0xbf58476d1ce4e5b9ull;
  x ^= x >> 31;
  return static_cast<double>(1 + x % 3);
}

double Reduced(ReduceOp op, DType t, int n, size_t i) {
  double acc = Input(0, i);
  for (int r = 1; r < n; ++r) {
    const double v = Input(r, i);
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAvg:
        acc += v;
        break;
      case ReduceOp::kMax:
        acc = std::max(acc, v);
        break;
      case ReduceOp::kMin:
        acc = std::min(acc, v);
        break;
      case ReduceOp::kProd:
        acc *= v;
        break;
    }
  }
  if (op == ReduceOp::kAvg) {
    return IsFloating(t) ? acc / n : static_cast<double>(static_cast<int64_t>(acc) / n);
  }
  return acc;
}

bool Close(DType t, double got, double expect) {
  double tol = 0;
  switch (t) {
    case DType::kF16:
      tol = 2e-3;
      break;
    case DType::kBF16:
      tol = 1.6e-2;
      break;
    case DType::kF32:
      tol = 1e-6;
      break;
    case DType::kF64:
      tol = 1e-12;
      break;
    case DType::kI32:
    case DType::kI64:
      tol = 0;
      break;
  }
  return std::abs(got - expect) <= tol * std::max(1.0, std::abs(expect));
}

// The buffers of one run: where the input goes and where the output lands.
struct Layout {
  char* send;
  char* recv;
};

Layout LayoutFor(Collective c, BenchBuffers& b, bool in_place, size_t count, size_t elem,
                 int rank) {
  if (!in_place) return {b.send(), b.recv()};
  if (c == Collective::kAllGather) {
    return {b.recv() + static_cast<size_t>(rank) * count * elem, b.recv()};
  }
  return {b.recv(), b.recv()};
}

Status RunOnce(Communicator& comm, Collective c, const Layout& l, size_t count, DType t,
               ReduceOp op, int root) {
  switch (c) {
    case Collective::kAllReduce:
      return comm.AllReduce(l.send, l.recv, count, t, op);
    case Collective::kReduceScatter:
      return comm.ReduceScatter(l.send, l.recv, count, t, op);
    case Collective::kAllGather:
      return comm.AllGather(l.send, l.recv, count, t);
    case Collective::kBroadcast:
      return comm.Broadcast(l.recv, count, t, root);
    case Collective::kReduce:
      return comm.Reduce(l.send, l.recv, count, t, op, root);
    case Collective::kAllToAll:
      return comm.AllToAll(l.send, l.recv, count, t);
  }
  return Internal("unknown collective");
}

// Seeds the input of rank `r`.
void Fill(Collective c, const Layout& l, size_t count, DType t, int r, int n, int root) {
  const Spec& spec = SpecOf(c);
  const size_t elems = spec.send_elems(count, n);
  if (c == Collective::kBroadcast) {
    for (size_t i = 0; i < count; ++i) StoreElement(t, l.recv, i, r == root ? Input(root, i) : 0.0);
    return;
  }
  for (size_t i = 0; i < elems; ++i) StoreElement(t, l.send, i, Input(r, i));
}

// Counts this rank's wrong output elements.
int64_t CountWrong(Collective c, const Layout& l, size_t count, DType t, ReduceOp op, int r, int n,
                   int root) {
  int64_t wrong = 0;
  auto check = [&](size_t i, double expect) {
    if (!Close(t, LoadElement(t, l.recv, i), expect)) ++wrong;
  };
  const size_t nn = static_cast<size_t>(n), rr = static_cast<size_t>(r);
  switch (c) {
    case Collective::kAllReduce:
      for (size_t i = 0; i < count; ++i) check(i, Reduced(op, t, n, i));
      break;
    case Collective::kReduceScatter:
      for (size_t i = 0; i < count; ++i) check(i, Reduced(op, t, n, rr * count + i));
      break;
    case Collective::kAllGather:
      for (size_t i = 0; i < nn * count; ++i)
        check(i, Input(static_cast<int>(i / count), i % count));
      break;
    case Collective::kBroadcast:
      for (size_t i = 0; i < count; ++i) check(i, Input(root, i));
      break;
    case Collective::kReduce:
      if (r == root) {
        for (size_t i = 0; i < count; ++i) check(i, Reduced(op, t, n, i));
      }
      break;
    case Collective::kAllToAll:
      for (size_t i = 0; i < nn * count; ++i) {
        check(i, Input(static_cast<int>(i / count), rr * count + i % count));
      }
      break;
  }
  return wrong;
}

}  // namespace

std::string_view CollectiveName(Collective c) {
  switch (c) {
    case Collective::kAllReduce:
      return "allreduce";
    case Collective::kReduceScatter:
      return "reducescatter";
    case Collective::kAllGather:
      return "allgather";
    case Collective::kBroadcast:
      return "broadcast";
    case Collective::kReduce:
      return "reduce";
    case Collective::kAllToAll:
      return "alltoall";
  }
  return "?";
}

Result<Collective> ParseCollective(std::string_view name) {
  for (Collective c : {Collective::kAllReduce, Collective::kReduceScatter, Collective::kAllGather,
                       Collective::kBroadcast, Collective::kReduce, Collective::kAllToAll}) {
    if (name == CollectiveName(c)) return c;
  }
  return InvalidArgument("unknown collective '" + std::string(name) +
                         "' (expected allreduce, reducescatter, allgather, broadcast, reduce or "
                         "alltoall)");
}

std::vector<size_t> SweepSizes(size_t min_bytes, size_t max_bytes, double factor) {
  std::vector<size_t> sizes;
  if (min_bytes == 0 || max_bytes < min_bytes || !(factor > 1.0)) {
    if (min_bytes <= max_bytes) sizes.push_back(min_bytes);
    return sizes;
  }
  constexpr size_t kMaxSteps = 4096;
  for (double s = static_cast<double>(min_bytes);
       s <= static_cast<double>(max_bytes) && sizes.size() < kMaxSteps; s *= factor) {
    sizes.push_back(static_cast<size_t>(s));
  }
  return sizes;
}

Result<std::unique_ptr<BenchBuffers>> BenchBuffers::Allocate(Communicator& comm, size_t max_bytes,
                                                             Collective c, bool registered) {
  if (max_bytes > kMaxBenchBytes) {
    return InvalidArgument("bench: " + std::to_string(max_bytes) +
                           " bytes per buffer is above the limit of " +
                           std::to_string(kMaxBenchBytes));
  }
  // Room for the largest layout: n blocks for the gathered / scattered sides.
  const Spec& spec = SpecOf(c);
  const int n = comm.size();
  const size_t count = std::max<size_t>(1, spec.param_count(max_bytes, 1, n));
  const size_t send_bytes = std::max<size_t>(64, spec.send_elems(count, n)) + 64;
  const size_t recv_bytes =
      std::max<size_t>(64, std::max(spec.recv_elems(count, n), spec.send_elems(count, n))) + 64;
  std::unique_ptr<BenchBuffers> b(new BenchBuffers(comm));
  if (registered) {
    COHORT_ASSIGN_OR_RETURN(void* s, comm.AllocateRegistered(send_bytes));
    b->send_ = static_cast<char*>(s);
    b->registered_ = true;  // from here the destructor frees what exists
    Result<void*> r = comm.AllocateRegistered(recv_bytes);
    if (!r.ok()) return r.status();
    b->recv_ = static_cast<char*>(*r);
  } else {
    b->send_heap_.assign(send_bytes, 0);
    b->recv_heap_.assign(recv_bytes, 0);
    b->send_ = b->send_heap_.data();
    b->recv_ = b->recv_heap_.data();
  }
  return b;
}

BenchBuffers::~BenchBuffers() {
  if (!registered_) return;
  if (recv_ != nullptr) (void)comm_.FreeRegistered(recv_);
  if (send_ != nullptr) (void)comm_.FreeRegistered(send_);
}

Result<std::vector<Row>> MeasureSize(Communicator& comm, Communicator& control,
                                     BenchBuffers& buffers, const BenchOptions& options,
                                     size_t size_bytes, DType dtype, ReduceOp op) {
  if (options.iters < 1 || options.iters > kMaxBenchIters || options.warmup < 0 ||
      options.warmup > kMaxBenchIters) {
    return InvalidArgument("bench: iterations must be in [1, " + std::to_string(kMaxBenchIters) +
                           "] and warm-up in [0, " + std::to_string(kMaxBenchIters) + "]");
  }
  const Spec& spec = SpecOf(options.collective);
  const int n = comm.size(), r = comm.rank();
  const int root = spec.has_root ? options.root : -1;
  if (spec.has_root) COHORT_RETURN_IF_ERROR(CheckRoot(root, n, "bench"));
  const size_t elem = DTypeSize(dtype);
  const size_t count = spec.param_count(size_bytes, elem, n);
  const size_t bytes = spec.send_elems(count, n) == count && spec.recv_elems(count, n) == count
                           ? count * elem
                           : count * elem * static_cast<size_t>(n);
  std::vector<Row> rows;
  for (bool in_place : {false, true}) {
    const Layout l = LayoutFor(options.collective, buffers, in_place, count, elem, r);
    Status s;
    for (int i = 0; i < options.warmup && s.ok(); ++i) {
      s = RunOnce(comm, options.collective, l, count, dtype, op, root);
    }
    if (s.ok()) s = comm.Barrier();
    const auto start = Clock::now();
    for (int i = 0; i < options.iters && s.ok(); ++i) {
      s = RunOnce(comm, options.collective, l, count, dtype, op, root);
    }
    const double took_us =
        std::chrono::duration<double, std::micro>(Clock::now() - start).count() / options.iters;
    int64_t wrong = 0;
    if (s.ok() && options.check) {
      Fill(options.collective, l, count, dtype, r, n, root);
      s = comm.Barrier();
      if (s.ok()) s = RunOnce(comm, options.collective, l, count, dtype, op, root);
      if (s.ok()) wrong = CountWrong(options.collective, l, count, dtype, op, r, n, root);
    }
    COHORT_RETURN_IF_ERROR(AgreeOnStatus(control, s));
    double slowest = 0;
    int64_t wrong_all = 0;
    COHORT_RETURN_IF_ERROR(control.AllReduce(&took_us, &slowest, 1, DType::kF64, ReduceOp::kMax));
    COHORT_RETURN_IF_ERROR(control.AllReduce(&wrong, &wrong_all, 1, DType::kI64, ReduceOp::kSum));
    Row row;
    row.backend = std::string(comm.backend());
    row.collective = options.collective;
    row.size_bytes = bytes;
    row.count = count;
    row.dtype = dtype;
    row.has_redop = spec.has_redop;
    row.redop = op;
    row.root = root;
    row.in_place = in_place;
    row.time_us = slowest;
    row.algbw = slowest > 0 ? static_cast<double>(bytes) / (slowest * 1e3) : 0;
    row.busbw = row.algbw * spec.bus_factor(n);
    row.wrong = options.check ? wrong_all : -1;
    rows.push_back(row);
  }
  return rows;
}

}  // namespace cohort::bench
