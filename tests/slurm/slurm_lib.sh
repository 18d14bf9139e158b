# A one-node Slurm 22.05 cluster in a temp dir, for tests (sourced).
#   slurm_start WORK  writes WORK/slurm.conf (state, spool, logs under WORK,
#                     ports on loopback, a munge key and socket of its own),
#                     starts munged, slurmctld and slurmd as root and waits
#                     until the node is idle. Sets SLURM_CONF for the clients.
#                     With it MariaDB and slurmdbd, so that sacct works.
#   slurm_stop        stops the daemons (by the pids it started).
# Needs root (the daemons run as root, slurmd as SlurmdUser=root) and the
# Debian packages slurmctld, slurmd, slurm-client, slurmdbd, mariadb-server
# and munge (scripts/setup).

SLURM_PIDS=()

slurm_start() {
  local work=$1
  local host
  host=$(hostname -s)
  mkdir -p "$work"/{state,spool,munge,log}
  chmod 711 "$work/munge"  # munged wants its socket's folder searchable by all
  # munge: a key of our own and a socket in WORK, so the host's munged (if
  # any) is untouched. The daemons and clients find the socket through
  # AuthInfo=socket=... in slurm.conf.
  dd if=/dev/urandom of="$work/munge/munge.key" bs=1 count=1024 status=none
  chmod 400 "$work/munge/munge.key"
  munged --key-file="$work/munge/munge.key" --socket="$work/munge/munge.sock" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/log/munged.log" --seed-file="$work/munge/seed" \
    --force 2>"$work/log/munged.err"
  SLURM_PIDS+=("$(cat "$work/munge/munged.pid")")
  local ports
  ports=$(free_ports 4)
  local ctld_port slurmd_port dbd_port db_port
  read -r ctld_port slurmd_port dbd_port db_port <<<"$ports"
  # Accounting (sacct): slurmdbd over a MariaDB of our own, on loopback.
  start_accounting "$work" "$dbd_port" "$db_port" || return 1
  local cpus
  cpus=$(nproc)
  cat >"$work/slurm.conf" <<CONF
ClusterName=cohorttest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/munge.sock
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbd_port
AccountingStoragePass=$work/munge/munge.sock
JobCompType=jobcomp/filetxt
JobCompLoc=$work/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
KillWait=30
OverTimeLimit=0
MaxJobCount=100
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  export SLURM_CONF=$work/slurm.conf
  local i
  for ((i = 0; i < 20; i++)); do  # slurmdbd up: register the cluster
    sacctmgr -i add cluster cohorttest >/dev/null 2>&1 && break
    sleep 0.1
  done
  sacctmgr -n list cluster format=cluster | grep -q cohorttest || {
    echo "slurm: slurmdbd did not take the cluster" >&2
    tail -n 20 "$work/log/slurmdbd.log" >&2
    return 1
  }
  slurmctld -f "$SLURM_CONF" 2>"$work/log/slurmctld.err" || return 1
  wait_for_file "$work/slurmctld.pid" || return 1
  SLURM_PIDS+=("$(cat "$work/slurmctld.pid")")
  slurmd -f "$SLURM_CONF" 2>"$work/log/slurmd.err" || return 1
  wait_for_file "$work/slurmd.pid" || return 1
  SLURM_PIDS+=("$(cat "$work/slurmd.pid")")
  for ((i = 0; i < 150; i++)); do  # 30 s
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then return 0; fi
    sleep 0.2
  done
  echo "slurm: the node never became idle:" >&2
  sinfo -N -l >&2 || true
  tail -n 20 "$work"/log/slurmctld.log "$work"/log/slurmd.log >&2 || true
  return 1
}

# start_accounting WORK DBD_PORT DB_PORT: MariaDB (data, socket and log in
# WORK/db, TCP on 127.0.0.1:DB_PORT) and slurmdbd (WORK/slurmdbd.conf) on
# 127.0.0.1:DBD_PORT, then the cluster registered in it.
start_accounting() {
  local work=$1 dbd_port=$2 db_port=$3 i
  mkdir -p "$work/db"
  mariadb-install-db --no-defaults --user=root --datadir="$work/db/data" --skip-test-db \
    >"$work/log/mariadb-install.log" 2>&1 || { cat "$work/log/mariadb-install.log" >&2; return 1; }
  mariadbd --no-defaults --user=root --datadir="$work/db/data" --socket="$work/db/sock" \
    --pid-file="$work/db/mariadb.pid" --bind-address=127.0.0.1 --port="$db_port" \
    --log-error="$work/log/mariadb.log" --innodb-buffer-pool-size=32M --skip-name-resolve &
  SLURM_PIDS+=($!)
  for ((i = 0; i < 300; i++)); do  # 30 s
    mariadb --no-defaults --socket="$work/db/sock" -e "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.1
  done
  mariadb --no-defaults --socket="$work/db/sock" -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'cohort';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || { tail "$work/log/mariadb.log" >&2; return 1; }
  (umask 077 && cat >"$work/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.sock
DbdAddr=127.0.0.1
DbdHost=localhost
DbdPort=$dbd_port
SlurmUser=root
PidFile=$work/slurmdbd.pid
LogFile=$work/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=cohort
StorageLoc=slurm_acct_db
CONF
  )
  # slurmdbd reads slurmdbd.conf beside $SLURM_CONF.
  SLURM_CONF=$work/slurm.conf slurmdbd 2>"$work/log/slurmdbd.err" || return 1
  wait_for_file "$work/slurmdbd.pid" || return 1
  SLURM_PIDS+=("$(cat "$work/slurmdbd.pid")")
}

wait_for_file() {
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $1 ]] && return 0
    sleep 0.1
  done
  echo "slurm: $1 never appeared" >&2
  return 1
}

slurm_stop() {
  local pid i
  # Reverse order: slurmd, slurmctld, slurmdbd, mariadbd, munged.
  for ((i = ${#SLURM_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${SLURM_PIDS[i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  SLURM_PIDS=()
}
