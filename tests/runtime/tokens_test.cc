// llm.c token files, TokenDataset's windows, and the byte tokenizer.
#include "runtime/data/tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "core/file_util.h"

namespace cohort {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string FreshDir(const std::string& name) {
  const std::string d = testing::TempDir() + "/cohort_tokens_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A token file written by hand: header fields and raw tokens, plus extra bytes.
void WriteRaw(const std::string& path, int32_t magic, int32_t version, int32_t count,
              const std::vector<uint16_t>& tokens, const std::string& trailing = "") {
  std::string bytes(1024, '\0');
  const int32_t h[3] = {magic, version, count};
  std::memcpy(bytes.data(), h, sizeof(h));
  bytes.append(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
  bytes += trailing;
  std::ofstream(path, std::ios::binary) << bytes;
}

std::vector<uint16_t> Iota(int n, int from = 0, int mod = 256) {
  std::vector<uint16_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<uint16_t>((from + i) % mod);
  return t;
}

// The error Open gives for a directory holding a single train file `make` wrote.
Status OpenError(const std::string& name, const std::function<void(const std::string&)>& make,
                 std::string* path, int64_t vocab = 256) {
  const std::string dir = FreshDir(name);
  *path = dir + "/d_train.bin";
  make(*path);
  auto ds = TokenDataset::Open(dir, TokenSplit::kTrain, vocab);
  return ds.ok() ? Status::Ok() : ds.status();
}

TEST(TokenFile, WriteThenReadBack) {
  const std::string dir = FreshDir("roundtrip");
  const std::vector<uint16_t> a = Iota(100), b = Iota(50, 7);
  ASSERT_TRUE(WriteTokenFile(dir + "/x_train_000000.bin", a).ok());
  ASSERT_TRUE(WriteTokenFile(dir + "/x_train_000001.bin", b).ok());
  ASSERT_TRUE(WriteTokenFile(dir + "/x_val_000000.bin", Iota(20, 3)).ok());
  std::ofstream(dir + "/notes.txt") << "not a token file";
  // Exactly llm.c's layout: 1024-byte header, then uint16 tokens.
  EXPECT_EQ(fs::file_size(dir + "/x_train_000000.bin"), 1024u + 200u);
  auto raw = ReadFile(dir + "/x_train_000000.bin");
  ASSERT_TRUE(raw.ok());
  int32_t h[4];
  std::memcpy(h, raw->data(), sizeof(h));
  EXPECT_EQ(h[0], 20240520);
  EXPECT_EQ(h[1], 1);
  EXPECT_EQ(h[2], 100);
  EXPECT_EQ(h[3], 0);

  auto train = TokenDataset::Open(dir, TokenSplit::kTrain, 256);
  ASSERT_TRUE(train.ok()) << train.status().ToString();
  EXPECT_EQ((*train)->tokens(), 150);
  EXPECT_EQ((*train)->files().size(), 2u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ((*train)->token(i), a[static_cast<size_t>(i)]);
  for (int i = 0; i < 50; ++i) EXPECT_EQ((*train)->token(100 + i), b[static_cast<size_t>(i)]);
  auto val = TokenDataset::Open(dir, TokenSplit::kVal, 256);
  ASSERT_TRUE(val.ok()) << val.status().ToString();
  EXPECT_EQ((*val)->tokens(), 20);

  auto info = InspectTokenFile(dir + "/x_train_000001.bin");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->tokens, 50);
  EXPECT_EQ(info->max_token, 56);
}

TEST(TokenFile, LlmcNamesAreFoundAndSorted) {
  const std::string dir = FreshDir("names");
  ASSERT_TRUE(WriteTokenFile(dir + "/fineweb_train_000002.bin", Iota(3, 20)).ok());
  ASSERT_TRUE(WriteTokenFile(dir + "/fineweb_train_000001.bin", Iota(3, 10)).ok());
  ASSERT_TRUE(WriteTokenFile(dir + "/tinyshakespeare_val.bin", Iota(4)).ok());
  ASSERT_TRUE(WriteTokenFile(dir + "/fineweb_train_000001.bin.tmp", Iota(4)).ok());
  auto files = ListTokenFiles(dir, TokenSplit::kTrain);
  ASSERT_TRUE(files.ok());
  EXPECT_THAT(*files, ::testing::ElementsAre(dir + "/fineweb_train_000001.bin",
                                             dir + "/fineweb_train_000002.bin"));
  auto ds = TokenDataset::Open(dir, TokenSplit::kTrain, 256);
  ASSERT_TRUE(ds.ok());
  EXPECT_EQ((*ds)->token(0), 10);
  EXPECT_EQ((*ds)->token(3), 20);
}

TEST(TokenFile, Gpt2VocabularyTokensAboveAByte) {
  const std::string dir = FreshDir("gpt2");
  const std::vector<uint16_t> t = {50256, 0, 300, 50303, 15496, 11};
  ASSERT_TRUE(WriteTokenFile(dir + "/g_val.bin", t).ok());
  auto ds = TokenDataset::Open(dir, TokenSplit::kVal, 50304);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  for (size_t i = 0; i < t.size(); ++i) EXPECT_EQ((*ds)->token(static_cast<int64_t>(i)), t[i]);
  auto small = TokenDataset::Open(dir, TokenSplit::kVal, 50257);
  ASSERT_FALSE(small.ok());
  EXPECT_THAT(small.status().message(),
              HasSubstr("token 50303 at position 3 is beyond the vocabulary 50257"));
}

TEST(TokenFile, EveryBadFileIsNamed) {
  std::string path;
  Status s = OpenError(
      "short", [](const std::string& p) { std::ofstream(p) << "tiny"; }, &path);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr(path + " is shorter than its 1024-byte header (4 bytes)"));

  s = OpenError(
      "magic", [](const std::string& p) { WriteRaw(p, 20240521, 1, 3, Iota(3)); }, &path);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr(path + " has magic 20240521, not 20240520"));

