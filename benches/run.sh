#!/usr/bin/env bash
# Benchmarks of BENCHMARKS.md: vmtool against the tools admins use today, on a
# generated spool, warm page cache, output to /dev/null for both sides.
#
#   benches/run.sh 100k        # 1,000 boxes x 100 messages (generated once)
#   benches/run.sh 1m          # 10,000 boxes x 100 messages (several GB, minutes to generate)
#   RUNS=10 benches/run.sh 100k
#
# Needs hyperfine and GNU time (apt-get install -y hyperfine time); valgrind
# for the instruction counts (CALLGRIND=1).
set -euo pipefail
cd "$(dirname "$0")/.."

tier=${1:-100k}
runs=${RUNS:-7}
case "$tier" in
  100k) boxes=1000 ;;
  1m) boxes=10000 ;;
  *) echo "usage: $0 100k|1m" >&2; exit 2 ;;
esac
spool=${SPOOL_DIR:-target/bench-spool-$tier}

cargo build --release --quiet --bin vmtool --example gen_spool
vmtool=target/release/vmtool
if [ ! -d "$spool/voicemail" ]; then
  echo "generating $spool ($boxes boxes x 100 messages)..." >&2
  target/release/examples/gen_spool --boxes "$boxes" --per-box 100 --contexts 10 --seed 1 "$spool"
fi
vm="$spool/voicemail"
msgs=$(find "$vm" -name 'msg*.txt' | wc -l)
box=$(find "$vm" -mindepth 2 -maxdepth 2 -type d | sort | sed -n '2p')
boxname="$(basename "$box")@$(basename "$(dirname "$box")")"

# Warm the page cache.
cat "$(find "$vm" -name 'msg*.txt' | head -1)" >/dev/null
grep -r -h --include='msg*.txt' -E '^(callerid|origtime|duration|msg_id)=' "$vm" >/dev/null
$vmtool --spool "$spool" boxes >/dev/null

json=$(mktemp)
trap 'rm -f "$json"' EXIT
hyperfine --style none --warmup 2 --runs "$runs" --export-json "$json" \
  -n "vmtool ls --format json" "$vmtool --spool $spool --format json ls >/dev/null" \
  -n "grep -r (4 keys)" "grep -r -h --include='msg*.txt' -E '^(callerid|origtime|duration|msg_id)=' $vm >/dev/null" \
  -n "vmtool boxes" "$vmtool --spool $spool boxes >/dev/null" \
  -n "find | sort | uniq -c" "find $vm -name 'msg*.txt' -printf '%h\n' | sort | uniq -c >/dev/null" \
  -n "vmtool count $boxname" "$vmtool --spool $spool count $boxname >/dev/null" \
  -n "vmtool ls $boxname" "$vmtool --spool $spool ls $boxname >/dev/null" >&2

median() { python3 -c "import json,sys; r=json.load(open('$json'))['results']; print('%.4f' % [x for x in r if x['command']==sys.argv[1]][0]['median'])" "$1"; }
rss() { /usr/bin/time -f %M "$@" >/dev/null 2>"$json.rss" || true; tail -1 "$json.rss"; }

ls_t=$(median "vmtool ls --format json"); grep_t=$(median "grep -r (4 keys)")
boxes_t=$(median "vmtool boxes"); find_t=$(median "find | sort | uniq -c")
count_t=$(median "vmtool count $boxname"); one_t=$(median "vmtool ls $boxname")
# Item 5: directories opened by `ls BOX` outside that box (must be none).
others=-
if command -v strace >/dev/null; then
  strace -f -e trace=openat -o "$json.st" $vmtool --spool "$spool" ls "$boxname" >/dev/null
  others=$(grep 'O_DIRECTORY' "$json.st" | grep '/voicemail/' | grep -v "/voicemail/$(basename "$(dirname "$box")")/$(basename "$box")" | grep -vc 'openat([0-9]*, "\."' || true)
  rm -f "$json.st"
fi
ls_rss=$(rss $vmtool --spool "$spool" --format json ls)
boxes_rss=$(rss $vmtool --spool "$spool" boxes)
rm -f "$json.rss"

echo
echo "Spool: $spool, $msgs messages; $(nproc) cores; $(date -u +%F)"
echo
echo "| # | what | vmtool (median s) | reference (median s) | ratio | target |"
echo "|---|---|---|---|---|---|"
python3 - "$ls_t" "$grep_t" "$boxes_t" "$find_t" "$count_t" "$one_t" "$ls_rss" "$boxes_rss" "$others" <<'EOF'
import sys
ls_t, grep_t, boxes_t, find_t, count_t, one_t = map(float, sys.argv[1:7])
ls_rss, boxes_rss, others = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]
print(f"| 1 | ls --format json vs grep -r | {ls_t:.3f} | {grep_t:.3f} | {ls_t/grep_t:.2f}x | <= 1.0x |")
print(f"| 2 | boxes vs find/sort/uniq | {boxes_t:.3f} | {find_t:.3f} | {boxes_t/find_t:.2f}x | <= 1.0x |")
print(f"| 3 | count one box | {count_t*1000:.1f} ms | - | - | < 5 ms |")
print(f"| 4 | peak RSS ls / boxes | {ls_rss/1024:.1f} MB / {boxes_rss/1024:.1f} MB | - | - | < 50 MB |")
print(f"| 5 | ls one box | {one_t*1000:.1f} ms; {others} directories of other boxes opened | - | - | no walk of other boxes |")
EOF

if [ "${CALLGRIND:-0}" = 1 ]; then
  out=$(mktemp)
  valgrind --tool=callgrind --callgrind-out-file="$out" $vmtool --spool "$spool" --format json ls >/dev/null 2>"$out.log"
  echo
  echo "callgrind, ls --format json: $(grep -o 'Collected : [0-9]*' "$out.log" | head -1 | awk '{print $3}') instructions ($(python3 -c "print(round($(grep -o 'Collected : [0-9]*' "$out.log" | head -1 | awk '{print $3}')/$msgs))") per message)"
  rm -f "$out" "$out.log"
fi
