"""Helpers shared by the bench scripts: CPU time and memory of processes from
/proc, stopping a child process, and `perf record` of one.  (The wsnotify_template setup of a
throwaway cluster is test/e2e/conftest.py's add_template.)
"""
import os
import signal
import subprocess

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _pids(pids):
    return [pids] if isinstance(pids, int) else pids


def stat_cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15;
    10 ms ticks); 0.0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def sched_cpu_seconds(pids):
    """Time on CPU of all the threads of pid (or of each of a list of pids), in
    seconds: the nanosecond schedstat sum (utime + stime counts 10 ms ticks, too
    coarse for one fan-out round).  Processes and threads that are gone count 0."""
    total = 0
    for pid in _pids(pids):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
    return total / 1e9


def rss_kib(pids):
    """VmRSS of pid (or the sum over a list of pids), in KiB."""
    total = 0
    for pid in _pids(pids):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
    return total


def postgres_pids(cluster):
    """The postmaster of a conftest Cluster and all its children."""
    with open(os.path.join(cluster.data, "postmaster.pid")) as f:
        pm = int(f.readline())
    out = [pm]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pm:
                        out.append(int(d))
            except OSError:
                pass
    return out


def stop_proc(p, sig=signal.SIGTERM, timeout=15):
    """Stop a subprocess.Popen: sig, then SIGKILL after timeout seconds."""
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def perf_record(pid, path):
    """Start `perf record -g` of pid into path (its directory made); return a
    function that stops it (SIGINT, which has perf write the file) and waits."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    perf = subprocess.Popen(["perf", "record", "-q", "-g", "-p", str(pid), "-o", path],
                            stdout=subprocess.DEVNULL)

    def stop():
        perf.send_signal(signal.SIGINT)
        perf.wait()
    return stop
