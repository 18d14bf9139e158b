# Placement lookup micro-benchmarks (Google Benchmark). Included from the
# benchmarks' CMakeLists when COHORT_BUILD_BENCHMARKS is on.
if(NOT TARGET benchmark::benchmark)
  find_package(benchmark REQUIRED)
endif()
add_executable(sharding_bench ${CMAKE_CURRENT_LIST_DIR}/sharding_bench.cc)
cohort_target_defaults(sharding_bench)
target_link_libraries(sharding_bench PRIVATE cohort_sharding benchmark::benchmark)
