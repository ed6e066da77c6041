"""For test programs: a rank that kills itself (SIGKILL) after a delay, from a thread."""
from __future__ import annotations

import os
import signal
import sys
import time


def die_later(delay: float) -> None:
    """Sleep ``delay`` seconds, print ``DYING <unix time>`` in one write (the main thread
    prints too), then SIGKILL this process."""
    time.sleep(delay)
    sys.stdout.write(f"DYING {time.time():.6f}\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
