#pragma once
// Durable file I/O: every file Cohort keeps is written to a temporary file in
// the same directory, fsynced, renamed over the target, and the directory is
// fsynced, so a crash leaves either the old file or the new one, never a mix.

#include <string>
#include <string_view>

#include "core/status.h"

namespace cohort {

// Writes `contents` to `path` atomically (temp file, fsync, rename, fsync dir).
Status WriteFileAtomic(const std::string& path, std::string_view contents);
// Reads a whole file; NotFound when it does not exist.
Result<std::string> ReadFile(const std::string& path);
// Creates `dir` and its parents if missing.
Status MakeDirs(const std::string& dir);

}  // namespace cohort
