"""Molecular dynamics in a time-dependent field, recorded to HDF5.

`run` drives jax_md integrators (NVT Nose-Hoover, NVT Langevin, NVE) in jitted chunks of
`lax.scan`. The step from t to t+dt evaluates the force after the drift, at t+dt, so it gets
F(t+dt); initialisation gets F(0). Every `record_every` steps a frame is recorded: positions,
velocities, potential/kinetic/total energy, temperature, field and dipole, with the dipole and
energy taken from the same reverse pass as the step's forces (`response.energy_forces_dipole`),
plus any attached observables (e.g. Born charges from a tensor model).

One force pass per step: jax_md's apply functions keep only the forces of their force call, so
the step is assembled here from jax_md's own pieces (`momentum_step`, `position_step`,
`nose_hoover_chain`, `stochastic_step`) in jax_md's order, with one force call that also
returns the energy and dipole.

Neighbor lists: after each chunk the list's overflow flag is checked; on overflow the chunk is
discarded, the list reallocated from the chunk's starting positions with more room, and the
chunk run again from its start, so no frame is lost or duplicated. Frames are appended to the
HDF5 file and flushed after every chunk: a run killed midway leaves a valid file holding every
finished chunk. A list that still overflows after `MAX_REALLOCATIONS` reallocations of the same
chunk stops the run with a RuntimeError.

Non-finite dynamics: the scan carries the first step whose positions, momenta or energy are not
finite (computed with a list that had not overflowed); the run then writes the frames before
that step and stops with a FloatingPointError naming it.
"""

import functools
import os

import h5py
import jax
import jax.numpy as jnp
import numpy as np
from jax_md import quantity
from jax_md import simulate as jmd
from tqdm import tqdm

from jaxmd_efield import response, units

INTEGRATORS = ("nvt_nose_hoover", "nvt_langevin", "nve")
FRAME_UNITS = dict(time="fs", positions="Å", velocities="Å/fs", potential_energy="eV",
                   kinetic_energy="eV", total_energy="eV", temperature="K", field="V/Å",
                   dipole="e·Å")
#: reallocations of the neighbor list for one chunk before `run` gives up.
MAX_REALLOCATIONS = 5


def _integrator(kind, energy_fn, shift_fn, dt, kT, tau, gamma):
    """(init_fn, step_fn): jax_md's init, and a step whose single force call also returns
    (energy, dipole). Times in jax_md units."""
    observe = response.energy_forces_dipole(energy_fn)

    def verlet_core(state, pre_position, kw):
        """momentum half step, drift (pre_position: the drift between), force, momentum half."""
        state = jmd.momentum_step(state, dt / 2)
        state = pre_position(state)
        energy, forces, dipole = observe(state.position, **kw)
        return jmd.momentum_step(state.set(force=forces), dt / 2), (energy, dipole)

    drift = lambda step: lambda state, kw: jmd.position_step(state, shift_fn, step, **kw)  # noqa: E731
    if kind == "nve":
        init_fn, _ = jmd.nve(energy_fn, shift_fn, dt)

        def step_fn(state, **kw):
            return verlet_core(state, lambda s: drift(dt)(s, kw), kw)
    elif kind == "nvt_nose_hoover":
        init_fn, _ = jmd.nvt_nose_hoover(energy_fn, shift_fn, dt, kT, tau=tau)
        chain = jmd.nose_hoover_chain(dt, 5, 2, 3, tau)  # jax_md's defaults

        def step_fn(state, **kw):
            c = chain.update_mass(state.chain, kT)
            p, c = chain.half_step(state.momentum, c, kT)
            state, aux = verlet_core(state.set(momentum=p), lambda s: drift(dt)(s, kw), kw)
            c = c.set(kinetic_energy=jmd.kinetic_energy(state))
            p, c = chain.half_step(state.momentum, c, kT)
            return state.set(momentum=p, chain=c), aux
    elif kind == "nvt_langevin":
        init_fn, _ = jmd.nvt_langevin(energy_fn, shift_fn, dt, kT, gamma=gamma)

        def step_fn(state, **kw):
            def baoab_drift(s):  # drift, friction + noise, drift (BAOAB, as jax_md)
                s = drift(dt / 2)(s, kw)
                return drift(dt / 2)(jmd.stochastic_step(s, dt, kT, gamma), kw)
            return verlet_core(state, baoab_drift, kw)
    else:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, got {kind!r}")
    return init_fn, step_fn


