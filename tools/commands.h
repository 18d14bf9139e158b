#pragma once
// The `cohort` subcommands. CLI11 lives in main.cc alone (it is slow to
// compile); each command takes a plain options struct and returns the exit code.

#include <cstdint>
#include <string>

#include "runtime/dataset.h"

namespace cohort::tools {

struct TrainOptions {
  std::string config_path;
  int64_t steps = 0;               // 0: from the config
  std::string backend = "auto";    // auto | mpi | shm | gloo (for the data and tensor groups)
  std::string store_dir;           // gloo: a directory every rank sees, for bootstrap
  std::string save_params;         // write final parameters (safetensors) from rank 0
  std::string timeline;            // write a Chrome trace of every rank's steps
  int threads = 0;                 // BLAS threads per rank; 0: cores / local ranks
  std::string log_level = "warn";  // for ranks' stderr logs
  bool verbose = false;            // every rank logs at info
  bool no_resume = false;          // ignore checkpoints in checkpoint.dir
};
int RunTrain(const TrainOptions& opt, int* argc, char*** argv);

int RunDataGen(const DataGenOptions& opt);
int RunCkptInspect(const std::string& dir, bool json);
int RunCkptVerify(const std::string& dir);
int RunDataVerify(const std::string& dir);

}  // namespace cohort::tools
