// The Communicator contract, one suite over every backend (CONTRIBUTING.md, "Tests"):
// - without mpirun: shm, gloo and auto (over gloo and shm) with 1-4 ranks as
//   threads of this process over an in-memory store (small staging chunks,
//   so multi-chunk paths run cheaply), the Store tests, auto's table, and
//   silent, missing and killed peers (child processes) for shm and gloo;
// - under mpirun: mpi, and shm, gloo and auto built by BackendSet, one rank
//   per process, and MpiCommunicator's own Split. A failure on any rank
//   fails the run.
//
// Every element of every result is checked against a serial reduction of the
// seeded inputs, for every dtype and op, sizes 0, 1, odd and multi-chunk,
// in place and out of place, on plain and registered buffers.

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collectives/auto/auto_communicator.h"
#include "collectives/backends.h"
#include "collectives/gloo/gloo_communicator.h"
#include "collectives/mpi/mpi_communicator.h"
#include "collectives/shm/shm_communicator.h"
#include "collectives/store.h"
#include "tests/collectives/mpi_gtest.h"

extern char** environ;

namespace cohort {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

bool UnderMpirun() { return MpiRuntime::LaunchedByMpirun(); }

// ---- Worlds: a set of ranks to run a test body on ------------------------------

class World {
 public:
  virtual ~World() = default;
  virtual int size() const = 0;
  // Runs fn on every rank of the world (that this process holds) and returns
  // when all are done.
  virtual void Run(const std::function<void(Communicator&)>& fn) = 0;
  // Element count that spans several staging chunks for this element size.
  virtual size_t MultiChunkCount(size_t elem) const = 0;
};

constexpr size_t kThreadChunkBytes = 16 << 10;

ShmOptions ThreadShmOptions() {
  ShmOptions o;
  o.chunk_bytes = kThreadChunkBytes;
  o.small_bytes = 4 << 10;
  o.op_timeout = std::chrono::seconds(60);
  o.bootstrap_timeout = std::chrono::seconds(60);
  return o;
}

// Makes rank r of n over a store shared by the ranks.
using MakeComm =
    std::function<Result<std::unique_ptr<Communicator>>(std::shared_ptr<Store>, int r, int n)>;

MakeComm ShmMaker(ShmOptions options) {
  return [options](std::shared_ptr<Store> store, int r,
                   int n) -> Result<std::unique_ptr<Communicator>> {
    COHORT_ASSIGN_OR_RETURN(auto c, ShmCommunicator::Create(std::move(store), r, n, options));
    return std::unique_ptr<Communicator>(std::move(c));
  };
}

MakeComm GlooMaker(milliseconds timeout = std::chrono::seconds(60), std::string prefix = "gloo") {
  return [timeout, prefix](std::shared_ptr<Store> store, int r,
                           int n) -> Result<std::unique_ptr<Communicator>> {
    GlooOptions o;
    o.timeout = timeout;
    o.prefix = prefix;
    COHORT_ASSIGN_OR_RETURN(auto c, GlooCommunicator::Create(std::move(store), r, n, o));
    return std::unique_ptr<Communicator>(std::move(c));
  };
}

// Small calibration: the contract is about routing correctly, not speed.
AutoOptions TestAutoOptions() {
  AutoOptions o;
  o.max_calibration_bytes = 64 << 10;
  o.max_allreduce_calibration_bytes = 64 << 10;
  o.iterations_small = 1;
  o.iterations_large = 1;
  return o;
}

// auto over gloo (first: it does every op) and shm, as threads.
MakeComm AutoMaker() {
  return [](std::shared_ptr<Store> store, int r, int n) -> Result<std::unique_ptr<Communicator>> {
    COHORT_ASSIGN_OR_RETURN(auto gloo,
                            GlooMaker(std::chrono::seconds(60), "auto-gloo")(store, r, n));
    COHORT_ASSIGN_OR_RETURN(auto shm, ShmMaker(ThreadShmOptions())(store, r, n));
    std::vector<AutoCommunicator::Member> members;
    members.push_back({"gloo", gloo.get(), std::move(gloo)});
    members.push_back({"shm", shm.get(), std::move(shm)});
    COHORT_ASSIGN_OR_RETURN(auto c,
                            AutoCommunicator::Create(std::move(members), TestAutoOptions()));
    return std::unique_ptr<Communicator>(std::move(c));
  };
}

// Ranks as threads of this process over an in-memory store.
class ThreadWorld final : public World {
 public:
  static std::unique_ptr<ThreadWorld> Make(int n, const MakeComm& make) {
    auto w = std::make_unique<ThreadWorld>();
    auto store = std::make_shared<InMemoryStore>();
    w->comms_.resize(static_cast<size_t>(n));
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int r = 0; r < n; ++r) {
      threads.emplace_back([&, r] {
        auto c = make(store, r, n);
        if (!c.ok()) {
          ADD_FAILURE() << c.status().ToString();
          ++failures;
          return;
        }
        w->comms_[static_cast<size_t>(r)] = std::move(c).value();
      });
    }
    for (auto& t : threads) t.join();
    if (failures != 0) return nullptr;
    return w;
  }
  int size() const override { return static_cast<int>(comms_.size()); }
  void Run(const std::function<void(Communicator&)>& fn) override {
    std::vector<std::thread> threads;
    for (auto& c : comms_) threads.emplace_back([&fn, &c] { fn(*c); });
    for (auto& t : threads) t.join();
  }
  size_t MultiChunkCount(size_t elem) const override { return 3 * kThreadChunkBytes / elem + 5; }

