#!/usr/bin/env bash
# Benchmark of `vmtool watch` on a generated spool (BENCHMARKS.md): time until it
# watches, peak RSS, and one Asterisk-style deposit seen as exactly one `new` event;
# `ls --format json` on the same spool in the same run, for comparison.
#
#   benches/watch.sh 100k            # spool generated once (see benches/run.sh)
#   ALL=1 benches/watch.sh 1m        # watch --all (keeps every .txt for Deleted events)
#   VMTOOL=/path/to/vmtool SPOOL_DIR=/work/bench-data/spool-1m benches/watch.sh 1m
set -euo pipefail
cd "$(dirname "$0")/.."

tier=${1:-100k}
case "$tier" in
  100k) boxes=1000 ;;
  1m) boxes=10000 ;;
  *) echo "usage: $0 100k|1m" >&2; exit 2 ;;
esac
spool=${SPOOL_DIR:-target/bench-spool-$tier}
vmtool=${VMTOOL:-}
if [ -z "$vmtool" ]; then
  cargo build --release --quiet --bin vmtool --example gen_spool
  vmtool=${CARGO_TARGET_DIR:-target}/release/vmtool
fi
if [ ! -d "$spool/voicemail" ]; then
  echo "generating $spool ($boxes boxes x 100 messages)..." >&2
  "${CARGO_TARGET_DIR:-target}/release/examples/gen_spool" --boxes "$boxes" --per-box 100 --contexts 10 --seed 1 "$spool"
fi

# Warm the page cache, as for the other benchmarks.
"$vmtool" --spool "$spool" --format json ls >/dev/null

python3 - "$vmtool" "$spool" "${ALL:-0}" <<'PY'
import os, subprocess, sys, time, glob, shutil, resource
vmtool, spool, all_events = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
vm = os.path.join(spool, "voicemail")
msgs = sum(1 for _ in glob.iglob(vm + "/*/*/*/msg*.txt"))

def ls_run():
    t = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", vmtool, "--spool", spool, "--format", "json", "ls"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    rss, u, s = p.stderr.strip().splitlines()[-1].split()
    return time.monotonic() - t, int(rss), float(u) + float(s)

args = [vmtool, "--spool", spool, "-v", "--format", "json", "watch", "--max-events", "1"]
if all_events:
    args.insert(-2, "--all")
t0 = time.monotonic()
p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
line = ""
while "watching" not in line:
    line = p.stderr.readline()
    if not line:
        sys.exit("watch exited before it was ready: " + p.stderr.read())
ready = time.monotonic() - t0
with open(f"/proc/{p.pid}/status") as f:
    hwm_ready = [l for l in f if l.startswith("VmHWM")][0].split()[1]
with open(f"/proc/{p.pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
    cpu_ready = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

# One deposit the way Asterisk makes it: tmp/, folder lock, audio then .txt renamed in.
box = sorted(glob.glob(vm + "/*/*/INBOX"))[1]
src = sorted(glob.glob(box + "/msg*.txt"))[0]
tmp = os.path.join(os.path.dirname(box), "tmp")
os.makedirs(tmp, exist_ok=True)
text = open(src).read()
import re
text = re.sub(r"(?m)^msg_id=.*$", "msg_id=1999999999-0bench01", text)
nums = [int(os.path.basename(f)[3:7]) for f in glob.glob(box + "/msg*.txt")]
n = max(nums) + 1 if nums else 0
open(os.path.join(tmp, "bench.txt"), "w").write(text)
shutil.copy(src[:-3] + "wav", os.path.join(tmp, "bench.wav"))
lock = os.path.join(box, ".lock")
open(lock + "-bench", "w").close(); os.link(lock + "-bench", lock)
t1 = time.monotonic()
os.rename(os.path.join(tmp, "bench.wav"), os.path.join(box, f"msg{n:04}.wav"))
os.rename(os.path.join(tmp, "bench.txt"), os.path.join(box, f"msg{n:04}.txt"))
os.unlink(lock); os.unlink(lock + "-bench")
out = p.stdout.readline()
latency = time.monotonic() - t1
with open(f"/proc/{p.pid}/status") as f:
    hwm = [l for l in f if l.startswith("VmHWM")][0].split()[1]
p.wait(timeout=30)
ok = '"event":"new"' in out and "1999999999-0bench01" in out
# Leave the spool as it was.
for ext in ("wav", "txt"):
    os.unlink(os.path.join(box, f"msg{n:04}.{ext}"))
ls_t, ls_rss, ls_cpu = ls_run()
print(f"Spool: {spool}, {msgs} messages; {os.cpu_count()} cores; watch{' --all' if all_events else ''}")
print()
print("| what | value | target |")
print("|---|---|---|")
print(f"| watching after | {ready:.2f} s ({ready / msgs * 1e5:.2f} s per 100,000 messages), CPU {cpu_ready:.2f} s | <= 1 s per 100,000 |")
print(f"| peak RSS once watching / after the deposit | {int(hwm_ready)/1024:.1f} MB / {int(hwm)/1024:.1f} MB | < 50 MB |")
print(f"| deposit seen as one new event | {'yes' if ok else 'NO: ' + out.strip()[:200]}, {latency*1000:.0f} ms | |")
print(f"| ls --format json, same spool | {ls_t:.2f} s, CPU {ls_cpu:.2f} s, {ls_rss/1024:.1f} MB | |")
PY