def run(energy_fn, shift_fn, neighbor_fn, R, masses, field_fn, *, steps, dt_fs=0.5,
        record_every=10, integrator="nvt_nose_hoover", temperature_K=300.0, key=None,
        tau_fs=None, friction_per_fs=0.01, frames_per_chunk=50, observables=None,
        output=None, attrs=None, progress=True, neighbors=None, momenta=None):
    """Run MD in the field protocol `field_fn(t_fs) -> (3,) V/Å` and record frames.

    energy_fn(R, neighbor=..., field=...) -> eV (e.g. a builder's energy_fn with params bound);
    shift_fn from jax_md.space; neighbor_fn from the builder; R (N, 3) Å; masses (N,) amu.
    steps: MD steps (rounded up to whole frames); record_every: steps between frames.
    observables: {name: fn(R, neighbor, field) -> array}, recorded with every frame (neighbor:
    the energy model's list; an observable with another cutoff brings its own).
    output: HDF5 path (written as the run goes) or None. neighbors: a neighbor list to start
    from (updated to R first). momenta: initial momenta (N, 3) in amu·Å/fs, else drawn at
    temperature_K. Returns a dict of numpy arrays (the frames) with `final_state` (the state at
    the last frame), `neighbors` and `reallocations`. Raises FloatingPointError at the first step
    whose positions, momenta or energy are not finite (the frames before it written), and
    RuntimeError when the neighbor list keeps overflowing (`MAX_REALLOCATIONS`).
    """
    if steps < record_every or record_every < 1:
        raise ValueError("need steps >= record_every >= 1")
    masses = jnp.asarray(masses, dtype=jnp.asarray(R).dtype)
    if masses.shape != (len(R),):
        raise ValueError(f"masses must have shape ({len(R)},), got {masses.shape}")
    dt = dt_fs * units.FS
    kT = temperature_K * units.KB
    tau = (100 * dt_fs if tau_fs is None else tau_fs) * units.FS
    init_fn, step_fn = _integrator(integrator, energy_fn, shift_fn, dt, kT, tau,
                                   friction_per_fs / units.FS)
    observables = observables or {}
    key = jax.random.PRNGKey(0) if key is None else key
    nbrs = neighbor_fn.allocate(R) if neighbors is None else neighbors.update(R)
    reallocations = 0
    if bool(nbrs.did_buffer_overflow):
        nbrs, reallocations = neighbor_fn.allocate(R), 1
    momenta = None if momenta is None else jnp.asarray(momenta) / units.FS
    state = init_fn(key, jnp.asarray(R), mass=masses, momenta=momenta, neighbor=nbrs,
                    field=field_fn(0.0), kT=kT)

    def frame(carry, frame_index):
        """record_every steps, then the frame's record."""
        def one_step(carry, step_index):
            state, nbrs, _, first_bad = carry
            field = field_fn((step_index + 1) * dt_fs)
            state, (energy, dipole) = step_fn(state, neighbor=nbrs, field=field)
            bad = ~(jnp.isfinite(energy) & jnp.all(jnp.isfinite(state.position))
                    & jnp.all(jnp.isfinite(state.momentum))) & (nbrs.did_buffer_overflow == 0)
            first_bad = jnp.where(bad & (first_bad < 0), step_index + 1, first_bad)
            return (state, nbrs.update(state.position), (energy, dipole), first_bad), None

        first = frame_index * record_every
        (state, nbrs, (energy, dipole), first_bad), _ = jax.lax.scan(
            one_step, carry, first + jnp.arange(record_every))
        t = (first + record_every) * dt_fs
        field = field_fn(t)
        kinetic = quantity.kinetic_energy(momentum=state.momentum, mass=state.mass)
        record = dict(time=t, positions=state.position, velocities=state.velocity * units.FS,
                      potential_energy=energy, kinetic_energy=kinetic, total_energy=energy + kinetic,
                      temperature=quantity.temperature(momentum=state.momentum, mass=state.mass) / units.KB,
                      field=field, dipole=dipole,
                      **{name: fn(state.position, nbrs, field) for name, fn in observables.items()})
        return (state, nbrs, (energy, dipole), first_bad), record

    @functools.partial(jax.jit, static_argnums=3)
    def chunk(state, nbrs, first_frame, n):
        """n frames from first_frame (n static: the last chunk may be shorter, one more compile),
        and the first non-finite step (-1: none)."""
        aux0 = (jnp.zeros((), state.position.dtype), jnp.zeros(3, state.position.dtype))
        first_bad = jnp.array(-1)
        (state, nbrs, _, first_bad), records = jax.lax.scan(
            frame, (state, nbrs, aux0, first_bad), first_frame + jnp.arange(n))
        return state, nbrs, records, first_bad

    n_frames = -(-steps // record_every)
    writer = _TrajectoryWriter(output, attrs) if output else None
    records, done, retries = [], 0, 0
    bar = tqdm(total=n_frames * record_every, disable=not progress, unit="step", desc=integrator)
    try:
        while done < n_frames:
            keep = min(frames_per_chunk, n_frames - done)
            new_state, new_nbrs, chunk_records, first_bad = chunk(state, nbrs, done, keep)
            bad_step = int(first_bad)
            if bad_step >= 0:  # record the frames before it, then stop
                good = (bad_step - 1) // record_every - done
                if writer and good:
                    writer.append({k: np.asarray(v[:good]) for k, v in chunk_records.items()})
                written = f" (the {done + good} frames before it are in {output})" if output else ""
                raise FloatingPointError(
                    f"non-finite positions, momenta or energy at step {bad_step} "
                    f"(t = {bad_step * dt_fs:g} fs) of the {integrator} run{written}: forces too "
                    "large for dt_fs, or a model far outside its training data?")
            if bool(new_nbrs.did_buffer_overflow):
                if retries == MAX_REALLOCATIONS:
                    raise RuntimeError(
                        f"the neighbor list still overflows after {retries} reallocations with "
                        f"more room for the chunk from t = {done * record_every * dt_fs:g} fs: the "
                        "system is probably exploding or collapsing (check dt_fs and the forces); "
                        "otherwise give the list more room (a larger capacity_multiplier of the "
                        "neighbor list) or run shorter chunks (frames_per_chunk)")
                retries += 1
                reallocations += 1
                nbrs = neighbor_fn.allocate(state.position, extra_capacity=8 * reallocations)
                continue
            state, nbrs, retries = new_state, new_nbrs, 0
            chunk_records = {k: np.asarray(v) for k, v in chunk_records.items()}
            if writer:
                writer.append(chunk_records)
            records.append(chunk_records)
            done += keep
            bar.update(keep * record_every)
            bar.set_postfix(T=f"{chunk_records['temperature'][-1]:.0f} K")
    finally:
        bar.close()
        if writer:
            writer.close()
    out = {k: np.concatenate([r[k] for r in records]) for k in records[0]}
    return dict(out, final_state=state, neighbors=nbrs, reallocations=reallocations)


class _TrajectoryWriter:
    """Appends frames to resizable HDF5 data sets and flushes after every chunk."""

    def __init__(self, path, attrs):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = h5py.File(path, "w")
        for k, v in (attrs or {}).items():
            self.file.attrs[k] = v if isinstance(v, (str, int, float, np.ndarray)) else repr(v)
        self.file.attrs["frames"] = 0

    def append(self, records):
        n = len(records["time"])
        for key, value in records.items():
            if key not in self.file:
                self.file.create_dataset(key, data=value, maxshape=(None,) + value.shape[1:],
                                         chunks=True)
                self.file[key].attrs["units"] = FRAME_UNITS.get(key, "")
            else:
                dset = self.file[key]
                dset.resize(dset.shape[0] + n, axis=0)
                dset[-n:] = value
        self.file.attrs["frames"] = int(self.file["time"].shape[0])
        self.file.flush()

    def close(self):
        self.file.close()


def read_trajectory(path):
    """(frames: dict of numpy arrays, attrs: dict) of a trajectory written by `run`.
    ValueError if the file is not one (truncated, corrupt, or another HDF5 file)."""
    try:
        with h5py.File(path, "r") as f:
            frames = {k: f[k][: f.attrs["frames"]] for k in f.keys()}
            return frames, dict(f.attrs)
    except FileNotFoundError:
        raise
    except (OSError, KeyError) as err:
        raise ValueError(f"{path} is truncated or corrupt, or not a trajectory written by "
                         f"simulate.run: {err}") from err
