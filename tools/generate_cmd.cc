#include "tools/generate_cmd.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint.h"

namespace cohort::tools {
namespace {

Result<std::vector<int32_t>> Sample(const GenerateCmdOptions& opt, int64_t* prompt_len) {
  std::vector<std::string> warnings;
  COHORT_ASSIGN_OR_RETURN(LoadedCheckpoint ck, LoadLatestCheckpoint(opt.checkpoint, &warnings));
  for (const auto& w : warnings) std::fprintf(stderr, "cohort generate: warning: %s\n", w.c_str());
  if (ck.layout.model.type != ModelType::kGpt) {
    return InvalidArgument("the checkpoint at step " + std::to_string(ck.layout.step) + " in " +
                           opt.checkpoint + " holds an " + DescribeModel(ck.layout.model) +
                           ", not a GPT");
  }
  std::vector<int32_t> prompt;
  for (unsigned char c : opt.prompt) prompt.push_back(c);
  *prompt_len = static_cast<int64_t>(prompt.size());
  COHORT_ASSIGN_OR_RETURN(GptGenerator gen,
                          GptGenerator::Create(ck.layout.model.gpt, std::move(ck.params)));
  return gen.Generate(prompt, opt.sampling);
}

}  // namespace

int RunGenerate(const GenerateCmdOptions& opt) {
  int64_t prompt_len = 0;
  auto tokens = Sample(opt, &prompt_len);
  if (!tokens.ok()) {
    std::fprintf(stderr, "cohort generate: error: %s\n", tokens.status().message().c_str());
    return 1;
  }
  // Tokens are bytes; an id beyond a byte (a larger vocabulary) prints as <id>.
  std::string text;
  for (int32_t t : *tokens)
    text += t < 256 ? std::string(1, static_cast<char>(t)) : "<" + std::to_string(t) + ">";
  if (opt.json) {
    nlohmann::json j = {{"tokens", *tokens}, {"prompt_len", prompt_len}, {"text", text}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("%s\n", text.c_str());
  }
  return 0;
}

}  // namespace cohort::tools