  s = OpenError(
      "version", [](const std::string& p) { WriteRaw(p, 20240520, 2, 3, Iota(3)); }, &path);
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr(path + " has version 2; only version 1"));

  s = OpenError(
      "truncated", [](const std::string& p) { WriteRaw(p, 20240520, 1, 10, Iota(9)); }, &path);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(
      s.message(),
      HasSubstr(path +
                " is truncated: its header says 10 tokens (1044 bytes) but it has 1042 bytes"));

  s = OpenError(
      "trailing", [](const std::string& p) { WriteRaw(p, 20240520, 1, 3, Iota(3), "x"); }, &path);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(
      s.message(),
      HasSubstr(
          path +
          " has trailing bytes: its header says 3 tokens (1030 bytes) but it has 1031 bytes"));

  s = OpenError(
      "vocab",
      [](const std::string& p) {
        std::vector<uint16_t> t = Iota(30);
        t[17] = 300;
        ASSERT_TRUE(WriteTokenFile(p, t).ok());
      },
      &path);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "token 300 at position 17 is beyond the vocabulary 256 of the config: " + path);

  // The damage is found in a second file too, after a good one.
  const std::string dir = FreshDir("second");
  ASSERT_TRUE(WriteTokenFile(dir + "/a_train_000000.bin", Iota(5)).ok());
  WriteRaw(dir + "/a_train_000001.bin", 20240520, 1, 5, Iota(4));
  auto ds = TokenDataset::Open(dir, TokenSplit::kTrain, 256);
  ASSERT_FALSE(ds.ok());
  EXPECT_THAT(ds.status().message(), HasSubstr(dir + "/a_train_000001.bin is truncated"));

  auto missing = TokenDataset::Open(dir + "/nope", TokenSplit::kTrain, 256);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("token directory not found: " + dir + "/nope"));
  auto no_val = TokenDataset::Open(dir, TokenSplit::kVal, 256);
  EXPECT_EQ(no_val.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(no_val.status().message(), HasSubstr("no val token files in " + dir));

  EXPECT_FALSE(InspectTokenFile(dir + "/a_train_000001.bin").ok());
}

