#pragma once
// `cohort generate`: text sampled from the newest committed GPT checkpoint.

#include <string>

#include "runtime/generate.h"

namespace cohort::tools {

struct GenerateCmdOptions {
  std::string checkpoint;  // a checkpoint.dir
  std::string prompt;  // text; one token per byte (the byte vocabulary of `cohort data tokenize`)
  GenerateOptions sampling;
  bool json = false;  // one JSON object: {"tokens": [...], "prompt_len": P, "text": "..."}
};
// Prints the prompt followed by the sampled text (or JSON). Bad input: one
// "cohort generate: error: ..." line on stderr and exit code 1.
int RunGenerate(const GenerateCmdOptions& opt);

}  // namespace cohort::tools
