#!/usr/bin/env bash
# Completion on a 100,000-message spool (BENCHMARKS.md): one TAB is one run of
# vmtool answering the completion script; only directory names are read.
#
#   benches/complete.sh            # uses target/bench-spool-100k (benches/run.sh 100k makes it)
#   SPOOL_DIR=/path benches/complete.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
spool=${SPOOL_DIR:-$target/bench-spool-100k}
cargo build --release --quiet --bin vmtool --example gen_spool
vmtool=$target/release/vmtool
if [ ! -d "$spool/voicemail" ]; then
  "$target/release/examples/gen_spool" --boxes 1000 --per-box 100 --contexts 10 --seed 1 "$spool"
fi
ctx=$(ls "$spool/voicemail" | head -1)
box=$(ls "$spool/voicemail/$ctx" | head -1)
ask() { echo "env _VMTOOL_COMPLETE=bash _CLAP_COMPLETE_INDEX=4 $vmtool -- vmtool --spool $spool ls $1"; }
hyperfine --style basic --warmup 3 --runs 30 -N \
  -n "ls <TAB> (contexts)" "$(ask '""')" \
  -n "ls 1<TAB> (boxes of every context)" "$(ask 1)" \
  -n "ls $ctx/<TAB> (boxes)" "$(ask "$ctx/")" \
  -n "ls $ctx/$box/INBOX/<TAB> (numbers)" "$(ask "$ctx/$box/INBOX/")"
# Files opened by the slowest question: no msgNNNN.txt.
if command -v strace >/dev/null; then
  strace -f -e trace=openat -o "$spool.strace" env _VMTOOL_COMPLETE=bash _CLAP_COMPLETE_INDEX=4 \
    "$vmtool" -- vmtool --spool "$spool" ls "$ctx/$box/INBOX/" >/dev/null
  echo ".txt files opened: $(grep -c '\.txt' "$spool.strace" || true)"
fi
