#!/usr/bin/env bash
# Decode throughput of BENCHMARKS.md: vmtool's decoders vs sox, on ten minutes
# of the fixture's real Asterisk audio per format, same machine, same run.
#   benches/decode.sh        (needs sox and hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example decode_bench
B=$PWD/target/release/examples/decode_bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$B make tests/fixtures/asterisk-spool-team2/voicemail "$work" >/dev/null
cd "$work"
for e in WAV gsm wav; do
  if [ "$e" = gsm ]; then
    secs=$(python3 -c "import os; print(os.path.getsize('bench.gsm') / 1650)")  # 33-byte frames, 20 ms
  else
    secs=$(soxi -D "bench.$e")
  fi
  hyperfine -N --style none --warmup 3 --runs 20 --export-json "h-$e.json" \
    -n "vmtool $e" "$B wav bench.$e $e out-v.wav" \
    -n "sox $e" "sox -D bench.$e -e signed -b 16 out-s.wav" >&2
  cmp out-v.wav out-s.wav && same=yes || same=no
  python3 - "$e" "$secs" "h-$e.json" "$same" <<'PY'
import json, sys
e, secs, path, same = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
r = {x["command"].split()[0]: x for x in json.load(open(path))["results"]}
cpu = lambda x: x["user"] + x["system"]
v, s = cpu(r["vmtool"]), cpu(r["sox"])
print(f"| .{e} ({secs:.0f} s of audio) | {secs/v:.0f}x real time ({v*1000:.1f} ms CPU) | {secs/s:.0f}x ({s*1000:.1f} ms) | {s/v:.2f}x | output identical: {same} |")
PY
done
