# `cohort shard` as a library, so tools/main.cc and the tests can call
# RunShardCommand. Included from tools/CMakeLists.txt.
add_library(cohort_shard_cmd ${CMAKE_CURRENT_LIST_DIR}/shard_cmd.cc)
cohort_target_defaults(cohort_shard_cmd)
target_link_libraries(cohort_shard_cmd
  PUBLIC cohort_sharding
  PRIVATE nlohmann_json::nlohmann_json)
