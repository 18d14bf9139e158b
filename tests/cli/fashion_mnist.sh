#!/usr/bin/env bash
# Fashion-MNIST (data.source idx) end to end:
# - 2 data-parallel ranks train exactly what 1 rank trains with twice the
#   batch (SGD momentum, parameters to 1e-5 relative);
# - evaluation counts every one of the 10,000 test images exactly once at 1,
#   2 and 3 ranks (10,000 does not divide by 3) and gives the same confusion
#   matrix; its accuracy and loss equal PyTorch's on the saved parameters
#   (loaded into a torch.nn module with load_state_dict(strict=True));
# - a short run (300 steps of 128, under one epoch) reaches a test accuracy
#   above 75%: chance is 10%, and a linear classifier gets about 80% on this
#   data after one epoch, so only a model that learned passes;
# - `cohort eval` on the committed checkpoint gives the training run's
#   accuracy, on 1 and 3 ranks; --history has the evaluations;
# - bad input: a missing directory names the Debian package, a model whose
#   shape does not fit the images is refused.
source "$(dirname "$0")/lib.sh" "$@"
DIFF=$(dirname "$COHORT")/params_diff
DATA=/usr/share/datasets/fashion-mnist
[[ -d $DATA ]] || { echo "dataset-fashion-mnist is not installed (scripts/setup installs it)" >&2; exit 1; }

cfg() {  # file steps global_batch optimizer-line [extra train lines]
  cat > "$1" <<YAML
seed: 11
model: {layers: [784, 128, 10], activation: relu}
optimizer: $4
train:
  steps: $2
  global_batch: $3
  log_every: 50
  ${5:-}
data: {source: idx, path: $DATA}
YAML
}
run() {  # name np config [flags]
  local name=$1 np=$2 c=$3
  shift 3
  $MPIRUN -np "$np" "$COHORT" train --config "$c" --save-params "$WORK/$name.safetensors" "$@" \
    > "$WORK/$name.out" 2> "$WORK/$name.err" || { cat "$WORK/$name.err" >&2; fail "$name: run failed"; return 1; }
}
field() { tail -1 "$WORK/$1.out" | sed -E "s/.*\"$2\":([0-9.eE+-]+).*/\\1/"; }

# Data parallel on real data.
cfg "$WORK/dp.yaml" 20 128 "{type: sgd, lr: 0.05, momentum: 0.9}"
run dp1 1 "$WORK/dp.yaml" && run dp2 2 "$WORK/dp.yaml" && {
  "$DIFF" "$WORK/dp1.safetensors" "$WORK/dp2.safetensors" 1e-5 \
    && pass "2 ranks == 1 rank with twice the batch (1e-5)" || fail "data parallel differs on Fashion-MNIST"; }

# A short run with evaluation, then the same parameters evaluated at 2 and 3 ranks.
cfg "$WORK/short.yaml" 300 128 "{type: adamw, lr: 0.001}" "eval_every: 150
  lr_schedule: {warmup_steps: 30, decay: cosine}"
echo "checkpoint: {dir: $WORK/ckpt}" >> "$WORK/short.yaml"
if run short 1 "$WORK/short.yaml" --history "$WORK/short.jsonl"; then
  acc=$(field short eval_accuracy)
  awk -v a="$acc" 'BEGIN { exit !(a > 0.75) }' && pass "300 steps: test accuracy $acc > 0.75" \
    || fail "300 steps: test accuracy $acc is not above 0.75"
  [[ $(grep -c eval_accuracy "$WORK/short.jsonl") == 2 ]] && pass "--history has both evaluations" \
    || fail "--history: $(grep -c eval_accuracy "$WORK/short.jsonl") evaluations"
  grep -q "test acc" "$WORK/short.out" || fail "progress line lacks the test accuracy"
  for np in 1 2 3; do
    $MPIRUN -np $np "$COHORT" eval --checkpoint "$WORK/ckpt" --json > "$WORK/eval$np.json" 2> "$WORK/eval$np.err" \
      || { cat "$WORK/eval$np.err" >&2; fail "cohort eval on $np ranks failed"; }
  done
  /usr/bin/python3 - "$WORK" "$DATA" "$acc" <<'PY' && pass "eval at 1/2/3 ranks: every image once, same confusion, = PyTorch on the saved parameters" || fail "evaluation check"
