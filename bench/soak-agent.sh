#!/bin/sh
# The failover soak's agent: records when its run starts and ends (task id, process group,
# epoch ns) in $HOOKMESH_SOAK_LOG, sleeps as its prompt says ("sleep=S"), then answers. A run
# its worker stops (SIGTERM) records its end too; a SIGKILLed one cannot, and the soak knows
# when it killed it.
pgid=$(ps -o pgid= -p $$ | tr -d ' ')
record() { echo "$1 $HOOKMESH_TASK_ID $pgid $(date +%s%N)" >> "$HOOKMESH_SOAK_LOG"; }
trap 'record end; kill "$sleeper" 2>/dev/null; exit 143' TERM
record start
seconds=$(printf '%s' "$HOOKMESH_PROMPT" | sed -n 's/.*sleep=\([0-9.]*\).*/\1/p' | head -n 1)
sleep "${seconds:-0}" &
sleeper=$!
wait "$sleeper"
echo "{\"hookmesh\": 1, \"answer\": \"done $HOOKMESH_TASK_ID\"}"
record end
