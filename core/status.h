#pragma once
// One error currency for Cohort (CONTRIBUTING.md, "Errors").
//
// `Status` carries a code and a message that says what went wrong, where, and
// what to do. `Result<T>` is a value or a non-OK Status. Both are cheap to
// move; an OK Status allocates nothing. Not thread-safe for concurrent
// mutation of one object (like any value type).

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "core/check.h"

namespace cohort {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,   // bad config, flag, or API argument
  kNotFound = 2,          // a file or key that does not exist
  kDataLoss = 3,          // a checksum mismatch, truncated or corrupted file
  kIoError = 4,           // an OS-level I/O failure
  kUnavailable = 5,       // a peer or service that cannot be reached
  kDeadlineExceeded = 6,  // a timeout
  kAborted = 7,           // the operation was aborted (e.g. a peer failed)
  kFailedPrecondition = 8,
  kUnimplemented = 9,
  kInternal = 10,  // a bug in Cohort or a library it calls
  kPermissionDenied = 11,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message);
  // `detail`: a finer code within `code` that a layer defines for its
  // callers to switch on (0: none), e.g. coordinator::Refusal
  // (coordinator/kv/job_types.h).
  Status(StatusCode code, std::string message, int detail);

  static Status Ok() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  // The message without the code name; empty for OK.
  const std::string& message() const;
  // The layer-defined detail code; 0 for OK or when none was given.
  int detail() const { return rep_ ? rep_->detail : 0; }
  // "CODE_NAME: message", or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "context: <old message>" (code and
  // detail kept); OK stays OK.
  Status WithContext(std::string_view context) const;

 private:
  struct Rep {
    StatusCode code;
    std::string message;
    int detail = 0;
  };
  std::shared_ptr<const Rep> rep_;  // null when OK
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// A value of type T, or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    COHORT_CHECK(!std::get<Status>(v_).ok()) << "Result constructed from an OK Status";
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  T& value() & {
    COHORT_CHECK(ok()) << "Result::value() on error: " << std::get<Status>(v_).ToString();
    return std::get<T>(v_);
  }
  const T& value() const& {
    COHORT_CHECK(ok()) << "Result::value() on error: " << std::get<Status>(v_).ToString();
    return std::get<T>(v_);
  }
  T&& value() && {
    COHORT_CHECK(ok()) << "Result::value() on error: " << std::get<Status>(v_).ToString();
    return std::move(std::get<T>(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace cohort

#define COHORT_CONCAT_INNER(a, b) a##b
#define COHORT_CONCAT(a, b) COHORT_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define COHORT_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::cohort::Status cohort_status_ = (expr);        \
    if (!cohort_status_.ok()) return cohort_status_; \
  } while (0)

// `COHORT_ASSIGN_OR_RETURN(auto x, MakeX());` binds the value or returns the error.
#define COHORT_ASSIGN_OR_RETURN(lhs, expr) \
  COHORT_ASSIGN_OR_RETURN_IMPL(COHORT_CONCAT(cohort_result_, __LINE__), lhs, expr)
#define COHORT_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
