// IDX files (MNIST's format): hand-made good and broken files, gzip'd and
// plain, and Debian's Fashion-MNIST when it is installed.
#include "runtime/data/idx.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>

namespace cohort {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string FreshDir(const std::string& name) {
  const std::string d = testing::TempDir() + "/cohort_idx_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string Be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string Bytes(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

std::string ImagesBytes(uint32_t count, uint32_t rows, uint32_t cols,
                        const std::vector<uint8_t>& pixels, uint32_t magic = kIdxImagesMagic) {
  return Be32(magic) + Be32(count) + Be32(rows) + Be32(cols) + Bytes(pixels);
}

std::string LabelsBytes(uint32_t count, const std::vector<uint8_t>& labels,
                        uint32_t magic = kIdxLabelsMagic) {
  return Be32(magic) + Be32(count) + Bytes(labels);
}

// Writes `bytes` to dir/name, gzip'd to dir/name.gz when `gzip`; returns the path.
std::string WriteIdx(const std::string& dir, const std::string& name, const std::string& bytes,
                     bool gzip) {
  if (!gzip) {
    const std::string path = dir + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  const std::string path = dir + "/" + name + ".gz";
  gzFile f = gzopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr) << path;
  if (f == nullptr) return path;
  if (!bytes.empty()) {
    EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
  }
  EXPECT_EQ(gzclose(f), Z_OK);
  return path;
}

// The small good split every test starts from: 3 images of 2x3 pixels.
constexpr uint32_t kRows = 2, kCols = 3, kCount = 3;
const std::vector<uint8_t> kPixels = {0,   1,   2,   3,   4,   5,  // image 0
                                      255, 128, 64,  32,  16,  8,  // image 1
                                      7,   77,  177, 254, 100, 200};
const std::vector<uint8_t> kLabels = {9, 0, 4};

class IdxTest : public testing::TestWithParam<bool> {  // true: gzip'd files
 protected:
  bool gzip() const { return GetParam(); }
  std::string Dir() {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->name());
    std::replace(name.begin(), name.end(), '/', '_');
    return FreshDir(name);
  }
  // Writes the images and labels of the train split; returns their paths.
  std::pair<std::string, std::string> Write(const std::string& dir, const std::string& images,
                                            const std::string& labels,
                                            IdxSplit split = IdxSplit::kTrain) {
    return {WriteIdx(dir, IdxImagesFileName(split), images, gzip()),
            WriteIdx(dir, IdxLabelsFileName(split), labels, gzip())};
  }
  // Opens the train split, expecting an error; returns it.
  Status OpenError(const std::string& dir) {
    auto ds = IdxDataset::Open(dir, IdxSplit::kTrain);
    EXPECT_FALSE(ds.ok());
    return ds.status();
  }
};

INSTANTIATE_TEST_SUITE_P(Formats, IdxTest, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& p) {
                           return p.param ? "Gzip" : "Plain";
                         });

