#pragma once
// Field-by-field conversion between the Raft core's value types
// (coordinator/raft/types.h) and their protobuf mirrors (proto/coordinator.proto),
// and from the state machine's job registry (coordinator/kv) to the
// JobResponse that GetJob and Status answer with. Pure functions; thread-safe.

#include "coordinator/kv/kv_state_machine.h"
#include "coordinator/raft/types.h"
#include "core/status.h"
#include "proto/coordinator.pb.h"

namespace cohort::coordinator {

namespace pb = ::cohort::coordinator::v1;

void ToProto(const raft::Message& m, pb::Message* out);
// InvalidArgument for an unknown message or entry type.
Result<raft::Message> FromProto(const pb::Message& m);

void ToProto(const raft::Snapshot& s, pb::Snapshot* out);
raft::Snapshot FromProto(const pb::Snapshot& s);

// Appends the applied job state of `kv` (epoch, members with their ranks,
// checkpoints, revision) to `out`.
void FillJob(const KvStateMachine& kv, pb::JobResponse* out);

}  // namespace cohort::coordinator
