#!/usr/bin/env bash
# Mutation check of the emulation harness (not run in CI; a few minutes): builds the harness once
# per line of native/emu/mutants.txt with that one edit applied to the rewritten kernel copy
# (never to the sources), runs the comparison for the ops named there, and expects it to fail.
# Prints "killed" or "SURVIVED" per mutant; exits non-zero if any survived.
#   native/emu/mutants.sh [pattern]     only the mutants whose line contains pattern
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CN_EMU_OUT="${CN_EMU_OUT:-$root/build/emu-mutants}"
export CN_EMU_SELF_TEST=0
survived=0
total=0
while IFS= read -r line; do
  [[ -z "$line" || "$line" == \#* ]] && continue
  [[ -n "${1:-}" && "$line" != *"$1"* ]] && continue
  ops="${line##*@@}"
  spec="${line%@@*}"
  args=()
  IFS=',' read -r -a list <<< "$ops"
  for op in "${list[@]}"; do args+=(--only "$op"); done
  total=$((total + 1))
  log="$CN_EMU_OUT/mutant-$total.log"
  mkdir -p "$CN_EMU_OUT"
  CN_EMU_MUTATE="$spec" timeout 600 bash "$here/build.sh" "${args[@]}" --cases 16 > "$log" 2>&1
  status=$?
  if grep -q "prep.py:" "$log"; then
    echo "ERROR    $line"; grep "prep.py:" "$log" | head -2; survived=$((survived + 1))
  elif (( status != 0 )); then
    why="$(grep -m1 -E "mismatch|KERNEL FAULT|runtime error|AddressSanitizer|threw" "$log" | cut -c1-150)"
    echo "killed   ${spec%%@@*}: ${ops} -- ${why}"
  else
    echo "SURVIVED $line"; survived=$((survived + 1))
  fi
done < "$here/mutants.txt"
echo "mutants: $total, survived or broken: $survived"
(( survived == 0 ))
