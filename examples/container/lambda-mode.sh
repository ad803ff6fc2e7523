#!/bin/sh
# A bootstrap for rie on the host that runs each environment's runtime in a container of IMAGE,
# as Lambda runs an image: the image's entrypoint finds AWS_LAMBDA_RUNTIME_API set and becomes the
# runtime client of the emulator's Runtime API.
#
#   rie --handler app.handler -- examples/container/lambda-mode.sh IMAGE [HANDLER]
#
# The container shares the host's network (the Runtime API listens on loopback only), gets the
# function's memory size as its memory limit, and the variables Lambda defines (AWS_*, _HANDLER,
# _X_AMZN_*, TZ) plus those named in $PYRIE_FORWARD_ENV (space-separated); $PYRIE_DOCKER_ARGS adds
# `docker run` options (e.g. `--user 993:990`). HANDLER (else $_HANDLER) is the handler, as an
# image's CMD would give it.
#
# Nothing is left running: the container ends with its runtime, and its runtime ends with this
# process. rie stops a runtime by signalling its process group (SIGTERM, which `docker run` passes
# on, then SIGKILL, which it cannot); a watchdog in the container therefore holds the container's
# stdin, which closes when the `docker run` client goes, however it goes.
set -eu

[ $# -ge 1 ] || { echo "usage: lambda-mode.sh IMAGE [HANDLER]" >&2; exit 2; }
image="$1"
shift
[ -n "${AWS_LAMBDA_RUNTIME_API:-}" ] || { echo "lambda-mode.sh: AWS_LAMBDA_RUNTIME_API is not set (run me as rie's bootstrap)" >&2; exit 2; }

# the client's stdin: a FIFO it holds open for reading and writing, so it never reads EOF while it
# lives (rie gives runtimes /dev/null, which would close the container's stdin at once)
fifo="$(mktemp -u "${TMPDIR:-/tmp}/pyrie-container.XXXXXX")"
mkfifo -m 600 "$fifo"
exec 3<>"$fifo"
rm -f "$fifo"

handler="${1:-${_HANDLER:-}}"
set --
names="$(env | sed -n -e 's/^\(AWS_[A-Za-z0-9_]*\)=.*/\1/p' -e 's/^\(_HANDLER\|_X_AMZN_[A-Za-z0-9_]*\|TZ\)=.*/\1/p')"
for name in $names ${PYRIE_FORWARD_ENV:-}; do
    set -- "$@" --env "$name"
done
if [ -n "${AWS_LAMBDA_FUNCTION_MEMORY_SIZE:-}" ]; then
    set -- "$@" --memory "${AWS_LAMBDA_FUNCTION_MEMORY_SIZE}m"
fi

# In the container: tini (--init) as PID 1, then this watchdog, which starts the image's bootstrap
# and kills it when the client's stdin closes. Its exit ends the container, and with it whatever
# the function started. SIGTERM (from rie, through the client and tini) goes to the runtime, which
# exits on it as Lambda's runtimes do.
watchdog='
exec 3<&0
/var/runtime/bootstrap "$@" </dev/null &
runtime=$!
trap "kill -TERM $runtime 2>/dev/null" TERM
(cat <&3 >/dev/null; kill -KILL $runtime 2>/dev/null) &
while kill -0 $runtime 2>/dev/null; do wait $runtime && status=0 || status=$?; done
exit ${status:-0}'

# shellcheck disable=SC2086 # $PYRIE_DOCKER_ARGS is a list of words
exec docker run --rm --interactive --init --network host "$@" ${PYRIE_DOCKER_ARGS:-} \
    --entrypoint /bin/sh "$image" -c "$watchdog" lambda-mode "$handler" <&3 3<&-
