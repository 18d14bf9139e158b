#pragma once
// Token data for language models, in llm.c's token file format, and the
// sampler that cuts training windows out of it.
//
// Token file layout (llm.c `dev/data/data_common.py`, little-endian):
//   int32 header[256]: header[0] = 20240520 (magic), header[1] = 1 (version:
//   uint16 tokens), header[2] = number of tokens N; the rest is zero.
//   Then N uint16 tokens. Nothing follows them.
// A dataset directory holds one or more such files per split; llm.c's scripts
// name them `<name>_train.bin`, `<name>_val.bin` or `<name>_train_000001.bin`.
//
// Windows: a GPT step reads `context + 1` consecutive tokens per sample; x is
// the first `context` of them and y the last `context` (the next-token
// targets). Where a window starts is a pure function of (seed, step, sample),
// so a resumed run repeats an uninterrupted one bit for bit and N data-parallel
// ranks that split a step's samples see exactly what one rank sees.

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace cohort {

inline constexpr int32_t kTokenFileMagic = 20240520;
inline constexpr int32_t kTokenFileVersion = 1;  // uint16 tokens (llm.c's version 2 holds uint32)
inline constexpr int64_t kTokenHeaderBytes = 1024;  // 256 int32
// header[2] is an int32: the most tokens one file can hold.
inline constexpr int64_t kMaxTokensPerFile = 2147483647;

enum class TokenSplit { kTrain, kVal };
// "train" or "val".
std::string_view TokenSplitName(TokenSplit split);

// Writes an llm.c token file atomically (temp file, fsync, rename, fsync of
// the directory; core/file_util.h). InvalidArgument when `tokens` holds more
// than kMaxTokensPerFile; IoError when the write fails.
Status WriteTokenFile(const std::string& path, std::span<const uint16_t> tokens);

// The token files of one split in `dir`: every regular file (symlinks to one
// are followed) whose name ends in ".bin" and contains "_train" (kTrain) or
// "_val" (kVal), sorted by name. NotFound when `dir` does not exist or holds
// no such file.
Result<std::vector<std::string>> ListTokenFiles(const std::string& dir, TokenSplit split);

struct TokenFileInfo {
  std::string path;
  int64_t tokens = 0;
  int32_t max_token = -1;  // -1 when the file holds no token
};
// Checks one token file (header, size) and scans its tokens for the largest.
// DataLoss naming the file when it is not a well-formed version-1 file.
Result<TokenFileInfo> InspectTokenFile(const std::string& path);

// The token files of one split, memory-mapped read-only and read as one
// stream (files in name order). Immutable after Open; Fill and the accessors
// are safe to call from many threads. The files must not change while open.
class TokenDataset {
 public:
  // Maps every file of `split` in `dir` (ListTokenFiles) and checks each one's
  // header and size, and every token against `vocab` (one scan at open).
  // Errors name the file:
  // - NotFound: `dir` missing, or no file of the split;
  // - DataLoss: shorter than the header, bad magic, a token count that does
  //   not match the file size (truncated, or trailing bytes);
  // - Unimplemented: a version other than 1;
  // - InvalidArgument: vocab < 1, or a token >= vocab ("token 300 at position
  //   17 is beyond the vocabulary 256 of the config: FILE"; position counts
  //   tokens from the start of that file);
  // - IoError: open or mmap failed.
  static Result<std::unique_ptr<TokenDataset>> Open(const std::string& dir, TokenSplit split,
                                                    int64_t vocab);
  ~TokenDataset();
  TokenDataset(const TokenDataset&) = delete;
  TokenDataset& operator=(const TokenDataset&) = delete;

  // Tokens in the whole stream (all files of the split).
  int64_t tokens() const { return total_tokens_; }
  // The mapped files, in stream order.
  std::vector<std::string> files() const;
  // Token `i` of the stream, 0 <= i < tokens().
  uint16_t token(int64_t i) const;

  // Fills `count` windows of `context` tokens: window j is sample `first + j`
  // of step `step`; it starts at p = WindowStart(seed, step, first + j,
  // tokens(), context), and x[j*context + t] = token(p + t), y[j*context + t]
  // = token(p + t + 1) for t in [0, context). x and y hold count * context
  // int32 each. Samples [r*B, (r+1)*B) filled by rank r equal the same rows
  // of one call for the whole global batch.
  // FailedPrecondition when tokens() < context + 1 (the stream holds no
  // window); InvalidArgument when context < 1, count < 0, first < 0 or
  // step < 0.
  Status Fill(uint64_t seed, int64_t step, int64_t first, int64_t count, int64_t context,
              int32_t* x, int32_t* y) const;

  // Where sample `sample` of step `step` starts, in [0, tokens - context):
  //   h = Mix64(Mix64(seed ^ Mix64(step)) + sample)   (HashCombine, runtime/rng.h;
  //       Mix64 is SplitMix64's finaliser, arithmetic mod 2^64)
  //   p = h mod (tokens - context)
  // Requires context >= 1 and tokens >= context + 1 (checked: aborts).
  static int64_t WindowStart(uint64_t seed, int64_t step, int64_t sample, int64_t tokens,
                             int64_t context);

 private:
  struct MappedFile;  // one mmap'ed file; unmapped by the destructor
  TokenDataset();
  // Copies stream tokens [start, start + n) into out.
  void Copy(int64_t start, int64_t n, int32_t* out) const;

  std::string dir_;
  TokenSplit split_ = TokenSplit::kTrain;
  std::vector<MappedFile> files_;
  std::vector<int64_t> offsets_;  // stream index of each file's first token; ascending
  int64_t total_tokens_ = 0;
};

// `cohort data tokenize`: text files to byte-level token files (vocab 256).
//
// Inputs are files or directories. A directory contributes every regular file
// directly in it, sorted by path; it is not recursed into, and symlinks in it
// are not followed (Debian's fortunes directory links `art.u8` to `art`, which
// would count each text twice). A file is text when it contains no NUL byte and
// is valid UTF-8 (no overlong forms, surrogates or code points above
// U+10FFFF); any other file is binary. Binary files in a directory are skipped
// and counted (the `.dat` indexes beside the fortunes); a binary file named
// explicitly is an InvalidArgument error naming it.
//
// The text files' bytes, concatenated in input order, are the token stream.
// Its last round(val_fraction * N) tokens (at least 1 when val_fraction > 0)
// are the validation split, written to `<name>_val_000000.bin`; the rest is
// split over `shards` training files of near-equal size,
// `<name>_train_000000.bin` .... No validation file is written when
// val_fraction is 0.

// Every token TokenizeText writes is one byte of text.
inline constexpr int64_t kByteTokenizerVocab = 256;

struct TokenizeOptions {
  std::vector<std::string> inputs;  // files or directories; at least one
  std::string out_dir;              // created if missing
  int shards = 1;                   // training files, >= 1
  double val_fraction = 0.1;        // in [0, 1)
  std::string name = "text";        // file name prefix; no '/'
};

// Inputs beyond this many bytes in all are refused (the corpus is held in
// memory while it is split); tokenize a larger corpus in parts.
inline constexpr int64_t kMaxTokenizeBytes = int64_t{8} << 30;

struct TokenizeReport {
  int64_t files_read = 0;            // text files tokenized
  int64_t files_skipped_binary = 0;  // in input directories: a NUL byte, or not UTF-8
  int64_t entries_skipped = 0;       // in input directories: symlinks, subdirectories, others
  int64_t bytes = 0;                 // of the text files read; = train_tokens + val_tokens
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  std::vector<std::string> files_written;  // training files in order, then the validation file
};

// Tokenizes `opt.inputs` into `opt.out_dir`. Each file is written atomically.
// Errors: InvalidArgument for bad options, a binary file named explicitly, an
// empty corpus, or one too small for the shards; NotFound for a missing input;
// FailedPrecondition when out_dir already holds a token file this run would
// not overwrite (it would join the new ones' stream); IoError from the file
// system. Progress lines go to `progress` (when non-null) for inputs of more
// than 64 MiB.
Result<TokenizeReport> TokenizeText(const TokenizeOptions& opt, std::ostream* progress);

}  // namespace cohort
