#pragma once
// The `cohort` subcommands. CLI11 lives in main.cc alone (it is slow to
// compile); each command takes a plain options struct and returns the exit code.

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dataset.h"
#include "runtime/elastic/launcher.h"

namespace cohort::tools {

struct TrainOptions {
  std::string config_path;
  bool recalibrate = false;  // --recalibrate: measure the auto backend's table again
  int64_t steps =
      -1;  // -1: train.steps from the config; 0: none (--save-params writes the initial parameters)
  std::string backend = "auto";  // auto | mpi | shm | gloo | nccl (for the data and tensor groups)
  std::string device;            // cpu | cuda | auto; empty: train.device of the config
  std::string store_dir;         // gloo: a directory every rank sees, for bootstrap
  std::string save_params;       // write final parameters (safetensors) from rank 0
  std::string timeline;          // write a Chrome trace of every rank's steps
  std::string history;           // write one JSON line per logged step and evaluation (rank 0)
  int threads = 0;               // BLAS threads per rank; 0: cores / local ranks
  std::string log_level = "warn";  // for ranks' stderr logs
  bool verbose = false;            // every rank logs at info
  bool no_resume = false;          // ignore checkpoints in checkpoint.dir
  std::string checkpoint_dir;      // non-empty: replaces checkpoint.dir of the config
  int64_t checkpoint_every = -1;   // >= 0: replaces checkpoint.every of the config
  int metrics_port =
      -1;  // Prometheus endpoint: -1 off; under mpirun P + local rank; 0 any free port
  std::string metrics_address;  // bind address of the endpoint (empty: 0.0.0.0)
};
// Exit codes: 0 done, 1 failed, 2 bad usage, kExitStoppedBySignal when
// SIGTERM or SIGUSR1 (a Slurm preemption, requeue or time limit warned by
// --signal) stopped the run early at a step boundary after a checkpoint was
// committed (with checkpoint.dir): run the same command again to continue.
inline constexpr int kExitStoppedBySignal = 75;  // EX_TEMPFAIL
int RunTrain(const TrainOptions& opt, int* argc, char*** argv);

// `cohort launch` (tools/launch_cmd.cc, runtime/elastic/launcher.h): N local
// elastic workers.
int RunLaunch(const elastic::LaunchOptions& opt, const std::string& log_level);

int RunDataGen(const DataGenOptions& opt);
// Which coordinator to ask whether each checkpoint is committed (elastic
// jobs commit through it); empty `coordinator`: don't ask.
struct CkptCoordinatorOptions {
  std::string coordinator;  // "HOST:PORT,..."
  std::string token_file;
  std::string job = "job";  // the job's key prefix (cohort launch --job)
};
int RunCkptInspect(const std::string& dir, bool json, const CkptCoordinatorOptions& coord = {});
int RunCkptVerify(const std::string& dir, const CkptCoordinatorOptions& coord = {});
int RunDataVerify(const std::string& dir);

}  // namespace cohort::tools
