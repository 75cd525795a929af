"""Run an ablation table: `python ablations/run.py table6` (see --help)."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from unisemi.ablation.cli import main  # noqa: E402

if __name__ == "__main__":
    rc = main()
    # Everything is written and Ray is shut down by now. A driver that joined a cluster once
    # crashed with SIGSEGV in the interpreter's teardown after all that (seen in the multi-node
    # test, exit -11 after the table was written), so the exit code would have lied; leave
    # without the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(rc or 0))
