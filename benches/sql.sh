#!/usr/bin/env bash
# SQL-storage benchmark of BENCHMARKS.md (issue 9): vmtool `ls --format json`
# and `boxes` over an Asterisk ODBC voicemail table, against the database's
# own command-line client selecting the same columns (minus `recording`).
#   benches/sql.sh [ROWS] [BOXES]       # default 1000000 rows over 10000 boxes
# Environment: VMTOOL (binary, default target/release/vmtool), RUNS (5),
#   OUT_DIR (hyperfine JSON/markdown; default a fresh directory under /tmp),
#   ENGINES ("postgres mariadb"), KEEP (1: keep the table after the run and
#   reuse it when it already has ROWS rows, for repeated runs; drop it by hand
#   or run once more without KEEP).
# Needs the local servers: PostgreSQL 127.0.0.1:5432 (postgres, trust) and
# MariaDB 127.0.0.1:3306 (root, no password), database `test` on both.
# Each engine gets a table `vm_bench` (TABLE=name for another; plus small
# helper tables vm_bench_*) that is dropped again on exit (unless KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/.."

rows=${1:-1000000}
boxes=${2:-10000}
vmtool=${VMTOOL:-target/release/vmtool}
runs=${RUNS:-5}
t=${TABLE:-vm_bench}
engines=${ENGINES:-postgres mariadb}
keep=${KEEP:-0}
out=${OUT_DIR:-$(mktemp -d /tmp/vmtool-bench-sql.XXXXXX)}
mkdir -p "$out"
prefix=/var/spool/asterisk/voicemail
# Boxes are spread over 10 contexts ctx0..ctx9, numbered 1000.. in each.
per_ctx=$(( (boxes + 9) / 10 ))

(( rows >= boxes && boxes >= 40 )) || { echo "need ROWS >= BOXES >= 40" >&2; exit 2; }
(( per_ctx <= 9000 )) || { echo "at most 90000 boxes (4-digit box numbers)" >&2; exit 2; }
[[ -x $vmtool ]] || { echo "no vmtool binary at $vmtool (set VMTOOL)" >&2; exit 2; }
command -v hyperfine >/dev/null || { echo "hyperfine missing: apt-get install -y hyperfine" >&2; exit 2; }

PSQL=(psql -h 127.0.0.1 -U postgres -d test -X -q -v ON_ERROR_STOP=1)
MARIADB=(mariadb -h 127.0.0.1 -u root test)

