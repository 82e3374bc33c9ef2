#!/usr/bin/env bash
# A polling agent as seed 000 describes buildd-agent: it claims tasks with
# POST /api/workers/claim, reports progress with PATCH /api/workers/:id and
# ends each with a last PATCH. Its work is to echo the task's description
# (a description with "slow" in it takes 30 s of steps, each a PATCH, and
# stops when a PATCH answer asks it to cancel).
#
#   BUILDD_SERVER=http://127.0.0.1:8080 BUILDD_API_KEY=buildd_... \
#     polling_agent.sh --workspace=ID --max-tasks=3 [--labels=a,b] [--interval=SECONDS]
#     [--name=NAME] [--exit-after=N]
set -euo pipefail

server=${BUILDD_SERVER:-http://localhost:3000}
key=${BUILDD_API_KEY:-}
workspace= labels= max_tasks=3 interval=10 name=agent exit_after=0
for arg; do
  case $arg in
    --server=*) server=${arg#*=} ;;
    --api-key=*) key=${arg#*=} ;;
    --workspace=*) workspace=${arg#*=} ;;
    --max-tasks=*) max_tasks=${arg#*=} ;;
    --labels=*) labels=${arg#*=} ;;
    --interval=*) interval=${arg#*=} ;;
    --name=*) name=${arg#*=} ;;
    --exit-after=*) exit_after=${arg#*=} ;;
    *) echo "unknown flag $arg" >&2; exit 2 ;;
  esac
done
[[ -n $key ]] || { echo "--api-key or BUILDD_API_KEY is required" >&2; exit 2; }

state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT

# METHOD PATH BODY: prints the answer; fails on an HTTP error.
call() {
  curl -sS --fail-with-body -X "$1" "$server$2" -H "Authorization: Bearer $key" \
    -H "Content-Type: application/json" -d "$3"
}

report() {  # WORKER_ID JSON
  call PATCH "/api/workers/$1" "$(jq -c --arg r "$name" '. + {runner: $r}' <<<"$2")"
}

# Runs one claimed task; touches $state/done.<worker> at its end.
work() {
  local id=$1 task=$2 reply steps=1 i
  local description
  description=$(jq -r '.prompt' <<<"$task")
  [[ $description == *slow* ]] && steps=300
  report "$id" '{"status":"running","progress":10}' >/dev/null
  for ((i = 1; i <= steps; i++)); do
    reply=$(report "$id" "$(jq -nc --arg m "working on: $description ($i/$steps)" \
      --argjson p $((10 + 80 * i / steps)) '{message: $m, progress: $p}')")
    if jq -e '.controls[]? | select(.action == "cancel")' <<<"$reply" >/dev/null; then
      report "$id" '{"status":"canceled","message":"stopped as asked"}' >/dev/null
      touch "$state/done.$id"
      return
    fi
    ((steps == 1)) || sleep 0.1
  done
  report "$id" "$(jq -nc --arg r "did: $description" \
    '{status: "completed", progress: 100, result: $r, cost: 0.02}')" >/dev/null
  touch "$state/done.$id"
}

while :; do
  finished=$(find "$state" -name 'done.*' | wc -l)
  if ((exit_after > 0 && finished >= exit_after)); then
    wait
    exit 0
  fi
  running=$(($(find "$state" -name 'claimed.*' | wc -l) - finished))
  free=$((max_tasks - running))
  if ((free > 0)); then
    body=$(jq -nc --arg ws "$workspace" --argjson n "$free" --arg r "$name" --arg l "$labels" \
      '{maxTasks: $n, runner: $r} + (if $ws == "" then {} else {workspaceId: $ws} end)
       + (if $l == "" then {} else {labels: ($l | split(","))} end)')
    claimed=$(call POST /api/workers/claim "$body")
    count=$(jq '.workers | length' <<<"$claimed")
    for ((i = 0; i < count; i++)); do
      worker=$(jq -r ".workers[$i].id" <<<"$claimed")
      touch "$state/claimed.$worker"
      work "$worker" "$(jq -c ".tasks[$i]" <<<"$claimed")" &
    done
  fi
  sleep "$interval"
done