// A dataset of `n` tokens in three files, token i = i * 7 mod 251.
std::unique_ptr<TokenDataset> ThreeFiles(const std::string& name, int n) {
  const std::string dir = FreshDir(name);
  std::vector<uint16_t> all(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) all[static_cast<size_t>(i)] = static_cast<uint16_t>(i * 7 % 251);
  const std::span<const uint16_t> s(all);
  const size_t a = static_cast<size_t>(n) / 3, b = 2 * static_cast<size_t>(n) / 3;
  EXPECT_TRUE(WriteTokenFile(dir + "/t_train_000000.bin", s.subspan(0, a)).ok());
  EXPECT_TRUE(WriteTokenFile(dir + "/t_train_000001.bin", s.subspan(a, b - a)).ok());
  EXPECT_TRUE(WriteTokenFile(dir + "/t_train_000002.bin", s.subspan(b)).ok());
  EXPECT_TRUE(WriteTokenFile(dir + "/t_train_000001b.bin", {}).ok());  // empty, between two
  auto ds = TokenDataset::Open(dir, TokenSplit::kTrain, 256);
  EXPECT_TRUE(ds.ok()) << ds.status().ToString();
  return std::move(ds).value();
}

TEST(Windows, ShiftedByOneAndCrossFileBoundaries) {
  auto ds = ThreeFiles("windows", 300);
  ASSERT_EQ(ds->tokens(), 300);
  const int64_t ctx = 64, count = 40;
  std::vector<int32_t> x(count * ctx), y(count * ctx);
  ASSERT_TRUE(ds->Fill(5, 3, 0, count, ctx, x.data(), y.data()).ok());
  bool crossed = false;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t p = TokenDataset::WindowStart(5, 3, j, 300, ctx);
    ASSERT_GE(p, 0);
    ASSERT_LE(p + ctx, 299);
    crossed |= (p < 100 && p + ctx >= 100) || (p < 200 && p + ctx >= 200);
    for (int64_t t = 0; t < ctx; ++t) {
      ASSERT_EQ(x[j * ctx + t], (p + t) * 7 % 251) << "sample " << j << " t " << t;
      ASSERT_EQ(y[j * ctx + t], (p + t + 1) * 7 % 251);
      if (t + 1 < ctx) {
        ASSERT_EQ(y[j * ctx + t], x[j * ctx + t + 1]);
      }
    }
  }
  EXPECT_TRUE(crossed) << "no window spanned two files";
}

TEST(Windows, PureFunctionOfSeedStepSample) {
  auto ds = ThreeFiles("pure", 5000);
  const int64_t ctx = 16, global = 8;
  std::vector<int32_t> x1(global * ctx), y1(global * ctx), x2(global * ctx), y2(global * ctx);
  ASSERT_TRUE(ds->Fill(11, 7, 0, global, ctx, x1.data(), y1.data()).ok());
  ASSERT_TRUE(ds->Fill(11, 7, 0, global, ctx, x2.data(), y2.data()).ok());
  EXPECT_EQ(x1, x2);
  EXPECT_EQ(y1, y2);
  // Two "ranks" taking samples [0, 4) and [4, 8) see what one rank sees.
  std::vector<int32_t> xr(global * ctx), yr(global * ctx);
  const int64_t half = global / 2;
  ASSERT_TRUE(ds->Fill(11, 7, 0, half, ctx, xr.data(), yr.data()).ok());
  ASSERT_TRUE(
      ds->Fill(11, 7, half, half, ctx, xr.data() + half * ctx, yr.data() + half * ctx).ok());
  EXPECT_EQ(xr, x1);
  EXPECT_EQ(yr, y1);
  // Another step or seed gives other windows.
  ASSERT_TRUE(ds->Fill(11, 8, 0, global, ctx, x2.data(), y2.data()).ok());
  EXPECT_NE(x2, x1);
  ASSERT_TRUE(ds->Fill(12, 7, 0, global, ctx, x2.data(), y2.data()).ok());
  EXPECT_NE(x2, x1);
  // Starts are spread over the whole stream.
  int64_t lo = 5000, hi = 0;
  for (int64_t s = 0; s < 1000; ++s) {
    const int64_t p = TokenDataset::WindowStart(1, 0, s, 5000, ctx);
    lo = std::min(lo, p);
    hi = std::max(hi, p);
  }
  EXPECT_LT(lo, 50);
  EXPECT_GT(hi, 5000 - ctx - 50);
}

