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

Ensembles (`replicas=K`): the state, neighbor lists and fields carry a leading replica axis and
each step is vmapped over it; one overflowing replica reruns the chunk for all.

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
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax_md import quantity
from jax_md import simulate as jmd
from tqdm import tqdm

from jaxmd_efield import response, units

INTEGRATORS = ("nvt_nose_hoover", "nvt_langevin", "nve")
FRAME_UNITS = dict(time="fs", positions="Å", velocities="Å/fs", potential_energy="eV",
                   kinetic_energy="eV", total_energy="eV", temperature="K", field="V/Å",
                   dipole="e·Å")
#: the units of the frames `record_response=True` adds
RESPONSE_UNITS = dict(polarizability="e·Å²/V", born_charges="e")
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


def _stack(trees):
    """One pytree with a leading axis from a list of pytrees of the same structure."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def _replica_neighbors(neighbor_fn, positions, extra_capacity=0, template=None):
    """Neighbor lists of every replica's positions (K, N, 3), stacked: each replica's list made
    from one template (the largest allocation over the replicas, or `template`), so all share
    their static capacity."""
    if template is None:
        lists = [neighbor_fn.allocate(R, extra_capacity=extra_capacity) for R in positions]
        template = max(lists, key=lambda nbrs: nbrs.idx.size)
    return _stack([template.update(R) for R in positions])


def _shard_replicas(tree, K):
    """`tree` (leaves with a leading replica axis K) split over the replica axis of a mesh of
    all devices (jax.sharding), when there are several and they divide K; else unchanged. The
    jitted chunk then runs each device's replicas there (no communication: replicas are
    independent); multi-host runs call jax.distributed.initialize() first."""
    devices = jax.devices()
    if len(devices) == 1 or K % len(devices):
        return tree
    sharding = NamedSharding(Mesh(np.array(devices), ("replicas",)), PartitionSpec("replicas"))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)


def run(energy_fn, shift_fn, neighbor_fn, R, masses, field_fn, *, steps, dt_fs=0.5,
        record_every=10, integrator="nvt_nose_hoover", temperature_K=300.0, key=None,
        tau_fs=None, friction_per_fs=0.01, frames_per_chunk=50, observables=None,
        output=None, attrs=None, progress=True, neighbors=None, momenta=None, replicas=None,
        field_scale=None, record_response=False):
    """Run MD in the field protocol `field_fn(t_fs) -> (3,) V/Å` and record frames.

    energy_fn(R, neighbor=..., field=...) -> eV (e.g. a builder's energy_fn with params bound);
    shift_fn from jax_md.space; neighbor_fn from the builder; R (N, 3) Å; masses (N,) amu.
    steps: MD steps (rounded up to whole frames); record_every: steps between frames.
    observables: {name: fn(R, neighbor, field) -> array}, recorded with every frame (neighbor:
    the energy model's list; an observable with another cutoff brings its own).
    record_response: True also records the polarizability (3, 3) e·Å²/V and Born charges
    (N, 3, 3) e with every frame, from one extra forward-over-reverse pass per frame (the steps
    between frames cost what they cost without it); "polarizability" records the polarizability
    only, from a cheaper pass (no per-atom field derivatives of the forces): all that
    `spectra.raman_from_polarizabilities` needs.
    output: HDF5 path (written as the run goes) or None. neighbors: a neighbor list to start
    from (updated to R first). momenta: initial momenta (N, 3) in amu·Å/fs, else drawn at
    temperature_K.

    Ensembles: `replicas=K` runs K independent trajectories in one jitted program (jax.vmap
    over a replica axis), each with its own random stream (`key` split K ways), initial momenta
    (drawn, or `momenta` (K, N, 3)) and start (R (N, 3) for all or (K, N, 3)); `field_fn` may be
    a list of K protocols (one per replica) and `field_scale` (K,) multiplies each replica's
    field (e.g. a field-strength scan in one run). Every replica gets what a single run gets
    (F(t+dt) per step, one force pass per step); if any replica's neighbor list overflows, the
    chunk is rerun for all with more room. Frames then carry a leading replica axis (K, frames,
    ...) in the result and the HDF5 file (`time` stays (frames,)). With several devices
    (jax.devices()) that divide K, the replicas are split over them (`jax.sharding`).

    Returns a dict of numpy arrays (the frames) with `final_state` (the state at the last
    frame), `neighbors` and `reallocations`. Raises FloatingPointError at the first step whose
    positions, momenta or energy are not finite in any replica (the frames before it written),
    and RuntimeError when the neighbor list keeps overflowing (`MAX_REALLOCATIONS`).
    """
    if steps < record_every or record_every < 1:
        raise ValueError("need steps >= record_every >= 1")
    if record_response not in (False, True, "polarizability"):
        raise ValueError(f"record_response must be False, True or 'polarizability', got {record_response!r}")
    born_charges = record_response is True
    K = 1 if replicas is None else int(replicas)
    if K < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    R = jnp.asarray(R)
    positions = jnp.broadcast_to(R, (K, *R.shape[-2:])) if R.ndim == 2 else R
    if positions.shape[0] != K or R.ndim not in (2, 3) or (R.ndim == 3 and replicas is None):
        raise ValueError(f"R must be (N, 3) or, with replicas=K, (K, N, 3); got {R.shape} for "
                         f"replicas={replicas}")
    masses = jnp.asarray(masses, dtype=R.dtype)
    if masses.shape != (R.shape[-2],):
        raise ValueError(f"masses must have shape ({R.shape[-2]},), got {masses.shape}")
    protocols = list(field_fn) if isinstance(field_fn, (list, tuple)) else [field_fn] * K
    scale = jnp.ones(K, R.dtype) if field_scale is None else jnp.asarray(field_scale, R.dtype)
    if len(protocols) != K or scale.shape != (K,):
        raise ValueError(f"with replicas={replicas}, field_fn is one protocol or a list of {K}, "
                         f"and field_scale has shape ({K},); got {len(protocols)} protocols and "
                         f"field_scale of shape {scale.shape}")

    def fields(t):
        """(K, 3) the field of every replica at time t (fs)."""
        return scale[:, None] * jnp.stack([jnp.asarray(p(t), R.dtype) for p in protocols])

    dt = dt_fs * units.FS
    kT = temperature_K * units.KB
    tau = (100 * dt_fs if tau_fs is None else tau_fs) * units.FS
    init_fn, step_fn = _integrator(integrator, energy_fn, shift_fn, dt, kT, tau,
                                   friction_per_fs / units.FS)
    observables = observables or {}
    key = jax.random.PRNGKey(0) if key is None else key
    keys = key[None] if replicas is None else jax.random.split(key, K)
    template = None if neighbors is None else neighbors.update(positions[0])
    nbrs = _replica_neighbors(neighbor_fn, positions, template=template)
    reallocations = 0
    if bool(jnp.any(nbrs.did_buffer_overflow)):
        nbrs, reallocations = _replica_neighbors(neighbor_fn, positions), 1
    if momenta is not None:
        momenta = jnp.broadcast_to(jnp.asarray(momenta, R.dtype), positions.shape) / units.FS
    state = jax.vmap(lambda k, R_, p, nb, F: init_fn(k, R_, mass=masses, momenta=p, neighbor=nb,
                                                     field=F, kT=kT),
                     in_axes=(0, 0, None if momenta is None else 0, 0, 0))(
        keys, positions, momenta, nbrs, fields(0.0))
    if replicas is not None:
        state, nbrs = _shard_replicas((state, nbrs), K)
    step = jax.vmap(lambda state, nbrs, field: step_fn(state, neighbor=nbrs, field=field))
    update = jax.vmap(lambda nbrs, R_: nbrs.update(R_))

    def frame(carry, frame_index):
        """record_every steps, then the frame's record."""
        def one_step(carry, step_index):
            state, nbrs, _, first_bad = carry
            state, (energy, dipole) = step(state, nbrs, fields((step_index + 1) * dt_fs))
            bad = ~(jnp.isfinite(energy) & jnp.all(jnp.isfinite(state.position), axis=(1, 2))
                    & jnp.all(jnp.isfinite(state.momentum), axis=(1, 2))) & (nbrs.did_buffer_overflow == 0)
            first_bad = jnp.where(bad & (first_bad < 0), step_index + 1, first_bad)
            return (state, update(nbrs, state.position), (energy, dipole), first_bad), None

        first = frame_index * record_every
        (state, nbrs, (energy, dipole), first_bad), _ = jax.lax.scan(
            one_step, carry, first + jnp.arange(record_every))
        t = (first + record_every) * dt_fs
        field = fields(t)
        kinetic = jax.vmap(quantity.kinetic_energy)(momentum=state.momentum, mass=state.mass)
        temperature = jax.vmap(quantity.temperature)(momentum=state.momentum, mass=state.mass)
        record = dict(positions=state.position, velocities=state.velocity * units.FS,
                      potential_energy=energy, kinetic_energy=kinetic, total_energy=energy + kinetic,
                      temperature=temperature / units.KB, field=field, dipole=dipole,
                      **{name: jax.vmap(fn)(state.position, nbrs, field)
                         for name, fn in observables.items()})
        if record_response:
            linear = jax.vmap(lambda R_, nb, F: response.field_response(energy_fn, born_charges)(
                R_, field=F, neighbor=nb))(state.position, nbrs, field)
            record.update({key: linear[key] for key in RESPONSE_UNITS if key in linear})
        return (state, nbrs, (energy, dipole), first_bad), (t, record)

    @functools.partial(jax.jit, static_argnums=3)
    def chunk(state, nbrs, first_frame, n):
        """n frames from first_frame (n static: the last chunk may be shorter, one more compile),
        and each replica's first non-finite step (-1: none)."""
        aux0 = (jnp.zeros(K, R.dtype), jnp.zeros((K, 3), R.dtype))
        first_bad = jnp.full(K, -1)
        (state, nbrs, _, first_bad), (times, records) = jax.lax.scan(
            frame, (state, nbrs, aux0, first_bad), first_frame + jnp.arange(n))
        records = {k: jnp.swapaxes(v, 0, 1) for k, v in records.items()}  # (K, n, ...)
        return state, nbrs, dict(records, time=times), first_bad

    def unbatched(records):
        """Frames as returned and written: without the replica axis for a single run."""
        return records if replicas is not None else \
            {k: v if k == "time" else v[0] for k, v in records.items()}

    n_frames = -(-steps // record_every)
    writer = _TrajectoryWriter(output, dict(attrs or {}, **({} if replicas is None else
                                                            dict(replicas=K)))) if output else None
    records, done, retries = [], 0, 0
    bar = tqdm(total=n_frames * record_every, disable=not progress, unit="step",
               desc=integrator if replicas is None else f"{integrator} x {K} replicas")
    try:
        while done < n_frames:
            keep = min(frames_per_chunk, n_frames - done)
            new_state, new_nbrs, chunk_records, first_bad = chunk(state, nbrs, done, keep)
            first_bad = np.asarray(first_bad)
            if np.any(first_bad >= 0):  # record the frames before it, then stop
                bad_step = int(first_bad[first_bad >= 0].min())
                good = (bad_step - 1) // record_every - done
                if writer and good:
                    writer.append(unbatched({k: np.asarray(v[:good] if k == "time" else v[:, :good])
                                             for k, v in chunk_records.items()}))
                written = f" (the {done + good} frames before it are in {output})" if output else ""
                which = "" if replicas is None else \
                    f" of replica {int(np.flatnonzero(first_bad == bad_step)[0])}"
                raise FloatingPointError(
                    f"non-finite positions, momenta or energy at step {bad_step} "
                    f"(t = {bad_step * dt_fs:g} fs){which} of the {integrator} run{written}: "
                    "forces too large for dt_fs, or a model far outside its training data?")
            if bool(jnp.any(new_nbrs.did_buffer_overflow)):
                if retries == MAX_REALLOCATIONS:
                    raise RuntimeError(
                        f"the neighbor list still overflows after {retries} reallocations with "
                        f"more room for the chunk from t = {done * record_every * dt_fs:g} fs: the "
                        "system is probably exploding or collapsing (check dt_fs and the forces); "
                        "otherwise give the list more room (a larger capacity_multiplier of the "
                        "neighbor list) or run shorter chunks (frames_per_chunk)")
                retries += 1
                reallocations += 1
                nbrs = _replica_neighbors(neighbor_fn, state.position, 8 * reallocations)
                nbrs = nbrs if replicas is None else _shard_replicas(nbrs, K)
                continue
            state, nbrs, retries = new_state, new_nbrs, 0
            chunk_records = unbatched({k: np.asarray(v) for k, v in chunk_records.items()})
            if writer:
                writer.append(chunk_records)
            records.append(chunk_records)
            done += keep
            bar.update(keep * record_every)
            bar.set_postfix(T=f"{np.mean(chunk_records['temperature'][..., -1]):.0f} K")
    finally:
        bar.close()
        if writer:
            writer.close()
    axis = {k: 0 if k == "time" or replicas is None else 1 for k in records[0]}
    out = {k: np.concatenate([r[k] for r in records], axis=axis[k]) for k in records[0]}
    if replicas is None:
        state, nbrs = (jax.tree_util.tree_map(lambda x: x[0], tree) for tree in (state, nbrs))
    return dict(out, final_state=state, neighbors=nbrs, reallocations=reallocations)


class _TrajectoryWriter:
    """Appends frames to resizable HDF5 data sets (along the frame axis: 0, or 1 behind a
    replica axis) and flushes after every chunk."""

    def __init__(self, path, attrs):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = h5py.File(path, "w")
        for k, v in (attrs or {}).items():
            self.file.attrs[k] = v if isinstance(v, (str, int, float, np.ndarray)) else repr(v)
        self.file.attrs["frames"] = 0
        self.axis = 1 if "replicas" in self.file.attrs else 0

    def append(self, records):
        n = len(records["time"])
        for key, value in records.items():
            axis = 0 if key == "time" else self.axis
            if key not in self.file:
                maxshape = list(value.shape)
                maxshape[axis] = None
                self.file.create_dataset(key, data=value, maxshape=tuple(maxshape), chunks=True)
                self.file[key].attrs["units"] = {**FRAME_UNITS, **RESPONSE_UNITS}.get(key, "")
            else:
                dset = self.file[key]
                dset.resize(dset.shape[axis] + n, axis=axis)
                dset[(slice(None),) * axis + (slice(-n, None),)] = value
        self.file.attrs["frames"] = int(self.file["time"].shape[0])
        self.file.flush()

    def close(self):
        self.file.close()


def read_trajectory(path):
    """(frames: dict of numpy arrays, attrs: dict) of a trajectory written by `run`; frames of
    an ensemble (attrs["replicas"] = K) are (K, frames, ...), `time` (frames,).
    ValueError if the file is not one (truncated, corrupt, or another HDF5 file)."""
    try:
        with h5py.File(path, "r") as f:
            n = f.attrs["frames"]
            ensemble = "replicas" in f.attrs
            frames = {k: f[k][:, :n] if ensemble and k != "time" else f[k][:n] for k in f.keys()}
            return frames, dict(f.attrs)
    except FileNotFoundError:
        raise
    except (OSError, KeyError) as err:
        raise ValueError(f"{path} is truncated or corrupt, or not a trajectory written by "
                         f"simulate.run: {err}") from err
