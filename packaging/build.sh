#!/usr/bin/env bash
# Builds what a PBX installs: a .deb (cargo-deb), an .rpm (cargo-generate-rpm) and a
# static x86_64 musl tarball, all in target/packaging/. Installs the tools it needs.
#   packaging/build.sh            (then packaging/check.sh tests the results)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# Cargo.toml's package metadata names these paths relative to the checkout.
out=$PWD/target/packaging
musl=x86_64-unknown-linux-musl

need=()
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
# cargo-deb's xz compression links liblzma when it has to be built.
command -v cargo-deb >/dev/null || dpkg -s liblzma-dev >/dev/null 2>&1 || need+=(liblzma-dev)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi
rustup target list --installed | grep -qx "$musl" || rustup target add "$musl"
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb@3.8.0
command -v cargo-generate-rpm >/dev/null || cargo install --locked cargo-generate-rpm@0.21.1

cargo build --release --locked
version=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["packages"][0]["version"])')
bin=$target_dir/release/vmtool

# Shared assets: stripped binary, man pages, completions, units with the packaged path.
rm -rf "$out"
mkdir -p "$out/man" "$out/completions" "$out/systemd"
strip -o "$out/vmtool" "$bin"
for f in man/*.1; do gzip -9n <"$f" >"$out/man/$(basename "$f").gz"; done
"$bin" completions bash >"$out/completions/vmtool.bash"
"$bin" completions zsh >"$out/completions/_vmtool"
"$bin" completions fish >"$out/completions/vmtool.fish"
for f in examples/systemd/*; do
  sed 's#/usr/local/bin/vmtool#/usr/bin/vmtool#' "$f" >"$out/systemd/$(basename "$f")"
done

cargo deb --no-build --strip --output "$out/vmtool_${version}_amd64.deb"
cargo generate-rpm --output "$out/vmtool-${version}.x86_64.rpm"

# Static binary for distributions older than the build machine (glibc 2.17 and up,
# or none): no libasound, so `play` explains how to play through aplay instead;
# no `serve` either (the web interface is in the .deb/.rpm builds).
cargo build --release --locked --target "$musl" --no-default-features
name=vmtool-${version}-x86_64-linux-musl
stage=$out/$name
mkdir -p "$stage/systemd" "$stage/completions" "$stage/man"
strip -o "$stage/vmtool" "$target_dir/$musl/release/vmtool"
cp "$out"/man/*.gz "$stage/man/"
cp "$out"/completions/* "$stage/completions/"
cp examples/systemd/* "$stage/systemd/"
cp examples/default/vmtool "$stage/systemd/vmtool.default"
cp examples/cron/vmtool-archive examples/cron/vmtool-report README.md "$stage/"
tar -C "$out" -czf "$out/$name.tar.gz" "$name"
rm -rf "$stage"

ls -l "$out"/*.deb "$out"/*.rpm "$out"/*.tar.gz "$out/vmtool"
