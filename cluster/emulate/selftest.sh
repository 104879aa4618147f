#!/usr/bin/env bash
# selftest.sh - checks the emulated cluster itself (run.sh, agent.sh) with a small MPI program (probe.c, compiled
# here with mpicc). Root; under a minute. Not part of `swift test` (Tests/CLITests/MultiNodeTests.swift drives disttrain
# through run.sh there). Prints PASS/FAIL lines; exits 0 only if every check passed.
#
# Checks:
#   - 2 nodes × 2 ranks: every rank sees 2 nodes, its own node's hostname, 2 ranks in MPI_COMM_TYPE_SHARED; the
#     all-reduce is right and its bytes went through the nodes' eth0 (TCP between nodes);
#   - 1 node × 2 ranks: the same all-reduce moves (almost) nothing through eth0 (shared memory within a node);
#   - 2 nodes × 1 rank with the links shaped to 1gbit: tbf is in place on both ends of each link, and the
#     all-reduce takes at least as long as its bytes need at that rate;
#   - the job's exit code is forwarded; a usage error exits 2 with one line;
#   - two invocations at the same time both succeed;
#   - SIGTERM to run.sh ends the job and tears everything down; a run.sh killed with -9 leaves namespaces behind
#     that `run.sh --cleanup` removes;
#   - afterwards: no dtemu-* namespace, no state folder, the host's interfaces as before.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
RUN=$HERE/run.sh
TMP=$(mktemp -d /tmp/disttrain-emulate-selftest.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
ok() { echo "PASS: $*"; }
bad() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
leftovers() { ip netns list 2>/dev/null | grep -c '^dtemu-'; }

[ "$(id -u)" = 0 ] || { echo "selftest.sh needs root"; exit 2; }
command -v mpicc >/dev/null || { echo "mpicc not found: apt-get install libopenmpi-dev"; exit 2; }
mpicc -O2 -o "$TMP/probe" "$HERE/probe.c" || { echo "could not compile probe.c"; exit 1; }
HOST_LINKS=$(ip -br link | awk '{print $1}' | sort | tr '\n' ' ')
PRE=$(leftovers)

# 2 nodes × 2 ranks
EMULATE_STATS=$TMP/stats22 "$RUN" --nodes 2 --ranks-per-node 2 -- "$TMP/probe" 8 > "$TMP/p22" 2> "$TMP/e22"; rc=$?
cat "$TMP/p22"
check "2x2: exit 0" [ "$rc" = 0 ]
check "2x2: 4 ranks, each sees 2 nodes and 2 ranks on its node" \
  sh -c "[ \$(grep -c 'node-rank [01]/2 nodes 2 ' '$TMP/p22') = 4 ] && ! grep -q WRONG '$TMP/p22'"
check "2x2: ranks 0,1 on host node0 and ranks 2,3 on host node1" \
  sh -c "grep -q 'rank 0/4 host node0 ' '$TMP/p22' && grep -q 'rank 1/4 host node0 ' '$TMP/p22' && grep -q 'rank 2/4 host node1 ' '$TMP/p22' && grep -q 'rank 3/4 host node1 ' '$TMP/p22'"
cat "$TMP/stats22"
check "2x2: >= 8 MB went through each node's eth0 (TCP between nodes)" \
  awk '{ if ($3 < 8388608) exit 1 } END { if (NR != 2) exit 1 }' "$TMP/stats22"

# 1 node × 2 ranks: shared memory within the node
EMULATE_STATS=$TMP/stats12 "$RUN" --nodes 1 --ranks-per-node 2 -- "$TMP/probe" 8 > "$TMP/p12" 2>/dev/null; rc=$?
cat "$TMP/p12" "$TMP/stats12"
check "1x2: exit 0, one node of 2 ranks" sh -c "[ $rc = 0 ] && [ \$(grep -c 'node-rank [01]/2 nodes 1 ' '$TMP/p12') = 2 ]"
check "1x2: under 64 KB through eth0 for a 4 × 8 MB all-reduce (shared memory within a node)" \
  awk '{ if ($3 > 65536) exit 1 }' "$TMP/stats12"

# shaped links
EMULATE_VERBOSE=1 "$RUN" --nodes 2 --ranks-per-node 1 --rate 1gbit --latency 5ms -- "$TMP/probe" 16 > "$TMP/ps" 2> "$TMP/es"; rc=$?
cat "$TMP/ps"
check "1gbit: exit 0" [ "$rc" = 0 ]
check "1gbit: tbf set on both ends of both links" sh -c "[ \$(grep -c 'tc qdisc replace dev .* root tbf rate 1gbit' '$TMP/es') = 4 ]"
# 16 MB all-reduce of 2 ranks: each sends 16 MB (2 × half) over its link: at 1 Gb/s at least 0.128 s
check "1gbit: the all-reduce is no faster than the link allows (>= 0.12 s for 16 MB each way)" \
  awk '{ if ($11 + 0 < 0.12) exit 1 } END { if (NR != 2) exit 1 }' "$TMP/ps"

# exit codes and usage errors
"$RUN" --nodes 2 --ranks-per-node 1 -- sh -c 'exit 7' 2>/dev/null; rc=$?
check "exit code of the job forwarded (7, got $rc)" [ "$rc" = 7 ]
"$RUN" --nodes 0 --ranks-per-node 1 -- true 2> "$TMP/eu"; rc=$?
check "--nodes 0: exit 2 with one line naming --nodes (got $rc: $(head -1 "$TMP/eu"))" sh -c "[ $rc = 2 ] && grep -q -- '--nodes must be' '$TMP/eu'"

# two invocations at once
"$RUN" --nodes 2 --ranks-per-node 1 -- "$TMP/probe" 4 > "$TMP/c1" 2>/dev/null & a=$!
"$RUN" --nodes 2 --ranks-per-node 1 -- "$TMP/probe" 4 > "$TMP/c2" 2>/dev/null & b=$!
wait $a; ra=$?; wait $b; rb=$?
check "two concurrent invocations both succeed ($ra, $rb)" \
  sh -c "[ $ra = 0 ] && [ $rb = 0 ] && [ \$(grep -c 'nodes 2 ' '$TMP/c1') = 2 ] && [ \$(grep -c 'nodes 2 ' '$TMP/c2') = 2 ]"

# SIGTERM to run.sh (a background job of a script ignores SIGINT, so TERM here; Ctrl-C in a terminal takes the same
# path): forwarded to mpirun, the job ends, everything is torn down
"$RUN" --nodes 2 --ranks-per-node 1 -- sleep 67.3 2>/dev/null & p=$!
for _ in $(seq 1 50); do [ "$(leftovers)" -gt "$PRE" ] && break; sleep 0.1; done
sleep 1; kill -TERM $p; t0=$(date +%s); wait $p; rc=$?
check "SIGTERM: run.sh ended within 10 s (exit $rc) and left nothing" sh -c "[ \$(( \$(date +%s) - $t0 )) -le 10 ] && [ \$(ip netns list | grep -c '^dtemu-') = $PRE ]"

# kill -9 of run.sh: leftovers, removed by --cleanup
"$RUN" --nodes 2 --ranks-per-node 1 -- sleep 67.3 2>/dev/null & p=$!
for _ in $(seq 1 50); do [ "$(leftovers)" -gt "$PRE" ] && break; sleep 0.1; done
sleep 1; kill -9 $p; wait $p 2>/dev/null
n=$(leftovers)
"$RUN" --cleanup 2>&1
check "kill -9 of run.sh left $((n - PRE)) namespace(s); --cleanup removed them and their processes" \
  sh -c "[ $n -gt $PRE ] && [ \$(ip netns list | grep -c '^dtemu-') = $PRE ] && ! pgrep -x sleep -a | grep -q 'sleep 67.3'"

n=$(leftovers); links=$(ip -br link | awk '{print $1}' | sort | tr '\n' ' ')
check "nothing left: no dtemu-* namespace ($n), no state folder, the host's links unchanged" \
  sh -c "[ $n = $PRE ] && [ -z \"\$(ls -A /run/disttrain-emulate 2>/dev/null)\" ] && [ '$links' = '$HOST_LINKS' ]"

echo "$FAILS failure(s)"
[ "$FAILS" = 0 ]
