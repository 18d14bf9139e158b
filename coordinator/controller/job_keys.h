#pragma once
// Every key of an elastic job's schema in the coordinator's key space, in one
// place. `job` is the job's key prefix (`cohort launch --job`, JobConfig::job).
//
//   key                         written by              read by                 value
//   --------------------------  ----------------------  ----------------------
//   ----------------------------- cohort/job-config           first `cohort launch`   job
//   controller, status  JobConfig as JSON (CAS once) <job>/done                  launcher, once a
//   workers, controller,    "1": the job finished (deleted
//                               worker finished         launcher                when it is run
//                               again)
//   <job>/reform/<E>            a worker of epoch E     job controller          member id asking
//   for epoch E+1 <job>/health/<member>       job controller          launcher, status
//   {"breaker","reason","opens"} <job>/resumed/<E>           rank 0 of epoch E       launcher
//   wall-clock ms of E's first step <job>/step/<member>         the member (heartbeat)  status last
//   completed step (decimal) <job>/checkpoints           rank 0 (committer)      restore JSON list
//   of committed ones <job>/epoch-<E>/...         the ranks of epoch E    the ranks of epoch E
//   collectives' bootstrap Store
//
// The job registry itself (members, epochs and ranks, the last committed
// checkpoint) is not in the key space: it is the state machine's
// (coordinator/kv/kv_state_machine.h), read with Client::GetJob.

#include <cstdint>
#include <string>

namespace cohort::coordinator {

// The KV key holding the job's parameters as JSON (JobConfig).
inline constexpr char kJobConfigKey[] = "cohort/job-config";

// Set once a worker finished the job: waiting workers exit 0, the controller stops.
inline std::string DoneKey(const std::string& job) { return job + "/done"; }

// A worker whose epoch failed without a membership change asks for a new one here.
inline std::string ReformKey(const std::string& job, uint64_t epoch) {
  return job + "/reform/" + std::to_string(epoch);
}

// The controller's view of one member's health (JSON: breaker, reason, opens).
inline std::string HealthKey(const std::string& job, const std::string& member) {
  return job + "/health/" + member;
}

// Rank 0 of each epoch writes ResumedKey(job, epoch): the wall-clock ms of
// that epoch's first completed step. The launcher watches the prefix.
inline std::string ResumedPrefix(const std::string& job) { return job + "/resumed/"; }
inline std::string ResumedKey(const std::string& job, uint64_t epoch) {
  return ResumedPrefix(job) + std::to_string(epoch);
}

// The last step a worker completed (decimal), written with its heartbeats.
inline std::string StepKey(const std::string& job, const std::string& member) {
  return job + "/step/" + member;
}

// The committed checkpoints' short history (JSON list of {step, path,
// checksum}); the registry holds only the last committed one.
inline std::string CheckpointHistoryKey(const std::string& job) { return job + "/checkpoints"; }

// The prefix of epoch `epoch`'s bootstrap Store (the communicator's
// rendezvous keys live under it).
inline std::string EpochStorePrefix(const std::string& job, uint64_t epoch) {
  return job + "/epoch-" + std::to_string(epoch);
}

}  // namespace cohort::coordinator
