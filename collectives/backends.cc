#include "collectives/backends.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <system_error>

#include "cohort/config.h"
#include "core/logging.h"
#if COHORT_HAVE_NCCL
#include "collectives/nccl/nccl_communicator.h"
#include "core/cuda_device.h"
#endif

namespace cohort {

namespace {

constexpr size_t kPathBytes = 4096;  // a store path, broadcast as a fixed block

std::string HostName() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

}  // namespace

const std::vector<std::string>& BackendNames() {
  static const std::vector<std::string> names = {"auto", "mpi", "shm", "gloo", "nccl"};
  return names;
}

Status CheckBackendName(const std::string& name) {
  const auto& names = BackendNames();
  if (std::find(names.begin(), names.end(), name) != names.end()) return Status::Ok();
  return InvalidArgument("unknown backend '" + name + "' (expected auto, mpi, shm, gloo or nccl)");
}

Result<bool> AllOnOneHost(Communicator& group) {
  // A 64-bit hash of the host name: equal names give equal hashes on every
  // rank; max == min over the group means one host (a collision would need
  // two different names with one hash, 2^-64).
  const std::string host = HostName();
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : host) h = (h ^ ch) * 1099511628211ull;
  int64_t mine = static_cast<int64_t>(h >> 1), lo = 0, hi = 0;
  COHORT_RETURN_IF_ERROR(group.AllReduce(&mine, &lo, 1, DType::kI64, ReduceOp::kMin));
  COHORT_RETURN_IF_ERROR(group.AllReduce(&mine, &hi, 1, DType::kI64, ReduceOp::kMax));
  return lo == hi;
}

BackendSet::BackendSet(Communicator& world, BackendOptions options)
    : world_(world), options_(std::move(options)) {}

BackendSet::~BackendSet() {
  owned_.clear();
  if (made_store_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(options_.store_dir, ec);
  }
}

Status BackendSet::EnsureStore() {
  if (store_) return Status::Ok();
  // Rank 0 makes a fresh directory unless store_dir names one (it must be
  // shared across hosts), and tells the others.
  std::vector<char> path(kPathBytes, 0);
  Status local;
  if (world_.rank() == 0) {
    if (options_.store_dir.empty()) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "cohort-store-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr)
        local = IoError("mkdtemp for the rendezvous store (gloo, nccl) failed");
      options_.store_dir = tmpl;
      made_store_dir_ = true;
    }
    std::snprintf(path.data(), path.size(), "%s", options_.store_dir.c_str());
  }
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(world_, local));
  COHORT_RETURN_IF_ERROR(world_.Broadcast(path.data(), path.size() / 4, DType::kI32, 0));
  options_.store_dir = path.data();
  auto fs = FileStore::Open(options_.store_dir);
  local = fs.ok() ? Status::Ok() : fs.status();
  COHORT_RETURN_IF_ERROR(
      AgreeOnStatus(world_, local)
          .WithContext("rendezvous store (gloo, nccl) in " + options_.store_dir));
  store_ = std::shared_ptr<Store>(std::move(*fs));
  return Status::Ok();
}

