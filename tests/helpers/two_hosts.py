"""Two hosts on one machine, for the two-host tier (``make test-twohost``, issue 22).

Host A is this machine as it is; host B is a Linux network namespace of its own (``ip netns``),
joined to A by a veth pair on a private /24, with a hostname of its own (a UTS namespace), so
that Open MPI's mpirun sees two nodes: it starts a second PRRTE daemon on B through its ssh
launcher, whose agent (``plm_ssh_agent``) is a script here that enters B's namespaces instead
of logging in, and every message between the hosts crosses TCP (the BTL and the daemons' OOB
both bound to the veth subnet). Ranks are mapped round-robin by node, so rank 0 sits on A,
rank 1 on B, and so on; the servers, the last ranks of a launch, sit on both hosts.

Both hosts share the file system (as nodes share a parallel file system) and the process
table, so checkpoints, start-up markers and kills work as on one host; killing B's daemon
and ranks is what losing node B looks like to the job. Needs root (``ip netns``,
``unshare``); :func:`unavailable_reason` says why not, where not.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

AGENT = """#!/bin/bash
# ssh of the two-host tier: [options] host command...; runs the command on that host.
while [[ "$1" == -* ]]; do shift; done
host=$1; shift
while [[ "$1" == -* ]]; do shift; done
if [ "$host" = "{b_address}" ]; then
    exec ip netns exec {netns} unshare --uts /bin/bash -c "hostname {b_name}; $*"
fi
exec /bin/bash -c "$*"
"""


def unavailable_reason() -> str | None:
    """Why two hosts cannot be made here (None when they can)."""
    if os.geteuid() != 0:
        return "the two-host tier needs root (network namespaces)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"the two-host tier needs {tool} (Debian: iproute2, util-linux)"
    return None


def _run(*command: str) -> None:
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr.strip()}")


class TwoHosts:
    """Host B in a network namespace, and the environment that makes launches span A and B.
    ``start()`` returns that environment; ``stop()`` kills whatever runs on B and removes it."""

    def __init__(self, directory: Path, slots: int = 16):
        tag = os.getpid() % 100000
        self.netns, self.b_name = f"mpips-b{tag}", "hostb"
        self.veth_a, self.veth_b = f"mpa{tag}", f"mpb{tag}"
        subnet = 10 + tag % 200
        self.a_address, self.b_address = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
        self.subnet = f"10.231.{subnet}.0/24"
        self.directory, self.slots = Path(directory), slots
        self.a_name = socket.gethostname()

    def start(self) -> dict[str, str]:
        self.stop()  # a namespace left by a killed run of the same pid
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self.veth_a, "type", "veth", "peer", "name", self.veth_b)
        _run("ip", "link", "set", self.veth_b, "netns", self.netns)
        _run("ip", "addr", "add", f"{self.a_address}/24", "dev", self.veth_a)
        _run("ip", "link", "set", self.veth_a, "up")
        for command in (("ip", "addr", "add", f"{self.b_address}/24", "dev", self.veth_b),
                        ("ip", "link", "set", self.veth_b, "up"), ("ip", "link", "set", "lo", "up")):
            _run("ip", "netns", "exec", self.netns, *command)
        self.directory.mkdir(parents=True, exist_ok=True)
        agent = self.directory / "agent"
        agent.write_text(AGENT.format(b_address=self.b_address, netns=self.netns,
                                      b_name=self.b_name))
        agent.chmod(0o755)
        hostfile = self.directory / "hostfile"
        hostfile.write_text(f"{self.a_name} slots={self.slots}\n"
                            f"{self.b_address} slots={self.slots}\n")
        spanning = self.spanning(hostfile, agent)
        self.spanning_names = set(spanning)
        return {**spanning,
                "OMPI_MCA_btl": "tcp,self",
                "OMPI_MCA_osc": "sm,rdma", "OMPI_MCA_osc_sm_priority": "0",
                "MPIPS_RMA": "get", "MPIPS_TEST_HOSTS": "2"}

    def spanning(self, hostfile: Path, agent: Path) -> dict[str, str]:
        """The settings that make a launch span both hosts (the rest of ``start``'s are
        the transports of any cross-node launch)."""
        return {"PRTE_MCA_prte_default_hostfile": str(hostfile),
                "PRTE_MCA_plm_ssh_agent": str(agent),
                "PRTE_MCA_prte_if_include": self.subnet,
                "PRTE_MCA_rmaps_default_mapping_policy": "node",
                "OMPI_MCA_btl_tcp_if_include": self.subnet}

    def pids_on_b(self) -> list[int]:
        """The processes in host B's namespace: its daemon and ranks."""
        proc = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True,
                              text=True)
        return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []

    def lose_b(self) -> float:
        """SIGKILL everything on host B at once, as if the node died; returns the time
        (time.monotonic) of the kill."""
        when = time.monotonic()
        for pid in self.pids_on_b():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return when

    def cut_link(self) -> float:
        """Take host B's end of the link down: its packets vanish without a word, as when a
        node loses power; returns the time (time.monotonic) of the cut."""
        when = time.monotonic()
        _run("ip", "netns", "exec", self.netns, "ip", "link", "set", self.veth_b, "down")
        return when

    def mend_link(self) -> None:
        """Bring host B's end of the link up again (after :meth:`cut_link`)."""
        _run("ip", "netns", "exec", self.netns, "ip", "link", "set", self.veth_b, "up")

    def stop(self) -> None:
        self.lose_b()
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth_a], capture_output=True)
