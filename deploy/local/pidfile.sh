# Sourced by the scripts in deploy/local. A pid file outlives its process (a crash, a reboot), and its pid may
# since belong to another process: that one must never be taken for ours, let alone be sent a signal.

# runs PIDFILE WHAT: the process whose pid PIDFILE holds is alive and its command line contains WHAT.
runs() {
  local pidfile="$1" what="$2" pid cmd
  [ -f "$pidfile" ] || return 1
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  if [ -d /proc/self ]; then
    # The process may have ended (on Ctrl-C of `make run` the services exit while this runs): its /proc entry is
    # then gone, and the shell, which opens the file before tr runs, is the one that must keep quiet.
    cmd="$( { tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null)" || return 1
  else
    cmd="$(ps -p "$pid" -o args= 2>/dev/null)" || return 1
  fi
  [[ "$cmd" == *"$what"* ]]
}