cleanup() {
  [[ $keep == 1 ]] && return 0
  "${PSQL[@]}" -c "DROP TABLE IF EXISTS ${t}, ${t}_blob" >/dev/null 2>&1 || true
  "${MARIADB[@]}" -e "DROP TABLE IF EXISTS ${t}, ${t}_boxes, ${t}_nums, ${t}_blob" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# A 44-byte WAV header (8 kHz, 16-bit mono, 4052 data bytes) in front of 4052
# random bytes: 4096 bytes per recording, incompressible like real audio.
# 64 different blobs, row i gets blob i % 64.
wav_header=52494646F80F000057415645666D74201000000001000100401F0000803E00000200100064617461D40F0000
(( ${#wav_header} == 88 )) || { echo "bad WAV header" >&2; exit 1; }

# Per box b (0-based): context b / per_ctx, box 1000 + b % per_ctx; c messages
# (ROWS spread evenly), the first n_inbox in INBOX (50-90 %, ~70 % on average),
# the rest in Old; msgnum counts from 0 in each folder. Rows are generated box
# after box, i.e. in primary-key order, and row i (0-based) gets origtime
# 1790000000+i and msg_id "<origtime>-<i as 8 hex digits>".
q=$(( rows / boxes )); r=$(( rows % boxes ))

load_postgres() {
  "${PSQL[@]}" <<SQL
DROP TABLE IF EXISTS ${t}, ${t}_blob;
-- Net result of Asterisk's alembic scripts (schema-postgresql.sql).
CREATE TABLE ${t} (
    dir character varying(255) NOT NULL,
    msgnum integer NOT NULL,
    context character varying(80),
    callerid character varying(80),
    origtime integer,
    duration integer,
    recording bytea,
    flag character varying(30),
    category character varying(30),
    mailboxuser character varying(30),
    mailboxcontext character varying(30),
    msg_id character varying(40),
    CONSTRAINT ${t}_dir_msgnum PRIMARY KEY (dir, msgnum)
);
CREATE TABLE ${t}_blob AS
  SELECT k, decode('$wav_header', 'hex')
            || substring(decode(string_agg(md5(random()::text || k || s), ''), 'hex') for 4052) AS data
  FROM generate_series(0, 63) k, generate_series(1, 254) s GROUP BY k;
INSERT INTO ${t}
SELECT '$prefix/ctx' || (b / $per_ctx) || '/' || (1000 + b % $per_ctx) || '/'
         || CASE WHEN j < n_inbox THEN 'INBOX' ELSE 'Old' END,
       CASE WHEN j < n_inbox THEN j ELSE j - n_inbox END,
       'from-internal',
       '"Caller ' || (i % 997) || '" <06' || lpad(((i::bigint * 7919) % 100000000)::text, 8, '0') || '>',
       1790000000 + i,
       1 + (i::bigint * 7919) % 120,
       bl.data, '', NULL,
       (1000 + b % $per_ctx)::text, 'ctx' || (b / $per_ctx),
       (1790000000 + i) || '-' || lpad(to_hex(i), 8, '0')
FROM generate_series(0, $boxes - 1) b,
     LATERAL (SELECT $q + (b < $r)::int AS c) c,
     LATERAL (SELECT c.c * (50 + (b * 37) % 41) / 100 AS n_inbox,
                     b * $q + least(b, $r) AS start) s,
     LATERAL generate_series(0, c.c - 1) j,
     LATERAL (SELECT s.start + j AS i) x,
     ${t}_blob bl
WHERE bl.k = x.i % 64;
DROP TABLE ${t}_blob;
VACUUM ANALYZE ${t};
SQL
}

load_mariadb() {
  "${MARIADB[@]}" <<SQL
DROP TABLE IF EXISTS ${t}, ${t}_boxes, ${t}_nums, ${t}_blob;
CREATE TABLE ${t} (
    dir varchar(255) NOT NULL,
    msgnum int(11) NOT NULL,
    context varchar(80),
    callerid varchar(80),
    origtime int(11),
    duration int(11),
    recording longblob,
    flag varchar(30),
    category varchar(30),
    mailboxuser varchar(30),
    mailboxcontext varchar(30),
    msg_id varchar(40),
    PRIMARY KEY (dir, msgnum)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
-- Helper tables: the boxes with their message counts, a numbers table 0..max(c)-1.
-- (MariaDB's name for MySQL's cte_max_recursion_depth)
SET SESSION max_recursive_iterations = 4294967295;
CREATE TABLE ${t}_boxes (b int PRIMARY KEY, c int, n_inbox int, start int) ENGINE=InnoDB
  WITH RECURSIVE t(b) AS (SELECT 0 UNION ALL SELECT b + 1 FROM t WHERE b + 1 < $boxes)
  SELECT b, $q + (b < $r) AS c, ($q + (b < $r)) * (50 + (b * 37) % 41) DIV 100 AS n_inbox,
         b * $q + LEAST(b, $r) AS start FROM t;
CREATE TABLE ${t}_nums (j int PRIMARY KEY) ENGINE=InnoDB
  WITH RECURSIVE t(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM t WHERE j + 1 < $q + ($r > 0))
  SELECT j FROM t;
CREATE TABLE ${t}_blob (k int PRIMARY KEY, data longblob) ENGINE=InnoDB
  SELECT j AS k, CONCAT(UNHEX('$wav_header'), RANDOM_BYTES(1013), RANDOM_BYTES(1013),
                        RANDOM_BYTES(1013), RANDOM_BYTES(1013)) AS data
  FROM (WITH RECURSIVE t(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM t WHERE j < 63)
        SELECT j FROM t) k;
SQL
  # Insert ~100,000 rows (~400 MB) per transaction, box range after box range.
  local step=$(( 100000 / (q + 1) + 1 )) lo
  for (( lo = 0; lo < boxes; lo += step )); do
    "${MARIADB[@]}" -e "INSERT INTO ${t}
SELECT CONCAT('$prefix/ctx', bx.b DIV $per_ctx, '/', 1000 + bx.b % $per_ctx, '/',
              IF(n.j < bx.n_inbox, 'INBOX', 'Old')),
       IF(n.j < bx.n_inbox, n.j, n.j - bx.n_inbox),
       'from-internal',
       CONCAT('\"Caller ', (bx.start + n.j) % 997, '\" <06',
              LPAD(((bx.start + n.j) * 7919) % 100000000, 8, '0'), '>'),
       1790000000 + bx.start + n.j,
       1 + ((bx.start + n.j) * 7919) % 120,
       bl.data, '', NULL,
       1000 + bx.b % $per_ctx, CONCAT('ctx', bx.b DIV $per_ctx),
       CONCAT(1790000000 + bx.start + n.j, '-', LOWER(LPAD(HEX(bx.start + n.j), 8, '0')))
FROM ${t}_boxes bx
JOIN ${t}_nums n ON n.j < bx.c
JOIN ${t}_blob bl ON bl.k = (bx.start + n.j) % 64
WHERE bx.b >= $lo AND bx.b < $lo + $step
ORDER BY bx.b, n.j"
  done
  "${MARIADB[@]}" -e "DROP TABLE ${t}_boxes, ${t}_nums, ${t}_blob;
    OPTIMIZE TABLE ${t}; ANALYZE TABLE ${t}" >/dev/null
}

# Rows in the table, for KEEP=1 (fails when it does not exist).
count_postgres() { "${PSQL[@]}" -At -c "SELECT count(*) FROM ${t}"; }
count_mariadb() { "${MARIADB[@]}" -B -N -e "SELECT count(*) FROM ${t}"; }

bench_engine() {
  local engine=$1 url baseline t0
  case $engine in
    postgres) url=postgres://postgres@127.0.0.1/test
      baseline="psql -h 127.0.0.1 -U postgres -d test -At -c \"SELECT dir, msgnum, callerid, origtime, duration, msg_id FROM ${t}\" > /dev/null" ;;
    mariadb) url=mysql://root@127.0.0.1:3306/test
      baseline="mariadb -h 127.0.0.1 -u root test -B -N -e \"SELECT dir, msgnum, callerid, origtime, duration, msg_id FROM ${t}\" > /dev/null" ;;
  esac
  if [[ $keep == 1 ]] && [[ $("count_$engine" 2>/dev/null) == "$rows" ]]; then
    echo "== $engine: reusing ${t} ($rows rows; KEEP=1)" >&2
  else
    echo "== $engine: loading $rows rows over $boxes boxes" >&2
    t0=$SECONDS
    "load_$engine"
    echo "   loaded in $(( SECONDS - t0 )) s" >&2
  fi

  local vm="$vmtool --spool /nonexistent-spool --db $url --db-table ${t} --spool-prefix $prefix"
  # Sanity: one CSV line per row (+ header), one `boxes` line per box.
  local nls nboxes
  nls=$($vm ls --format csv | wc -l)
  nboxes=$($vm boxes --format csv | wc -l)
  echo "   ls --format csv: $nls lines (expected $(( rows + 1 ))); boxes --format csv: $nboxes lines (expected $(( boxes + 1 )))" >&2
  (( nls == rows + 1 && nboxes == boxes + 1 )) || echo "   WARNING: line counts differ from the table" >&2
  echo "   count ctx3/1003: $($vm count ctx3/1003 2>&1 | tr '\n' ' ')" >&2
  echo "$engine ls_lines $nls" >> "$out/checks"

  # Peak RSS (KB) of each vmtool command, one run each.
  local name cmd
  for name in ls boxes count; do
    case $name in
      ls) cmd="ls --format json" ;; boxes) cmd=boxes ;; count) cmd="count ctx3/1003" ;;
    esac
    /usr/bin/time -f %M -o "$out/$engine-$name.rss" $vm $cmd > /dev/null
  done

  hyperfine --warmup 1 --runs "$runs" --style basic \
    --export-json "$out/$engine.json" --export-markdown "$out/$engine.md" \
    -n "client" "$baseline" \
    -n "ls --format json" "$vm ls --format json > /dev/null" \
    -n "boxes" "$vm boxes > /dev/null" \
    -n "count ctx3/1003" "$vm count ctx3/1003 > /dev/null" >&2

  cleanup
}

