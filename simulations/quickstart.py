"""Quickstart: NVT of ethanol in a time-varying field with jax_md, recording the dipole.

With the shipped ethanol-gfn2 model; any model's config and params drop in the same way.
Run: python simulations/quickstart.py [--steps 1000]
"""
import argparse
import functools

import jax
import jax.numpy as jnp
from ase.build import molecule
from jax_md import simulate, space

import jaxmd_efield as jef
from jaxmd_efield import units


def main(steps):
    mol = molecule("CH3CH2OH")
    R = jnp.asarray(mol.positions)
    displacement, shift = space.free()
    model = jef.load_pretrained("ethanol-gfn2")  # or your own: jef.load_model("model.npz")
    neighbor_fn, _, energy_fn = jef.efield_nequip_neighbor_list(
        displacement, 10.0, mol.numbers, model.config, disable_cell_list=True)
    nbrs = neighbor_fn.allocate(R)
    energy = functools.partial(energy_fn, model.params)

    dt, kT = 0.5 * units.FS, 300 * units.KB
    field = lambda t: 0.05 * jnp.sin(2 * jnp.pi * t / (100 * units.FS)) * jnp.array([0, 0, 1.0])
    init, apply = simulate.nvt_nose_hoover(energy, shift, dt, kT)
    observe = jef.response.energy_forces_dipole(energy)  # energy, forces, dipole: one pass

    def step(carry, t):
        state, nbrs = carry
        state = apply(state, neighbor=nbrs, field=field(t))  # the field at the step's end
        nbrs = nbrs.update(state.position)
        return (state, nbrs), observe(state.position, field=field(t), neighbor=nbrs)[2]

    state = init(jax.random.PRNGKey(1), R, mass=jnp.asarray(mol.get_masses()), neighbor=nbrs,
                 field=field(0.0))
    times = dt * jnp.arange(1, steps + 1)
    (state, nbrs), dipoles = jax.jit(lambda c: jax.lax.scan(step, c, times))((state, nbrs))
    return dipoles, bool(nbrs.did_buffer_overflow)


if __name__ == "__main__":
    from jaxmd_efield.compilation import use_persistent_cache

    use_persistent_cache()  # a second run loads compiled programs instead of compiling
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    steps = parser.parse_args().steps
    dipoles, overflow = main(steps)
    print(f"{steps} steps of 0.5 fs, neighbor list overflow: {overflow}")
    print("dipole (e·Å) at the first and last step:", dipoles[0], dipoles[-1])
