#!/usr/bin/env bash
# Tests what packaging/build.sh made, as an admin would use it (run as root):
# installs the .deb, runs vmtool, its man page, completion and units, removes it;
# lists the .rpm; runs the static binary alone in an empty chroot.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
out=$PWD/target/packaging
version=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
commit=$(git rev-parse --short=12 HEAD)
deb=$out/vmtool_${version}_amd64.deb
rpm=$out/vmtool-${version}.x86_64.rpm
tarball=$out/vmtool-${version}-x86_64-linux-musl.tar.gz
fail() { echo "packaging check FAILED: $*" >&2; exit 1; }

need=()
command -v rpm >/dev/null || need+=(rpm)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v man >/dev/null || need+=(man-db)
command -v file >/dev/null || need+=(file)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi

# The package holds exactly the files listed in packaging/deb-contents.txt plus one
# compressed man page per page in man/.
manpages() { for f in man/*.1; do echo "/usr/share/man/man1/$(basename "$f").gz"; done; }
{ cat packaging/deb-contents.txt; manpages; } | sort >"$out/deb-contents.expected"
dpkg -c "$deb" | awk '{print $6}' | sed 's#^\./#/#; s#/$##' | grep -v '^$' | sort >"$out/deb-contents.actual"
diff -u "$out/deb-contents.expected" "$out/deb-contents.actual" || fail ".deb contents differ from packaging/deb-contents.txt + man/"
deb_bin=$(mktemp -d)
dpkg-deb -x "$deb" "$deb_bin"
file "$deb_bin/usr/bin/vmtool" | grep -q 'stripped' && ! file "$deb_bin/usr/bin/vmtool" | grep -q 'not stripped' \
  || fail ".deb binary is not stripped"
rm -rf "$deb_bin"
dpkg-deb -f "$deb" Depends | grep -q libasound2 || fail ".deb does not depend on libasound2"

dpkg -r vmtool >/dev/null 2>&1 || true
apt-get install -y -qq "$deb" >/dev/null
v=$(vmtool --version)
case "$v" in *"$version"*"$commit"*"+play"*) ;; *) fail "vmtool --version says '$v'" ;; esac
man -w vmtool | grep -q '/usr/share/man/man1/vmtool.1.gz' || fail "man -w vmtool"
man -w vmtool-archive >/dev/null || fail "man -w vmtool-archive"
bash -c 'source /usr/share/bash-completion/completions/vmtool && complete -p vmtool' | grep -q vmtool \
  || fail "bash completion does not register vmtool"
vmtool --spool examples/spool --voicemail-conf examples/etc/asterisk/voicemail.conf ls >/dev/null \
  || fail "installed vmtool cannot list the example spool"
# The units name users that may not exist here (asterisk): verify what systemd can check offline.
verify=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
  /lib/systemd/system/vmtool-archive.service /lib/systemd/system/vmtool-archive.timer \
  /lib/systemd/system/vmtool-watch.service 2>&1 | grep -v -i "user\|group\|asterisk.service" || true)
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
grep -q '^ExecStart=/usr/bin/vmtool ' /lib/systemd/system/vmtool-watch.service || fail "unit path"
dpkg -r vmtool >/dev/null
left=""
while read -r f; do
  case "$f" in /etc/*) continue ;; esac
  if [ -f "$f" ]; then left+=" $f"; fi
done <"$out/deb-contents.actual"
[ -z "$left" ] || fail "dpkg -r left:$left"
dpkg -P vmtool >/dev/null
[ ! -e /etc/default/vmtool ] || fail "dpkg -P left /etc/default/vmtool"

# The .rpm holds the same files (RHEL paths).
{ cat packaging/rpm-contents.txt; manpages; } | sort >"$out/rpm-contents.expected"
rpm -qlp "$rpm" 2>/dev/null | sort >"$out/rpm-contents.actual"
diff -u "$out/rpm-contents.expected" "$out/rpm-contents.actual" || fail ".rpm contents differ from packaging/rpm-contents.txt + man/"
rpm -qp --requires "$rpm" 2>/dev/null | grep -q alsa-lib || fail ".rpm does not require alsa-lib"

# The static binary alone in an empty root lists the example spool as the glibc build does.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
tar -C "$root" -xzf "$tarball"
mv "$root/vmtool-${version}-x86_64-linux-musl/vmtool" "$root/vmtool"
rm -rf "$root/vmtool-${version}-x86_64-linux-musl"
mkdir -p "$root/var/spool/asterisk" "$root/etc/asterisk"
cp -a examples/spool/. "$root/var/spool/asterisk/"
cp -a examples/etc/asterisk/. "$root/etc/asterisk/"
file "$root/vmtool" | grep -Eq 'statically linked|static-pie linked' || fail "musl binary is not static: $(file "$root/vmtool")"
static=$(TZ=UTC chroot "$root" /vmtool --spool /var/spool/asterisk --voicemail-conf /etc/asterisk/voicemail.conf ls)
native=$(TZ=UTC "$out/vmtool" --spool examples/spool --voicemail-conf examples/etc/asterisk/voicemail.conf ls)
[ "$static" = "$native" ] || fail "static and native listings differ"
chroot "$root" /vmtool --version | grep -q -- '-play' || fail "static --version"
play=$(chroot "$root" /vmtool --spool /var/spool/asterisk play compta/1202 2>&1 || true)
case "$play" in *"aplay"*) ;; *) fail "static play does not explain aplay: $play" ;; esac

ls -l "$deb" "$rpm" "$tarball" | awk '{print $5, $9}'
echo "packaging check: ok (.deb, .rpm, static tarball)"
