#!/bin/sh
# Build a local Debian base image for pyrie's containers without any image registry:
# debootstrap a minimal Debian with python3 and python3-venv, then `docker import` it.
#
#   sudo examples/container/build-base-image.sh            # -> pyrie-base:bookworm
#   docker build -f examples/Dockerfile --build-arg BASE=pyrie-base:bookworm -t hello .
#
# Idempotent: an existing image of that tag is kept (exit 0 at once); --force rebuilds it.
# Needs root (debootstrap), the docker CLI with a reachable daemon, and a Debian mirror.
# Settings (environment):
#   PYRIE_BASE_IMAGE  tag to build (pyrie-base:bookworm)
#   DEBIAN_SUITE      suite (bookworm: python3 is 3.11, pyrie's minimum)
#   DEBIAN_MIRROR     mirror (the first deb.debian.org-like URI of this machine's apt sources,
#                     else http://deb.debian.org/debian)
#   DEBOOTSTRAP_CACHE where downloaded .debs are kept between builds (/var/cache/pyrie-debootstrap)
set -eu

tag="${PYRIE_BASE_IMAGE:-pyrie-base:bookworm}"
suite="${DEBIAN_SUITE:-bookworm}"
cache="${DEBOOTSTRAP_CACHE:-/var/cache/pyrie-debootstrap}"
force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-base-image.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

die() { echo "build-base-image.sh: $*" >&2; exit 1; }

command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (is dockerd running?)"
if [ "$force" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "build-base-image.sh: $tag already exists (--force rebuilds it)"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"

if [ -z "${DEBIAN_MIRROR:-}" ]; then
    # the mirror this machine's apt already uses (deb822 or one-line sources), if any
    DEBIAN_MIRROR="$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | sed -n -e 's#^URIs: *\(http[^ ]*/debian\)/*$#\1#p' \
                 -e 's#^deb  *\(http[^ ]*/debian\)/* .*#\1#p' | head -n 1)"
fi
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

root="$(mktemp -d "${TMPDIR:-/tmp}/pyrie-base.XXXXXX")"
# a failed or interrupted build leaves nothing behind
trap 'rm -rf "$root" "$root.log"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$cache"

echo "build-base-image.sh: debootstrap $suite from $mirror (a few minutes the first time)"
# minbase: essential packages and apt only. python3-venv brings ensurepip's wheels, so an image
# can make a venv (Debian's own python3 is "externally managed": pip refuses to install into it).
# ca-certificates: pip reaches its index over HTTPS.
debootstrap --variant=minbase --cache-dir="$cache" \
    --include=python3,python3-venv,ca-certificates \
    "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 20 "$root.log" >&2
    die "debootstrap $suite from $mirror failed: $(grep -v '^ *$' "$root.log" | tail -n 1)"
}
rm -f "$root.log"

# what a container never needs: downloaded packages, apt's lists, docs, man pages
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
# an apt source for images built FROM this one (apt-get update && apt-get install ...)
echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"

tar -C "$root" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $suite + python3 python3-venv" \
    - "$tag" >/dev/null
echo "build-base-image.sh: built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
