#!/usr/bin/env bash
# Export of BENCHMARKS.md: `vmtool convert --to wav|flac|mp3|ogg --stdout` of
# one 60-s message (deposited from a sox signal into a copy of the example
# spool), next to sox encoding the same 8 kHz WAV where sox can.
#   benches/export.sh      (needs sox and hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin vmtool
T=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a examples/spool "$work/spool"
sox -D -n -r 8000 -c 1 -b 16 "$work/in.wav" synth 60 sine 300-3000 vol 0.5
V=("$T/vmtool" --spool "$work/spool" --voicemail-conf examples/etc/asterisk/voicemail.conf --no-ami -q)
"${V[@]}" deposit 1202@compta "$work/in.wav" --folder Work --callerid 'Bench <1>'
msg=compta/1202/Work/0
"${V[@]}" convert --stdout --from-format wav "$msg" > "$work/msg.wav"
args=()
for f in wav flac mp3 ogg; do
  args+=(-n "vmtool --to $f" "${V[*]} convert --from-format wav --to $f --stdout $msg")
done
args+=(-n "sox -> flac" "sox $work/msg.wav -t flac -")
args+=(-n "sox -> ogg (vorbis)" "sox $work/msg.wav -t ogg -")
hyperfine -N --style basic --warmup 1 --runs "${RUNS:-10}" --output pipe "${args[@]}"
for f in flac mp3 ogg; do
  "${V[@]}" convert --from-format wav --to "$f" --stdout "$msg" > "$work/out.$f"
  echo "$f: $(stat -c %s "$work/out.$f") bytes (wav: $(stat -c %s "$work/msg.wav"))" >&2
done