TEST(Windows, TooShortAStreamIsAnError) {
  auto ds = ThreeFiles("short", 30);
  std::vector<int32_t> x(30), y(30);
  Status s = ds->Fill(1, 0, 0, 1, 30, x.data(), y.data());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(),
              HasSubstr("holds 30 tokens, fewer than the 31 that one window of context 30 needs"));
  EXPECT_TRUE(ds->Fill(1, 0, 0, 1, 29, x.data(), y.data()).ok());
  EXPECT_EQ(x[0], 0);  // the only window starts at 0
  EXPECT_EQ(y[28], 29 * 7);
  EXPECT_FALSE(ds->Fill(1, 0, 0, 1, 0, x.data(), y.data()).ok());
  EXPECT_FALSE(ds->Fill(1, -1, 0, 1, 4, x.data(), y.data()).ok());
}

TEST(Tokenize, DirectoryOfTextBinaryAndSymlink) {
  const std::string in = FreshDir("tok_in"), out = FreshDir("tok_out") + "/made/here";
  std::ofstream(in + "/a.txt") << std::string(600, 'a');
  std::ofstream(in + "/b.txt") << "h\xc3\xa9llo " << std::string(393, 'b');  // 400 bytes, UTF-8
  std::ofstream(in + "/c.dat", std::ios::binary) << std::string("ab\0cd", 5);
  std::ofstream(in + "/d.latin1", std::ios::binary) << "caf\xe9";  // not UTF-8
  fs::create_symlink(in + "/a.txt", in + "/a.u8");
  fs::create_directory(in + "/sub");
  TokenizeOptions o;
  o.inputs = {in};
  o.out_dir = out;
  o.shards = 3;
  o.val_fraction = 0.1;
  o.name = "tiny";
  std::ostringstream progress;
  auto r = TokenizeText(o, &progress);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files_read, 2);
  EXPECT_EQ(r->files_skipped_binary, 2);
  EXPECT_EQ(r->entries_skipped, 2);  // the symlink and the subdirectory
  EXPECT_EQ(r->bytes, 1000);
  EXPECT_EQ(r->val_tokens, 100);
  EXPECT_EQ(r->train_tokens, 900);
  EXPECT_THAT(r->files_written,
              ::testing::ElementsAre(out + "/tiny_train_000000.bin", out + "/tiny_train_000001.bin",
                                     out + "/tiny_train_000002.bin", out + "/tiny_val_000000.bin"));
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(InspectTokenFile(r->files_written[static_cast<size_t>(i)])->tokens, 300);
  EXPECT_TRUE(progress.str().empty());  // short input: no progress lines

  auto train = TokenDataset::Open(out, TokenSplit::kTrain, 256);
  ASSERT_TRUE(train.ok());
  auto val = TokenDataset::Open(out, TokenSplit::kVal, 256);
  ASSERT_TRUE(val.ok());
  EXPECT_EQ((*train)->tokens(), 900);
  EXPECT_EQ((*val)->tokens(), 100);
  // a.txt then b.txt, byte for byte.
  EXPECT_EQ((*train)->token(599), 'a');
  EXPECT_EQ((*train)->token(600), 'h');
  EXPECT_EQ((*train)->token(601), 0xc3);
  EXPECT_EQ((*val)->token(99), 'b');

  // The same run again overwrites its own files; a stale shard from another
  // run would join the stream and is refused.
  EXPECT_TRUE(TokenizeText(o, nullptr).ok());
  o.shards = 2;
  auto stale = TokenizeText(o, nullptr);
  EXPECT_EQ(stale.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.status().message(), HasSubstr("tiny_train_000002.bin"));

  // val_fraction 0: no validation file; a tiny fraction still gives 1 token.
  TokenizeOptions z = o;
  z.out_dir = FreshDir("tok_zero");
  z.val_fraction = 0;
  auto rz = TokenizeText(z, nullptr);
  ASSERT_TRUE(rz.ok());
  EXPECT_EQ(rz->val_tokens, 0);
  EXPECT_EQ(rz->files_written.size(), 2u);
  z.out_dir = FreshDir("tok_tiny");
  z.val_fraction = 1e-6;
  EXPECT_EQ(TokenizeText(z, nullptr)->val_tokens, 1);
}