 private:
  std::vector<std::unique_ptr<Communicator>> comms_;
};

// Under mpirun shm runs with small staging chunks too, so that multi-chunk
// messages stay cheap to check on every dtype and op.
constexpr size_t kProcessChunkBytes = 64 << 10;

// This process's rank of a communicator over all mpirun processes.
class ProcessWorld final : public World {
 public:
  explicit ProcessWorld(Communicator* comm) : comm_(comm) {}  // not owned
  int size() const override { return comm_->size(); }
  void Run(const std::function<void(Communicator&)>& fn) override { fn(*comm_); }
  size_t MultiChunkCount(size_t elem) const override { return 3 * kProcessChunkBytes / elem + 5; }

 private:
  Communicator* comm_;
};

std::map<std::string, std::unique_ptr<World>>& Worlds() {
  static auto* worlds = new std::map<std::string, std::unique_ptr<World>>();
  return *worlds;
}

World* GetWorld(const std::string& name) {
  auto& worlds = Worlds();
  auto it = worlds.find(name);
  if (it != worlds.end()) return it->second.get();
  // "<backend>_threads_N": built on first use.
  const size_t cut = name.find("_threads_");
  if (cut == std::string::npos) return nullptr;
  const std::string backend = name.substr(0, cut);
  const int n = std::stoi(name.substr(cut + 9));
  MakeComm make = backend == "shm"    ? ShmMaker(ThreadShmOptions())
                  : backend == "gloo" ? GlooMaker()
                                      : AutoMaker();
  auto w = ThreadWorld::Make(n, make);
  World* raw = w.get();
  worlds[name] = std::move(w);
  return raw;
}

std::vector<std::string> WorldNames() {
  if (UnderMpirun()) return {"mpi", "shm", "gloo", "auto"};
  std::vector<std::string> names;
  for (const char* b : {"shm", "gloo", "auto"}) {
    for (int n = 1; n <= 4; ++n) names.push_back(std::string(b) + "_threads_" + std::to_string(n));
  }
  return names;
}

// ---- Seeded values and their reductions -----------------------------------------------

// The value rank r contributes at element i: small integers, exact in every dtype.
double Value(int r, size_t i) {
  return static_cast<double>((r + 1) * 3 + static_cast<int>(i % 7)) - 5.0;
}

double Combine(ReduceOp op, double a, double b) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return a + b;
    case ReduceOp::kMax:
      return std::max(a, b);
    case ReduceOp::kMin:
      return std::min(a, b);
    case ReduceOp::kProd:
      return a * b;
  }
  return a;
}

double Expected(ReduceOp op, DType t, int world, size_t i) {
  double acc = Value(0, i);
  for (int r = 1; r < world; ++r) acc = Combine(op, acc, Value(r, i));
  if (op == ReduceOp::kAvg) {
    if (IsFloating(t)) return acc / world;
    return static_cast<double>(static_cast<int64_t>(acc) / world);  // truncating
  }
  return acc;
}

double Tolerance(DType t, double expect) {
  if (t == DType::kF16) return 2e-3 * std::max(1.0, std::abs(expect));
  if (t == DType::kBF16) return 1.6e-2 * std::max(1.0, std::abs(expect));
  if (t == DType::kF32) return 1e-6 * std::max(1.0, std::abs(expect));
  return 1e-12 * std::max(1.0, std::abs(expect));
}

// Counts elements of buf[0, n) that differ from expect(i).
size_t CountWrong(DType t, const void* buf, size_t n, const std::function<double(size_t)>& expect) {
  size_t wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e = expect(i);
    if (!(std::abs(LoadElement(t, buf, i) - e) <= Tolerance(t, e))) ++wrong;
  }
  return wrong;
}

// A byte buffer, either on the heap or registered with the communicator.
class Buffer {
 public:
  Buffer(Communicator& comm, size_t bytes, bool registered) : comm_(comm) {
    if (registered) {
      auto p = comm.AllocateRegistered(std::max<size_t>(bytes, 1));
      EXPECT_TRUE(p.ok()) << p.status().ToString();
      if (p.ok()) ptr_ = static_cast<char*>(*p);
      registered_ = p.ok();
    } else {
      heap_.resize(bytes + 1);
      ptr_ = heap_.data();
    }
  }
  ~Buffer() {
    if (registered_) {
      EXPECT_TRUE(comm_.FreeRegistered(ptr_).ok());
    }
  }
  char* data() { return ptr_; }

 private:
  Communicator& comm_;
  std::vector<char> heap_;
  char* ptr_ = nullptr;
  bool registered_ = false;
};

std::string Describe(Communicator& c, DType t, size_t count, bool in_place, bool registered) {
  return std::string(c.backend()) + " rank " + std::to_string(c.rank()) + "/" +
         std::to_string(c.size()) + " " + std::string(DTypeName(t)) + " count " +
         std::to_string(count) + (in_place ? " in-place" : " out-of-place") +
         (registered ? " registered" : "");
}

// ---- Reductions: (world, dtype, op) ---------------------------------------------------

