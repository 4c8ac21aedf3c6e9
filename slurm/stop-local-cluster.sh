#!/usr/bin/env bash
# Stop the daemons that slurm/setup-local-cluster.sh started (and only those): cancel
# the cluster's jobs, then slurmd, slurmctld and munged, each by the PID in its PID file
# (TERM, then KILL after 10 s). Idempotent; daemons it did not start are left alone.
set -uo pipefail

STATE=${COMPACTION_SWEEP_SLURM_DIR:-/tmp/compaction-sweep-slurm}
STARTED=$STATE/run/started
export SLURM_CONF=$STATE/etc/slurm.conf

say() { echo "stop-local-cluster: $*" >&2; }

[ -f "$STARTED" ] || { say "nothing to stop ($STARTED not found)"; exit 0; }

started() { grep -qx "$1" "$STARTED"; }

stop_pid() {  # stop_pid NAME PIDFILE
    local name=$1 pidfile=$2 pid
    [ -s "$pidfile" ] || { say "$name: no PID file"; return 0; }
    pid=$(cat "$pidfile")
    if ! kill -0 "$pid" 2>/dev/null; then say "$name (pid $pid) not running"; return 0; fi
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) still running after 10s: KILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    say "$name (pid $pid) stopped"
}

if started slurmctld && [ -f "$SLURM_CONF" ] && command -v scancel >/dev/null; then
    scancel --full --quiet --partition=debug 2>/dev/null || true
    for _ in $(seq 50); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.2
    done
fi
started slurmd && stop_pid slurmd "$STATE/run/slurmd.pid"
started slurmctld && stop_pid slurmctld "$STATE/run/slurmctld.pid"
started munged && stop_pid munged /run/munge/munged.pid
: >"$STARTED"
