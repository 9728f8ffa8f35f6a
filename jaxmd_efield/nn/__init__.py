"""Network code: radial bases, interaction layers, readout heads and the networks
built from them. Nothing here knows about jax_md; the builders in
:mod:`jaxmd_efield.energy` turn neighbor lists into the edge arrays used here."""

from jaxmd_efield.nn.nequip import EFieldNequIP, EFieldNequIPConfig

__all__ = ["EFieldNequIP", "EFieldNequIPConfig"]
