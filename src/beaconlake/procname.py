"""Process names, so ``ps``, ``top`` and ``pgrep -x`` tell the processes of ``beaconlake up`` apart.

To the kernel every one of them is ``python``, and the deliverer and the scheduler even share a
command line (multiprocessing's spawn). An operator who must find the process that delivers
the spool, or the one stuck in a convert run, needs a name: ``bl-up`` (the supervisor),
``bl-worker`` (a server worker), ``bl-deliver`` (lake delivery), ``bl-schedule`` (convert and
analyze). The kernel keeps 15 bytes of it in ``/proc/<pid>/comm``; writing there is what
``prctl(PR_SET_NAME)`` does, without a dependency.
"""

from __future__ import annotations

import contextlib

MAX_NAME_BYTES = 15


def set_process_name(name: str) -> None:
    """Best effort: on a system without ``/proc`` the process keeps its name."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(name[:MAX_NAME_BYTES])
