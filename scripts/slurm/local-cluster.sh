#!/bin/bash
# A throw-away one-node Slurm cluster on this machine, for tests and for trying the
# scripts here without a real cluster (Debian's slurmctld, slurmd, slurm-client and
# munge; run as root; no systemd or cgroups needed). Jobs authenticate with munge, as on
# a real cluster, using the host's key (/etc/munge/munge.key, made by the package); a
# munged already running is used and left running, one started here is stopped by stop.
#
#   scripts/slurm/local-cluster.sh install      # apt-get the packages if missing
#   scripts/slurm/local-cluster.sh start DIR    # config, state and logs in DIR
#   export SLURM_CONF=DIR/slurm.conf            # then sbatch, squeue, ... use it
#   scripts/slurm/local-cluster.sh stop DIR     # stops the daemons by their PIDs
set -euo pipefail
cmd="${1:-}"
case "$cmd" in
  install)
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
      && command -v sbatch >/dev/null && [ -x /usr/sbin/munged ]; then
      exit 0
    fi
    if [ "$(id -u)" != 0 ]; then
      echo "Slurm is not installed and installing it needs root: apt-get install slurmctld slurmd slurm-client munge" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client munge >/dev/null
    ;;
  start)
    dir="$(mkdir -p "${2:?usage: $0 start DIR}" && cd "$2" && pwd)"
    host="$(hostname -s)"
    mkdir -p "$dir/state" "$dir/spool"
    # munge: the credential service every Slurm daemon and client authenticates with.
    if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
      mkdir -p /run/munge && chown munge:munge /run/munge
      if [ ! -s /etc/munge/munge.key ]; then
        # The package makes the key on install; make one if it did not.
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
      fi
      runuser -u munge -- /usr/sbin/munged
      cp /run/munge/munged.pid "$dir/munged.pid"
      if ! munge -n </dev/null | unmunge >/dev/null; then
        echo "munged started but does not authenticate; see /var/log/munge/munged.log" >&2
        exit 1
      fi
    fi
    # The node line from slurmd -C (this host's real CPUs and memory: a larger
    # RealMemory would make the node invalid).
    node="$(slurmd -C | grep '^NodeName=' | sed 's/ UpTime=.*//')"
    cat > "$dir/slurm.conf" <<CONF
ClusterName=pudding-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -D -f "$SLURM_CONF" >"$dir/slurmctld.stdout" 2>&1 &
    echo $! > "$dir/ctld.pid"
    slurmd -D -f "$SLURM_CONF" >"$dir/slurmd.stdout" 2>&1 &
    echo $! > "$dir/d.pid"
    for _ in $(seq 1 120); do
      if [ "$(sinfo -h -o %T 2>/dev/null | head -1)" = idle ]; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
      fi
      sleep 0.5
    done
    echo "the cluster did not come up in 60 s; logs in $dir" >&2
    "$0" stop "$dir" || true
    exit 1
    ;;
  stop)
    dir="${2:?usage: $0 stop DIR}"
    for f in d.pid ctld.pid munged.pid; do
      if [ -f "$dir/$f" ]; then
        pid="$(cat "$dir/$f")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$dir/$f"
      fi
    done
    ;;
  *)
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
