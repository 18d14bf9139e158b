#pragma once
// COHORT_CHECK: for broken invariants only (a bug, not bad input). It prints
// file:line and the streamed message to stderr and aborts. Errors a caller can
// act on are Status values instead (core/status.h).

#include <sstream>

namespace cohort::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `COHORT_CHECK(x) << ...` compile to nothing when x holds.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace cohort::internal

#define COHORT_CHECK(cond)                 \
  (cond) ? (void)0                         \
         : ::cohort::internal::Voidify() & \
               ::cohort::internal::CheckFailure(__FILE__, __LINE__, #cond).stream()

#define COHORT_CHECK_EQ(a, b) COHORT_CHECK((a) == (b)) << "(" << (a) << " vs " << (b) << ") "
#define COHORT_CHECK_LT(a, b) COHORT_CHECK((a) < (b)) << "(" << (a) << " vs " << (b) << ") "
#define COHORT_CHECK_LE(a, b) COHORT_CHECK((a) <= (b)) << "(" << (a) << " vs " << (b) << ") "
