#include "collectives/auto/auto_communicator.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>

#include "collectives/auto/auto_cache.h"
#include "core/file_util.h"
#include "core/logging.h"

namespace cohort {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kSmallestCell = 8;
constexpr size_t kLargeCell = size_t{256} << 10;  // iterations_large above this
constexpr double kSwitchRatio = 0.9;  // another member wins a cell only below 0.9x the first's time

std::string HumanBytes(size_t b) {
  char buf[32];
  if (b >= (size_t{1} << 20))
    std::snprintf(buf, sizeof(buf), "%zu MiB", b >> 20);
  else if (b >= 1024)
    std::snprintf(buf, sizeof(buf), "%zu KiB", b >> 10);
  else
    std::snprintf(buf, sizeof(buf), "%zu B", b);
  return buf;
}

// Element type and count of a cell: `bytes` is the whole buffer, as in
// nccl-tests (all-gather's output, reduce-scatter's input).
DType CellType(AutoOp op) { return op == AutoOp::kAllReduce16 ? DType::kBF16 : DType::kF32; }

size_t CellLimit(AutoOp op, const AutoOptions& o) {
  return op == AutoOp::kAllReduce
             ? std::max(o.max_calibration_bytes, o.max_allreduce_calibration_bytes)
             : o.max_calibration_bytes;
}

}  // namespace

std::string_view AutoOpName(AutoOp op) {
  switch (op) {
    case AutoOp::kAllReduce:
      return "allreduce";
    case AutoOp::kAllReduce16:
      return "allreduce-16bit";
    case AutoOp::kReduceScatter:
      return "reducescatter";
    case AutoOp::kAllGather:
      return "allgather";
    case AutoOp::kBroadcast:
      return "broadcast";
  }
  return "?";
}

Result<std::unique_ptr<AutoCommunicator>> AutoCommunicator::Create(std::vector<Member> members,
                                                                   const AutoOptions& options) {
  if (members.empty()) return InvalidArgument("auto: no member backends");
  for (const Member& m : members) {
    if (m.comm == nullptr)
      return InvalidArgument("auto: member '" + m.name + "' has no communicator");
    if (m.comm->size() != members[0].comm->size() || m.comm->rank() != members[0].comm->rank()) {
      return InvalidArgument("auto: member '" + m.name + "' is rank " +
                             std::to_string(m.comm->rank()) + " of " +
                             std::to_string(m.comm->size()) + ", member '" + members[0].name +
                             "' rank " + std::to_string(members[0].comm->rank()) + " of " +
                             std::to_string(members[0].comm->size()));
    }
  }
  auto c = std::unique_ptr<AutoCommunicator>(new AutoCommunicator());
  c->members_ = std::move(members);
  for (size_t i = 0; i < c->members_.size(); ++i) {
    if (c->members_[i].comm->backend() == "shm") {
      c->registrar_ = static_cast<int>(i);
      break;
    }
  }
  COHORT_RETURN_IF_ERROR(c->LoadOrCalibrate(options).WithContext("auto backend calibration"));
  return c;
}

namespace {

// Broadcasts `text` from rank 0 (its length, then its bytes as 32-bit words).
Status BroadcastText(Communicator& c, std::string* text) {
  int64_t n = static_cast<int64_t>(text->size());
  COHORT_RETURN_IF_ERROR(c.Broadcast(&n, 1, DType::kI64, 0));
  if (n == 0) {
    text->clear();
    return Status::Ok();
  }
  std::vector<int32_t> words((static_cast<size_t>(n) + 3) / 4, 0);
  if (c.rank() == 0) std::memcpy(words.data(), text->data(), text->size());
  COHORT_RETURN_IF_ERROR(c.Broadcast(words.data(), words.size(), DType::kI32, 0));
  text->assign(reinterpret_cast<const char*>(words.data()), static_cast<size_t>(n));
  return Status::Ok();
}

}  // namespace

