"""Make the ethanol-in-a-field reference data set of the shipped model with GFN2-xTB (tblite):
`jaxmd-efield-make-data` (jaxmd_efield/cli/make_data.py) with training/configs/ethanol_data.yaml
unless --config is given. Every option of that tool works here.

    python training/make_ethanol_data.py [--out PATH] [--n-trajectories N] [--workers 1]
"""

import os
import sys

from jaxmd_efield.cli.make_data import run_trajectory  # noqa: F401 (tests sample held-out trajectories)
from jaxmd_efield.cli import make_data

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "ethanol_data.yaml")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    return make_data.main(argv if "--config" in argv else ["--config", DEFAULT_CONFIG, *argv])


if __name__ == "__main__":
    main()
