#!/usr/bin/env bash
# `ls --format json` against the syscall floor (`grep -r` of the four keys a
# listing shows) and `check` against `ls`, on a generated spool, warm cache,
# output to /dev/null: CPU time (user+sys) and wall time of each command in
# alternating rounds (ls, grep, check, ls, grep, check, ...), medians.
#
#   benches/floor.sh 100k                  # target/bench-spool-100k (benches/run.sh makes it)
#   SPOOL_DIR=/work/bench-data/spool-1m ROUNDS=3 benches/floor.sh 1m
#   VMTOOL=path/to/vmtool benches/floor.sh 100k     # another build
#   BEFORE=path/to/old/vmtool benches/floor.sh 100k # an older build's ls and check too
#   CALLGRIND=1 benches/floor.sh 100k      # also instructions per message (valgrind)
#
# Needs GNU time (apt-get install -y time); valgrind for CALLGRIND=1.
set -euo pipefail
cd "$(dirname "$0")/.."

tier=${1:-100k}
rounds=${ROUNDS:-7}
spool=${SPOOL_DIR:-target/bench-spool-$tier}
if [ -z "${VMTOOL:-}" ]; then
  cargo build --release --quiet --bin vmtool
  VMTOOL=target/release/vmtool
fi
vm="$spool/voicemail"
[ -d "$vm" ] || { echo "no spool at $spool (benches/run.sh $tier makes it)" >&2; exit 2; }
msgs=$(find "$vm" -name 'msg*.txt' | wc -l)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ls_cmd=("$VMTOOL" -q --spool "$spool" --format json ls)
grep_cmd=(grep -r -h --include='msg*.txt' -E '^(callerid|origtime|duration|msg_id)=' "$vm")
check_cmd=("$VMTOOL" -q --spool "$spool" check)
# Warm the page cache (and the dentry cache) for all three.
"${grep_cmd[@]}" >/dev/null
"${ls_cmd[@]}" >/dev/null
"${check_cmd[@]}" >/dev/null || true

# One timed run: "user sys wall" appended to $out/NAME.
timed() {
  local name=$1
  shift
  /usr/bin/time -f '%U %S %e' -o "$out/t" "$@" >/dev/null 2>/dev/null || true
  tail -1 "$out/t" >>"$out/$name"
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for _ in $(seq "$rounds"); do
  timed ls "${ls_cmd[@]}"
  timed grep "${grep_cmd[@]}"
  timed check "${check_cmd[@]}"
  if [ -n "${BEFORE:-}" ]; then
    timed ls-before "$BEFORE" -q --spool "$spool" --format json ls
    timed check-before "$BEFORE" -q --spool "$spool" check
  fi
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "Spool: $spool, $msgs messages; $(nproc) cores; $(date -u '+%F %H:%M') UTC; $rounds alternating rounds"
echo "Load average (1/5/15 min) before: $load_before, after: $load_after"
echo
python3 - "$out" ${BEFORE:+ls-before check-before} <<'EOF'
import statistics, sys, os
d = sys.argv[1]
names = ["ls", "grep", "check"] + [n for n in sys.argv[2:] if n]
runs = {}
for n in names:
    rows = [tuple(map(float, l.split())) for l in open(os.path.join(d, n)) if l.strip()]
    runs[n] = rows
med = lambda rows, f: statistics.median(f(r) for r in rows)
stat = {n: dict(user=med(r, lambda x: x[0]), sys=med(r, lambda x: x[1]),
                cpu=med(r, lambda x: x[0] + x[1]), wall=med(r, lambda x: x[2]),
                cpu_range=(min(x[0] + x[1] for x in r), max(x[0] + x[1] for x in r)))
        for n, r in runs.items()}
print("| command | user (s) | sys (s) | CPU user+sys (s), median [min-max] | wall (s) |")
print("|---|---|---|---|---|")
label = {"ls": "vmtool ls --format json", "grep": "grep -r (4 keys)",
         "check": "vmtool -q check", "ls-before": "ls --format json, BEFORE build",
         "check-before": "-q check, BEFORE build"}
for n in names:
    s = stat[n]
    print(f"| {label[n]} | {s['user']:.2f} | {s['sys']:.2f} | {s['cpu']:.2f} [{s['cpu_range'][0]:.2f}-{s['cpu_range'][1]:.2f}] | {s['wall']:.2f} |")
# Ratios per round (each pair ran side by side), then their median.
def ratio(a, b, f):
    return statistics.median(f(x) / f(y) for x, y in zip(runs[a], runs[b]) if f(y) > 0)
cpu = lambda x: x[0] + x[1]
wall = lambda x: x[2]
print()
print(f"ls / grep: CPU {ratio('ls', 'grep', cpu):.2f}x (target <= 1.2x), wall {ratio('ls', 'grep', wall):.2f}x (target <= 0.8x)")
print(f"check / ls: CPU {ratio('check', 'ls', cpu):.2f}x, wall {ratio('check', 'ls', wall):.2f}x (target <= 1.5x)")
if "ls-before" in runs:
    print(f"BEFORE build: ls / grep CPU {ratio('ls-before', 'grep', cpu):.2f}x, wall {ratio('ls-before', 'grep', wall):.2f}x; "
          f"check / ls CPU {ratio('check-before', 'ls-before', cpu):.2f}x, wall {ratio('check-before', 'ls-before', wall):.2f}x")
EOF

if [ "${CALLGRIND:-0}" = 1 ]; then
  for name in ls grep; do
    if [ $name = ls ]; then cmd=("${ls_cmd[@]}"); else cmd=("${grep_cmd[@]}"); fi
    valgrind --tool=callgrind --callgrind-out-file="$out/cg" "${cmd[@]}" >/dev/null 2>"$out/cg.log" || true
    n=$(grep -o 'Collected : [0-9]*' "$out/cg.log" | head -1 | awk '{print $3}')
    echo "callgrind, $name: $n instructions ($((n / msgs)) per message)"
  done
fi
