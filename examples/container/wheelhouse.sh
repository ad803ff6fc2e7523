#!/bin/sh
# Fill examples/container/wheels/ with pyrie's dependencies (and its build backend) for the Python
# of an image, downloaded by this host's pip, so that
#
#   docker build -f examples/Dockerfile --build-arg BASE=IMAGE --build-arg PIP_NO_INDEX=1 .
#
# installs without the build reaching a package index: for a daemon whose containers have no
# network, or sit behind a TLS-inspecting proxy that the host trusts and the image does not.
#
#   examples/container/wheelhouse.sh [IMAGE]      # IMAGE: pyrie-base:bookworm
#
# $PYTHON is the host's interpreter whose pip downloads (python3); it needs Python >= 3.11 only to
# read pyproject.toml. Re-running it is cheap: when the wheels there satisfy every requirement, the
# index is not asked.
set -eu

image="${1:-pyrie-base:bookworm}"
python="${PYTHON:-python3}"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dest="$here/wheels"

# the image's Python and machine decide which wheels fit
tags="$(docker run --rm --network none --entrypoint python3 "$image" -c \
    'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.machine())')"
version="${tags% *}"
machine="${tags#* }"

requirements="$(mktemp)"
trap 'rm -f "$requirements"' EXIT
"$python" - "$repo/pyproject.toml" >"$requirements" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)
for line in project["build-system"]["requires"] + project["project"]["dependencies"]:
    print(line)
PY

# manylinux tags from the oldest glibc a wheel may target to what any current Debian has
download() {
    "$python" -m pip download --quiet --disable-pip-version-check --dest "$dest" \
        --only-binary=:all: --implementation cp --python-version "$version" \
        --platform "manylinux_2_28_$machine" --platform "manylinux_2_17_$machine" \
        --platform "manylinux2014_$machine" --platform "manylinux_2_5_$machine" \
        --platform "manylinux1_$machine" \
        -r "$requirements" "$@"
}
# what is there already may satisfy every requirement: then the index is not asked at all
if download --no-index --find-links "$dest" >/dev/null 2>&1; then
    state="already had"
else
    download
    state="fetched"
fi
echo "wheelhouse.sh: $state $(ls "$dest" | grep -c '\.whl$') wheels for Python $version on $machine in $dest"
