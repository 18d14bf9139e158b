#!/usr/bin/env bash
# `cohort data tokenize`: the fortunes corpus (scripts/setup installs it) to
# llm.c token files, checked through --json and `cohort data verify`; bad
# input gives one error line naming the problem and a non-zero exit.
source "$(dirname "$0")/lib.sh" "$@"
FORTUNES=/usr/share/games/fortunes

if [[ -d $FORTUNES ]]; then
  # What the rule (text: no NUL byte, valid UTF-8) should find there: the
  # regular files except the binary .dat indexes; the .u8 symlinks are not followed.
  text_files=0 text_bytes=0 dat_files=0
  for f in "$FORTUNES"/*; do
    [[ -f $f && ! -L $f ]] || continue
    if [[ $f == *.dat ]]; then dat_files=$((dat_files + 1)); else
      text_files=$((text_files + 1)); text_bytes=$((text_bytes + $(stat -c %s "$f"))); fi
  done
  if "$COHORT" data tokenize --input "$FORTUNES" --out "$WORK/tok" --shards 3 --name fortunes --json \
      > "$WORK/out" 2> "$WORK/err"; then
    python3 - "$WORK/out" "$text_files" "$text_bytes" "$dat_files" "$WORK/tok" <<'PY' && pass "tokenize fortunes: $(cat "$WORK/out")" || fail "tokenize JSON: $(cat "$WORK/out")"
import json, os, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
j = json.loads(lines[0])
text_files, text_bytes, dat_files, out = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
assert j["files_read"] == text_files, (j["files_read"], text_files)
assert j["files_skipped_binary"] == dat_files, (j["files_skipped_binary"], dat_files)
assert j["bytes"] == text_bytes and j["train_tokens"] + j["val_tokens"] == text_bytes
assert j["val_tokens"] == int(0.1 * text_bytes + 0.5), j["val_tokens"]
assert j["vocab"] == 256 and j["train_files"] == 3
names = [os.path.basename(p) for p in j["files_written"]]
assert names == ["fortunes_train_000000.bin", "fortunes_train_000001.bin", "fortunes_train_000002.bin",
                 "fortunes_val_000000.bin"], names
for p in j["files_written"]:
    size = os.path.getsize(p)
    hdr = open(p, "rb").read(12)
    magic, version, n = (int.from_bytes(hdr[i:i + 4], "little") for i in (0, 4, 8))
    assert (magic, version) == (20240520, 1) and size == 1024 + 2 * n, (p, magic, version, n, size)
PY
  else
    fail "tokenize fortunes exited non-zero: $(cat "$WORK/err")"
  fi
  if "$COHORT" data verify "$WORK/tok" > "$WORK/vout" 2>&1 && [[ $(grep -c '^ok ' "$WORK/vout") == 4 ]]; then
    pass "verify lists 4 intact token files"
  else fail "verify: $(cat "$WORK/vout")"; fi
  truncate -s -2 "$WORK/tok/fortunes_train_000001.bin"
  if "$COHORT" data verify "$WORK/tok" > /dev/null 2> "$WORK/verr"; then fail "verify accepted a truncated token file"
  else
    grep -q "fortunes_train_000001.bin is truncated" "$WORK/verr" && pass "verify names the truncated file" \
      || fail "verify message: $(cat "$WORK/verr")"
  fi
else
  echo "skip: $FORTUNES missing (scripts/setup installs fortunes)"
fi

# Bad input: exit 1..127 and exactly one error line that names the problem.
expect_error() {
  local name=$1 needle=$2; shift 2
  local rc=0
  "$COHORT" data tokenize "$@" > "$WORK/out" 2> "$WORK/err" || rc=$?
  if ((rc == 0 || rc >= 128)); then fail "$name: exit $rc (want 1..127)"; return; fi
  local lines
  lines=$(wc -l < "$WORK/err")
  ((lines == 1)) || { fail "$name: $lines lines on stderr (want 1): $(cat "$WORK/err")"; return; }
  grep -q "^cohort data tokenize: error: .*$needle" "$WORK/err" && pass "$name: $(cat "$WORK/err")" \
    || fail "$name: message lacks '$needle': $(cat "$WORK/err")"
}
mkdir -p "$WORK/in"
echo "some text" > "$WORK/in/a.txt"
printf 'bin\0ary' > "$WORK/in/b.dat"
expect_error "missing input" "input not found: $WORK/nope" --input "$WORK/nope" --out "$WORK/o1"
expect_error "val fraction 1.5" "validation fraction must be in \[0, 1), not 1.5" \
  --input "$WORK/in" --out "$WORK/o2" --val-fraction 1.5
expect_error "zero shards" "training shards must be at least 1, not 0" --input "$WORK/in" --out "$WORK/o3" --shards 0
expect_error "binary file named" "input $WORK/in/b.dat is binary, not text: a NUL byte at offset 3" \
  --input "$WORK/in/a.txt" "$WORK/in/b.dat" --out "$WORK/o4"
[[ ! -e $WORK/o4 ]] && pass "nothing written on error" || fail "an error left $WORK/o4 behind"
finish
