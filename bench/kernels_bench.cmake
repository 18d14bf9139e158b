# CPU kernel micro-benchmarks (Google Benchmark). Included from the
# benchmarks' CMakeLists when COHORT_BUILD_BENCHMARKS is on.
if(NOT TARGET benchmark::benchmark)
  find_package(benchmark REQUIRED)
endif()
add_executable(kernels_bench ${CMAKE_CURRENT_LIST_DIR}/kernels_bench.cc)
cohort_target_defaults(kernels_bench)
target_link_libraries(kernels_bench PRIVATE cohort_kernels benchmark::benchmark)
