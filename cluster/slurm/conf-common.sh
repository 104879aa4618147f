# conf-common.sh - sourced by selftest.sh and selftest-multinode.sh: the slurm.conf lines both throwaway clusters
# share (no systemd, no cgroups, fast requeue). Each script writes its own names, paths and nodes around them.
# slurm_conf_common: prints those lines.
slurm_conf_common() {
    cat <<'CONF'
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
# the default intervals would leave a requeued job pending for up to a minute
SchedulerParameters=bf_interval=1,sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
KillWait=5
MinJobAge=600
MailProg=/bin/true
CONF
}
