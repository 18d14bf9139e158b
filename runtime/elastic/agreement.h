#pragma once
// How the ranks of a new epoch agree on the state they resume from: each
// holds a copy of the training state (parameters, optimizer state, step) or
// none; the newest step wins, and the lowest rank that holds it broadcasts
// it, so every rank resumes from the same step. Collective: every rank of
// `comm` calls these in the same order.

#include <cstdint>
#include <functional>
#include <optional>

#include "collectives/communicator.h"
#include "runtime/checkpoint.h"

namespace cohort::elastic {

// The newest step over the group: the maximum of `mine` (-1: no state).
Result<int64_t> NewestStep(Communicator& comm, int64_t mine);

// The newest state any rank holds, on every rank, broadcast from the lowest
// rank that holds it. `held`: this rank's copy (nullopt: none); `empty`
// returns a state of the right shapes to receive into. nullopt on every rank
// when no rank holds a state. *root (may be null): the rank it came from, or
// -1.
Result<std::optional<LoadedCheckpoint>> ShareNewestState(
    Communicator& comm, const std::optional<LoadedCheckpoint>& held,
    const std::function<LoadedCheckpoint()>& empty, int* root = nullptr);

// Broadcasts `state` from `root` (its holder) into every rank's `state`,
// whose tensors have the holder's shapes.
Status BroadcastState(Communicator& comm, LoadedCheckpoint* state, int root);

}  // namespace cohort::elastic
