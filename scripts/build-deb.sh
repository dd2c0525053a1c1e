#!/usr/bin/env bash
# Builds the Debian package: target/debian/hookgate_<version>_<arch>.deb (cargo-deb; `cargo install
# cargo-deb` once). What it holds is in Cargo.toml, [package.metadata.deb]; this script makes the
# generated parts first, in target/deb-assets/:
# - hookgate.toml: hookgate.example.toml with the database in /var/lib/hookgate (the unit's
#   StateDirectory; /etc is read-only to the service), installed as /etc/hookgate/hookgate.toml;
# - the manual page and the bash, zsh and fish completions, from the built binary.
# Then it lists the package's contents (dpkg-deb) and checks the unit (systemd-analyze), where present.
# Installing it and running the installed binary: scripts/build-deb.sh --install (needs root).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
assets=target/deb-assets
mkdir -p "$assets"

cargo build --release --locked
bin=target/release/hookgate

sed -e 's|^url = "sqlite://hookgate.db" |url = "sqlite:///var/lib/hookgate/hookgate.db"|' hookgate.example.toml >"$assets/hookgate.toml"
grep -q 'sqlite:///var/lib/hookgate/hookgate.db' "$assets/hookgate.toml" \
    || { echo "build-deb.sh: the storage.url line of hookgate.example.toml changed; update the sed above" >&2; exit 1; }
"$bin" man | gzip -9n >"$assets/hookgate.1.gz"
for shell in bash zsh fish; do
    "$bin" completions "$shell" >"$assets/hookgate.$shell"
done

cargo deb --no-build --locked
deb="$(ls -t target/debian/hookgate_*.deb | head -1)"
echo "built $deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"
if command -v systemd-analyze >/dev/null 2>&1; then
    unit="$(mktemp -d)/hookgate.service"
    # Checked against the binary just built, as /usr/bin/hookgate is not installed here.
    sed "s|/usr/bin/hookgate|$root/$bin|g" packaging/hookgate.service >"$unit"
    systemd-analyze verify --man=no "$unit"
    systemd-analyze security --offline=yes "$unit" | tail -1
fi

if [ "${1:-}" = "--install" ]; then
    dpkg -i "$deb"
    /usr/bin/hookgate --version
    hookgate check --config /etc/hookgate/hookgate.toml || echo "(expected until its secrets are set: see /etc/hookgate/env)"
fi
