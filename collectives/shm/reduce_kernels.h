#pragma once
// Element-wise reductions over n input buffers, for the shm backend (and any
// CPU code that reduces several buffers at once).
//
// The loops are written plainly and compiled for AVX-512, AVX2 and baseline
// x86-64 with GCC's target_clones; the loader picks the best the CPU has (no
// -march=native); fp16/bf16 use AVX2+F16C intrinsics when the CPU has them.
// Work goes in blocks that stay in L1: a block accumulates in
// a local array, so out may be any of the inputs.

#include <cstddef>
#include <string_view>

#include "collectives/communicator.h"
#include "core/dtype.h"

namespace cohort::shm {

// out[i] = op over k = 0..n-1 (in that order) of in[k][i], for i < count.
// Every rank that reduces the same inputs gets the same bits. `out` may equal
// any in[k] (the same pointer); partial overlaps are not allowed. fp16/bf16
// accumulate in fp32 and round once. kAvg divides the reduction by
// `avg_divisor` (integer division for integer types, after the sum, which
// wraps on overflow like two's complement). n >= 1.
void ReduceInto(DType dtype, ReduceOp op, const void* const* in, int n, void* out, size_t count,
                int avg_divisor);

// The instruction set the reductions run with on this CPU: avx512f, avx2 or
// default.
std::string_view ReduceKernelIsa();

}  // namespace cohort::shm
