#pragma once
// Little-endian fixed-width encoding shared by the WAL, snapshots, conf
// changes and the key-value commands. Header-only; no allocation beyond the
// output string. A Decoder never reads past its input: every getter returns
// false once the input is exhausted and leaves the Decoder failed.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace cohort::coordinator::raft {

inline void PutU8(std::string* out, uint8_t v) { out->push_back(static_cast<char>(v)); }
inline void PutU32(std::string* out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out->append(b, 4);
}
inline void PutU64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  out->append(b, 8);
}
// u32 length, then the bytes.
inline void PutBytes(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s.data(), s.size());
}

inline uint32_t LoadU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
inline uint64_t LoadU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v) {
    if (!Need(1)) return false;
    *v = static_cast<uint8_t>(in_[pos_]);
    pos_ += 1;
    return true;
  }
  bool U32(uint32_t* v) {
    if (!Need(4)) return false;
    *v = LoadU32(in_.data() + pos_);
    pos_ += 4;
    return true;
  }
  bool U64(uint64_t* v) {
    if (!Need(8)) return false;
    *v = LoadU64(in_.data() + pos_);
    pos_ += 8;
    return true;
  }
  // At most `max_len` bytes; a longer length fails the decoder.
  bool Bytes(std::string* v, size_t max_len) {
    uint32_t n = 0;
    if (!U32(&n)) return false;
    if (n > max_len || !Need(n)) return Fail();
    v->assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return ok_ && pos_ == in_.size(); }
  bool ok() const { return ok_; }

 private:
  bool Need(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) return Fail();
    return true;
  }
  bool Fail() {
    ok_ = false;
    return false;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace cohort::coordinator::raft