using ReduceParam = std::tuple<std::string, DType, ReduceOp>;
class ReduceContract : public ::testing::TestWithParam<ReduceParam> {
 protected:
  void SetUp() override {
    world_ = GetWorld(std::get<0>(GetParam()));
    ASSERT_NE(world_, nullptr);
  }
  std::vector<size_t> Sizes(size_t elem) const {
    return {0, 1, 7, 1027, world_->MultiChunkCount(elem)};
  }
  World* world_ = nullptr;
};

TEST_P(ReduceContract, AllReduceEveryElement) {
  const auto [name, t, op] = GetParam();
  const size_t elem = DTypeSize(t);
  for (size_t count : Sizes(elem)) {
    for (bool registered : {false, true}) {
      for (bool in_place : {false, true}) {
        world_->Run([&](Communicator& c) {
          Buffer send(c, count * elem, registered), recv(c, count * elem, registered);
          for (size_t i = 0; i < count; ++i) StoreElement(t, send.data(), i, Value(c.rank(), i));
          char* out = in_place ? send.data() : recv.data();
          Status s = c.AllReduce(send.data(), out, count, t, op);
          ASSERT_TRUE(s.ok()) << s.ToString();
          EXPECT_EQ(
              CountWrong(t, out, count, [&](size_t i) { return Expected(op, t, c.size(), i); }), 0u)
              << Describe(c, t, count, in_place, registered) << " " << ReduceOpName(op);
        });
      }
    }
  }
}

TEST_P(ReduceContract, ReduceToEveryRoot) {
  const auto [name, t, op] = GetParam();
  const size_t elem = DTypeSize(t);
  for (size_t count : {size_t{0}, size_t{7}, world_->MultiChunkCount(elem)}) {
    for (int root = 0; root < world_->size(); ++root) {
      for (bool in_place : {false, true}) {
        world_->Run([&](Communicator& c) {
          std::vector<char> send(count * elem + 1), recv(count * elem + 1);
          for (size_t i = 0; i < count; ++i) StoreElement(t, send.data(), i, Value(c.rank(), i));
          char* out = in_place ? send.data() : recv.data();
          Status s = c.Reduce(send.data(), c.rank() == root ? out : nullptr, count, t, op, root);
          ASSERT_TRUE(s.ok()) << s.ToString();
          if (c.rank() != root) return;
          EXPECT_EQ(
              CountWrong(t, out, count, [&](size_t i) { return Expected(op, t, c.size(), i); }), 0u)
              << Describe(c, t, count, in_place, false) << " root " << root;
        });
      }
    }
  }
}

