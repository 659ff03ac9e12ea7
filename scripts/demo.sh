#!/usr/bin/env bash
# The main job, offline on the embedded defaults: install, ingest the example
# knowledge base, send a real retail request, stop for approval, approve it from
# two other processes (the refund is above the two-reviewer threshold), then
# print the answer and the thread's history.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
export WARDEN_DATA_DIR=${WARDEN_DATA_DIR:-$PWD/var/demo}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The reviewer directory: who may decide, with which role.
export WARDEN_REVIEWERS=${WARDEN_REVIEWERS:-alice:supervisor,bob:supervisor}
warden=.venv/bin/warden
thread=${THREAD:-demo-$(date +%Y%m%d-%H%M%S)}

echo "== ingest the example help center"
$warden ingest

echo "== process 1: the customer writes (thread $thread)"
$warden chat --thread "$thread" \
  "Hi, this is Emma Smith, zip code 10192. The laptop in my order #W2417020 has not shipped yet and I found a better deal elsewhere, so please cancel that order. I no longer need it."

echo "== process 2: the first reviewer approves"
$warden approve "$thread" --reviewer alice

echo "== process 3: a second reviewer approves (above the threshold)"
$warden approve "$thread" --reviewer bob

echo "== the thread's history, read back from Redis"
$warden history "$thread"
