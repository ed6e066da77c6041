"""How many rounds the random-moment drills run (kills, signals, stop requests at random
moments): a few by default, enough to cross every path on each run of ``make test``, and the
issues' full counts with ``MPIPS_DRILLS=full`` (about 10-20 s a round on two cores). The
tests that use it are marked ``slow``."""
import os

FULL = os.environ.get("MPIPS_DRILLS", "").lower() == "full"


def rounds(quick: int, full: int, variable: str | None = None) -> int:
    """Rounds of one drill: ``$variable`` if set, else ``full`` under MPIPS_DRILLS=full, else
    ``quick``."""
    if variable and os.environ.get(variable):
        return int(os.environ[variable])
    return full if FULL else quick