TEST_P(ReduceContract, ReduceScatterEveryElement) {
  const auto [name, t, op] = GetParam();
  const size_t elem = DTypeSize(t);
  for (size_t count : Sizes(elem)) {
    const size_t block = count / static_cast<size_t>(world_->size()) + (count % 2);
    for (bool registered : {false, true}) {
      for (bool in_place : {false, true}) {
        world_->Run([&](Communicator& c) {
          const size_t total = block * static_cast<size_t>(c.size());
          Buffer send(c, total * elem, registered), recv(c, block * elem, false);
          for (size_t i = 0; i < total; ++i) StoreElement(t, send.data(), i, Value(c.rank(), i));
          char* out = in_place ? send.data() : recv.data();
          Status s = c.ReduceScatter(send.data(), out, block, t, op);
          ASSERT_TRUE(s.ok()) << s.ToString();
          const size_t base = static_cast<size_t>(c.rank()) * block;
          EXPECT_EQ(CountWrong(t, out, block,
                               [&](size_t i) { return Expected(op, t, c.size(), base + i); }),
                    0u)
              << Describe(c, t, block, in_place, registered);
        });
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Contract, ReduceContract,
                         ::testing::Combine(::testing::ValuesIn(WorldNames()),
                                            ::testing::ValuesIn(kAllDTypes),
                                            ::testing::ValuesIn(kAllReduceOps)));

// ---- Data movement: (world, dtype) ----------------------------------------------------------

using MoveParam = std::tuple<std::string, DType>;
class MoveContract : public ::testing::TestWithParam<MoveParam> {
 protected:
  void SetUp() override {
    world_ = GetWorld(std::get<0>(GetParam()));
    ASSERT_NE(world_, nullptr);
  }
  std::vector<size_t> Sizes(size_t elem) const {
    return {0, 1, 7, 1027, world_->MultiChunkCount(elem)};
  }
  World* world_ = nullptr;
};

TEST_P(MoveContract, AllGatherInRankOrder) {
  const auto [name, t] = GetParam();
  const size_t elem = DTypeSize(t);
  for (size_t count : Sizes(elem)) {
    const size_t block = count / static_cast<size_t>(world_->size()) + 1;
    for (bool registered : {false, true}) {
      for (bool in_place : {false, true}) {
        world_->Run([&](Communicator& c) {
          const size_t n = static_cast<size_t>(c.size()), r = static_cast<size_t>(c.rank());
          Buffer send(c, block * elem, registered), recv(c, n * block * elem, registered);
          char* src = in_place ? recv.data() + r * block * elem : send.data();
          for (size_t i = 0; i < block; ++i) StoreElement(t, src, i, Value(c.rank(), i));
          Status s = c.AllGather(src, recv.data(), block, t);
          ASSERT_TRUE(s.ok()) << s.ToString();
          EXPECT_EQ(
              CountWrong(t, recv.data(), n * block,
                         [&](size_t i) { return Value(static_cast<int>(i / block), i % block); }),
              0u)
              << Describe(c, t, block, in_place, registered);
        });
      }
    }
  }
}

TEST_P(MoveContract, BroadcastFromEveryRoot) {
  const auto [name, t] = GetParam();
  const size_t elem = DTypeSize(t);
  for (size_t count : Sizes(elem)) {
    for (bool registered : {false, true}) {
      for (int root = 0; root < world_->size(); ++root) {
        world_->Run([&](Communicator& c) {
          Buffer buf(c, count * elem, registered);
          for (size_t i = 0; i < count; ++i) {
            StoreElement(t, buf.data(), i, c.rank() == root ? Value(root, i) : -1.0);
          }
          Status s = c.Broadcast(buf.data(), count, t, root);
          ASSERT_TRUE(s.ok()) << s.ToString();
          EXPECT_EQ(CountWrong(t, buf.data(), count, [&](size_t i) { return Value(root, i); }), 0u)
              << Describe(c, t, count, true, registered) << " root " << root;
        });
      }
    }
  }
}

TEST_P(MoveContract, AllToAllTransposesBlocks) {
  const auto [name, t] = GetParam();
  const size_t elem = DTypeSize(t);
  for (size_t count : Sizes(elem)) {
    const size_t block = count / static_cast<size_t>(world_->size()) + 1;
    for (bool in_place : {false, true}) {
      world_->Run([&](Communicator& c) {
        const size_t n = static_cast<size_t>(c.size()), r = static_cast<size_t>(c.rank());
        std::vector<char> send(n * block * elem), recv(n * block * elem);
        for (size_t i = 0; i < n * block; ++i) StoreElement(t, send.data(), i, Value(c.rank(), i));
        char* out = in_place ? send.data() : recv.data();
        Status s = c.AllToAll(send.data(), out, block, t);
        ASSERT_TRUE(s.ok()) << s.ToString();
        // Block q came from rank q's block r.
        EXPECT_EQ(CountWrong(t, out, n * block,
                             [&](size_t i) {
                               return Value(static_cast<int>(i / block), r * block + i % block);
                             }),
                  0u)
            << Describe(c, t, block, in_place, false);
      });
    }
  }
}

TEST_P(MoveContract, SendRecvAroundARing) {
  const auto [name, t] = GetParam();
  if (world_->size() < 2) GTEST_SKIP() << "needs two ranks";
  const size_t elem = DTypeSize(t);
  for (size_t count : {size_t{0}, size_t{1}, size_t{1027}, 3 * kShmP2pSlotBytes / elem + 3}) {
    world_->Run([&](Communicator& c) {
      const int n = c.size(), r = c.rank();
      const int next = (r + 1) % n, prev = (r + n - 1) % n;
      std::vector<char> out(count * elem + 1), in(count * elem + 1);
      for (size_t i = 0; i < count; ++i) StoreElement(t, out.data(), i, Value(r, i));
      // Even ranks send first, odd ranks receive first: no cycle of blocked sends.
      Status s1, s2;
      if (r % 2 == 0) {
        s1 = c.Send(out.data(), count, t, next);
        s2 = c.Recv(in.data(), count, t, prev);
      } else {
        s2 = c.Recv(in.data(), count, t, prev);
        s1 = c.Send(out.data(), count, t, next);
      }
      ASSERT_TRUE(s1.ok()) << s1.ToString();
      ASSERT_TRUE(s2.ok()) << s2.ToString();
      EXPECT_EQ(CountWrong(t, in.data(), count, [&](size_t i) { return Value(prev, i); }), 0u)
          << Describe(c, t, count, false, false);
    });
  }
}

INSTANTIATE_TEST_SUITE_P(Contract, MoveContract,
                         ::testing::Combine(::testing::ValuesIn(WorldNames()),
                                            ::testing::ValuesIn(kAllDTypes)));

// ---- Per world: barrier, split, async, argument errors --------------------------------------

class WorldContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    world_ = GetWorld(GetParam());
    ASSERT_NE(world_, nullptr);
  }
  World* world_ = nullptr;
};

TEST_P(WorldContract, BarrierReturns) {
  world_->Run([](Communicator& c) {
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(c.Barrier().ok());
  });
}

TEST_P(WorldContract, SplitMakesIndependentGroupsOrderedByKey) {
  world_->Run([](Communicator& c) {
    const int rank = c.rank();
    auto sub = c.SplitGroup(rank % 2, -rank);  // keys reverse the order
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    Communicator& s = **sub;
    EXPECT_EQ(s.backend(), c.backend());
    const int expect_size = (c.size() + 1 - rank % 2) / 2;
    EXPECT_EQ(s.size(), expect_size);
    EXPECT_EQ(s.rank(), expect_size - 1 - rank / 2);
    int64_t mine = rank, sum = 0;
    ASSERT_TRUE(s.AllReduce(&mine, &sum, 1, DType::kI64, ReduceOp::kSum).ok());
    int64_t expect = 0;
    for (int q = rank % 2; q < c.size(); q += 2) expect += q;
    EXPECT_EQ(sum, expect);
    ASSERT_TRUE(c.Barrier().ok());
  });
}

TEST_P(WorldContract, AgreeOnStatusSpreadsTheFirstError) {
  world_->Run([](Communicator& c) {
    EXPECT_TRUE(AgreeOnStatus(c, Status::Ok()).ok());
    const int bad = c.size() - 1;
    Status agreed = AgreeOnStatus(c, c.rank() == bad ? NotFound("shard 3 missing") : Status::Ok());
    ASSERT_FALSE(agreed.ok());
    EXPECT_EQ(agreed.code(), StatusCode::kNotFound);
    EXPECT_NE(agreed.message().find("shard 3 missing"), std::string::npos);
  });
}

TEST_P(WorldContract, AsyncCallsRunInOrderAndComplete) {
  world_->Run([](Communicator& c) {
    constexpr int kOps = 8;
    constexpr size_t kCount = 5000;
    std::vector<std::vector<float>> bufs(kOps, std::vector<float>(kCount));
    std::vector<CommHandlePtr> handles;
    for (int k = 0; k < kOps; ++k) {
      for (size_t i = 0; i < kCount; ++i) bufs[k][i] = static_cast<float>(c.rank() + k);
      handles.push_back(
          c.AllReduceAsync(bufs[k].data(), bufs[k].data(), kCount, DType::kF32, ReduceOp::kSum));
    }
    int32_t root_value = c.rank() == 0 ? 42 : 0;
    handles.push_back(c.BroadcastAsync(&root_value, 1, DType::kI32, 0));
    for (auto& h : handles) ASSERT_TRUE(h->Wait().ok());
    for (auto& h : handles) EXPECT_TRUE(h->Test());
    const int n = c.size();
    for (int k = 0; k < kOps; ++k) {
      const float expect = static_cast<float>(n * (n - 1) / 2 + n * k);
      EXPECT_EQ(bufs[k][0], expect);
      EXPECT_EQ(bufs[k][kCount - 1], expect);
    }
    EXPECT_EQ(root_value, 42);
  });
}

TEST_P(WorldContract, AsyncWaitTimesOutWhilePeersAreLate) {
  if (world_->size() < 2) GTEST_SKIP() << "needs two ranks";
  world_->Run([](Communicator& c) {
    float x = 1, y = 0;
    if (c.rank() != 0) std::this_thread::sleep_for(milliseconds(300));
    CommHandlePtr h = c.AllReduceAsync(&x, &y, 1, DType::kF32, ReduceOp::kSum);
    if (c.rank() == 0) {
      Status early = h->Wait(milliseconds(20));
      EXPECT_EQ(early.code(), StatusCode::kDeadlineExceeded) << early.ToString();
    }
    ASSERT_TRUE(h->Wait().ok());
    EXPECT_EQ(y, static_cast<float>(c.size()));
  });
}

TEST_P(WorldContract, BadRootsAndPeersAreInvalidArguments) {
  world_->Run([](Communicator& c) {
    float x = 0;
    EXPECT_EQ(c.Broadcast(&x, 1, DType::kF32, c.size()).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(c.Reduce(&x, &x, 1, DType::kF32, ReduceOp::kSum, -1).code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(c.Send(&x, 1, DType::kF32, c.rank()).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(c.Recv(&x, 1, DType::kF32, c.size()).code(), StatusCode::kInvalidArgument);
  });
}

INSTANTIATE_TEST_SUITE_P(Contract, WorldContract, ::testing::ValuesIn(WorldNames()));

// ---- mpi: MpiCommunicator's own API, beyond the Communicator contract ----------------------

// Under mpirun, the communicator of the "mpi" world (set by main); else null.
MpiCommunicator* g_mpi = nullptr;

TEST(MpiComm, SplitMakesIndependentGroups) {
  if (g_mpi == nullptr) GTEST_SKIP() << "mpirun only";
  const int rank = g_mpi->rank();
  auto sub = g_mpi->Split(rank % 2, rank);
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  int32_t one = 1, n = 0;
  ASSERT_TRUE((*sub)->AllReduce(&one, &n, 1, DType::kI32, ReduceOp::kSum).ok());
  EXPECT_EQ(n, (*sub)->size());
  EXPECT_EQ((*sub)->size(), (g_mpi->size() + 1 - rank % 2) / 2);
  EXPECT_EQ((*sub)->rank(), rank / 2);
}

TEST(MpiComm, ProdOfSmallIntegers) {
  if (g_mpi == nullptr) GTEST_SKIP() << "mpirun only";
  std::vector<int64_t> v(5, g_mpi->rank() + 2);
  ASSERT_TRUE(g_mpi->AllReduce(v.data(), v.data(), v.size(), DType::kI64, ReduceOp::kProd).ok());
  int64_t expect = 1;
  for (int r = 0; r < g_mpi->size(); ++r) expect *= r + 2;
  for (int64_t x : v) EXPECT_EQ(x, expect);
}

// ---- Failures: a silent peer, a killed peer, a missing peer (shm and gloo) ---------------

class FailureTest : public ::testing::TestWithParam<std::string> {
 protected:
  MakeComm Maker(milliseconds timeout) const {
    if (GetParam() == "gloo") return GlooMaker(timeout);
    ShmOptions o = ThreadShmOptions();
    o.op_timeout = timeout;
    o.bootstrap_timeout = timeout;
    return ShmMaker(o);
  }
};

TEST_P(FailureTest, PeerThatNeverArrivesGivesAnErrorWithinTheTimeout) {
  if (UnderMpirun()) GTEST_SKIP() << "threads only";
  auto world = ThreadWorld::Make(3, Maker(milliseconds(300)));
  ASSERT_NE(world, nullptr);
  world->Run([](Communicator& c) {
    if (c.rank() == 2) return;  // never arrives
    std::vector<float> v(100000, 1.0f);
    const auto start = Clock::now();
    Status s = c.AllReduce(v.data(), v.data(), v.size(), DType::kF32, ReduceOp::kSum);
    const auto took = Clock::now() - start;
    EXPECT_FALSE(s.ok());
    EXPECT_TRUE(s.code() == StatusCode::kDeadlineExceeded || s.code() == StatusCode::kAborted)
        << s.ToString();
    EXPECT_LT(took, std::chrono::seconds(3));
    // A failed communicator refuses further work at once.
    EXPECT_EQ(c.Barrier().code(), StatusCode::kFailedPrecondition) << c.backend();
  });
}

TEST_P(FailureTest, MissingPeersTimeOutAtBootstrapNamingIt) {
  if (UnderMpirun()) GTEST_SKIP() << "threads only";
  auto store = std::make_shared<InMemoryStore>();
  const auto start = Clock::now();
  auto c = Maker(milliseconds(300))(store, 0, 2);  // rank 1 never comes
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().code() == StatusCode::kDeadlineExceeded ||
              c.status().code() == StatusCode::kUnavailable)
      << c.status().ToString();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

TEST_P(FailureTest, BadArgumentsAreInvalidArguments) {
  if (UnderMpirun()) GTEST_SKIP() << "threads only";
  auto store = std::make_shared<InMemoryStore>();
  EXPECT_EQ(Maker(milliseconds(300))(store, 3, 2).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Maker(milliseconds(300))(store, -1, 2).status().code(), StatusCode::kInvalidArgument);
}

TEST(ShmFailure, MismatchedCollectivesAreReported) {
  if (UnderMpirun()) GTEST_SKIP() << "threads only";
  auto world = ThreadWorld::Make(2, ShmMaker(ThreadShmOptions()));
  ASSERT_NE(world, nullptr);
  world->Run([](Communicator& c) {
    float v[4] = {1, 2, 3, 4};
    Status s = c.AllReduce(v, v, c.rank() == 0 ? 4 : 3, DType::kF32, ReduceOp::kSum);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  });
}

// Child processes for the kill test: `contract_test --kill-child BACKEND DIR RANK SIZE`.
constexpr int kKillRanks = 3;
constexpr int kKillVictim = 1;
constexpr milliseconds kKillOpTimeout{2000};

int KillChildMain(const std::string& backend, const std::string& dir, int rank, int size) {
  auto fs = FileStore::Open(dir + "/store");
  if (!fs.ok()) return 3;
  std::shared_ptr<Store> store(std::move(fs).value());
  MakeComm make = GlooMaker(kKillOpTimeout);
  if (backend == "shm") {
    ShmOptions o;
    o.op_timeout = kKillOpTimeout;
    o.bootstrap_timeout = std::chrono::seconds(30);
    make = ShmMaker(o);
  }
  auto comm = make(store, rank, size);
  if (!comm.ok()) {
    std::fprintf(stderr, "child %d: %s\n", rank, comm.status().ToString().c_str());
    return 3;
  }
  std::vector<float> v(1 << 20, 1.0f);
  for (int iter = 0; iter < 1000000; ++iter) {
    Status s = (*comm)->AllReduce(v.data(), v.data(), v.size(), DType::kF32, ReduceOp::kMax);
    if (!s.ok()) {
      std::ofstream(dir + "/error-" + std::to_string(rank)) << s.ToString();
      const bool expected = s.code() == StatusCode::kAborted ||
                            s.code() == StatusCode::kDeadlineExceeded ||
                            s.code() == StatusCode::kUnavailable;
      return expected ? 0 : 4;
    }
    if (iter == 2) std::ofstream(dir + "/started-" + std::to_string(rank)) << "1";
  }
  return 5;  // never saw the failure
}

TEST_P(FailureTest, PeerKilledMidCollectiveGivesSurvivorsAnErrorWithinTheTimeout) {
  if (UnderMpirun()) GTEST_SKIP() << "forks its own processes";
  char tmpl[] = "/tmp/cohort-kill-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::vector<pid_t> pids;
  for (int r = 0; r < kKillRanks; ++r) {
    std::string exe = "/proc/self/exe", flag = "--kill-child", backend = GetParam(),
                rs = std::to_string(r), ns = std::to_string(kKillRanks);
    char* argv[] = {exe.data(), flag.data(), backend.data(), const_cast<char*>(dir.c_str()),
                    rs.data(),  ns.data(),   nullptr};
    pid_t pid = 0;
    ASSERT_EQ(::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, environ), 0);
    pids.push_back(pid);
  }
  // Wait until every rank is inside its all-reduce loop.
  const auto start = Clock::now();
  for (int r = 0; r < kKillRanks; ++r) {
    while (!std::filesystem::exists(dir + "/started-" + std::to_string(r)) &&
           Clock::now() - start < std::chrono::seconds(60)) {
      std::this_thread::sleep_for(milliseconds(5));
    }
  }
  ASSERT_TRUE(std::filesystem::exists(dir + "/started-0"));
  ::kill(pids[kKillVictim], SIGKILL);
  const auto killed_at = Clock::now();
  int status = 0;
  ::waitpid(pids[kKillVictim], &status, 0);
  for (int r = 0; r < kKillRanks; ++r) {
    if (r == kKillVictim) continue;
    ASSERT_EQ(::waitpid(pids[r], &status, 0), pids[r]);
    const auto took = Clock::now() - killed_at;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << GetParam() << " rank " << r << " status " << status;
    EXPECT_LT(took, kKillOpTimeout + std::chrono::seconds(3)) << "rank " << r;
    std::ifstream err(dir + "/error-" + std::to_string(r));
    std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
    EXPECT_FALSE(text.empty());
    std::printf("%s rank %d after %lld ms: %s\n", GetParam().c_str(), r,
                static_cast<long long>(std::chrono::duration_cast<milliseconds>(took).count()),
                text.c_str());
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Backends, FailureTest, ::testing::Values("shm", "gloo"));

// ---- auto: the table routes, and ranks agree ---------------------------------------------------

TEST(Auto, EveryRankBuildsTheSameTableAndSplitsKeepIt) {
  if (UnderMpirun()) GTEST_SKIP() << "threads only";
  auto world = ThreadWorld::Make(3, AutoMaker());
  ASSERT_NE(world, nullptr);
  std::mutex mu;
  std::vector<std::string> tables;
  world->Run([&](Communicator& c) {
    auto& a = static_cast<AutoCommunicator&>(c);
    std::lock_guard<std::mutex> lock(mu);
    tables.push_back(a.DescribeTable());
    // Every cell was measured for both members and names a winner.
    for (const auto& op : a.table()) {
      for (const auto& row : op) {
        ASSERT_EQ(row.size(), 5u);  // 8 B, 64 B, 512 B, 4 KiB, 32 KiB: up to the 64 KiB cap
        for (const auto& cell : row) {
          EXPECT_EQ(cell.time_us.size(), 2u);
          EXPECT_TRUE(cell.winner == 0 || cell.winner == 1);
          // The first member keeps the cell unless the other is >10% faster.
          const double best = *std::min_element(cell.time_us.begin(), cell.time_us.end());
          EXPECT_EQ(cell.winner,
                    best < 0.9 * cell.time_us[0] ? (best == cell.time_us[0] ? 0 : 1) : 0);
        }
      }
    }
  });
  ASSERT_EQ(tables.size(), 3u);
  EXPECT_EQ(tables[0], tables[1]);
  EXPECT_EQ(tables[0], tables[2]);
  world->Run([&](Communicator& c) {
    auto sub = c.SplitGroup(c.rank() % 2, c.rank());
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    EXPECT_EQ((*sub)->backend(), "auto");
    EXPECT_EQ(static_cast<AutoCommunicator&>(**sub).DescribeTable(), tables[0]);
    std::vector<float> v(1000, static_cast<float>(c.rank()));
    ASSERT_TRUE((*sub)->AllReduce(v.data(), v.data(), v.size(), DType::kF32, ReduceOp::kSum).ok());
    const float want = c.rank() % 2 == 0 ? 0.0f + 2.0f : 1.0f;
    EXPECT_EQ(v[999], want);
  });
}

TEST(Auto, RoutesByTheMeasuredWinnerOfTheNearestSize) {
  if (UnderMpirun()) GTEST_SKIP() << "threads only";
  auto world = ThreadWorld::Make(2, AutoMaker());
  ASSERT_NE(world, nullptr);
  world->Run([&](Communicator& c) {
    auto& a = static_cast<AutoCommunicator&>(c);
    const auto& row = a.table()[static_cast<size_t>(AutoOp::kAllReduce)][0];
    auto name = [&](const AutoCommunicator::Cell& cell) {
      return a.members()[static_cast<size_t>(cell.winner)].name;
    };
    EXPECT_EQ(a.Choice(AutoOp::kAllReduce, 8, false), name(row[0]));
    EXPECT_EQ(a.Choice(AutoOp::kAllReduce, 1, false), name(row[0]));
    EXPECT_EQ(a.Choice(AutoOp::kAllReduce, 70, false), name(row[1]));   // nearest to 64 B
    EXPECT_EQ(a.Choice(AutoOp::kAllReduce, 300, false), name(row[2]));  // log-nearest to 512 B
    EXPECT_EQ(a.Choice(AutoOp::kAllReduce, 1 << 30, false), name(row.back()));  // beyond the table
  });
}

// ---- Stores -----------------------------------------------------------------------------

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (UnderMpirun()) GTEST_SKIP() << "store tests run without mpirun";
    if (GetParam() == "memory") {
      store_ = std::make_shared<InMemoryStore>();
    } else {
      char tmpl[] = "/tmp/cohort-store-XXXXXX";
      ASSERT_NE(::mkdtemp(tmpl), nullptr);
      dir_ = tmpl;
      auto fs = FileStore::Open(dir_);
      ASSERT_TRUE(fs.ok());
      store_ = std::move(fs).value();
    }
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::shared_ptr<Store> store_;
  std::string dir_;
};

TEST_P(StoreTest, SetThenGet) {
  ASSERT_TRUE(store_->Set("a/b", std::string("x\0y", 3)).ok());
  auto v = store_->Get("a/b", milliseconds(10));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, std::string("x\0y", 3));
  ASSERT_TRUE(store_->Set("a/b", "overwritten").ok());
  EXPECT_EQ(*store_->Get("a/b", milliseconds(10)), "overwritten");
  EXPECT_TRUE(*store_->Check("a/b"));
  EXPECT_FALSE(*store_->Check("a/c"));
}

TEST_P(StoreTest, GetTimesOutOnAMissingKey) {
  const auto start = Clock::now();
  auto v = store_->Get("never", milliseconds(150));
  const auto took = Clock::now() - start;
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(v.status().message().find("never"), std::string::npos);
  EXPECT_GE(took, milliseconds(150));
  EXPECT_LT(took, milliseconds(1500));
}

TEST_P(StoreTest, GetWaitsForALaterSet) {
  std::thread setter([this] {
    std::this_thread::sleep_for(milliseconds(50));
    ASSERT_TRUE(store_->Set("late", "here").ok());
  });
  auto v = store_->Get("late", milliseconds(5000));
  setter.join();
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, "here");
}

TEST_P(StoreTest, WaitNamesTheMissingKeyAndHonoursOneDeadline) {
  ASSERT_TRUE(store_->Set("k1", "1").ok());
  const auto start = Clock::now();
  Status s = store_->Wait({"k1", "k2", "k3"}, milliseconds(120));
  const auto took = Clock::now() - start;
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(s.message().find("k2"), std::string::npos) << s.message();
  EXPECT_LT(took, milliseconds(1200));
  ASSERT_TRUE(store_->Set("k2", "2").ok());
  ASSERT_TRUE(store_->Set("k3", "3").ok());
  EXPECT_TRUE(store_->Wait({"k1", "k2", "k3"}, milliseconds(10)).ok());
}

TEST_P(StoreTest, AddIsAtomicAcrossThreads) {
  constexpr int kThreads = 4, kAdds = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this] {
      for (int i = 0; i < kAdds; ++i) ASSERT_TRUE(store_->Add("counter", 1).ok());
    });
  }
  for (auto& t : threads) t.join();
  auto v = store_->Add("counter", 0);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, kThreads * kAdds);
  EXPECT_EQ(*store_->Add("counter", -5), kThreads * kAdds - 5);
  ASSERT_TRUE(store_->Set("text", "abc").ok());
  EXPECT_EQ(store_->Add("text", 1).status().code(), StatusCode::kInvalidArgument);
}

