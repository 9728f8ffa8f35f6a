"""jaxmd-efield: E(3)-equivariant machine-learned models for atoms in electric fields,
native to JAX-MD. Units: eV, Å, e, V/Å; dipole mu = -dE/dF (see DESIGN.md)."""

from jaxmd_efield import graph, response
from jaxmd_efield.calculator import EFieldCalculator
from jaxmd_efield.checkpoint import Model, load_model, load_pretrained
from jaxmd_efield.energy import efield_nequip_neighbor_list
from jaxmd_efield.evaluate import predict
from jaxmd_efield.nn.nequip import EFieldNequIPConfig
from jaxmd_efield.tensor import born_dielectric_neighbor_list

__version__ = "0.1.0"
__all__ = ["EFieldCalculator", "EFieldNequIPConfig", "Model", "born_dielectric_neighbor_list",
           "efield_nequip_neighbor_list", "graph", "load_model", "load_pretrained",
           "predict", "response"]
