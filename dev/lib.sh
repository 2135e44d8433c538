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

# Building Go programs from the Go module proxy (dev/build-control-plane, dev/build-helm).

# go_build_environment: no toolchain downloads, static binaries, module mode outside a module.
go_build_environment() {
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}
}

# need_go WHAT: dies with a hint when Go is missing; only called when something must be built.
need_go() {
  command -v go >/dev/null 2>&1 ||
    die "Go is not installed; it is needed to build $1" \
      "install Go 1.26 or newer (https://go.dev/dl) and put it on PATH"
  go_version=$(go env GOVERSION) # go1.26.8
  go_version=${go_version#go}
}

# version_ge A B: A >= B, both dotted versions without a leading "v".
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

# resolve MODULE VERSION: prints VERSION if the proxy has it, else the newest patch of its minor.
resolve() {
  local module=$1 version=$2 minor newest
  if go list -m -json "$module@$version" >/dev/null 2>&1; then
    echo "$version"
    return
  fi
  minor=$(echo "$version" | cut -d. -f1-2)
  newest=$(go list -m -versions "$module" 2>/dev/null | tr ' ' '\n' | grep -E "^${minor//./\\.}\.[0-9]+$" | sort -V | tail -n 1 || true)
  [ -n "$newest" ] || die "$module $version is not on the Go module proxy, nor any ${minor}.x" \
    "check the network access to $GOPROXY"
  info "$module $version does not resolve; using $newest, the newest patch of $minor" >&2
  echo "$newest"
}

# module_file MODULE@VERSION FIELD: downloads the module and prints the path of its GoMod or Dir.
module_file() { go mod download -json "$1" | sed -n "s/^\t\"$2\": \"\(.*\)\",\{0,1\}$/\1/p"; }

# require_go GOMOD WHAT: dies when the local Go is older than the module's go line.
require_go() {
  local wanted
  wanted=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$1")
  version_ge "$go_version" "$wanted" ||
    die "Go $wanted or newer is needed to build $2 (found go$go_version)" \
      "install a newer Go from https://go.dev/dl; downloads of toolchains are disabled (GOTOOLCHAIN=local)"
}