TEST_P(IdxTest, GoodPairReadsBackExactly) {
  const std::string dir = Dir();
  const auto [images, labels] =
      Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels), LabelsBytes(kCount, kLabels));
  auto ds = IdxDataset::Open(dir, IdxSplit::kTrain);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ((*ds)->images_path(), images);
  EXPECT_EQ((*ds)->labels_path(), labels);
  EXPECT_EQ((*ds)->samples(), 3);
  EXPECT_EQ((*ds)->rows(), 2);
  EXPECT_EQ((*ds)->cols(), 3);
  EXPECT_EQ((*ds)->features(), 6);
  EXPECT_EQ((*ds)->classes(), 10);
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*ds)->label(i), kLabels[static_cast<size_t>(i)]);
    const auto img = (*ds)->image(i);
    EXPECT_EQ(std::vector<uint8_t>(img.begin(), img.end()),
              std::vector<uint8_t>(kPixels.begin() + i * 6, kPixels.begin() + (i + 1) * 6));
  }

  // Fill in any order, repeats allowed: pixel / 255 and the label.
  const std::array<int64_t, 4> ids = {2, 0, 1, 2};
  std::vector<float> x(ids.size() * 6, -1.0f);
  std::vector<int32_t> y(ids.size(), -1);
  ASSERT_TRUE((*ds)->Fill(ids, x.data(), y.data()).ok());
  for (size_t r = 0; r < ids.size(); ++r) {
    EXPECT_EQ(y[r], kLabels[static_cast<size_t>(ids[r])]) << r;
    for (size_t p = 0; p < 6; ++p) {
      EXPECT_EQ(x[r * 6 + p],
                static_cast<float>(kPixels[static_cast<size_t>(ids[r]) * 6 + p]) / 255.0f)
          << r << "," << p;
    }
  }
  EXPECT_EQ(x[6 + 0], 0.0f);   // image 0, pixel 0
  EXPECT_EQ(x[12 + 0], 1.0f);  // image 1, pixel 0 = 255
}

TEST_P(IdxTest, TestSplitReadsT10kFiles) {
  const std::string dir = Dir();
  Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels), LabelsBytes(kCount, kLabels));
  const auto [images, labels] =
      Write(dir, ImagesBytes(1, 1, 2, {10, 20}), LabelsBytes(1, {3}), IdxSplit::kTest);
  auto ds = IdxDataset::Open(dir, IdxSplit::kTest);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_THAT(images, HasSubstr("t10k-images-idx3-ubyte"));
  EXPECT_EQ((*ds)->images_path(), images);
  EXPECT_EQ((*ds)->labels_path(), labels);
  EXPECT_EQ((*ds)->samples(), 1);
  EXPECT_EQ((*ds)->features(), 2);
  EXPECT_EQ((*ds)->label(0), 3);
}

TEST_P(IdxTest, EmptySplitIsValid) {
  const std::string dir = Dir();
  Write(dir, ImagesBytes(0, 28, 28, {}), LabelsBytes(0, {}));
  auto ds = IdxDataset::Open(dir, IdxSplit::kTrain);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ((*ds)->samples(), 0);
  EXPECT_EQ((*ds)->features(), 784);
}

TEST_P(IdxTest, TruncatedImages) {
  const std::string dir = Dir();
  const std::vector<uint8_t> two(kPixels.begin(), kPixels.begin() + 12);
  const auto [images, labels] =
      Write(dir, ImagesBytes(kCount, kRows, kCols, two), LabelsBytes(kCount, kLabels));
  const Status s = OpenError(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), AllOf(StartsWith(images + ": truncated"),
                                 HasSubstr("3 images of 2x3 pixels, 18 bytes after the 16-byte "
                                           "header, but only 12 follow")));
}

TEST_P(IdxTest, TruncatedLabels) {
  const std::string dir = Dir();
  const auto [images, labels] =
      Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels), LabelsBytes(kCount, {9, 0}));
  const Status s = OpenError(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(),
              AllOf(StartsWith(labels + ": truncated"),
                    HasSubstr("3 labels, 3 bytes after the 8-byte header, but only 2")));
}

TEST_P(IdxTest, ShortHeader) {
  const std::string dir = Dir();
  const auto [images, labels] = Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels).substr(0, 10),
                                      LabelsBytes(kCount, kLabels));
  const Status s = OpenError(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(),
            images + ": truncated: 10 bytes, shorter than the 16-byte IDX images header");

  Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels), "");
  EXPECT_EQ(OpenError(dir).message(),
            labels + ": truncated: 0 bytes, shorter than the 8-byte IDX labels header");
}

