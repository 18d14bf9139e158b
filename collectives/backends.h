#pragma once
// Building communicators of a named backend (mpi, shm, gloo, nccl, auto) for groups
// of an MPI job: what `cohort train --backend` and `cohort bench --backend`
// use.
//
// Every call is collective over `world` (all ranks call in the same order):
// errors are agreed on (AgreeOnStatus), so all ranks fail together.
//  - mpi:  the group itself.
//  - shm:  shared memory among the group's ranks (all on one host).
//  - gloo: Gloo over TCP, bootstrapped through a FileStore in a directory
//          every rank can see (`store_dir`; by default rank 0 makes one
//          under $TMPDIR, which works on one host only).
//  - nccl: NCCL on GPU buffers (device pointers), on the CUDA device
//          `nccl_device` (runtime/device_select.h's AgreePlacement picks it),
//          bootstrapped through the same FileStore as gloo (so several hosts
//          need a shared `store_dir`). Only in builds with NCCL
//          (COHORT_HAVE_NCCL); elsewhere Make fails with FailedPrecondition.
//  - auto: an AutoCommunicator over mpi and, when the group is on one host,
//          shm, routing each call by the measured table (host buffers; the
//          GPU's auto is nccl, chosen by AgreePlacement).
#include <memory>
#include <string>
#include <vector>

#include "collectives/auto/auto_communicator.h"
#include "collectives/communicator.h"
#include "collectives/gloo/gloo_communicator.h"
#include "collectives/shm/shm_communicator.h"
#include "collectives/store.h"

namespace cohort {

struct BackendOptions {
  std::string store_dir;  // gloo's and nccl's FileStore; empty: a fresh temp dir made by rank 0
  int nccl_device = -1;   // nccl: this rank's CUDA device (>= 0; -1 makes Make("nccl") fail)
  ShmOptions shm;
  GlooOptions gloo;
  AutoOptions autos;
};

// The backends Make accepts, for help texts and checks.
// "nccl" is a name in every build; whether this build has it is Make's to say.
const std::vector<std::string>& BackendNames();  // {"auto", "mpi", "shm", "gloo", "nccl"}
Status CheckBackendName(const std::string& name);

// True on every rank when all ranks of `group` run on one host (same
// hostname). Collective over `group`.
Result<bool> AllOnOneHost(Communicator& group);

class BackendSet {
 public:
  BackendSet(Communicator& world, BackendOptions options);
  ~BackendSet();  // destroys what it made, then a store dir it made
  BackendSet(const BackendSet&) = delete;
  BackendSet& operator=(const BackendSet&) = delete;

  // A communicator of `backend` over the ranks of `group`, valid while this
  // set (and, for mpi and auto, `group`) lives. `name` keeps gloo and nccl
  // stores of different groups apart. Collective over the world.
  Result<Communicator*> Make(const std::string& backend, Communicator& group,
                             const std::string& name);

 private:
  Status EnsureStore();
  Result<Communicator*> MakeNccl(Communicator& group, const std::string& name);

  Communicator& world_;
  BackendOptions options_;
  bool made_store_dir_ = false;
  std::shared_ptr<Store> store_;
  std::vector<std::unique_ptr<Communicator>> owned_;
};

}  // namespace cohort
