#pragma once
// Image classification data in the IDX format of MNIST and Fashion-MNIST
// (http://yann.lecun.com/exdb/mnist/, github.com/zalandoresearch/fashion-mnist).
//
// A split is two files in one directory:
//   <prefix>-images-idx3-ubyte[.gz]   prefix "train" (60,000 images in
//   <prefix>-labels-idx1-ubyte[.gz]   Fashion-MNIST) or "t10k" (10,000)
// Each file, after gzip decompression where the name ends in ".gz", is:
//   images: uint32 magic 0x00000803 (unsigned bytes, 3 dimensions), uint32
//           count, uint32 rows, uint32 cols, then count * rows * cols pixel
//           bytes, image after image, each row-major; 0 is background.
//   labels: uint32 magic 0x00000801 (unsigned bytes, 1 dimension), uint32
//           count, then count label bytes.
// The uint32s are big-endian. Nothing follows the data.
//
// Debian's `dataset-fashion-mnist` installs the four gzip'd files under
// kFashionMnistDir (scripts/setup installs the package).

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "runtime/dataset.h"

namespace cohort {

inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";
inline constexpr char kFashionMnistPackage[] = "dataset-fashion-mnist";

inline constexpr uint32_t kIdxImagesMagic = 0x00000803;
inline constexpr uint32_t kIdxLabelsMagic = 0x00000801;
inline constexpr int64_t kIdxImagesHeaderBytes = 16;
inline constexpr int64_t kIdxLabelsHeaderBytes = 8;
// The MNIST family (MNIST, Fashion-MNIST, Kuzushiji-MNIST) has ten classes;
// every label must be below this.
inline constexpr int32_t kIdxClasses = 10;
// Bounds on what a header may claim, checked before anything is allocated:
// a side of an image, and the pixel bytes of a whole split (which are held in
// memory; Fashion-MNIST's training split is 47,040,000 bytes).
inline constexpr int64_t kMaxIdxImageSide = 4096;
inline constexpr int64_t kMaxIdxPixelBytes = int64_t{1} << 30;

enum class IdxSplit { kTrain, kTest };
// "train" or "test".
std::string_view IdxSplitName(IdxSplit split);
// The file names of a split without ".gz": "train-images-idx3-ubyte" or
// "t10k-images-idx3-ubyte", and the labels likewise.
std::string IdxImagesFileName(IdxSplit split);
std::string IdxLabelsFileName(IdxSplit split);

// One split of an IDX dataset, held in memory as it is on disk (one byte a
// pixel and a label). Immutable after Open: Fill and the accessors are safe to
// call from many threads.
class IdxDataset final : public Dataset {
 public:
  // Reads the images and labels files of `split` from `dir`. For each file the
  // gzip'd name ("….gz") is read when present, else the plain name; both are
  // read through zlib, which passes a file that is not gzip'd through as is.
  // Loading Fashion-MNIST's 60,000 training images (47 MB inflated) takes about 0.2 s
  // of CPU.
  // Errors start with the path of the file they concern and say what is wrong:
  // - NotFound: `dir` does not exist or is not a directory (the message names
  //   the Debian package that provides Fashion-MNIST), or neither name of a
  //   file exists in it;
  // - DataLoss: a wrong magic number; a header shorter than 16 (images) or 8
  //   (labels) bytes; rows or cols of 0 or above kMaxIdxImageSide; pixel bytes
  //   above kMaxIdxPixelBytes; fewer bytes than the header describes
  //   (truncated) or more (trailing data); gzip data that does not decompress;
  //   image and label counts that differ; a label >= kIdxClasses ("label 12 at
  //   index 5 is outside [0, 10)", index counting labels from 0);
  // - IoError: a file that exists cannot be opened or read.
  static Result<std::unique_ptr<IdxDataset>> Open(const std::string& dir, IdxSplit split);

  // rows * cols: each sample is one image, row-major.
  int64_t features() const override { return rows_ * cols_; }
  // Always kIdxClasses (the labels were checked against it at Open).
  int32_t classes() const override { return kIdxClasses; }
  // Images in the split (= labels); sample ids are 0 .. samples() - 1 in file order.
  int64_t samples() const { return static_cast<int64_t>(labels_.size()); }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // The files read, as found in `dir` (with or without ".gz").
  const std::string& images_path() const { return images_path_; }
  const std::string& labels_path() const { return labels_path_; }

  // Image `i`'s rows * cols pixels, 0 .. 255; 0 <= i < samples() (checked: aborts).
  std::span<const uint8_t> image(int64_t i) const;
  // Label of image `i`, in [0, kIdxClasses); 0 <= i < samples() (checked: aborts).
  int32_t label(int64_t i) const;

  // x[r * features() + p] = pixel p of image indices[r] / 255.0f (so in
  // [0, 1]) and y[r] = its label. x holds indices.size() * features() floats,
  // y indices.size() labels. InvalidArgument naming the first index outside
  // [0, samples()); x and y are then partly written.
  Status Fill(std::span<const int64_t> indices, float* x, int32_t* y) const override;

 private:
  IdxDataset() = default;

  std::string images_path_, labels_path_;
  int64_t rows_ = 0, cols_ = 0;  // each in [1, kMaxIdxImageSide]
  std::vector<uint8_t> pixels_;  // samples() * rows_ * cols_ bytes, image-major
  std::vector<uint8_t> labels_;  // samples() labels, each < kIdxClasses
};

}  // namespace cohort
