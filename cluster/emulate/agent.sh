#!/bin/sh
# agent.sh - the launch agent of an emulated cluster (run.sh), called by mpirun the way it calls ssh:
#   agent.sh NODES-FILE [options] HOST COMMAND-LINE...
# NODES-FILE maps each host name to its network namespace ("node1 dtemu-ID-n1" per line). Instead of logging in,
# the agent enters HOST's network namespace and a new UTS namespace whose hostname is HOST, and runs the command
# line there with sh (as sshd would run it with the login shell). Options before HOST (ssh-style) are ignored.
set -u
nodes=$1; shift
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
[ $# -ge 2 ] || { echo "agent.sh: usage: agent.sh NODES-FILE HOST COMMAND..." >&2; exit 255; }
host=$1; shift
ns=$(awk -v h="$host" '$1 == h { print $2 }' "$nodes")
[ -n "$ns" ] || { echo "agent.sh: unknown emulated host '$host' (not in $nodes)" >&2; exit 255; }
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec sh -c "$*"' "$host" "$*"
