#pragma once
// The calibration cache of the `auto` backend (collectives/auto/auto_communicator.h):
// a measured routing table kept in a file, so that the next start of the
// same job on the same hosts with the same build skips the measurement.
//
// - The key names everything the table depends on: Cohort's version and the
//   running binary (its size and modification time: a rebuild invalidates),
//   the member backends in order, the group's size and each rank's host (a
//   hash of its host name, in rank order), and the calibration options. The
//   file is `<dir>/auto-<hash of the key>.json`, and holds the key itself.
// - A file is trusted only when its key matches and its CRC32C checksum
//   (over the key and the table) is right; otherwise it is measured again
//   and rewritten. Files are written atomically (core/file_util.h).
// - Default directory: $COHORT_CACHE_DIR, else $XDG_CACHE_HOME/cohort, else
//   $HOME/.cache/cohort (DefaultCacheDir).

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "collectives/auto/auto_communicator.h"
#include "core/status.h"

namespace cohort {

using AutoTable = std::array<std::array<std::vector<AutoCommunicator::Cell>, 2>, kAutoOps>;

// The key of a table measured with these members, hosts and options.
std::string AutoCacheKey(const std::vector<std::string>& member_names,
                         const std::vector<int64_t>& host_hashes, const AutoOptions& options,
                         const std::string& build_id);
// Cohort's version and the running binary's size and modification time.
std::string AutoBuildId();
// $COHORT_CACHE_DIR, $XDG_CACHE_HOME/cohort or $HOME/.cache/cohort; empty
// when none is set.
std::string DefaultCacheDir();
// Where the table of `key` is kept in `dir`.
std::string AutoCachePath(const std::string& dir, const std::string& key);

// The file's text for `table` (JSON with the key and a checksum).
std::string EncodeAutoTable(const std::string& key, const AutoTable& table);
// The table in `text`: DataLoss when it is damaged (not JSON, bad checksum,
// a winner or time count that does not fit `members`), FailedPrecondition
// when it was measured for another key.
Result<AutoTable> DecodeAutoTable(const std::string& text, const std::string& key, size_t members);

}  // namespace cohort