TEST_P(IdxTest, WrongMagic) {
  const std::string dir = Dir();
  auto [images, labels] = Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels, 0x00000804),
                                LabelsBytes(kCount, kLabels));
  Status s = OpenError(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), images +
                             ": wrong magic number 0x00000804, not 0x00000803 (IDX images): not "
                             "an IDX images file");

  // The labels file where the images belong.
  Write(dir, LabelsBytes(kCount, kLabels), LabelsBytes(kCount, kLabels));
  EXPECT_THAT(OpenError(dir).message(),
              AllOf(StartsWith(images + ": wrong magic number 0x00000801, not 0x00000803"),
                    HasSubstr("a labels file, not an images file")));

  Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels),
        LabelsBytes(kCount, kLabels, 0x01080000));  // little-endian
  EXPECT_THAT(OpenError(dir).message(),
              StartsWith(labels + ": wrong magic number 0x01080000, not 0x00000801"));
}

TEST_P(IdxTest, LabelOutOfRange) {
  const std::string dir = Dir();
  const std::vector<uint8_t> labels6 = {0, 1, 2, 3, 4, 12};
  std::vector<uint8_t> pixels6(6 * 6, 1);
  const auto [images, labels] =
      Write(dir, ImagesBytes(6, kRows, kCols, pixels6), LabelsBytes(6, labels6));
  const Status s = OpenError(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), labels + ": label 12 at index 5 is outside [0, 10)");
  EXPECT_THAT(labels, HasSubstr(gzip() ? "train-labels-idx1-ubyte.gz" : "train-labels-idx1-ubyte"));
}

TEST_P(IdxTest, ImageCountDoesNotMatchLabelCount) {
  const std::string dir = Dir();
  const auto [images, labels] =
      Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels), LabelsBytes(2, {9, 0}));
  const Status s = OpenError(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), images + " holds 3 images but " + labels +
                             " holds 2 labels: each image needs one label");
}

TEST_P(IdxTest, TrailingBytes) {
  const std::string dir = Dir();
  auto [images, labels] =
      Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels) + "xyz", LabelsBytes(kCount, kLabels));
  Status s = OpenError(dir);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), images +
                             ": trailing data: its header says 3 images of 2x3 pixels (34 bytes "
                             "in all) but 3 more bytes follow");

  Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels), LabelsBytes(kCount, {9, 0, 4, 1}));
  s = OpenError(dir);
  EXPECT_EQ(s.message(), labels +
                             ": trailing data: its header says 3 labels (11 bytes in all) but 1 "
                             "more bytes follow");
}

TEST_P(IdxTest, BadDimensions) {
  const std::string dir = Dir();
  auto [images, labels] = Write(dir, ImagesBytes(0, 0, 28, {}), LabelsBytes(0, {}));
  EXPECT_EQ(OpenError(dir).message(),
            images + ": its header says 0 rows per image; an image side must be in [1, 4096]");
  Write(dir, ImagesBytes(0, 28, 5000, {}), LabelsBytes(0, {}));
  EXPECT_EQ(OpenError(dir).message(),
            images + ": its header says 5000 cols per image; an image side must be in [1, 4096]");
  // A header that claims more than the reader holds in memory fails before any allocation.
  Write(dir, ImagesBytes(0xFFFFFFFF, 4096, 4096, {}), LabelsBytes(0, {}));
  EXPECT_THAT(OpenError(dir).message(),
              AllOf(StartsWith(images + ": its header says 4294967295 images of 4096x4096"),
                    HasSubstr("more than the 1073741824 this reader holds in memory")));
}

TEST_P(IdxTest, MissingFile) {
  const std::string dir = Dir();
  WriteIdx(dir, IdxImagesFileName(IdxSplit::kTrain), ImagesBytes(kCount, kRows, kCols, kPixels),
           gzip());
  const Status s = OpenError(dir);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_THAT(s.message(), AllOf(StartsWith(dir + "/train-labels-idx1-ubyte.gz: no such file (nor "
                                                  "train-labels-idx1-ubyte uncompressed)"),
                                 HasSubstr("dataset-fashion-mnist")));
}

