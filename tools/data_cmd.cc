#include "tools/data_cmd.h"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <vector>

#include "tools/commands.h"

namespace cohort::tools {

int RunDataTokenize(const TokenizeOptions& opt, bool json) {
  auto r = TokenizeText(opt, &std::cerr);
  if (!r.ok()) {
    std::fprintf(stderr, "cohort data tokenize: error: %s\n", r.status().message().c_str());
    return 1;
  }
  const size_t train_files = r->files_written.size() - (r->val_tokens > 0 ? 1 : 0);
  if (json) {
    const nlohmann::json j = {{"out_dir", opt.out_dir},
                              {"name", opt.name},
                              {"vocab", kByteTokenizerVocab},
                              {"files_read", r->files_read},
                              {"files_skipped_binary", r->files_skipped_binary},
                              {"entries_skipped", r->entries_skipped},
                              {"bytes", r->bytes},
                              {"train_tokens", r->train_tokens},
                              {"val_tokens", r->val_tokens},
                              {"train_files", train_files},
                              {"files_written", r->files_written}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf(
      "read %lld text files (%lld bytes); skipped %lld binary files and %lld other entries\n",
      static_cast<long long>(r->files_read), static_cast<long long>(r->bytes),
      static_cast<long long>(r->files_skipped_binary), static_cast<long long>(r->entries_skipped));
  std::printf(
      "wrote %zu train files (%lld tokens) and %d val file (%lld tokens) to %s; vocab %lld\n",
      train_files, static_cast<long long>(r->train_tokens), r->val_tokens > 0 ? 1 : 0,
      static_cast<long long>(r->val_tokens), opt.out_dir.c_str(),
      static_cast<long long>(kByteTokenizerVocab));
  return 0;
}

int RunDataVerifyDir(const std::string& dir) {
  std::vector<std::string> files;
  for (TokenSplit split : {TokenSplit::kTrain, TokenSplit::kVal}) {
    auto list = ListTokenFiles(dir, split);
    if (list.ok()) files.insert(files.end(), list->begin(), list->end());
  }
  if (files.empty()) return RunDataVerify(dir);  // a shard directory, or an error
  int bad = 0;
  long long tokens = 0;
  for (const std::string& f : files) {
    auto info = InspectTokenFile(f);
    if (info.ok()) {
      std::printf("ok       %s: %lld tokens, largest %d\n", f.c_str(),
                  static_cast<long long>(info->tokens), info->max_token);
      tokens += info->tokens;
    } else {
      std::printf("DAMAGED  %s\n", f.c_str());
      std::fprintf(stderr, "cohort data verify: error: %s\n", info.status().message().c_str());
      ++bad;
    }
  }
  std::printf("%zu token file(s) intact (%lld tokens), %d damaged\n",
              files.size() - static_cast<size_t>(bad), tokens, bad);
  return bad == 0 ? 0 : 1;
}

}  // namespace cohort::tools
