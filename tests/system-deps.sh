#!/bin/sh
# The programs the test suite needs beyond pip, from Debian's packages; installs only what is
# missing, says nothing when everything is there, and runs `apt-get update` only then.
#
# - promtool (checks the metrics exposition and deploy/prometheus/ rules). Debian ships it in
#   the `prometheus` package, whose installation would also start a Prometheus server; so the
#   package is downloaded and unpacked into .cache/sysdeps/ (no root needed), and promtool is
#   copied to /usr/local/bin when that is writable so that plain PATH look-ups find it.
#   Tests look in .cache/sysdeps/usr/bin/ as well.
# - chromium (browser tests of the console): `apt-get install`, root or sudo needed.
set -eu

cd "$(dirname "$0")/.."
cache=".cache/sysdeps"
log="$cache/apt.log"
updated=no

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo "$@"
    else echo "system-deps: need root (or password-less sudo) for: $*" >&2; return 1
    fi
}

apt_update() {
    # Once a run, and only when something is missing.
    [ "$updated" = yes ] && return 0
    as_root apt-get update -qq >>"$log" 2>&1 || { cat "$log" >&2; return 1; }
    updated=yes
}

mkdir -p "$cache"   # .cache/ is in .gitignore

# promtool
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$cache/usr/bin/promtool" ]; then
    echo "system-deps: fetching promtool (Debian package prometheus)" >&2
    rm -f "$cache"/prometheus_*.deb
    if ! (cd "$cache" && apt-get download -qq prometheus >>apt.log 2>&1); then
        apt_update
        (cd "$cache" && apt-get download -qq prometheus >>apt.log 2>&1) \
            || { cat "$log" >&2; exit 1; }
    fi
    dpkg-deb -x "$cache"/prometheus_*.deb "$cache"
    rm -f "$cache"/prometheus_*.deb "$cache/usr/bin/prometheus"
fi
if ! command -v promtool >/dev/null 2>&1 && [ -w /usr/local/bin ]; then
    install -m 0755 "$cache/usr/bin/promtool" /usr/local/bin/promtool
fi

# chromium
if ! command -v chromium >/dev/null 2>&1; then
    echo "system-deps: installing chromium (Debian package chromium)" >&2
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium >>"$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi
