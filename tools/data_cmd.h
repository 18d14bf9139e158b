#pragma once
// `cohort data tokenize` and the token-file half of `cohort data verify`.

#include <string>

#include "runtime/data/tokens.h"

namespace cohort::tools {

// Tokenizes text into llm.c token files (runtime/data/tokens.h). Prints a
// short summary, or one JSON object with `json`; progress for long inputs goes
// to stderr. Bad input: one "cohort data tokenize: error: ..." line on stderr
// and exit code 1.
int RunDataTokenize(const TokenizeOptions& opt, bool json);

// `cohort data verify DIR`: when DIR holds token files (either split), checks
// each one's header, size and largest token and prints its token count; else
// checks DIR's shard files (RunDataVerify). Exit 1 when any file is damaged.
int RunDataVerifyDir(const std::string& dir);

}  // namespace cohort::tools
