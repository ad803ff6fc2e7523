#!/bin/sh
# Make Docker usable for tests/container on a machine with no image registry: start dockerd if it
# is installed and not running, build the Debian base image if it is missing
# (build-base-image.sh), and fill the wheelhouse the test builds with (wheelhouse.sh).
#
#   examples/container/ci-prepare.sh [--install]
#
# --install first installs Debian's docker.io when dockerd is missing (apt-get, as root).
# Idempotent, and always exits 0: when Docker cannot be used it says why, and the container tests
# skip with the same reason. dockerd's log goes to $DOCKERD_LOG (/var/log/pyrie-dockerd.log).
# From nothing on a 2-CPU machine: docker.io ~10 s, dockerd ~1 s, the base image ~50 s.
set -u

here="$(cd "$(dirname "$0")" && pwd)"
install=0
[ "${1:-}" = "--install" ] && install=1
say() { echo "ci-prepare: $*"; }
skip() { say "$* (the container tests will skip)"; exit 0; }
started=$(date +%s)

if ! command -v dockerd >/dev/null 2>&1 && [ "$install" = 1 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing docker.io"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/tmp/pyrie-docker-install.log 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/tmp/pyrie-docker-install.log 2>&1; } \
            || say "apt-get install docker.io failed (see /tmp/pyrie-docker-install.log)"
    else
        say "cannot install docker.io: not root or no apt-get"
    fi
fi
command -v docker >/dev/null 2>&1 || skip "no docker CLI"

if ! docker info >/dev/null 2>&1; then
    command -v dockerd >/dev/null 2>&1 || skip "the Docker daemon is not reachable and dockerd is not installed"
    [ "$(id -u)" = 0 ] || skip "the Docker daemon is not reachable and only root can start dockerd"
    log="${DOCKERD_LOG:-/var/log/pyrie-dockerd.log}"
    say "starting dockerd (log: $log)"
    # its own session, so that it outlives this script and any process group it was started from
    setsid dockerd >"$log" 2>&1 </dev/null &
    waited=0
    until docker info >/dev/null 2>&1; do
        if [ "$waited" -ge 60 ]; then
            tail -n 5 "$log" | sed 's/^/ci-prepare: dockerd: /'
            skip "dockerd did not answer within 30 s"
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
fi

"$here/build-base-image.sh" || skip "the base image could not be built"
"$here/wheelhouse.sh" 2>/dev/null || say "the wheelhouse could not be filled: the image build will use the package index"
say "Docker is ready ($(($(date +%s) - started)) s)"
