#pragma once
// A stand-in for the part of GoogleTest that tests/gpu/kernels_gpu_test.cc
// uses, for kernels-only builds on GPU machines without GoogleTest
// (COHORT_KERNELS_ONLY; scripts/gpu-check). Same macros, same output lines
// ("[ RUN      ]", "[       OK ]", "[  FAILED  ]", "[  SKIPPED ]"), exit 1
// when a test failed. It defines main(): one test file per binary.

#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace gtest_lite {

struct Test {
  std::string name;
  std::function<void()> body;
};
inline std::vector<Test>& Registry() {
  static std::vector<Test> r;
  return r;
}
struct Registrar {
  Registrar(const char* suite, const char* name, void (*f)()) {
    Registry().push_back({std::string(suite) + "." + name, f});
  }
};
inline bool& Failed() {
  static bool f = false;
  return f;
}
inline bool& Skipped() {
  static bool s = false;
  return s;
}

class Message {
 public:
  template <class T>
  Message& operator<<(const T& v) {
    if constexpr (requires(std::ostream & o) { o << v; }) s_ << v;
    return *this;
  }
  std::string str() const { return s_.str(); }

 private:
  std::ostringstream s_;
};

// `Reporter{...} = Message() << ...` records the failure (or skip) with the
// streamed message; operator= returns void so ASSERT_* can `return` it.
struct Reporter {
  const char* file;
  int line;
  std::string what;
  bool skip = false;
  void operator=(const Message& m) const {
    if (skip) {
      Skipped() = true;
      std::printf("%s:%d: Skipped\n%s\n", file, line, m.str().c_str());
      return;
    }
    Failed() = true;
    std::printf("%s:%d: Failure\n%s\n%s\n", file, line, what.c_str(), m.str().c_str());
  }
};

template <class A, class B>
std::string Values(const A& a, const B& b) {
  Message m;
  m << "  left: " << a << "\n  right: " << b;
  return m.str();
}

}  // namespace gtest_lite

#define GTEST_LITE_BLOCKER_ \
  switch (0)                \
  case 0:                   \
  default:

#define GTEST_LITE_CHECK_(cond, what, ret) \
  GTEST_LITE_BLOCKER_                      \
  if (cond) {                              \
  } else                                   \
    ret ::gtest_lite::Reporter{__FILE__, __LINE__, what} = ::gtest_lite::Message()

#define GTEST_LITE_CMP_(a, b, op, ret)                                                            \
  GTEST_LITE_BLOCKER_                                                                             \
  if ((a)op(b)) {                                                                                 \
  } else                                                                                          \
    ret ::gtest_lite::Reporter{__FILE__, __LINE__,                                                \
                               "expected " #a " " #op " " #b "\n" + ::gtest_lite::Values(a, b)} = \
        ::gtest_lite::Message()

#define EXPECT_TRUE(c) GTEST_LITE_CHECK_(c, "expected true: " #c, )
#define ASSERT_TRUE(c) GTEST_LITE_CHECK_(c, "expected true: " #c, return )
#define EXPECT_EQ(a, b) GTEST_LITE_CMP_(a, b, ==, )
#define ASSERT_EQ(a, b) GTEST_LITE_CMP_(a, b, ==, return )
#define EXPECT_NE(a, b) GTEST_LITE_CMP_(a, b, !=, )
#define EXPECT_LE(a, b) GTEST_LITE_CMP_(a, b, <=, )
#define EXPECT_NEAR(a, b, tol)                    \
  GTEST_LITE_CHECK_(std::abs((a) - (b)) <= (tol), \
                    "expected |" #a " - " #b "| <= " #tol "\n" + ::gtest_lite::Values(a, b), )
#define ASSERT_NEAR(a, b, tol)                                                               \
  GTEST_LITE_CHECK_(std::abs((a) - (b)) <= (tol),                                            \
                    "expected |" #a " - " #b "| <= " #tol "\n" + ::gtest_lite::Values(a, b), \
                    return )
#define GTEST_SKIP() \
  return ::gtest_lite::Reporter{__FILE__, __LINE__, "", true} = ::gtest_lite::Message()

#define TEST(suite, name)                                                                          \
  static void suite##_##name##_Test();                                                             \
  static ::gtest_lite::Registrar suite##_##name##_registrar(#suite, #name, suite##_##name##_Test); \
  static void suite##_##name##_Test()

int main() {
  int failed = 0, skipped = 0, passed = 0;
  for (const auto& t : gtest_lite::Registry()) {
    gtest_lite::Failed() = false;
    gtest_lite::Skipped() = false;
    std::printf("[ RUN      ] %s\n", t.name.c_str());
    std::fflush(stdout);
    t.body();
    const char* verdict = gtest_lite::Failed()    ? "[  FAILED  ]"
                          : gtest_lite::Skipped() ? "[  SKIPPED ]"
                                                  : "[       OK ]";
    std::printf("%s %s\n", verdict, t.name.c_str());
    std::fflush(stdout);
    (gtest_lite::Failed() ? failed : gtest_lite::Skipped() ? skipped : passed) += 1;
  }
  std::printf("[==========] %d passed, %d skipped, %d failed (gtest_lite)\n", passed, skipped,
              failed);
  return failed > 0 ? 1 : 0;
}
