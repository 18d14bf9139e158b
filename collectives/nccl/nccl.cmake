# The nccl backend: compiled when CUDA and NCCL are found (COHORT_HAVE_NCCL).
# Links the CUDA runtime, never the driver.
if(COHORT_HAVE_NCCL)
  target_sources(cohort_collectives PRIVATE ${CMAKE_CURRENT_LIST_DIR}/nccl_communicator.cc)
  target_include_directories(cohort_collectives SYSTEM PUBLIC ${COHORT_NCCL_INCLUDE})
  target_link_libraries(cohort_collectives PUBLIC ${COHORT_NCCL_LIB} CUDA::cudart)
endif()
