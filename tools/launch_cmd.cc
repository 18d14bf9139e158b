// `cohort launch`: flags to runtime/elastic/launcher.h's options, and the
// job's summary JSON as the last line of standard output.

#include <cstdio>

#include "core/logging.h"
#include "runtime/elastic/launcher.h"
#include "tools/commands.h"

namespace cohort::tools {

int RunLaunch(const elastic::LaunchOptions& options, const std::string& log_level) {
  elastic::LaunchOptions o = options;
  InitLogging("launch", ParseLogLevel(log_level, LogLevel::kWarn));
  if (Status st = elastic::CheckLaunchOptions(&o); !st.ok()) {
    std::fprintf(stderr, "cohort launch: error: %s\n", st.message().c_str());
    return 2;
  }
  auto spawner = elastic::ForkSpawner();
  const elastic::LaunchResult r = elastic::RunLauncher(o, *spawner);
  if (!r.summary.empty()) {
    std::printf("%s\n", r.summary.dump().c_str());
    std::fflush(stdout);
  }
  return r.exit_code;
}

}  // namespace cohort::tools
