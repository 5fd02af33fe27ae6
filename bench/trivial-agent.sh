#!/bin/sh
# The trivial agent of the lifecycle benchmarks: logs when its process started (task id, epoch
# ns, and the "bench-token=N" its prompt carries, if any), then exits. The token ties a start to
# the webhook that caused it, whatever the gateway answers.
token=${HOOKMESH_PROMPT#*bench-token=}
token=${token%%[!0-9]*}
echo "$HOOKMESH_TASK_ID $(date +%s%N) $token" >> "$HOOKMESH_BENCH_LOG"