for engine in $engines; do bench_engine "$engine"; done

# Summary: mean wall time, ratio to the engine's own client (target <= 1.5x),
# CPU time of the measured process (user + system), peak RSS.
python3 - "$out" $engines <<'PY'
import json, sys
out, engines = sys.argv[1], sys.argv[2:]
rss_of = {"ls --format json": "ls", "boxes": "boxes", "count ctx3/1003": "count"}
def secs(v):
    return f"{v*1000:.1f} ms" if v < 1 else f"{v:.2f} s"
print("| engine | command | mean (± sd) | ratio to client | CPU (user+sys) | peak RSS |")
print("|---|---|---|---|---|---|")
for e in engines:
    res = {r["command"]: r for r in json.load(open(f"{out}/{e}.json"))["results"]}
    base = res["client"]["mean"]
    for name, r in res.items():
        ratio = "1.00x" if name == "client" else f"{r['mean']/base:.2f}x"
        rss = "-"
        if name in rss_of:
            kb = int(open(f"{out}/{e}-{rss_of[name]}.rss").read().split()[-1])
            rss = f"{kb/1024:.1f} MB"
        print(f"| {e} | {name} | {secs(r['mean'])} (± {secs(r['stddev'])}) | {ratio} "
              f"| {secs(r['user'] + r['system'])} | {rss} |")
PY
echo "(hyperfine JSON/markdown in $out)" >&2