TEST_P(StoreTest, LimitsAreInvalidArguments) {
  EXPECT_EQ(store_->Set("", "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Set(std::string(kMaxStoreKeyBytes + 1, 'k'), "x").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Set("big", std::string(kMaxStoreValueBytes + 1, 'v')).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Get("k", milliseconds(-1)).status().code(), StatusCode::kInvalidArgument);
}

TEST_P(StoreTest, PrefixStoresDoNotSeeEachOther) {
  PrefixStore a(store_, "a"), b(store_, "b");
  ASSERT_TRUE(a.Set("key", "1").ok());
  EXPECT_TRUE(*a.Check("key"));
  EXPECT_FALSE(*b.Check("key"));
  EXPECT_EQ(b.Get("key", milliseconds(20)).status().code(), StatusCode::kDeadlineExceeded);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest, ::testing::Values("memory", "file"));

TEST(FileStore, TwoStoresOnOneDirectoryShareKeys) {
  if (UnderMpirun()) GTEST_SKIP();
  char tmpl[] = "/tmp/cohort-store-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  auto a = FileStore::Open(tmpl), b = FileStore::Open(tmpl);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->Set("x", "from a").ok());
  EXPECT_EQ(*(*b)->Get("x", milliseconds(10)), "from a");
  EXPECT_EQ(*(*a)->Add("n", 2), 2);
  EXPECT_EQ(*(*b)->Add("n", 3), 5);
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace cohort

int main(int argc, char** argv) {
  if (argc == 6 && std::string(argv[1]) == "--kill-child") {
    return cohort::KillChildMain(argv[2], argv[3], std::atoi(argv[4]), std::atoi(argv[5]));
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (!cohort::UnderMpirun()) return RUN_ALL_TESTS();

  if (!cohort::MpiRuntime::Init(&argc, &argv).ok()) return 2;
  int rc = 0;
  {
    // One MPI communicator per world, so their traffic never mixes.
    std::vector<std::unique_ptr<cohort::MpiCommunicator>> mpis;
    for (int i = 0; i < 5; ++i) {
      auto m = cohort::MpiCommunicator::World();
      if (!m.ok()) return 2;
      mpis.push_back(std::move(m).value());
    }
    const int rank = mpis[0]->rank();
    cohort::BackendOptions options;
    options.shm.chunk_bytes = cohort::kProcessChunkBytes;
    options.shm.small_bytes = 8 << 10;
    options.shm.op_timeout = std::chrono::seconds(60);
    options.gloo.timeout = std::chrono::seconds(60);
    options.autos = cohort::TestAutoOptions();
    cohort::BackendSet backends(*mpis[0], options);
    cohort::Worlds()["mpi"] = std::make_unique<cohort::ProcessWorld>(mpis[1].get());
    cohort::g_mpi = mpis[1].get();
    const char* names[] = {"shm", "gloo", "auto"};
    for (int i = 0; i < 3; ++i) {
      auto c = backends.Make(names[i], *mpis[static_cast<size_t>(i + 2)],
                             std::string("contract-") + names[i]);
      if (!c.ok()) {
        std::fprintf(stderr, "rank %d: %s bootstrap: %s\n", rank, names[i],
                     c.status().ToString().c_str());
        return 2;
      }
      cohort::Worlds()[names[i]] = std::make_unique<cohort::ProcessWorld>(*c);
    }
    rc = cohort::testing::RunAllTestsOnEveryRank(rank);
    cohort::Worlds().clear();
    cohort::g_mpi = nullptr;
  }
  cohort::MpiRuntime::Finalize();
  return rc;
}
