# The gloo backend: Gloo's TCP transport (Debian's libgloo-dev, target `gloo`).
find_package(Gloo CONFIG REQUIRED)
target_sources(cohort_collectives PRIVATE ${CMAKE_CURRENT_LIST_DIR}/gloo_communicator.cc)
target_link_libraries(cohort_collectives PUBLIC gloo)
