"""``geovae`` / ``python -m geovae``: Ctrl-C and SIGTERM end a command-line run at any moment
(imports included) with one line and exit code 130, after removing the run's temporaries.
The outputs are renamed into place in a critical section during which these signals only set
a flag (`geovae.io.write.signals_deferred`, whichever thread received them); the handler runs
once it is over, so a run leaves either all of its new outputs or the old ones, never a mix."""

from __future__ import annotations

import os

# Before anything loads torch, whose OpenMP runtime reads this once: idle threads sleep
# instead of spinning, so a node shared with other jobs does not collapse (see
# geovae/_threads.py). Only where the user has not chosen a wait policy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import signal  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402


def _interrupted(signum: int, frame: Any) -> None:
    write = sys.modules.get("geovae.io.write")
    done = False
    if write is not None:
        write.remove_live()
        done = bool(write.COMMITTED)
    msg = ("interrupted after the outputs were written" if done else
           "interrupted: no output was written (earlier outputs are untouched)")
    os.write(2, (msg + "\n").encode())
    os._exit(130)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    from geovae.cli import main as cli_main  # typer and rich; each command imports the rest

    cli_main()


if __name__ == "__main__":
    main()