Status AutoCommunicator::LoadOrCalibrate(const AutoOptions& options) {
  if (options.cache_dir.empty() || members_.size() == 1) return Calibrate(options);
  Communicator& first = *members_[0].comm;
  // The key: the members, the options, the build, and every rank's host.
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  const int64_t mine = static_cast<int64_t>(std::hash<std::string>{}(host));
  std::vector<int64_t> hosts(static_cast<size_t>(size()));
  COHORT_RETURN_IF_ERROR(first.AllGather(&mine, hosts.data(), 1, DType::kI64));
  std::vector<std::string> names;
  for (const Member& m : members_) names.push_back(m.name);
  // Rank 0 decides, for every rank: its key and the table it read, if valid.
  std::string key = AutoCacheKey(names, hosts, options, AutoBuildId());
  cache_path_ = AutoCachePath(options.cache_dir, key);
  std::string text;
  if (rank() == 0 && !options.recalibrate) {
    auto read = ReadFile(cache_path_);
    Status valid = read.status();
    if (read.ok()) valid = DecodeAutoTable(*read, key, members_.size()).status();
    if (valid.ok()) {
      text = std::move(*read);
    } else if (valid.code() != StatusCode::kNotFound) {
      COHORT_LOG_WARN("auto: not using the calibration cache {}: {}; measuring again", cache_path_,
                      valid.message());
    }
  }
  COHORT_RETURN_IF_ERROR(BroadcastText(first, &key));
  COHORT_RETURN_IF_ERROR(BroadcastText(first, &text));
  if (!text.empty()) {
    COHORT_ASSIGN_OR_RETURN(table_, DecodeAutoTable(text, key, members_.size()));
    from_cache_ = true;
    return Status::Ok();
  }
  COHORT_RETURN_IF_ERROR(Calibrate(options));
  if (rank() == 0) {
    Status w = MakeDirs(options.cache_dir);
    if (w.ok()) w = WriteFileAtomic(cache_path_, EncodeAutoTable(key, table_));
    if (!w.ok())
      COHORT_LOG_WARN("auto: cannot write the calibration cache {}: {}", cache_path_, w.message());
  }
  return Status::Ok();
}

AutoCommunicator::~AutoCommunicator() {
  StopAsync();
  for (auto& [p, bytes] : registered_)
    (void)members_[static_cast<size_t>(registrar_)].comm->FreeRegistered(const_cast<char*>(p));
}

