#include "collectives/communicator.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace cohort {

std::string_view ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
    case ReduceOp::kProd: return "prod";
  }
  return "?";
}

Result<ReduceOp> ParseReduceOp(std::string_view name) {
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin,
                      ReduceOp::kProd}) {
    if (name == ReduceOpName(op)) return op;
  }
  return InvalidArgument("unknown reduction '" + std::string(name) +
                         "' (expected sum, avg, max, min or prod)");
}

Status AgreeOnStatus(Communicator& comm, const Status& local) {
  // Round 1: the lowest failing rank (or size() when none failed).
  int32_t mine = local.ok() ? comm.size() : comm.rank();
  int32_t first = 0;
  COHORT_RETURN_IF_ERROR(comm.AllReduce(&mine, &first, 1, DType::kI32, ReduceOp::kMin));
  if (first == comm.size()) return Status::Ok();
  // Round 2: that rank's code and message, fixed size so one broadcast does.
  constexpr size_t kMaxMessage = 1024;
  std::vector<char> buf(kMaxMessage + 4, 0);
  if (comm.rank() == first) {
    const int32_t code = static_cast<int32_t>(local.code());
    std::memcpy(buf.data(), &code, 4);
    const std::string& m = local.message();
    std::memcpy(buf.data() + 4, m.data(), std::min(m.size(), kMaxMessage - 1));
  }
  COHORT_RETURN_IF_ERROR(comm.Broadcast(buf.data(), buf.size() / 4, DType::kI32, first));
  int32_t code;
  std::memcpy(&code, buf.data(), 4);
  std::string message(buf.data() + 4);
  if (comm.size() == 1 || first == comm.rank()) return local;
  return Status(static_cast<StatusCode>(code), "rank " + std::to_string(first) + ": " + message);
}

}  // namespace cohort
