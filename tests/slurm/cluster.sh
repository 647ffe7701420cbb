#!/usr/bin/env bash
# A throw-away single-node SLURM cluster for testing the SLURM executor profile.
#
#   tests/slurm/cluster.sh check    exit 0 if this machine can run it, else print why (exit 3)
#   tests/slurm/cluster.sh up       start munged, slurmctld, slurmd; wait until the node is idle
#   tests/slurm/cluster.sh down     cancel its jobs, stop only the daemons it started
#   tests/slurm/cluster.sh status   show daemons, partitions and node state
#   tests/slurm/cluster.sh env      print `export SLURM_CONF=... PATH=...` for eval in a shell
#
# Partitions: `cpu` (default) and `gpu`; the node carries 2 fake GPUs (`gpu:fake:2`) backed by
# /dev/null and /dev/zero, which is enough for SLURM to schedule them and set
# CUDA_VISIBLE_DEVICES. Nothing is written outside the state directory: the config lives in
# $CLUSTERMINE_SLURM_DIR/etc and clients find it through SLURM_CONF, munged listens on a
# private socket with a private key, and the ports differ from the SLURM defaults, so a real
# SLURM or munge installation on the same host is left alone.
#
# Environment (all optional):
#   CLUSTERMINE_SLURM_DIR       state directory            [/tmp/clustermine-slurm]
#   CLUSTERMINE_SLURM_PORT      slurmctld port; slurmd uses PORT+1   [6917]
#   CLUSTERMINE_SLURM_CPUS      CPUs the node advertises   [nproc]
#   CLUSTERMINE_SLURM_MEM_MB    memory the node advertises [MemTotal]
#   CLUSTERMINE_SLURM_TIMEOUT   seconds to wait for an idle node [60]
set -euo pipefail

DIR="${CLUSTERMINE_SLURM_DIR:-/tmp/clustermine-slurm}"
PORT="${CLUSTERMINE_SLURM_PORT:-6917}"
TIMEOUT="${CLUSTERMINE_SLURM_TIMEOUT:-60}"
NODE="localnode"
CONF="$DIR/etc/slurm.conf"
SOCKET="$DIR/munge/munge.socket"
DAEMONS=(munged slurmctld slurmd)
export SLURM_CONF="$CONF"

log() { echo "cluster.sh: $*" >&2; }

