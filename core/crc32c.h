#pragma once
// CRC32C (Castagnoli), the checksum of every durable byte Cohort writes
// (dataset shards, WAL records, checkpoints). Uses the SSE4.2 instruction when
// the CPU has it, else a slice-by-8 table. Thread-safe.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cohort {

// Extends `crc` (the value returned for the preceding bytes; 0 to start) over
// `n` bytes at `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
inline uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }
inline uint32_t Crc32c(std::string_view s) { return Crc32c(s.data(), s.size()); }

// The portable table version, exposed so tests can compare both paths.
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n);
bool Crc32cHardwareAvailable();

}  // namespace cohort