TEST_P(IdxTest, FillRejectsIndicesOutsideTheSplit) {
  const std::string dir = Dir();
  Write(dir, ImagesBytes(kCount, kRows, kCols, kPixels), LabelsBytes(kCount, kLabels));
  auto ds = IdxDataset::Open(dir, IdxSplit::kTrain);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  std::vector<float> x(6);
  std::vector<int32_t> y(1);
  for (const int64_t bad : {int64_t{3}, int64_t{-1}}) {
    const std::array<int64_t, 1> ids = {bad};
    const Status s = (*ds)->Fill(ids, x.data(), y.data());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("sample " + std::to_string(bad) + " is outside [0, 3)"));
  }
}

// gzip-only failures: the .gz file cut short, corrupt compressed data.
TEST(IdxGzipTest, CutGzipFileIsTruncated) {
  const std::string dir = FreshDir("cut_gzip");
  std::vector<uint8_t> pixels(1000 * 28 * 28);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7919 % 251);
  const std::string images =
      WriteIdx(dir, "train-images-idx3-ubyte", ImagesBytes(1000, 28, 28, pixels), true);
  WriteIdx(dir, "train-labels-idx1-ubyte", LabelsBytes(1000, std::vector<uint8_t>(1000, 1)), true);
  fs::resize_file(images, fs::file_size(images) / 2);
  auto ds = IdxDataset::Open(dir, IdxSplit::kTrain);
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(ds.status().message(),
              AllOf(StartsWith(images + ": truncated: its header says 1000 images of 28x28"),
                    HasSubstr("the .gz file itself was cut short")));
}

TEST(IdxGzipTest, CutGzipTrailerIsTruncated) {
  // All the data decompresses, but the gzip trailer (CRC and length) is gone.
  const std::string dir = FreshDir("cut_trailer");
  WriteIdx(dir, "train-images-idx3-ubyte", ImagesBytes(kCount, kRows, kCols, kPixels), true);
  const std::string labels =
      WriteIdx(dir, "train-labels-idx1-ubyte", LabelsBytes(kCount, kLabels), true);
  fs::resize_file(labels, fs::file_size(labels) - 8);
  auto ds = IdxDataset::Open(dir, IdxSplit::kTrain);
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(ds.status().message(),
              AllOf(StartsWith(labels + ": truncated"), HasSubstr("gzip stream ends early")));
}

TEST(IdxGzipTest, CorruptGzipData) {
  const std::string dir = FreshDir("corrupt_gzip");
  const std::string images =
      WriteIdx(dir, "train-images-idx3-ubyte", ImagesBytes(kCount, kRows, kCols, kPixels), true);
  WriteIdx(dir, "train-labels-idx1-ubyte", LabelsBytes(kCount, kLabels), true);
  // Flip the stored CRC-32 of the uncompressed data (the trailer's first 4 bytes).
  std::fstream f(images, std::ios::in | std::ios::out | std::ios::binary);
  const auto size = static_cast<std::streamoff>(fs::file_size(images));
  f.seekg(size - 8);
  char crc = 0;
  f.read(&crc, 1);
  crc = static_cast<char>(crc ^ 0xFF);
  f.seekp(size - 8);
  f.write(&crc, 1);
  f.close();
  auto ds = IdxDataset::Open(dir, IdxSplit::kTrain);
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(ds.status().message(), StartsWith(images + ": corrupt gzip data (zlib: "));
}

TEST(IdxGzipTest, GzipNameWinsWhenBothArePresent) {
  const std::string dir = FreshDir("both_names");
  const std::string gz =
      WriteIdx(dir, "train-images-idx3-ubyte", ImagesBytes(kCount, kRows, kCols, kPixels), true);
  WriteIdx(dir, "train-images-idx3-ubyte", "not read", false);
  const std::string plain =
      WriteIdx(dir, "train-labels-idx1-ubyte", LabelsBytes(kCount, kLabels), false);
  auto ds = IdxDataset::Open(dir, IdxSplit::kTrain);
  ASSERT_TRUE(ds.ok()) << ds.status().ToString();
  EXPECT_EQ((*ds)->images_path(), gz);
  EXPECT_EQ((*ds)->labels_path(), plain);
}