TEST(Tokenize, BadOptionsAndInputs) {
  const std::string in = FreshDir("tok_bad");
  std::ofstream(in + "/t.txt") << "hello";
  std::ofstream(in + "/b.bin", std::ios::binary) << std::string("a\0b", 3);
  std::ofstream(in + "/empty.txt") << "";
  const auto err = [&](std::vector<std::string> inputs, int shards, double frac,
                       std::string name = "text") {
    TokenizeOptions o;
    o.inputs = std::move(inputs);
    o.out_dir = FreshDir("tok_bad_out");
    o.shards = shards;
    o.val_fraction = frac;
    o.name = std::move(name);
    auto r = TokenizeText(o, nullptr);
    return r.ok() ? std::string("OK") : r.status().message();
  };
  EXPECT_EQ(err({in + "/t.txt"}, 1, 0.2), "OK");
  EXPECT_THAT(err({}, 1, 0.1), HasSubstr("no input"));
  EXPECT_THAT(err({in + "/nope"}, 1, 0.1), HasSubstr("input not found: " + in + "/nope"));
  EXPECT_THAT(err({in + "/t.txt"}, 0, 0.1), HasSubstr("training shards must be at least 1, not 0"));
  EXPECT_THAT(err({in + "/t.txt"}, 1, 1.5),
              HasSubstr("validation fraction must be in [0, 1), not 1.5"));
  EXPECT_THAT(err({in + "/t.txt"}, 1, -0.1), HasSubstr("validation fraction"));
  EXPECT_THAT(err({in + "/t.txt"}, 1, 0.1, "a/b"), HasSubstr("prefix 'a/b'"));
  EXPECT_THAT(err({in + "/t.txt"}, 1, 0.1, "my_val"),
              HasSubstr("must not contain '_train' or '_val'"));
  EXPECT_THAT(err({in + "/b.bin"}, 1, 0.1),
              HasSubstr("input " + in + "/b.bin is binary, not text: a NUL byte at offset 1"));
  EXPECT_THAT(err({in + "/empty.txt"}, 1, 0.1), HasSubstr("the inputs hold no text"));
  EXPECT_THAT(err({in + "/t.txt"}, 5, 0.1),
              HasSubstr("too few for 1 validation tokens and 5 non-empty training shards"));
}

// The real corpus the GPT example trains on (scripts/setup installs it).
TEST(Tokenize, Fortunes) {
  const std::string dir = "/usr/share/games/fortunes";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " missing (apt-get install fortunes)";
  int64_t text_bytes = 0, dat_files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || e.is_symlink()) continue;
    if (e.path().extension() == ".dat") {
      ++dat_files;
    } else {
      text_bytes += static_cast<int64_t>(e.file_size());
    }
  }
  TokenizeOptions o;
  o.inputs = {dir};
  o.out_dir = FreshDir("fortunes");
  o.shards = 4;
  o.name = "fortunes";
  auto r = TokenizeText(o, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GT(dat_files, 0);
  EXPECT_EQ(r->files_skipped_binary, dat_files);
  EXPECT_EQ(r->train_tokens + r->val_tokens, text_bytes);
  EXPECT_EQ(r->val_tokens, std::llround(0.1 * static_cast<double>(text_bytes)));
  auto train = TokenDataset::Open(o.out_dir, TokenSplit::kTrain, 256);
  ASSERT_TRUE(train.ok()) << train.status().ToString();
  EXPECT_EQ((*train)->tokens(), r->train_tokens);
  EXPECT_EQ((*train)->files().size(), 4u);
  std::vector<int32_t> x(4 * 256), y(4 * 256);
  EXPECT_TRUE((*train)->Fill(1, 0, 0, 4, 256, x.data(), y.data()).ok());
}

}  // namespace
}  // namespace cohort
