#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "cohort/config.h"
#if COHORT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace cohort {

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

Result<std::shared_ptr<Storage>> Storage::Allocate(size_t bytes, Device device) {
  if (device == Device::kCpu) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (p == nullptr)
      return IoError("out of memory allocating " + std::to_string(bytes) + " bytes");
    std::memset(p, 0, rounded == 0 ? 64 : rounded);
    return std::shared_ptr<Storage>(new Storage(p, bytes, device));
  }
#if COHORT_HAVE_CUDA
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes == 0 ? 1 : bytes);
  if (err != cudaSuccess) {
    return Unavailable("cudaMalloc of " + std::to_string(bytes) +
                       " bytes failed: " + cudaGetErrorString(err));
  }
  return std::shared_ptr<Storage>(new Storage(p, bytes, device));
#else
  return FailedPrecondition(
      "a CUDA tensor was requested but this build has no CUDA; "
      "reconfigure with CUDA available (COHORT_ENABLE_CUDA=ON)");
#endif
}

std::shared_ptr<Storage> Storage::Wrap(void* data, size_t bytes, Device device,
                                       std::function<void()> release) {
  auto s = std::shared_ptr<Storage>(new Storage(data, bytes, device));
  s->release_ = std::move(release);
  return s;
}

Storage::~Storage() {
  if (release_) {
    release_();
  } else if (device_ == Device::kCpu) {
    std::free(data_);
  } else {
#if COHORT_HAVE_CUDA
    cudaFree(data_);
#endif
  }
}

Result<Tensor> Tensor::Empty(Shape shape, DType dtype, Device device) {
  for (int64_t d : shape) {
    if (d < 0) return InvalidArgument("negative dimension in shape " + ShapeToString(shape));
  }
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  COHORT_ASSIGN_OR_RETURN(t.storage_, Storage::Allocate(t.nbytes(), device));
  return t;
}

Result<Tensor> Tensor::FromStorage(std::shared_ptr<Storage> storage, Shape shape, DType dtype) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  if (t.nbytes() > storage->bytes()) {
    return InvalidArgument("tensor of " + std::to_string(t.nbytes()) + " bytes over storage of " +
                           std::to_string(storage->bytes()));
  }
  t.storage_ = std::move(storage);
  return t;
}

Tensor Tensor::Zeros(Shape shape, DType dtype) {
  auto r = Empty(std::move(shape), dtype, Device::kCpu);
  COHORT_CHECK(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

void* Tensor::raw() const {
  if (!storage_) return nullptr;
  return static_cast<char*>(storage_->data()) + byte_offset_;
}

Result<Tensor> Tensor::View(int64_t element_offset, Shape shape) const {
  if (!storage_) return FailedPrecondition("View of an undefined tensor");
  const size_t esize = DTypeSize(dtype_);
  const int64_t n = NumElements(shape);
  if (element_offset < 0 || n < 0 ||
      byte_offset_ + static_cast<size_t>(element_offset + n) * esize > storage_->bytes()) {
    return InvalidArgument("view of " + ShapeToString(shape) + " at element " +
                           std::to_string(element_offset) + " exceeds storage of " +
                           std::to_string(storage_->bytes()) + " bytes");
  }
  Tensor t;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype_;
  t.storage_ = storage_;
  t.byte_offset_ = byte_offset_ + static_cast<size_t>(element_offset) * esize;
  return t;
}

Result<Tensor> Tensor::Reshape(Shape shape) const {
  if (NumElements(shape) != numel()) {
    return InvalidArgument("cannot reshape " + ShapeToString(shape_) + " to " +
                           ShapeToString(shape));
  }
  return View(0, std::move(shape));
}

Tensor Tensor::Clone() const {
  COHORT_CHECK(device() == Device::kCpu) << "Clone supports CPU tensors";
  Tensor t = Zeros(shape_, dtype_);
  if (nbytes() > 0) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

std::string Tensor::DebugString() const {
  std::ostringstream os;
  os << "Tensor(" << DTypeName(dtype_) << ", " << ShapeToString(shape_) << ", "
     << DeviceName(device()) << ")";
  return os.str();
}

}  // namespace cohort
