#include "runtime/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "core/crc32c.h"
#include "core/file_util.h"

namespace cohort {

Status WriteSafetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& nt : tensors) {
    if (nt.tensor.device() != Device::kCpu)
      return InvalidArgument("safetensors: " + nt.name + " is not on the CPU");
    const size_t begin = data.size();
    data.append(static_cast<const char*>(nt.tensor.raw()), nt.tensor.nbytes());
    header[nt.name] = {{"dtype", DTypeSafetensorsName(nt.tensor.dtype())},
                       {"shape", nt.tensor.shape()},
                       {"data_offsets", {begin, data.size()}}};
  }
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [k, v] : metadata) meta[k] = v;
  meta["cohort.crc32c"] = std::to_string(Crc32c(data));
  header["__metadata__"] = meta;
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // align the data section
  std::string out(8, '\0');
  const uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  out += h;
  out += data;
  return WriteFileAtomic(path, out);
}

const Tensor* SafetensorsFile::Find(const std::string& name) const {
  for (const auto& nt : tensors) {
    if (nt.name == name) return &nt.tensor;
  }
  return nullptr;
}

Result<SafetensorsFile> ReadSafetensors(const std::string& path) {
  COHORT_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  auto bad = [&](const std::string& what) {
    return DataLoss("safetensors file " + path + ": " + what);
  };
  if (bytes.size() < 8) return bad("shorter than its 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8)
    return bad("header length " + std::to_string(n) + " runs past the end of the file");
  nlohmann::json header =
      nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n), nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return bad("header is not a JSON object");
  const char* data = bytes.data() + 8 + n;
  const size_t data_size = bytes.size() - 8 - n;
  SafetensorsFile f;
  if (header.contains("__metadata__")) {
    for (const auto& [k, v] : header["__metadata__"].items()) {
      if (v.is_string()) f.metadata[k] = v.get<std::string>();
    }
  }
  if (auto it = f.metadata.find("cohort.crc32c"); it != f.metadata.end()) {
    if (std::to_string(Crc32c(data, data_size)) != it->second) {
      return bad("data checksum mismatch (the file is corrupted)");
    }
  }
  // Tensors in data order.
  std::vector<std::pair<size_t, std::string>> order;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") continue;
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets")) {
      return bad("entry '" + name + "' lacks dtype, shape or data_offsets");
    }
    order.emplace_back(v["data_offsets"][0].get<size_t>(), name);
  }
  std::sort(order.begin(), order.end());
  for (const auto& [begin_unused, name] : order) {
    const auto& v = header[name];
    auto dtype = ParseDType(v["dtype"].get<std::string>());
    if (!dtype.ok()) return bad("entry '" + name + "': " + dtype.status().message());
    Shape shape = v["shape"].get<Shape>();
    const size_t b = v["data_offsets"][0].get<size_t>(), e = v["data_offsets"][1].get<size_t>();
    auto t = Tensor::Empty(shape, *dtype);
    if (!t.ok()) return bad("entry '" + name + "': " + t.status().message());
    if (e < b || e > data_size || e - b != t->nbytes()) {
      return bad("entry '" + name + "' has offsets [" + std::to_string(b) + ", " +
                 std::to_string(e) + ") that do not fit its shape or the file");
    }
    if (e > b) std::memcpy(t->raw(), data + b, e - b);
    f.tensors.push_back({name, std::move(t).value()});
  }
  return f;
}

}  // namespace cohort