find_bin() {  # daemons live in sbin, which root's PATH may lack inside containers
    local name="$1" dir
    for dir in ${PATH//:/ } /usr/sbin /sbin /usr/local/sbin; do
        [[ "$dir" == "$DIR/bin" ]] && continue  # our own client wrappers
        if [[ -x "$dir/$name" ]]; then echo "$dir/$name"; return 0; fi
    done
    return 1
}

check() {
    local missing=() bin
    if [[ "$(id -u)" != 0 ]]; then
        echo "not root: slurmd must run as root to start jobs as the submitting user"
        return 3
    fi
    for bin in munged slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
        find_bin "$bin" >/dev/null || missing+=("$bin")
    done
    if ((${#missing[@]})); then
        echo "missing ${missing[*]}: install the Debian packages slurmctld slurmd slurm-client munge"
        return 3
    fi
    if ((${#SOCKET} > 100)); then  # unix socket paths are limited to 108 bytes
        echo "state directory path too long for munge's socket: $DIR"
        return 3
    fi
    return 0
}

# Pid files hold pids this script started; a pid only counts while it is still that daemon
# (its command line names the daemon and this state directory), never a reused pid.
alive() {
    local name="$1" pid cmdline
    [[ -s "$DIR/pids/$name" ]] || return 1
    pid="$(<"$DIR/pids/$name")"
    [[ -r "/proc/$pid/stat" ]] || return 1
    # A daemon that died but is not yet reaped is a zombie (state Z) and no longer counts.
    [[ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    [[ "$cmdline" == *"$name"* && "$cmdline" == *"$DIR/"* ]] || return 1
    echo "$pid"
}

all_alive() {
    local name
    for name in "${DAEMONS[@]}"; do alive "$name" >/dev/null || return 1; done
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_config() {
    local cpus mem
    cpus="${CLUSTERMINE_SLURM_CPUS:-$(nproc)}"
    mem="${CLUSTERMINE_SLURM_MEM_MB:-$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)}"
    mkdir -p "$DIR"/{etc,munge,log,pids,spool/ctld,spool/d}
    chmod 0755 "$DIR" "$DIR/munge"
    cat >"$CONF" <<EOF
# Written by tests/slurm/cluster.sh: a single-node test cluster, rewritten on every start.
# slurmctld only runs on the host named here, so it is this host's short name.
ClusterName=clustermine-test
SlurmctldHost=$(hostname -s)(127.0.0.1)
MailProg=/bin/true
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/log/slurmctld.pid
SlurmdPidFile=$DIR/log/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
PlugStackConfig=$DIR/etc/plugstack.conf
# No cgroups in containers: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# No slurmdbd: jobs stay visible to squeue/scontrol for MinJobAge seconds after they end, and
# every finished job is appended to a plain-text job-completion log.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
MinJobAge=900
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=2
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$mem Gres=gpu:fake:2 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu Type=fake File=/dev/null
NodeName=$NODE Name=gpu Type=fake File=/dev/zero
EOF
    : >"$DIR/etc/plugstack.conf"
    write_client_wrappers
}

# The SLURM jobstep executor drops every SLURM_* variable before it calls srun inside a job, so
# SLURM_CONF never reaches that srun and it would look for /etc/slurm/slurm.conf. Clients in
# $DIR/bin pin this cluster's config instead; put $DIR/bin first on PATH (see `env`).
write_client_wrappers() {
    local name real
    mkdir -p "$DIR/bin"
    for name in srun sbatch salloc squeue scancel scontrol sinfo; do
        real="$(find_bin "$name")" || continue
        printf '#!/bin/sh\nSLURM_CONF=%q exec %q "$@"\n' "$CONF" "$real" >"$DIR/bin/$name"
        chmod 0755 "$DIR/bin/$name"
    done
}

start_daemon() {  # name, then the command; the daemon stays in the foreground so $! is its pid
    local name="$1"; shift
    setsid "$@" >>"$DIR/log/$name.out" 2>&1 </dev/null &
    echo $! >"$DIR/pids/$name"
}

wait_idle() {
    local deadline=$((SECONDS + TIMEOUT)) state=""
    while ((SECONDS < deadline)); do
        if ! all_alive; then
            log "a daemon exited during start-up; the end of its log:"
            tail -n 3 "$DIR"/log/*.out >&2
            return 1
        fi
        state="$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | sort -u | tr '\n' ' ')"
        case "$state" in
            "idle "|"mixed "|"allocated ") return 0 ;;
        esac
        sleep 0.5
    done
    log "node not idle after ${TIMEOUT}s (state: '${state:-no answer}'); see $DIR/log"
    return 1
}

up() {
    local reason t0=$SECONDS name
    if ! reason="$(check)"; then log "cannot start: $reason"; return 3; fi
    if all_alive; then
        wait_idle && { log "already up ($DIR)"; return 0; }
        return 1
    fi
    # Partly running (e.g. a daemon died): stop what is ours and start clean.
    stop_daemons
    for port in "$PORT" "$((PORT + 1))"; do
        if ! port_free "$port"; then
            log "port $port is taken by another program; set CLUSTERMINE_SLURM_PORT"
            return 1
        fi
    done
    rm -rf "$DIR/spool" "$DIR/log"
    write_config
    if [[ ! -s "$DIR/munge/munge.key" ]]; then
        head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
        chmod 0400 "$DIR/munge/munge.key"
    fi
    start_daemon munged "$(find_bin munged)" --foreground --force \
        --socket="$SOCKET" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    for _ in $(seq 100); do [[ -S "$SOCKET" ]] && break; sleep 0.1; done
    [[ -S "$SOCKET" ]] || { log "munged did not start; see $DIR/log/munged*"; stop_daemons; return 1; }
    start_daemon slurmctld "$(find_bin slurmctld)" -D -i -f "$CONF"
    start_daemon slurmd "$(find_bin slurmd)" -D -N "$NODE" -f "$CONF"
    if ! wait_idle; then stop_daemons; return 1; fi
    for name in "${DAEMONS[@]}"; do log "$name pid $(alive "$name")"; done
    log "up in $((SECONDS - t0))s; use it with: eval \"\$($0 env)\""
}

stop_daemons() {
    local name pid
    # Reverse start order: slurmd, slurmctld, then munged (which both need to shut down).
    for name in slurmd slurmctld munged; do
        if pid="$(alive "$name")"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do alive "$name" >/dev/null || break; sleep 0.1; done
            if alive "$name" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
        rm -f "$DIR/pids/$name"
    done
}

down() {
    if alive slurmctld >/dev/null; then
        # Every job on this private cluster was submitted to it; end them with the cluster.
        local jobs
        jobs="$(squeue -h -t PENDING,RUNNING,SUSPENDED -o %i 2>/dev/null || true)"
        if [[ -n "$jobs" ]]; then
            # shellcheck disable=SC2086  # one job id per word
            scancel --quiet $jobs 2>/dev/null || true
        fi
        for _ in $(seq 50); do
            [[ -z "$(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ]] && break
            sleep 0.2
        done
    fi
    stop_daemons
    log "down"
}

status() {
    local name pid
    for name in "${DAEMONS[@]}"; do
        if pid="$(alive "$name")"; then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
    done
    if alive slurmctld >/dev/null; then
        sinfo -o '%P %a %D %T %G' || true
    fi
}

case "${1:-}" in
    check) check ;;
    up) up ;;
    down) down ;;
    status) status ;;
    env) printf 'export SLURM_CONF=%q PATH=%q\n' "$CONF" "$DIR/bin:$PATH" ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
