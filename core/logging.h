#pragma once
// Logging through spdlog. Every process logs to standard error; standard
// output is reserved for what a user or program reads (progress and the
// summary JSON of rank 0). `InitLogging` names the process ("rank 3") so lines
// from many ranks under mpirun can be told apart.

#include <spdlog/spdlog.h>

#include <string>

namespace cohort {

enum class LogLevel { kDebug, kInfo, kWarn, kError };

// Sets the default logger: stderr, pattern "[time] [name] level: message".
void InitLogging(const std::string& process_name, LogLevel level);
LogLevel ParseLogLevel(const std::string& name, LogLevel fallback);

}  // namespace cohort

#define COHORT_LOG_DEBUG(...) SPDLOG_DEBUG(__VA_ARGS__)
#define COHORT_LOG_INFO(...) spdlog::info(__VA_ARGS__)
#define COHORT_LOG_WARN(...) spdlog::warn(__VA_ARGS__)
#define COHORT_LOG_ERROR(...) spdlog::error(__VA_ARGS__)
