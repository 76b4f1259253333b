#!/bin/sh
# zsa-gate: run a command only while zsa says its task is granted to you, and stop it when the
# grant ends (expiry, revoke, relinquish).
#
#   zsa-gate exchange.journal-rule -- /usr/local/bin/set-journal-rule --mailbox legal
#
# `zsa gate` asks the daemon (it answers from memory, so this is cheap), runs the command in its
# own process group, follows the daemon's event stream and the grant's deadline, and when the
# grant ends sends the group SIGTERM, then SIGKILL after 2 s. Exit codes: the command's own
# (128+N if a signal N ended it), or 1 with zsa's reason when there is no active grant, 3 if no
# daemon runs.
set -eu
if [ "$#" -lt 3 ] || [ "$2" != "--" ]; then
    echo "usage: zsa-gate TASK -- COMMAND [ARG...]" >&2
    exit 2
fi
task=$1
shift 2
exec zsa gate "$task" -- "$@"
