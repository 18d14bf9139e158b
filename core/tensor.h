#pragma once
// Tensor: a shape, a dtype, a device and owning, shared storage.
//
// Copying a Tensor copies the handle (both refer to the same bytes), like
// torch.Tensor. `View` makes a tensor over part of another's storage, which is
// how gradients live inside one flat bucket. Storage is 64-byte aligned on the
// CPU. CUDA storage exists only in builds with CUDA (COHORT_HAVE_CUDA);
// elsewhere asking for it returns an error. Not thread-safe for concurrent
// writes to the same bytes (no tensor type is).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace cohort {

using Shape = std::vector<int64_t>;
int64_t NumElements(const Shape& shape);
std::string ShapeToString(const Shape& shape);

class Storage {
 public:
  static Result<std::shared_ptr<Storage>> Allocate(size_t bytes, Device device);
  // Storage over memory someone else allocated (e.g. a communicator's
  // registered buffer); `release` runs when the last tensor using it goes.
  static std::shared_ptr<Storage> Wrap(void* data, size_t bytes, Device device,
                                       std::function<void()> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Storage(void* data, size_t bytes, Device device) : data_(data), bytes_(bytes), device_(device) {}
  void* data_;
  std::function<void()> release_;  // set for wrapped memory
  size_t bytes_;
  Device device_;
};

class Tensor {
 public:
  Tensor() = default;  // empty: no storage, shape {0}
  // Allocates zero-filled (CPU) or uninitialised (CUDA) storage.
  static Result<Tensor> Empty(Shape shape, DType dtype, Device device = Device::kCpu);
  // CPU-only convenience that aborts on allocation failure (out of memory is fatal).
  static Tensor Zeros(Shape shape, DType dtype = DType::kF32);
  // A tensor over wrapped storage (Storage::Wrap), which must hold its bytes.
  static Result<Tensor> FromStorage(std::shared_ptr<Storage> storage, Shape shape, DType dtype);

  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
  int64_t numel() const { return NumElements(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::kCpu; }
  bool defined() const { return storage_ != nullptr; }

  void* raw() const;
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw());
  }
  // A typed span over a CPU tensor's elements; T must match dtype's size.
  template <typename T>
  std::span<T> span() const {
    COHORT_CHECK(sizeof(T) == DTypeSize(dtype_))
        << "span type does not match " << DTypeName(dtype_);
    return {data<T>(), static_cast<size_t>(numel())};
  }

  // A tensor of `shape` over this one's storage, starting `element_offset`
  // elements in. The view keeps the storage alive.
  Result<Tensor> View(int64_t element_offset, Shape shape) const;
  // Same bytes, new shape of equal element count.
  Result<Tensor> Reshape(Shape shape) const;
  // A deep copy on the CPU.
  Tensor Clone() const;

  std::string DebugString() const;

 private:
  Shape shape_{0};
  DType dtype_ = DType::kF32;
  std::shared_ptr<Storage> storage_;
  size_t byte_offset_ = 0;
};

}  // namespace cohort
