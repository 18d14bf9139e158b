#pragma once
// GoogleTest under mpirun: every rank runs every test; rank 0 alone prints
// progress, every rank reports its own failures, and the exit status is the
// worst over the ranks, so a failure on any rank fails the run.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

namespace cohort::testing {

// RUN_ALL_TESTS on this rank (MPI initialised; `rank` in MPI_COMM_WORLD);
// returns the largest status of all ranks.
inline int RunAllTestsOnEveryRank(int rank) {
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  int any = 0;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (any != 0 && rc == 0 && rank == 0) std::fprintf(stderr, "another rank failed\n");
  return any;
}

}  // namespace cohort::testing
