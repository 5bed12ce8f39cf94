"""Network namespaces for the hostile-network suite (test_netns.py).

A namespace made here holds one end of a veth pair; the other end stays in
the test's own namespace, so traffic goes only between addresses this test
made (10.250.N.1 here, 10.250.N.2 inside).  nftables inside a namespace
shapes what crosses it: a drop rule is a silent partition (no reset, no
ICMP), `numgen random` a lossy link.  This kernel has no `tc netem`.
"""
import os
import shutil
import subprocess

from conftest import Cluster

_seq = [0]


def unavailable():
    """Why namespaces cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            return f"{tool} is not installed (iproute2, nftables)"
    probe = f"wsn-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot make a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, text=True)


class Netns:
    """A namespace joined to ours by a veth pair: here 10.250.N.1, inside 10.250.N.2."""

    def __init__(self):
        _seq[0] += 1
        n = (os.getpid() + _seq[0]) % 200 + 20
        self.name = f"wsn{os.getpid()}-{_seq[0]}"
        self.outer_if, self.inner_if = f"wsno{n}", f"wsni{n}"
        self.outer, self.inner = f"10.250.{n}.1", f"10.250.{n}.2"
        sh("ip", "netns", "add", self.name)
        try:
            sh("ip", "link", "add", self.outer_if, "type", "veth", "peer", "name", self.inner_if)
            sh("ip", "link", "set", self.inner_if, "netns", self.name)
            sh("ip", "addr", "add", f"{self.outer}/30", "dev", self.outer_if)
            sh("ip", "link", "set", self.outer_if, "up")
            self.exec("ip", "addr", "add", f"{self.inner}/30", "dev", self.inner_if)
            self.exec("ip", "link", "set", self.inner_if, "up")
            self.exec("ip", "link", "set", "lo", "up")
            self.exec("nft", "add", "table", "inet", "wsn")
            self.exec("nft", "add", "chain", "inet", "wsn", "input",
                      "{ type filter hook input priority 0; }")
            self.exec("nft", "add", "chain", "inet", "wsn", "output",
                      "{ type filter hook output priority 0; }")
        except subprocess.CalledProcessError:
            self.destroy()
            raise

    def exec(self, *cmd):
        sh("ip", "netns", "exec", self.name, *cmd)

    def _rule(self, extra):
        for chain, iface in (("input", "iifname"), ("output", "oifname")):
            self.exec("nft", "add", "rule", "inet", "wsn", chain, iface, self.inner_if, *extra)

    def partition(self):
        """Drop every packet across the veth, both ways: no reset, no ICMP."""
        self.heal()
        self._rule(["drop"])

    def lossy(self, percent):
        """Drop percent% of the packets across the veth, at random, both ways."""
        self.heal()
        self._rule(["numgen", "random", "mod", "100", "<", str(percent), "drop"])

    def heal(self):
        for chain in ("input", "output"):
            self.exec("nft", "flush", "chain", "inet", "wsn", chain)

    def destroy(self):
        subprocess.run(["ip", "link", "del", self.outer_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class NetnsCluster(Cluster):
    """A throwaway cluster whose postmaster runs inside ns, listening on its inner
    address.  The test's own sessions use the Unix socket (no namespace in the
    way); give bridges tcp_dsn() to put the partition between them and it."""

    def __init__(self, ns):
        super().__init__()
        self.ns = ns

    def run(self, *args, check=True):
        return subprocess.run(["ip", "netns", "exec", self.ns.name, "runuser", "-u", "postgres",
                               "--", *args], check=check, capture_output=True, text=True, cwd="/")

    def init(self):
        super().init()
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses = '{self.ns.inner}'\n")
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as f:
            f.write(f"host all all {self.ns.outer}/32 trust\n")
        self.restart()

    def dsn(self, db, user="postgres"):
        return f"host={self.dir} port={self.port} dbname={db} user={user}"

    def tcp_dsn(self, db, user="bridge"):
        return f"host={self.ns.inner} port={self.port} dbname={db} user={user}"