Result<double> AutoCommunicator::TimeCell(int member, AutoOp op, size_t bytes, char* a, char* b,
                                          int iterations) {
  Communicator& c = *members_[static_cast<size_t>(member)].comm;
  const DType t = CellType(op);
  const size_t elem = DTypeSize(t);
  const size_t n = static_cast<size_t>(c.size());
  auto once = [&]() -> Status {
    switch (op) {
      case AutoOp::kAllReduce:
      case AutoOp::kAllReduce16:
        return c.AllReduce(a, b, bytes / elem, t, ReduceOp::kSum);
      case AutoOp::kReduceScatter:
        return c.ReduceScatter(a, b, bytes / elem / n, t, ReduceOp::kSum);
      case AutoOp::kAllGather:
        return c.AllGather(a, b, bytes / elem / n, t);
      case AutoOp::kBroadcast:
        return c.Broadcast(b, bytes / elem, t, 0);
    }
    return Status::Ok();
  };
  COHORT_RETURN_IF_ERROR(once());  // warm-up
  std::vector<double> us;
  for (int i = 0; i < iterations; ++i) {
    const auto t0 = Clock::now();
    COHORT_RETURN_IF_ERROR(once());
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  // The fastest run: noise on a shared machine (preemption, page faults)
  // only ever adds time.
  return *std::min_element(us.begin(), us.end());
}

Status AutoCommunicator::Calibrate(const AutoOptions& options) {
  if (options.iterations_small < 1 || options.iterations_large < 1) {
    return InvalidArgument("iterations must be at least 1");
  }
  std::vector<size_t> sizes;
  const size_t largest = std::max(
      {options.max_calibration_bytes, options.max_allreduce_calibration_bytes, kSmallestCell});
  for (size_t s = kSmallestCell; s <= largest; s *= 8) sizes.push_back(s);
  const size_t n = static_cast<size_t>(size());
  // All-reduce cells need their size; reduce-scatter and all-gather n times theirs.
  const size_t top =
      std::max(CellLimit(AutoOp::kAllReduce, options), options.max_calibration_bytes * n) + 64;
  if (members_.size() == 1) {
    // Nothing to choose: every cell goes to the only member, unmeasured.
    for (int op = 0; op < kAutoOps; ++op) {
      for (int reg = 0; reg < 2; ++reg) {
        for (size_t s : sizes) {
          if (s <= CellLimit(static_cast<AutoOp>(op), options)) {
            table_[static_cast<size_t>(op)][static_cast<size_t>(reg)].push_back(Cell{s, {0.0}, 0});
          }
        }
      }
    }
    return Status::Ok();
  }
  std::vector<char> heap_a(top), heap_b(top);
  char* reg_a = nullptr;
  char* reg_b = nullptr;
  if (registrar_ >= 0) {
    Communicator& r = *members_[static_cast<size_t>(registrar_)].comm;
    COHORT_ASSIGN_OR_RETURN(void* pa, r.AllocateRegistered(top));
    reg_a = static_cast<char*>(pa);
    auto pb = r.AllocateRegistered(top);
    if (!pb.ok()) {
      (void)r.FreeRegistered(reg_a);
      return pb.status();
    }
    reg_b = static_cast<char*>(*pb);
  }
  Status result;
  for (int reg = 0; reg < (registrar_ >= 0 ? 2 : 1) && result.ok(); ++reg) {
    char* a = reg ? reg_a : heap_a.data();
    char* b = reg ? reg_b : heap_b.data();
    std::memset(a, 0, top);  // zeros: every dtype's sums stay finite
    std::memset(b, 0, top);
    for (int op = 0; op < kAutoOps && result.ok(); ++op) {
      for (size_t s : sizes) {
        const AutoOp aop = static_cast<AutoOp>(op);
        if (s > CellLimit(aop, options)) break;
        const size_t elem = DTypeSize(CellType(aop));
        // Reduce-scatter and all-gather need whole elements per rank.
        const size_t bytes = (aop == AutoOp::kReduceScatter || aop == AutoOp::kAllGather)
                                 ? std::max(s, elem * n) / (elem * n) * (elem * n)
                                 : std::max(s, elem) / elem * elem;
        const int iters = bytes > options.max_calibration_bytes ? 1
                          : bytes > kLargeCell                  ? options.iterations_large
                                                                : options.iterations_small;
        Cell cell;
        cell.bytes = s;
        for (size_t m = 0; m < members_.size() && result.ok(); ++m) {
          auto t = TimeCell(static_cast<int>(m), aop, bytes, a, b, iters);
          if (!t.ok()) {
            result = t.status().WithContext(members_[m].name + " " + std::string(AutoOpName(aop)) +
                                            " " + HumanBytes(s));
            break;
          }
          cell.time_us.push_back(*t);
        }
        if (!result.ok()) break;
        // The slowest rank's time counts; every rank then holds the same numbers.
        std::vector<double> slowest(cell.time_us.size());
        result = members_[0].comm->AllReduce(cell.time_us.data(), slowest.data(), slowest.size(),
                                             DType::kF64, ReduceOp::kMax);
        if (!result.ok()) break;
        cell.time_us = slowest;
        // The first member (which does every operation) keeps the cell unless
        // another is clearly faster: near-ties are noise, not a reason to switch.
        const int best =
            static_cast<int>(std::min_element(slowest.begin(), slowest.end()) - slowest.begin());
        cell.winner = slowest[static_cast<size_t>(best)] < kSwitchRatio * slowest[0] ? best : 0;
        table_[static_cast<size_t>(op)][static_cast<size_t>(reg)].push_back(std::move(cell));
      }
    }
  }
  if (registrar_ < 0) {
    for (int op = 0; op < kAutoOps; ++op)
      table_[static_cast<size_t>(op)][1] = table_[static_cast<size_t>(op)][0];
  }
  if (registrar_ >= 0) {
    Communicator& r = *members_[static_cast<size_t>(registrar_)].comm;
    Status f1 = r.FreeRegistered(reg_a);
    Status f2 = r.FreeRegistered(reg_b);
    if (result.ok()) result = f1.ok() ? f2 : f1;
  }
  return result;
}

int AutoCommunicator::Pick(AutoOp op, size_t bytes, bool registered) const {
  const auto& row = table_[static_cast<size_t>(op)][registered ? 1 : 0];
  // Nearest measured size on a log scale: sizes are 8 B * 8^k.
  const double k = std::log2(static_cast<double>(std::max<size_t>(bytes, 1)) / kSmallestCell) / 3.0;
  const size_t i =
      static_cast<size_t>(std::clamp(std::lround(k), 0L, static_cast<long>(row.size()) - 1));
  return row[i].winner;
}

const std::string& AutoCommunicator::Choice(AutoOp op, size_t bytes, bool registered) const {
  return members_[static_cast<size_t>(Pick(op, bytes, registered))].name;
}

std::string AutoCommunicator::DescribeTable() const {
  std::string out = "op               buffers     size";
  for (const Member& m : members_) {
    char col[32];
    std::snprintf(col, sizeof(col), " %10s", (m.name + " us").c_str());
    out += col;
  }
  out += "  -> chosen\n";
  for (int op = 0; op < kAutoOps; ++op) {
    for (int reg = 0; reg < 2; ++reg) {
      for (const Cell& cell : table_[static_cast<size_t>(op)][static_cast<size_t>(reg)]) {
        char line[96];
        std::snprintf(line, sizeof(line), "%-16s %-10s %7s",
                      std::string(AutoOpName(static_cast<AutoOp>(op))).c_str(),
                      reg ? "registered" : "plain", HumanBytes(cell.bytes).c_str());
        out += line;
        for (double t : cell.time_us) {
          std::snprintf(line, sizeof(line), " %10.1f", t);
          out += line;
        }
        out += "  -> " + members_[static_cast<size_t>(cell.winner)].name + "\n";
      }
    }
  }
  return out;
}

bool AutoCommunicator::IsRegistered(const void* p, size_t bytes) const {
  if (registered_.empty() || p == nullptr) return false;
  const char* c = static_cast<const char*>(p);
  auto it = registered_.upper_bound(c);
  if (it == registered_.begin()) return false;
  --it;
  return c >= it->first && c + bytes <= it->first + it->second;
}

Communicator& AutoCommunicator::Route(AutoOp op, size_t bytes, bool registered) {
  return *members_[static_cast<size_t>(Pick(op, bytes, registered))].comm;
}

Status AutoCommunicator::AllReduce(const void* send, void* recv, size_t count, DType dtype,
                                   ReduceOp op) {
  const AutoOp aop =
      DTypeSize(dtype) == 2 && IsFloating(dtype) ? AutoOp::kAllReduce16 : AutoOp::kAllReduce;
  const size_t bytes = count * DTypeSize(dtype);
  // shm needs every rank's buffers registered or none; ranks register the
  // same allocations in the same order, so this test agrees across ranks.
  const bool reg = IsRegistered(send, bytes) && IsRegistered(recv, bytes);
  return Route(aop, bytes, reg).AllReduce(send, recv, count, dtype, op);
}

Status AutoCommunicator::Broadcast(void* buf, size_t count, DType dtype, int root) {
  const size_t bytes = count * DTypeSize(dtype);
  return Route(AutoOp::kBroadcast, bytes, IsRegistered(buf, bytes))
      .Broadcast(buf, count, dtype, root);
}

Status AutoCommunicator::AllGather(const void* send, void* recv, size_t count, DType dtype) {
  const size_t block = count * DTypeSize(dtype);
  const size_t total = block * static_cast<size_t>(size());
  const bool reg = IsRegistered(send, block) && IsRegistered(recv, total);
  return Route(AutoOp::kAllGather, total, reg).AllGather(send, recv, count, dtype);
}

Status AutoCommunicator::ReduceScatter(const void* send, void* recv, size_t count, DType dtype,
                                       ReduceOp op) {
  const size_t block = count * DTypeSize(dtype);
  const size_t total = block * static_cast<size_t>(size());
  const bool reg = IsRegistered(send, total) && IsRegistered(recv, block);
  return Route(AutoOp::kReduceScatter, total, reg).ReduceScatter(send, recv, count, dtype, op);
}

Status AutoCommunicator::Barrier() { return members_[0].comm->Barrier(); }

Status AutoCommunicator::Reduce(const void* send, void* recv, size_t count, DType dtype,
                                ReduceOp op, int root) {
  return members_[0].comm->Reduce(send, recv, count, dtype, op, root);
}

Status AutoCommunicator::AllToAll(const void* send, void* recv, size_t count, DType dtype) {
  return members_[0].comm->AllToAll(send, recv, count, dtype);
}

Status AutoCommunicator::Send(const void* buf, size_t count, DType dtype, int peer) {
  return members_[0].comm->Send(buf, count, dtype, peer);
}

Status AutoCommunicator::Recv(void* buf, size_t count, DType dtype, int peer) {
  return members_[0].comm->Recv(buf, count, dtype, peer);
}

Result<std::unique_ptr<Communicator>> AutoCommunicator::SplitGroup(int color, int key) {
  auto c = std::unique_ptr<AutoCommunicator>(new AutoCommunicator());
  for (Member& m : members_) {
    COHORT_ASSIGN_OR_RETURN(auto sub, m.comm->SplitGroup(color, key));
    Member s;
    s.name = m.name;
    s.comm = sub.get();
    s.owned = std::move(sub);
    c->members_.push_back(std::move(s));
  }
  c->registrar_ = registrar_;
  c->table_ = table_;
  return std::unique_ptr<Communicator>(std::move(c));
}

Result<void*> AutoCommunicator::AllocateRegistered(size_t bytes) {
  if (registrar_ < 0) return Communicator::AllocateRegistered(bytes);
  COHORT_ASSIGN_OR_RETURN(
      void* p, members_[static_cast<size_t>(registrar_)].comm->AllocateRegistered(bytes));
  registered_[static_cast<const char*>(p)] = bytes;
  return p;
}

Status AutoCommunicator::FreeRegistered(void* ptr) {
  if (registrar_ < 0) return Communicator::FreeRegistered(ptr);
  auto it = registered_.find(static_cast<const char*>(ptr));
  if (it == registered_.end())
    return InvalidArgument("auto: FreeRegistered of a pointer it did not allocate");
  registered_.erase(it);
  return members_[static_cast<size_t>(registrar_)].comm->FreeRegistered(ptr);
}

}  // namespace cohort
