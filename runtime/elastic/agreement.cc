#include "runtime/elastic/agreement.h"

#include <climits>

namespace cohort::elastic {

Result<int64_t> NewestStep(Communicator& comm, int64_t mine) {
  int64_t newest = mine;
  COHORT_RETURN_IF_ERROR(comm.AllReduce(&mine, &newest, 1, DType::kI64, ReduceOp::kMax));
  return newest;
}

Status BroadcastState(Communicator& comm, LoadedCheckpoint* state, int root) {
  int64_t counts[2] = {state->layout.step, state->layout.optimizer_steps};
  COHORT_RETURN_IF_ERROR(comm.Broadcast(counts, 2, DType::kI64, root));
  state->layout.step = counts[0];
  state->layout.optimizer_steps = counts[1];
  COHORT_RETURN_IF_ERROR(
      comm.Broadcast(state->params.data(), state->params.size(), DType::kF32, root));
  for (auto& [name, v] : state->optim) {  // std::map: the same order on every rank
    COHORT_RETURN_IF_ERROR(comm.Broadcast(v.data(), v.size(), DType::kF32, root));
  }
  return Status::Ok();
}

Result<std::optional<LoadedCheckpoint>> ShareNewestState(
    Communicator& comm, const std::optional<LoadedCheckpoint>& held,
    const std::function<LoadedCheckpoint()>& empty, int* root) {
  if (root != nullptr) *root = -1;
  const int64_t mine = held ? held->layout.step : -1;
  COHORT_ASSIGN_OR_RETURN(int64_t newest, NewestStep(comm, mine));
  if (newest < 0) return std::optional<LoadedCheckpoint>();
  const int64_t candidate = mine == newest ? comm.rank() : INT_MAX;
  int64_t from = candidate;
  COHORT_RETURN_IF_ERROR(comm.AllReduce(&candidate, &from, 1, DType::kI64, ReduceOp::kMin));
  LoadedCheckpoint state = comm.rank() == from ? *held : empty();
  COHORT_RETURN_IF_ERROR(BroadcastState(comm, &state, static_cast<int>(from)));
  if (root != nullptr) *root = static_cast<int>(from);
  return std::optional<LoadedCheckpoint>(std::move(state));
}

}  // namespace cohort::elastic
