#!/usr/bin/env bash
# Archive benchmark of BENCHMARKS.md: `vmtool archive` of every message of a
# generated spool vs the naive, unsafe `find … -exec mv` a cron user writes.
#   benches/archive.sh [BOXES]      # default 1000 boxes x 100 messages
# Each side gets a freshly generated spool on the same file system.
set -euo pipefail
cd "$(dirname "$0")/.."
boxes=${1:-1000}
work=${WORK_DIR:-target/bench-archive}
cargo build --release --quiet --bin vmtool --example gen_spool
rm -rf "$work"; mkdir -p "$work"
gen() { target/release/examples/gen_spool --boxes "$boxes" --per-box 100 --contexts 10 --seed 3 --short-audio "$1" 2>/dev/null; }
gen "$work/a"; gen "$work/b"
msgs=$(find "$work/a/voicemail" -name 'msg*.txt' -not -path '*/tmp/*' | wc -l)
sync
/usr/bin/time -f "%e %M" -o "$work/vm.time" target/release/vmtool --spool "$work/a" --no-ami \
  archive --older-than 0d --include-new --to "$work/a-archive" --summary >&2
mkdir -p "$work/b-archive"
sync
# The naive line exactly as a cron user writes it (it overwrites or refuses
# same-named files from different boxes: most of them stay behind).
/usr/bin/time -f "%e %M" -o "$work/naive.time" sh -c "find '$work/b/voicemail' -name 'msg*' -exec mv -t '$work/b-archive' {} + 2>/dev/null; sync" || true
nleft=$(find "$work/b/voicemail" -name 'msg*' | wc -l)
read -r vt vm < "$work/vm.time"; read -r nt nm < "$work/naive.time"
left=$(find "$work/a/voicemail" -name 'msg*' -not -path '*/tmp/*' | wc -l)
python3 - "$msgs" "$vt" "$vm" "$nt" "$nm" "$left" "$nleft" <<'PY'
import sys
msgs, vt, vm, nt, nm, left, nleft = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
print(f"| archive {msgs} messages | vmtool {vt:.2f} s ({msgs/vt:.0f} msg/s, {vm/1024:.1f} MB peak; {left} files left) | find -exec mv + sync {nt:.2f} s ({nm/1024:.1f} MB; {nleft} files left behind) | {vt/nt:.2f}x | <= 2.0x |")
PY
rm -rf "$work"
