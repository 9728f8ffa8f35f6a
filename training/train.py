"""Train a model from a YAML config: `jaxmd-efield-train` (jaxmd_efield/cli/train.py, whose
--help explains the config), as a script.

    python training/train.py --config training/configs/ethanol_gfn2.yaml [--out DIR] [--resume]
        [--steps N] [--export PATH]
"""

from jaxmd_efield.cli.train import check_config, cli, main  # noqa: F401 (tests use main, check_config)

if __name__ == "__main__":
    cli()