Result<Communicator*> BackendSet::MakeNccl(Communicator& group, const std::string& name) {
#if !COHORT_HAVE_NCCL
  // The same binary on every rank: all return this, no collective needed.
  (void)group;
  (void)name;
  return FailedPrecondition(
      "backend nccl: this build has no NCCL (configure with CUDA and NCCL found)");
#else
  // Checked on every rank and agreed before the bootstrap, so that a rank
  // without its device fails everyone now rather than after the store timeout.
  Status local;
  std::string why_not;
  const int devices = CudaRuntimeDeviceCount(&why_not);
  if (options_.nccl_device < 0) {
    local = InvalidArgument("backend nccl: no CUDA device chosen (BackendOptions::nccl_device is " +
                            std::to_string(options_.nccl_device) + "; AgreePlacement picks it)");
  } else if (devices == 0) {
    local = FailedPrecondition("backend nccl: no CUDA device (" + why_not + ")");
  } else if (options_.nccl_device >= devices) {
    local = InvalidArgument("backend nccl: CUDA device " + std::to_string(options_.nccl_device) +
                            " but only " + std::to_string(devices) + " visible");
  }
  COHORT_RETURN_IF_ERROR(AgreeOnStatus(world_, local));
  COHORT_RETURN_IF_ERROR(EnsureStore());
  // A fresh key prefix per run: a --store-dir kept from an earlier run may
  // still hold that run's NCCL id under the same group name.
  uint64_t run = 0;
  if (world_.rank() == 0) run = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  COHORT_RETURN_IF_ERROR(world_.Broadcast(&run, 1, DType::kI64, 0));
  NcclOptions o;
  o.device = options_.nccl_device;
  o.prefix = name + "/run-" + std::to_string(run);
  auto c = NcclCommunicator::Create(*store_, group.rank(), group.size(), o);
  COHORT_RETURN_IF_ERROR(
      AgreeOnStatus(world_, c.ok() ? Status::Ok() : c.status()).WithContext("nccl backend"));
  owned_.push_back(std::move(*c));
  return owned_.back().get();
#endif
}

Result<Communicator*> BackendSet::Make(const std::string& backend, Communicator& group,
                                       const std::string& name) {
  COHORT_RETURN_IF_ERROR(CheckBackendName(backend));
  if (backend == "mpi") return &group;
  if (backend == "shm") {
    auto c = CreateShmFromCommunicator(group, options_.shm);
    COHORT_RETURN_IF_ERROR(
        AgreeOnStatus(world_, c.ok() ? Status::Ok() : c.status()).WithContext("shm backend"));
    owned_.push_back(std::move(*c));
    return owned_.back().get();
  }
  if (backend == "gloo") {
    COHORT_RETURN_IF_ERROR(EnsureStore());
    COHORT_ASSIGN_OR_RETURN(bool local_only, AllOnOneHost(group));
    GlooOptions o = options_.gloo;
    o.prefix = name;
    if (!local_only && o.hostname == "127.0.0.1")
      o.hostname = HostName();  // peers on other hosts must reach it
    auto c = GlooCommunicator::Create(store_, group.rank(), group.size(), o);
    COHORT_RETURN_IF_ERROR(
        AgreeOnStatus(world_, c.ok() ? Status::Ok() : c.status()).WithContext("gloo backend"));
    owned_.push_back(std::move(*c));
    return owned_.back().get();
  }
  if (backend == "nccl") return MakeNccl(group, name);
  // auto: mpi always; shm too when the group shares one host.
  COHORT_ASSIGN_OR_RETURN(bool one_host, AllOnOneHost(group));
  std::vector<AutoCommunicator::Member> members;
  members.push_back({"mpi", &group, nullptr});
  if (one_host && group.size() > 1) {
    auto shm = CreateShmFromCommunicator(group, options_.shm);
    COHORT_RETURN_IF_ERROR(AgreeOnStatus(world_, shm.ok() ? Status::Ok() : shm.status())
                               .WithContext("auto backend: shm"));
    AutoCommunicator::Member m;
    m.name = "shm";
    m.comm = shm->get();
    m.owned = std::move(*shm);
    members.push_back(std::move(m));
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto c = AutoCommunicator::Create(std::move(members), options_.autos);
  COHORT_RETURN_IF_ERROR(
      AgreeOnStatus(world_, c.ok() ? Status::Ok() : c.status()).WithContext("auto backend"));
  if ((*c)->members().size() > 1) {
    COHORT_LOG_INFO(
        "auto backend for {} ({} ranks) {} in {:.0f} ms:\n{}", name, group.size(),
        (*c)->from_cache() ? "read from " + (*c)->cache_path() : std::string("calibrated"),
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
        (*c)->DescribeTable());
  }
  owned_.push_back(std::move(*c));
  return owned_.back().get();
}

}  // namespace cohort
