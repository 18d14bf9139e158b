#pragma once
// The job registry's vocabulary shared by the state machine
// (coordinator/kv/kv_state_machine.h), the server and the client library
// (coordinator/client/client.h): a member's state and the typed reasons the
// state machine refuses a command. Header-only, no dependencies beyond
// core/status.h, so the client does not link the state machine.

#include <cstdint>

#include "core/status.h"

namespace cohort::coordinator {

// A member's state. The values are persisted (snapshots) and carried on the
// wire as proto/coordinator.proto's MemberState, which has the same numbers;
// never renumber them.
enum class MemberState : uint8_t { kJoining = 0, kActive = 1, kFailed = 2, kLeft = 3 };

// "joining" | "active" | "failed" | "left", for printing.
constexpr const char* MemberStateName(MemberState s) {
  switch (s) {
    case MemberState::kJoining:
      return "joining";
    case MemberState::kActive:
      return "active";
    case MemberState::kFailed:
      return "failed";
    case MemberState::kLeft:
      return "left";
  }
  return "unknown";
}

// Whether the member may be part of an epoch (it has not left or failed).
constexpr bool IsLive(MemberState s) {
  return s == MemberState::kJoining || s == MemberState::kActive;
}

// Why the state machine refused a command: a finer code under the Status
// code (FailedPrecondition, NotFound, InvalidArgument, Unavailable) that
// callers switch on instead of reading the message. The values are persisted
// (a session's last result in snapshots) and sent as decimal text in the
// gRPC trailing metadata kRefusalMetadata; never renumber them.
enum class Refusal : uint8_t {
  kNone = 0,
  kStaleEpoch = 1,           // the writer's epoch is older than the job's: read the job, rejoin
  kEpochAhead = 2,           // the writer's epoch is newer than the job's
  kUnknownMember = 3,        // not a member (never joined, or forgotten): join first
  kMustJoinAgain = 4,        // the member left or failed: join again before it heartbeats
  kCheckpointNotNewer = 5,   // the step is not after the last committed checkpoint's
  kNoPendingCheckpoint = 6,  // commit of a step that was not proposed in this epoch
  kUnknownLease = 7,         // the lease expired or was revoked
  kLimitReached = 8,         // a bound of the state machine (leases, members) is full
  kInvalidCommand = 9,       // a malformed command (empty id, bad number, duplicate member)
};
inline constexpr uint8_t kMaxRefusal = static_cast<uint8_t>(Refusal::kInvalidCommand);

constexpr const char* RefusalName(Refusal r) {
  switch (r) {
    case Refusal::kNone:
      return "none";
    case Refusal::kStaleEpoch:
      return "stale epoch";
    case Refusal::kEpochAhead:
      return "epoch ahead";
    case Refusal::kUnknownMember:
      return "unknown member";
    case Refusal::kMustJoinAgain:
      return "must join again";
    case Refusal::kCheckpointNotNewer:
      return "checkpoint not newer";
    case Refusal::kNoPendingCheckpoint:
      return "no pending checkpoint";
    case Refusal::kUnknownLease:
      return "unknown lease";
    case Refusal::kLimitReached:
      return "limit reached";
    case Refusal::kInvalidCommand:
      return "invalid command";
  }
  return "unknown";
}

// The trailing metadata entry that carries a refusal over gRPC (decimal
// Refusal value), set by the server beside the status code and read back by
// the client library into Status::detail().
inline constexpr char kRefusalMetadata[] = "cohort-refusal";

// The refusal a Status carries (Status::detail()); kNone for OK, for errors
// that are not refusals, and for details out of range.
inline Refusal RefusalOf(const Status& s) {
  const int d = s.detail();
  return d > 0 && d <= kMaxRefusal ? static_cast<Refusal>(d) : Refusal::kNone;
}

}  // namespace cohort::coordinator
