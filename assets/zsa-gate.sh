#!/bin/sh
# zsa-gate: run a command only while zsa says its task is granted to you right now.
#
#   zsa-gate exchange.journal-rule -- /usr/local/bin/set-journal-rule --mailbox legal
#
# The daemon answers `zsa check` from memory, so gating every call is cheap. Exit codes:
# the command's own, or 1 with zsa's reason when there is no active grant, 3 if no daemon runs.
set -eu
if [ "$#" -lt 3 ] || [ "$2" != "--" ]; then
    echo "usage: zsa-gate TASK -- COMMAND [ARG...]" >&2
    exit 2
fi
task=$1
shift 2
zsa check "$task" >/dev/null || exit $?
exec "$@"