import gzip, json, struct, sys
import numpy as np
work, data, train_acc = sys.argv[1], sys.argv[2], float(sys.argv[3])
def read_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    return {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"])
            for k, v in h.items() if k != "__metadata__"}
evals = [json.load(open(f"{work}/eval{np}.json")) for np in (1, 2, 3)]
for e in evals:
    conf = np.array(e["confusion"])
    assert e["samples"] == 10000 and conf.sum() == 10000, (e["ranks"], e["samples"], conf.sum())
    assert (conf.sum(axis=1) == 1000).all(), conf.sum(axis=1)
    assert e["confusion"] == evals[0]["confusion"], e["ranks"]
    assert abs(e["loss"] - evals[0]["loss"]) <= 1e-9 * evals[0]["loss"], (e["loss"], evals[0]["loss"])
assert abs(evals[0]["accuracy"] - train_acc) < 1e-12, (evals[0]["accuracy"], train_acc)
import torch
class Mlp(torch.nn.Module):  # as docs/evaluation.md loads --save-params
    def __init__(self, sizes):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)
net = Mlp([784, 128, 10])
net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in read_st(f"{work}/short.safetensors").items()}, strict=True)
net = net.double()
x = np.frombuffer(gzip.open(f"{data}/t10k-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 784) / 255.0
y = np.frombuffer(gzip.open(f"{data}/t10k-labels-idx1-ubyte.gz").read()[8:], np.uint8).astype(np.int64)
with torch.no_grad():
    z = net(torch.from_numpy(x))
    loss = float(torch.nn.functional.cross_entropy(z, torch.from_numpy(y)))
    right = int((z.argmax(dim=1).numpy() == y).sum())
print(f"cohort eval: {evals[0]['accuracy']:.4f} loss {evals[0]['loss']:.6f}; torch: {right / 1e4:.4f} loss {loss:.6f}")
assert right == round(evals[0]["accuracy"] * 10000), (right, evals[0]["accuracy"])
assert abs(loss - evals[0]["loss"]) <= 1e-5 * loss, (loss, evals[0]["loss"])
PY
fi

# Bad input.
cfg "$WORK/missing.yaml" 5 128 "{type: sgd, lr: 0.05}"
sed -i "s|path: $DATA|path: $WORK/nowhere|" "$WORK/missing.yaml"
if "$COHORT" train --config "$WORK/missing.yaml" > /dev/null 2> "$WORK/missing.err"; then fail "missing directory accepted"
elif grep -q "dataset-fashion-mnist" "$WORK/missing.err"; then pass "missing directory: $(head -1 "$WORK/missing.err" | cut -c1-140)"
else cat "$WORK/missing.err" >&2; fail "missing directory: the error does not name the package"; fi
cfg "$WORK/shape.yaml" 5 128 "{type: sgd, lr: 0.05}"
sed -i 's/\[784, 128, 10\]/[784, 128, 5]/' "$WORK/shape.yaml"
if "$COHORT" train --config "$WORK/shape.yaml" > /dev/null 2> "$WORK/shape.err"; then fail "5 classes accepted"
elif grep -q "10 classes" "$WORK/shape.err"; then pass "wrong shape: $(head -1 "$WORK/shape.err" | cut -c1-140)"
else cat "$WORK/shape.err" >&2; fail "wrong shape: unclear error"; fi
if "$COHORT" eval --checkpoint "$WORK/none" > /dev/null 2> "$WORK/eval_none.err"; then fail "eval of a missing checkpoint accepted"
else pass "eval without a checkpoint: $(head -1 "$WORK/eval_none.err" | cut -c1-140)"; fi
finish
