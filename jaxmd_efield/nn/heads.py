"""Readout heads: per-atom quantities from node features."""

import e3nn_jax as e3nn
import e3nn_jax.haiku as e3hk
import haiku as hk
import jax


class FieldEnergyHead(hk.Module):
    """Per-atom energy with explicit field terms, eV:

        E_i = e_i(h_i) - mu_i(h_i) . F_i - 1/2 F_i . alpha_i(h_i) . F_i

    e_i from an MLP on the scalars, mu_i a 1o vector (e·Å) and alpha_i a 0e + 2e symmetric
    tensor (e·Å²/V) read out linearly. These terms give the dipole and polarizability a
    direct path besides the field dependence of the features themselves.
    """

    def __init__(self, hidden, name=None):
        super().__init__(name=name)
        self.hidden = hidden

    def __call__(self, h, field):
        """h: (N, irreps) node features; field: (N, 1x1o) V/Å. Returns (N,) energies."""
        e0 = e3hk.MultiLayerPerceptron([self.hidden, 1], jax.nn.silu, output_activation=False,
                                       name="scalar_mlp")(h.filter("0e"))
        dipole = e3hk.Linear("1o", force_irreps_out=True, name="dipole")(h)
        field_sq = e3nn.tensor_product(field, field, filter_ir_out=["0e", "2e"])
        polarizability = e3hk.Linear(field_sq.irreps, force_irreps_out=True,
                                     name="polarizability")(h)
        energy = e0 - e3nn.dot(dipole, field) - 0.5 * e3nn.dot(polarizability, field_sq)
        return energy.array[:, 0]
