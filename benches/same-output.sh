#!/usr/bin/env bash
# Two builds give the same bytes: `ls` (JSON, CSV, table) and `check` (table, -q,
# JSON) with their standard error and exit status, on the given spools, the
# test fixtures and a spool of odd files made here (non-UTF-8 callers, CRLF,
# duplicate and appended keys, comments, empty, oversized, linked and FIFO files).
#
#   benches/same-output.sh OLD_VMTOOL NEW_VMTOOL [SPOOL...]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

odd=$work/odd
mkdir -p "$odd/voicemail"
cp -a tests/fixtures/asterisk-spool-team2/voicemail/* "$odd/voicemail/"
b=$odd/voicemail/default/100
mkdir -p "$b"/{INBOX,Old,Work,tmp,inbox,Urgent}
t() { printf "$2" >"$b/$1"; }
t INBOX/msg0000.txt ';\n; Message Information file\n;\n[message]\ncallerid="Ren\xe9 \\"x\\"" <01 23-45>\norigtime=1795689259\nduration=3\nflag=Urgent\nmsg_id=1-2\n'
t INBOX/msg0001.txt '[message]\r\ncallerid=(555) 123-4567\r\norigtime= 17x\r\nduration=-4\r\nCallerID+=junk\r\ncallerid += more\r\n'
t INBOX/msg0002.txt ''
t INBOX/msg0003.txt 'origtime=1\n[message]\n'
t INBOX/msg0004.txt '[message]\n#include "/etc/passwd"\n'
t INBOX/msg0005.txt '[other]\norigtime=5\n'
t INBOX/msg0006.txt '[message]\nmsg_id=a\\;b;c\nflag=Urgent;--x\n--;\ncallerid=\x01\x1b[2J\t"q"\\\\ <\x7f>\norigtime=-5\n'
t INBOX/msg0007.txt '[message]\ncallerid=Unknown\nduration=99999999999999999999\norigtime=253402300799\n'
t INBOX/msg0009.txt '[message]\ncallerid="A" <1>\n'
head -c 2000000 /dev/zero | tr '\0' 'a' >"$b/INBOX/msg0010.txt"
t INBOX/msg0011.txt '[message]\ncallerid=x\norigtime=1\n'
mkfifo "$b/INBOX/msg0011.wav"
t INBOX/msg0012.txt '[message]\ncallerid=x\norigtime=2\n'
: >"$b/INBOX/msg0012.wav"
printf 'RIFF' >"$b/INBOX/msg0012.gsm"
ln -s /etc/passwd "$b/INBOX/msg0013.txt"
ln -s ../INBOX/msg0000.txt "$b/Old/msg0000.txt"
mkfifo "$b/Old/msg0001.txt"
t Old/msg0002.wav 'x'
t Old/msg0003.txt '[message]\ncallerid=\xff\xfe\norigtime=3\nflag=urgent\n'
truncate -s 2G "$b/Old/msg0003.wav"
t Work/msg0001.txt '[message]\ncallerid="Bob" <2>\norigtime=4\n'
t Work/msg9999.txt 'x'
t Work/msg0001-bak.txt 'x'
t Work/foo 'x'
t Work/msg0002.TXT 'x'
mkdir "$b/Work/msg0003.wav"
for f in "$b"/INBOX/msg00{00,01,03,04,05,06,07,09,10}.txt; do
  : >"${f%.txt}.wav"
  printf 'data' >"${f%.txt}.WAV"
done
t inbox/msg0000.txt '[message]\ncallerid=1\norigtime=5\n'
t Urgent/msg0000.txt '\xef\xbb\xbf[message]\ncallerid=<>\norigtime=6\nmsg_id=\n'
printf 'x' >"$b/Urgent/msg0000.wav"
mkdir -p "$odd/voicemail/default/$(printf 'bad\xff')"

# Every output of one build on one spool, into DIR.
outputs() {
  local bin=$1 s=$2 dir=$3
  mkdir -p "$dir"
  for f in json csv table; do
    TZ=UTC "$bin" --spool "$s" --format $f ls >"$dir/ls.$f" 2>"$dir/ls.$f.err" && rc=0 || rc=$?
    echo $rc >"$dir/ls.$f.rc"
  done
  for v in "" "-q" "--format json"; do
    n=check${v// /}
    # shellcheck disable=SC2086
    TZ=UTC "$bin" --spool "$s" $v check >"$dir/$n" 2>"$dir/$n.err" && rc=0 || rc=$?
    echo $rc >"$dir/$n.rc"
  done
}
status=0
for s in "$@" tests/fixtures/asterisk-spool-team2 tests/fixtures/asterisk-greetings "$odd"; do
  outputs "$old" "$s" "$work/a"
  outputs "$new" "$s" "$work/b"
  if diff -r -q "$work/a" "$work/b" >/dev/null; then
    echo "same: $s ($(cat "$work"/a/ls.json | wc -l) rows)"
  else
    echo "DIFFERENT: $s"
    diff -r -q "$work/a" "$work/b" || true
    status=1
  fi
  rm -rf "$work/a" "$work/b"
done
exit $status
