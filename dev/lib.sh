# Shared helpers for the dev/ scripts. Sourced, never run.
# shellcheck shell=bash

JF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JF_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/jango-fett
# shellcheck source=dev/versions.env
. "$JF_ROOT/dev/versions.env"

if [ -t 1 ]; then
  JF_BOLD=$'\e[1m' JF_DIM=$'\e[2m' JF_RED=$'\e[31m' JF_GREEN=$'\e[32m' JF_RESET=$'\e[0m'
else
  JF_BOLD='' JF_DIM='' JF_RED='' JF_GREEN='' JF_RESET=''
fi

step() { printf '%s==>%s %s\n' "$JF_BOLD" "$JF_RESET" "$*"; }
info() { printf '    %s\n' "$*"; }
ok() { printf '%s ok%s %s\n' "$JF_GREEN" "$JF_RESET" "$*"; }
die() {
  printf '%serror:%s %s\n' "$JF_RED" "$JF_RESET" "$1" >&2
  [ $# -gt 1 ] && printf '%shint:%s %s\n' "$JF_BOLD" "$JF_RESET" "$2" >&2
  exit 1
}

# Seconds since the epoch, for timing steps.
now() { date +%s; }
elapsed() { local s=$(($(now) - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# run_with_heartbeat LABEL LOG CMD...: runs CMD with its output in LOG, printing a line every
# 30 s so that a long build is never silent; on failure shows the end of LOG.
run_with_heartbeat() {
  local label=$1 log=$2 start pid
  shift 2
  start=$(now)
  "$@" >"$log" 2>&1 &
  pid=$!
  while ! wait_timeout "$pid" 30; do
    info "${JF_DIM}still ${label} ($(elapsed "$start"), log: $log)${JF_RESET}"
  done
  if ! wait "$pid"; then
    tail -n 40 "$log" >&2
    die "${label} failed after $(elapsed "$start")" "the full log is $log"
  fi
  info "${label}: done in $(elapsed "$start")"
}

# wait_timeout PID SECONDS: true once PID has exited, false if it is still running after SECONDS.
wait_timeout() {
  local pid=$1 i
  for ((i = 0; i < $2 * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  ! kill -0 "$pid" 2>/dev/null
}
