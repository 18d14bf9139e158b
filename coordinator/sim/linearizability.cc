#include "coordinator/sim/linearizability.h"

#include <algorithm>
#include <limits>
#include <map>
#include <sstream>
#include <unordered_set>

namespace cohort::coordinator {
namespace {

using State = std::optional<std::string>;

// Applies `op` to `s`; false when the op's recorded output contradicts `s`.
bool StepModel(const State& s, const KvOp& op, State* next) {
  switch (op.kind) {
    case KvOp::Kind::kGet:
      *next = s;
      return !op.completed || op.out == s;
    case KvOp::Kind::kPut:
      *next = op.value;
      return !op.completed || op.out == s;
    case KvOp::Kind::kCas: {
      bool swap = s == op.expected;
      *next = swap ? State(op.value) : s;
      return !op.completed || (op.out == s && op.ok == swap);
    }
  }
  return false;
}

struct Node {
  bool is_call = false;
  size_t op = 0;
  int64_t time = 0;
  Node* match = nullptr;  // call <-> return
  Node* prev = nullptr;
  Node* next = nullptr;
};

struct MemoKey {
  std::vector<uint64_t> bits;
  State state;
  bool operator==(const MemoKey&) const = default;
};
struct MemoHash {
  size_t operator()(const MemoKey& k) const {
    size_t h = 1469598103934665603ull;
    for (uint64_t b : k.bits) h = (h ^ b) * 1099511628211ull;
    h ^= k.state ? std::hash<std::string>()(*k.state) + 1 : 0;
    return h;
  }
};

void Lift(Node* call) {
  call->prev->next = call->next;
  if (call->next) call->next->prev = call->prev;
  Node* ret = call->match;
  ret->prev->next = ret->next;
  if (ret->next) ret->next->prev = ret->prev;
}

void Unlift(Node* call) {
  Node* ret = call->match;
  ret->prev->next = ret;
  if (ret->next) ret->next->prev = ret;
  call->prev->next = call;
  if (call->next) call->next->prev = call;
}

// Checks one key's operations.
bool CheckOne(const std::vector<const KvOp*>& ops, uint64_t max_states, uint64_t* explored,
              bool* gave_up) {
  size_t n = ops.size();
  std::vector<Node> nodes(2 * n + 1);
  Node* head = &nodes[2 * n];
  std::vector<Node*> order;
  for (size_t i = 0; i < n; ++i) {
    Node* c = &nodes[2 * i];
    Node* r = &nodes[2 * i + 1];
    c->is_call = true;
    c->op = r->op = i;
    c->time = ops[i]->call;
    r->time = ops[i]->completed ? ops[i]->ret : std::numeric_limits<int64_t>::max();
    c->match = r;
    r->match = c;
    order.push_back(c);
    order.push_back(r);
  }
  std::stable_sort(order.begin(), order.end(), [](const Node* a, const Node* b) {
    if (a->time != b->time) return a->time < b->time;
    return a->is_call && !b->is_call;  // (only pending returns tie)
  });
  Node* prev = head;
  for (Node* x : order) {
    prev->next = x;
    x->prev = prev;
    prev = x;
  }

  std::unordered_set<MemoKey, MemoHash> memo;
  std::vector<uint64_t> lin((n + 63) / 64, 0);
  State state;
  struct Frame {
    Node* call;
    State state;
  };
  std::vector<Frame> stack;
  Node* cur = head->next;
  while (head->next != nullptr) {
    if (cur == nullptr) return false;  // cannot happen: a return always ends the list
    if (cur->is_call) {
      const KvOp& op = *ops[cur->op];
      State next;
      if (StepModel(state, op, &next)) {
        MemoKey key{lin, next};
        key.bits[cur->op / 64] |= 1ull << (cur->op % 64);
        if (memo.insert(key).second) {
          ++*explored;
          if (memo.size() > max_states) {
            *gave_up = true;
            return false;
          }
          stack.push_back({cur, state});
          state = std::move(next);
          lin = std::move(key.bits);
          Lift(cur);
          cur = head->next;
          continue;
        }
      }
      cur = cur->next;
    } else {
      // A return reached before its call was linearized: backtrack.
      if (stack.empty()) return false;
      Frame f = std::move(stack.back());
      stack.pop_back();
      state = std::move(f.state);
      lin[f.call->op / 64] &= ~(1ull << (f.call->op % 64));
      Unlift(f.call);
      cur = f.call->next;
    }
  }
  return true;
}

}  // namespace

LinearizabilityResult CheckKvLinearizable(const std::vector<KvOp>& history, uint64_t max_states) {
  std::map<std::string, std::vector<const KvOp*>> by_key;
  for (const KvOp& op : history) by_key[op.key].push_back(&op);
  LinearizabilityResult res;
  for (const auto& [key, ops] : by_key) {
    bool gave_up = false;
    if (!CheckOne(ops, max_states, &res.states_explored, &gave_up)) {
      res.linearizable = false;
      res.gave_up = gave_up;
      res.failing_key = key;
      return res;
    }
  }
  return res;
}

std::string DescribeKvHistory(const std::vector<KvOp>& history, const std::string& key) {
  std::ostringstream os;
  auto show = [](const std::optional<std::string>& v) {
    return v ? "'" + *v + "'" : std::string("nil");
  };
  for (const KvOp& op : history) {
    if (op.key != key) continue;
    os << "  client " << op.client << " [" << op.call << ", ";
    if (op.completed)
      os << op.ret;
    else
      os << "inf";
    os << "] ";
    switch (op.kind) {
      case KvOp::Kind::kGet:
        os << "get -> " << (op.completed ? show(op.out) : "?");
        break;
      case KvOp::Kind::kPut:
        os << "put '" << op.value << "' prev " << (op.completed ? show(op.out) : "?");
        break;
      case KvOp::Kind::kCas:
        os << "cas " << show(op.expected) << " -> '" << op.value << "' ";
        if (op.completed)
          os << (op.ok ? "ok" : "failed") << " prev " << show(op.out);
        else
          os << "?";
        break;
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace cohort::coordinator
