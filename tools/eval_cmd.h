#pragma once
// `cohort eval`: the newest committed checkpoint of a run, evaluated on its
// config's held-out split (a classifier's test split, or a GPT's validation
// tokens), on one process or under mpirun.

#include <string>

namespace cohort::tools {

struct EvalOptions {
  std::string checkpoint;   // a checkpoint.dir
  std::string config_path;  // empty: the config saved in the checkpoint
  bool json = false;        // one JSON object instead of the table
};
// Exit 0 after printing; 1 with one "cohort eval: error: ..." line (rank 0).
int RunEval(const EvalOptions& opt, int* argc, char*** argv);

}  // namespace cohort::tools
