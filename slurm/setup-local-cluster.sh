#!/usr/bin/env bash
# Install (Debian slurm-wlm + munge) and start a single-node Slurm cluster on this machine,
# for trying slurm/sweep.sbatch and for the slurm test (tests/test_slurm.py, .ci/run).
#
#   sudo bash slurm/setup-local-cluster.sh        # idempotent: starts only what is not running
#   export SLURM_CONF=/tmp/compaction-sweep-slurm/etc/slurm.conf   # printed at the end
#   sudo bash slurm/stop-local-cluster.sh         # stops every daemon this script started
#
# Needs root (apt-get, munged as the munge user, slurmd). No systemd needed: the daemons
# are started here, each writing its PID file under $COMPACTION_SWEEP_SLURM_DIR (default
# /tmp/compaction-sweep-slurm); the names of the daemons this script started are kept in
# run/started, which the stop script reads. Config (ecosystem-notes.md 3): one node
# "localhost" with this machine's CPUs, partition "debug", proctrack/linuxproc and
# task/none (no cgroups), no accounting (sacct is not needed).
set -euo pipefail

STATE=${COMPACTION_SWEEP_SLURM_DIR:-/tmp/compaction-sweep-slurm}
CONF=$STATE/etc/slurm.conf
STARTED=$STATE/run/started

say() { echo "setup-local-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (apt-get, munged, slurmd)"

# -- packages ---------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
    say "installing slurm-wlm and munge (apt-get) ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # policy-rc.d may deny starting services (no systemd): that is expected, we start them.
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p "$STATE"/{etc,run,log,spool/slurmd,spool/slurmctld}
touch "$STARTED"

alive() {  # alive PIDFILE: the PID in it names a running process
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}
mark_started() { grep -qx "$1" "$STARTED" || echo "$1" >>"$STARTED"; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2; shift 2
    local t=0
    until "$@" >/dev/null 2>&1; do
        sleep 0.2; t=$((t + 1))
        [ $t -lt $((limit * 5)) ] || die "$what not up after ${limit}s (logs in $STATE/log)"
    done
}

# -- munge ------------------------------------------------------------------------------
MUNGE_PID=/run/munge/munged.pid
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then mungekey --create --force; else create-munge-key -f; fi
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if alive "$MUNGE_PID"; then
    say "munged already running (pid $(cat "$MUNGE_PID"))"
else
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --pid-file="$MUNGE_PID"
    wait_for 10 munged munge -n
    mark_started munged
    say "munged up (pid $(cat "$MUNGE_PID"))"
fi

# -- slurm.conf -------------------------------------------------------------------------
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat >"$CONF.tmp" <<CONF
# Written by slurm/setup-local-cluster.sh: a one-node cluster on this machine.
ClusterName=csweep
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmdSpoolDir=$STATE/spool/slurmd
StateSaveLocation=$STATE/spool/slurmctld
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
mv "$CONF.tmp" "$CONF"
export SLURM_CONF=$CONF
echo "export SLURM_CONF=$CONF" >"$STATE/slurm.env"

# -- slurmctld, slurmd ------------------------------------------------------------------
if alive "$STATE/run/slurmctld.pid"; then
    say "slurmctld already running (pid $(cat "$STATE/run/slurmctld.pid"))"
else
    slurmctld -f "$CONF"
    wait_for 20 slurmctld scontrol ping
    mark_started slurmctld
    say "slurmctld up (pid $(cat "$STATE/run/slurmctld.pid"))"
fi
if alive "$STATE/run/slurmd.pid"; then
    say "slurmd already running (pid $(cat "$STATE/run/slurmd.pid"))"
else
    # -N: the node is "localhost" whatever this machine's hostname is.
    slurmd -f "$CONF" -N localhost
    wait_for 10 slurmd test -s "$STATE/run/slurmd.pid"
    mark_started slurmd
    say "slurmd up (pid $(cat "$STATE/run/slurmd.pid"))"
fi

node_idle() { sinfo -h -n localhost -o %T | grep -Eq '^(idle|mixed|allocated)'; }
t=0
until node_idle; do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    case $state in
        down*|drain*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.2; t=$((t + 1))
    [ $t -lt 150 ] || die "node localhost is '$state', not idle, after 30s (logs in $STATE/log)"
done
sinfo >&2
say "ready; clients need: export SLURM_CONF=$CONF"
