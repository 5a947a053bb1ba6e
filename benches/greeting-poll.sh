#!/usr/bin/env bash
# What one `watch --all --poll` costs the database for greeting rows
# (BENCHMARKS.md, "watch --poll and greeting rows"): the statements vmtool
# runs per poll, against the fingerprints that read the recordings, timed with
# the database's own client.
#   benches/greeting-poll.sh [BOXES]     # default 10000 boxes, 2 greetings of 64 KB each
# Environment: RUNS (5), ENGINES ("postgres mariadb"), TABLE (vm_gpoll_bench).
# Needs the local servers: PostgreSQL 127.0.0.1:5432 (postgres, trust) and
# MariaDB 127.0.0.1:3306 (root, no password), database `test` on both.
set -euo pipefail
cd "$(dirname "$0")/.."

boxes=${1:-10000}
runs=${RUNS:-5}
t=${TABLE:-vm_gpoll_bench}
engines=${ENGINES:-postgres mariadb}
prefix=/var/spool/asterisk/voicemail
command -v hyperfine >/dev/null || { echo "hyperfine missing: apt-get install -y hyperfine" >&2; exit 2; }

PSQL=(psql -h 127.0.0.1 -U postgres -d test -X -q -v ON_ERROR_STOP=1)
MARIADB=(mariadb -h 127.0.0.1 -u root test)
cleanup() {
  "${PSQL[@]}" -c "DROP TABLE IF EXISTS $t" >/dev/null 2>&1 || true
  "${MARIADB[@]}" -e "DROP TABLE IF EXISTS $t" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Boxes ctx<b/1000>/<1000 + b%1000>, each with an unavail and a busy row of
# 64,000 bytes (a 4 s 'wav' greeting; the first format= is what the table keeps).
cols="dir varchar(255) NOT NULL, msgnum integer NOT NULL, context varchar(80), callerid varchar(80), origtime integer, duration integer"
tail="flag varchar(30), category varchar(30), mailboxuser varchar(30), mailboxcontext varchar(30), msg_id varchar(40), PRIMARY KEY (dir, msgnum)"
load_postgres() {
  "${PSQL[@]}" <<SQL
DROP TABLE IF EXISTS $t;
CREATE TABLE $t ($cols, recording bytea, $tail);
INSERT INTO $t (dir, msgnum, recording, mailboxuser, mailboxcontext)
SELECT '$prefix/ctx' || (b/1000) || '/' || (1000 + b%1000) || '/' || g, -1,
       (SELECT decode(string_agg(md5(random()::text || b || g || s), ''), 'hex') FROM generate_series(1, 4000) s),
       (1000 + b%1000)::text, 'ctx' || (b/1000)
FROM generate_series(0, $boxes - 1) b, unnest(ARRAY['unavail','busy']) g;
VACUUM ANALYZE $t;
SQL
}
load_mariadb() {
  "${MARIADB[@]}" <<SQL
DROP TABLE IF EXISTS $t;
CREATE TABLE $t ($cols, recording longblob, $tail) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
SET SESSION max_recursive_iterations = 4294967295;
INSERT INTO $t (dir, msgnum, recording, mailboxuser, mailboxcontext)
WITH RECURSIVE bx(b) AS (SELECT 0 UNION ALL SELECT b+1 FROM bx WHERE b + 1 < $boxes)
SELECT CONCAT('$prefix/ctx', b DIV 1000, '/', 1000 + b MOD 1000, '/', g.g), -1,
       REPEAT(UNHEX(MD5(CONCAT(b, g.g))), 4000), 1000 + b MOD 1000, CONCAT('ctx', b DIV 1000)
FROM bx, (SELECT 'unavail' g UNION ALL SELECT 'busy') g;
ANALYZE TABLE $t;
SQL
}

where="WHERE dir LIKE '$prefix/%' AND msgnum = -1"
sixteen=$(for b in $(seq 1000 1015); do printf "'%s/ctx0/%s/busy'," "$prefix" "$b"; done)
sixteen=${sixteen%,}
for e in $engines; do
  case $e in
    postgres)
      load_postgres
      run="psql -h 127.0.0.1 -U postgres -d test -X -q -At -o /dev/null -c"
      poll="SELECT dir, CAST(origtime AS TEXT), CAST(duration AS TEXT), msg_id, category, CAST(xmin AS TEXT) FROM $t $where"
      len="SELECT dir, octet_length(recording) FROM $t $where"
      full="SELECT dir, md5(recording) FROM $t $where" ;;
    mariadb)
      load_mariadb
      run="mariadb -h 127.0.0.1 -u root test -B -N -e"
      poll="SELECT dir, CAST(origtime AS CHAR), CAST(duration AS CHAR), msg_id, category, '' FROM $t $where"
      len="SELECT dir, LENGTH(recording) FROM $t $where"
      full="SELECT dir, MD5(recording) FROM $t $where" ;;
    *) echo "unknown engine $e" >&2; exit 2 ;;
  esac
  cmds=(-n "$e: vmtool's poll (columns)" "$run \"$poll\""
        -n "$e: length of every recording" "$run \"$len\""
        -n "$e: MD5 of every recording" "$run \"$full\"")
  [[ $e == mariadb ]] && cmds+=(-n "$e: vmtool's 16 hashed rows" \
    "$run \"SELECT dir, MD5(recording) FROM $t WHERE msgnum = -1 AND dir IN ($sixteen)\"")
  hyperfine -N --warmup 1 --runs "$runs" --output=null "${cmds[@]}"
done
