#!/usr/bin/env bash
# Broadcast of BENCHMARKS.md: `vmtool deposit --all` of one 30-s message into
# 1,000 boxes of a generated spool (10 messages each, format=wav49|gsm|wav),
# each run on a fresh copy; then the rerun, which finds the message in every
# box and adds nothing.
#   benches/broadcast.sh      (needs sox and hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin vmtool --example gen_spool
T=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$T/examples/gen_spool" --boxes 1000 --per-box 10 --contexts 10 --seed 1 --short-audio "$work/base" >&2
sox -D -n -r 8000 -c 1 -b 16 "$work/notice.wav" synth 30 sine 300-3000 vol 0.5
V=("$T/vmtool" --spool "$work/run/voicemail" --voicemail-conf "$work/run/etc/voicemail.conf" --no-ami -q)
grep -m1 '^format' "$work/base/etc/voicemail.conf" >&2
hyperfine -N --style basic --runs "${RUNS:-5}" \
  --prepare "sh -c 'rm -rf $work/run && cp -a $work/base $work/run'" \
  -n "deposit --all (1,000 boxes)" "${V[*]} deposit --all $work/notice.wav --callerid 'Reception <100>'"
rm -rf "$work/run" && cp -a "$work/base" "$work/run"
"${V[@]}" deposit --all "$work/notice.wav" --callerid 'Reception <100>'
n=$(grep -rl --include='msg*.txt' '^callerid="Reception" <100>' "$work/run/voicemail" | wc -l)
echo "messages deposited: $n" >&2
hyperfine -N --style basic --runs "${RUNS:-5}" \
  -n "rerun (every box already has it)" "${V[*]} deposit --all $work/notice.wav --callerid 'Reception <100>'"
