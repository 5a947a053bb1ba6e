#!/usr/bin/env bash
# `vmtool serve` of BENCHMARKS.md: the list request of a 1,000-message box,
# 50 sessions streaming audio at once, the server's memory.
#   benches/serve.sh
# The box is finance/2101 of the real-Asterisk fixture with its 13-s message
# (wav49|gsm|wav) copied to msg0000..msg0999 of INBOX, each its own msg_id.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin vmtool --example serve_bench
T=${CARGO_TARGET_DIR:-$PWD/target}/release
N=${MESSAGES:-1000}
work=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"' EXIT
fx=tests/fixtures/asterisk-spool-team2
cp -a "$fx/etc" "$work/etc"
sed -i 's/^maxmsg = .*/maxmsg = 9999/' "$work/etc/voicemail.conf"
inbox="$work/spool/voicemail/finance/2101/INBOX"
mkdir -p "$inbox"
src="$fx/voicemail/finance/2101/INBOX/msg0001"
for i in $(seq 0 $((N - 1))); do
  n=$(printf %04d "$i")
  for ext in wav WAV gsm; do cp "$src.$ext" "$inbox/msg$n.$ext"; done
  sed "s/^msg_id=.*/msg_id=1795689120-$n/" "$src.txt" > "$inbox/msg$n.txt"
done
"$T/vmtool" --spool "$work/spool" --asterisk-conf "$work/etc/asterisk.conf" \
  --voicemail-conf "$work/etc/voicemail.conf" --no-ami \
  serve --listen 127.0.0.1:0 2> "$work/serve.log" &
srv=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^vmtool: listening on //p' "$work/serve.log" | head -n1)
sleep 1
"$T/examples/serve_bench" "$url" "$srv" 2101@finance 1111 "$N"
# The same listing from the command line, for comparison.
hyperfine -N --style basic --runs 20 --warmup 2 \
  -n "vmtool ls (the same INBOX, command line)" \
  "$T/vmtool --spool $work/spool --asterisk-conf $work/etc/asterisk.conf --voicemail-conf $work/etc/voicemail.conf --format json ls 2101@finance/INBOX"