TEST(IdxOpenTest, MissingDirectoryNamesThePackage) {
  const std::string dir = testing::TempDir() + "/cohort_idx_no_such_dir";
  fs::remove_all(dir);
  auto ds = IdxDataset::Open(dir, IdxSplit::kTrain);
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(ds.status().message(), AllOf(StartsWith(dir + ": no such directory"),
                                           HasSubstr("Debian's package dataset-fashion-mnist"),
                                           HasSubstr("scripts/setup installs it"),
                                           HasSubstr("/usr/share/datasets/fashion-mnist")));

  const std::string file = FreshDir("not_a_dir") + "/file";
  std::ofstream(file) << "x";
  ds = IdxDataset::Open(file, IdxSplit::kTest);
  ASSERT_FALSE(ds.ok());
  EXPECT_EQ(ds.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(ds.status().message(), StartsWith(file + ": not a directory"));
}

// Debian's dataset-fashion-mnist, when installed.
TEST(FashionMnistTest, BothSplits) {
  if (!fs::is_directory(kFashionMnistDir)) {
    GTEST_SKIP() << kFashionMnistDir << " is missing: install " << kFashionMnistPackage
                 << " (scripts/setup)";
  }
  struct Want {
    IdxSplit split;
    int64_t samples;
    int64_t per_class;
  };
  for (const Want& want :
       {Want{IdxSplit::kTrain, 60000, 6000}, Want{IdxSplit::kTest, 10000, 1000}}) {
    SCOPED_TRACE(std::string(IdxSplitName(want.split)));
    // Wall time, and this process's CPU time (the machine may be shared).
    const auto start = std::chrono::steady_clock::now();
    const std::clock_t cpu_start = std::clock();
    auto ds = IdxDataset::Open(kFashionMnistDir, want.split);
    const double cpu_s = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(ds.ok()) << ds.status().ToString();
    std::cout << "Fashion-MNIST " << IdxSplitName(want.split) << ": " << (*ds)->samples()
              << " images loaded in " << took.count() << " s (" << cpu_s << " s of CPU)\n";
    EXPECT_EQ((*ds)->samples(), want.samples);
    EXPECT_EQ((*ds)->rows(), 28);
    EXPECT_EQ((*ds)->cols(), 28);
    EXPECT_EQ((*ds)->features(), 784);
    EXPECT_EQ((*ds)->classes(), 10);
    std::array<int64_t, 10> counts{};
    for (int64_t i = 0; i < (*ds)->samples(); ++i) ++counts[static_cast<size_t>((*ds)->label(i))];
    for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[static_cast<size_t>(c)], want.per_class) << c;

    // Every sample through Fill: pixels in [0, 1], some ink in each image.
    std::vector<int64_t> ids(static_cast<size_t>((*ds)->samples()));
    std::iota(ids.begin(), ids.end(), int64_t{0});
    std::vector<float> x(ids.size() * 784);
    std::vector<int32_t> y(ids.size());
    ASSERT_TRUE((*ds)->Fill(ids, x.data(), y.data()).ok());
    for (size_t r = 0; r < ids.size(); ++r) {
      const float* img = x.data() + r * 784;
      const float max = *std::max_element(img, img + 784);
      const float min = *std::min_element(img, img + 784);
      ASSERT_GE(min, 0.0f) << r;
      ASSERT_LE(max, 1.0f) << r;
      ASSERT_GT(max, 0.0f) << r;
      ASSERT_EQ(y[r], (*ds)->label(static_cast<int64_t>(r)));
    }
    if (want.split == IdxSplit::kTrain) {
      EXPECT_EQ((*ds)->label(0), 9);  // ankle boot
      EXPECT_EQ(y[0], 9);
    }
  }
}

}  // namespace
}  // namespace cohort
