#!/usr/bin/env bash
# Encode throughput of BENCHMARKS.md: vmtool's encoders vs sox on the same ten
# minutes of 8 kHz speech (the fixture's real Asterisk recordings, repeated),
# same machine, same run; checks that the outputs are identical.
#   benches/encode.sh        (needs sox and hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example encode_bench
B=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/encode_bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in $(find tests/fixtures/asterisk-spool-team2/voicemail -name 'msg*.wav' | sort); do
  sox -D "$f" -t raw -e signed -b 16 -
done > "$work/speech.raw"
cd "$work"
: > bench.raw
while [ "$(stat -c %s bench.raw)" -lt 9600000 ]; do cat speech.raw >> bench.raw; done
truncate -s 9600000 bench.raw   # 600 s at 8000 Hz, 16-bit
IN=(-D -t raw -r 8000 -e signed -b 16 -c 1 bench.raw)
# format, sox output options, vmtool output file, sox output file, bytes of header to skip
# (sox's wav49 header differs from Asterisk's: exact fact count, pad byte).
while read -r fmt sox_out v s skip; do
  hyperfine -N --style none --warmup 3 --runs 20 --export-json "h-$fmt.json" \
    -n "vmtool $fmt" "$B $fmt bench.raw $v" \
    -n "sox $fmt" "sox ${IN[*]} ${sox_out//,/ } $s" >&2
  n=$(( $(stat -c %s "$v") - skip ))
  cmp <(tail -c +$((skip + 1)) "$v") <(tail -c +$((skip + 1)) "$s" | head -c "$n") && same=yes || same=no
  python3 - "$fmt" "h-$fmt.json" "$same" <<'PY'
import json, sys
fmt, path, same = sys.argv[1], sys.argv[2], sys.argv[3]
r = {x["command"].split()[0]: x for x in json.load(open(path))["results"]}
cpu = lambda x: x["user"] + x["system"]
v, s = cpu(r["vmtool"]), cpu(r["sox"])
print(f"| {fmt} (600 s of audio) | {600/v:.0f}x real time ({v*1000:.1f} ms CPU) | {600/s:.0f}x ({s*1000:.1f} ms) | {s/v:.2f}x | output identical: {same} |")
PY
done <<'EOF'
gsm -t,gsm out-v.gsm out-s.gsm 0
wav49 -t,wav,-e,gsm-full-rate out-v.WAV out-s.wav 60
ulaw -t,ul out-v.ul out-s.ul 0
alaw -t,al out-v.al out-s.al 0
wav -t,wav,-e,signed,-b,16 out-v.wav out-s16.wav 0
EOF
