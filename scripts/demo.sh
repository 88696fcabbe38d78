#!/usr/bin/env bash
# rtcr demo: start a counter, checkpoint it, kill it, restore it, and watch
# it continue where it stopped. Run as root from the repository: make demo
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "demo: run as root (rtcr needs CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE)" >&2
  exit 1
fi
if ! command -v gcc >/dev/null; then
  echo "demo: installing gcc (for the C counter)"
  apt-get install -y -q gcc libc6-dev >/dev/null
fi
export PATH="$PATH:/usr/local/go/bin"

work=$(mktemp -d /tmp/rtcr-demo.XXXXXX)
trap 'kill -9 $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true' EXIT
go build -o "$work/rtcr" ./cmd/rtcr
gcc -O1 -o "$work/counter" testdata/counter.c
rtcr="$work/rtcr"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step "counter 100 > out.txt &          # prints 0, 1, 2 … every 100 ms"
(
  # Close whatever fds this shell inherited: the counter should hold only
  # its std streams (rtcr refuses fd kinds it cannot restore yet).
  for fd in $(ls /proc/$BASHPID/fd); do
    if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
  done
  exec "$work/counter" 100 >"$work/out.txt" 2>/dev/null </dev/null
) &
pid=$!
echo "$pid" >"$work/pid"
sleep 1.2
echo "pid $pid, last lines: $(tail -n 3 "$work/out.txt" | tr '\n' ' ')"

step "rtcr dump --pid $pid --dir $work/img     # checkpoint, then kill"
"$rtcr" dump --pid "$pid" --dir "$work/img"
wait "$pid" 2>/dev/null || true
last=$(tail -n 1 "$work/out.txt")
sleep 0.5
echo "process $pid is gone: $(ps -p "$pid" >/dev/null && echo still there || echo yes); last number written: $last"

step "rtcr inspect --dir $work/img | head -20"
"$rtcr" inspect --dir "$work/img" >"$work/inspect.txt"
head -n 20 "$work/inspect.txt"

step "rtcr restore --dir $work/img"
"$rtcr" restore --dir "$work/img"
sleep 1.2
step "tail out.txt                      # the numbers carry on from $last"
tail -n 14 "$work/out.txt" | tr '\n' ' '
echo
first_after=$(awk -v l="$last" 'found {print; exit} $1 == l {found=1}' "$work/out.txt")
if [ "$first_after" = "$((last + 1))" ]; then
  echo "demo: OK — after $last the restored counter wrote $first_after, in the same process $pid"
else
  echo "demo: FAILED — after $last came '${first_after}'" >&2
  exit 1
fi
