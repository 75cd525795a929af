"""Run an ablation table: `python ablations/run.py table6` (see --help)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from unisemi.ablation.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
