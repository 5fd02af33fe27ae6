#!/bin/sh
# The trivial agent of the lifecycle benchmark: logs when its process started, then exits.
echo "$HOOKMESH_TASK_ID $(date +%s%N)" >> "$HOOKMESH_BENCH_LOG"
