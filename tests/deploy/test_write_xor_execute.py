"""deploy/stormd.service sets MemoryDenyWriteExecute=yes: no memory page of the daemon (or of
its nats-server child) may be writable and executable at once. Code that generates machine
code at run time breaks under it, so the whole daemon is run here under the kernel's own
version of that rule: prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (Linux 6.3+, prctl(2)),
which systemd 254 and later use for MemoryDenyWriteExecute= where the kernel has it (older
systemd, such as Debian 12's 252, installs a seccomp filter to the same effect). The rule is
inherited by child processes and kept across execve. Skipped on kernels without it."""

from __future__ import annotations

import ctypes
import errno
import json
import shutil
import subprocess
import sys

import pytest

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1


def deny_write_execute() -> None:
    """preexec_fn: the rule for the child about to exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def kernel_has_mdwe() -> bool:
    probe = subprocess.run([sys.executable, "-c", "pass"], preexec_fn=deny_write_execute,
                           capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or not kernel_has_mdwe(),
    reason="prctl(PR_SET_MDWE) not supported by this kernel (Linux < 6.3)",
)

# A write+execute page, as a run-time code generator (cffi's ffi.callback) needs one.
WX_PROBE = """
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("allowed")
except OSError as exc:
    print("refused", exc.errno)
"""


def test_the_rule_refuses_writable_executable_memory():
    """The rule is in force in the child: the daemon test below means something."""
    free = subprocess.run([sys.executable, "-c", WX_PROBE], capture_output=True, text=True)
    ruled = subprocess.run([sys.executable, "-c", WX_PROBE], capture_output=True, text=True,
                           preexec_fn=deny_write_execute)
    assert free.stdout.strip() == "allowed"
    assert ruled.stdout.strip() == f"refused {errno.EACCES}"


def test_the_daemon_runs_a_storefront_day_without_writable_executable_memory(tmp_path):
    """`stormd demo`: the embedded daemon with its nats-server child, SQLite, every handler,
    RFM and segments (numpy), deliveries and their webhooks, all under the rule."""
    stormd = shutil.which("stormd")
    if stormd is None:
        pytest.skip("the stormd console script is not installed (pip install -e .)")
    run = subprocess.run([stormd, "demo", "--customers", "20", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         preexec_fn=deny_write_execute)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["events"]["processed"] > 0
    assert report["events"]["published_out"]
