#!/bin/bash
# Times pgwf (CLI and dashboard) against the database bench/pgwf_1m.sql fills: best of 3, in ms.
# Usage: PGHOST=... PGPORT=... PGUSER=postgres bash bench/pgwf_1m.sh  (needs clients/rust/target/debug/pgwf)
B=${PGWF:-$(cd "$(dirname "$0")/.." && pwd)/clients/rust/target/debug/pgwf}
export PGDATABASE=pgwf1m
t() { best=999999; for i in 1 2 3; do s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); d=$(( (e-s)/1000000 )); [ $d -lt $best ] && best=$d; done; printf "%6d ms  %s\n" $best "$*" | sed "s|$B|pgwf|"; }
t $B runs
t $B runs --status ERROR
t $B runs --status ENQUEUED
t $B runs --status PENDING
t $B runs --name checkout
t $B runs --name rare_audit
t $B runs --queue emails --status ERROR
t $B runs --since 1h
t $B runs --name rare_audit --since 1h
t $B show bulk-0000001
t $B queues
t $B stats
t $B executors
$B serve --listen 127.0.0.1:8097 2>/dev/null & pid=$!
sleep 1
for u in "/runs" "/runs?status=ERROR" "/runs?status=ENQUEUED" "/runs?name=rare_audit" "/runs?name=checkout&status=ERROR" "/runs?since=1h" "/run?id=bulk-0000001" "/queues" "/executors"; do
  best=999999; for i in 1 2 3; do s=$(date +%s%N); curl -s -o /dev/null "http://127.0.0.1:8097$u"; e=$(date +%s%N); d=$(( (e-s)/1000000 )); [ $d -lt $best ] && best=$d; done
  printf "%6d ms  GET %s\n" $best "$u"
done
kill $pid
psql -XAtq -c "\timing on" -c "SELECT length(json_build_object(
        'last_created', (SELECT max(created_at) FROM workflow.runs),
        'last_finished', (SELECT max(finished_at) FROM workflow.runs),
        'pending', (SELECT count(*) FROM workflow.runs WHERE status = 'PENDING'),
        'last_step', (SELECT max(s.recorded_at) FROM workflow.runs r JOIN workflow.steps s USING (workflow_id) WHERE r.status = 'PENDING'),
        'backlog', (SELECT sum(enqueued + delayed) FROM workflow.queue_stats),
        'executors', (SELECT json_agg(executor_id ORDER BY executor_id) FROM workflow.executors WHERE alive),
        'schedules', (SELECT max(updated_at)::text || max(last_fired_at)::text FROM workflow.schedules))::text)" | sed 's/^/signature (SSE poll): /'
