#!/bin/sh
# The failover soak's agent: records when its run starts and ends (task id, process group,
# epoch ns) in $HOOKMESH_SOAK_LOG, sleeps as its prompt says ("sleep=S"), then answers.
pgid=$(ps -o pgid= -p $$ | tr -d ' ')
echo "start $HOOKMESH_TASK_ID $pgid $(date +%s%N)" >> "$HOOKMESH_SOAK_LOG"
seconds=$(printf '%s' "$HOOKMESH_PROMPT" | sed -n 's/.*sleep=\([0-9.]*\).*/\1/p' | head -n 1)
[ -n "$seconds" ] && sleep "$seconds"
echo "{\"hookmesh\": 1, \"answer\": \"done $HOOKMESH_TASK_ID\"}"
echo "end $HOOKMESH_TASK_ID $pgid $(date +%s%N)" >> "$HOOKMESH_SOAK_LOG"
