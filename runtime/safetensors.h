#pragma once
// Reading and writing the safetensors format (8-byte little-endian header
// length, a JSON header, then raw little-endian tensor bytes), so PyTorch
// tools can open what Cohort writes. Cohort adds to "__metadata__" a
// "cohort.crc32c" entry: the CRC32C of the data section, checked on read.
// Files are written atomically (temp file, fsync, rename).

#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"

namespace cohort {

struct NamedTensor {
  std::string name;
  Tensor tensor;  // CPU
};

Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata = {});

struct SafetensorsFile {
  std::vector<NamedTensor> tensors;  // in file order
  std::map<std::string, std::string> metadata;
  const Tensor* Find(const std::string& name) const;
};

// Reads and checks a file: header bounds, offsets, dtype names, and the
// checksum when present. Errors name the file and what is wrong.
Result<SafetensorsFile> ReadSafetensors(const std::string& path);

}  // namespace cohort
