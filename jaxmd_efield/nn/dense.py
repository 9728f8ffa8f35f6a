"""Equivariant maps as a few dense contractions, on features laid out by degree.

e3nn-jax evaluates an equivariant linear layer chunk by chunk and a tensor product path by path:
hundreds of small operations per interaction block, whose dispatch cost set the speed of a small
molecule (a 9-atom MD step ran ~2500 XLA kernels). Here the same maps are assembled once, at trace
time and from e3nn-jax itself, into a handful of large contractions:

  * features are a dict {l: (..., 2l + 1, C_l)}: for each degree l, the C_l instances of degree l
    of their irreps (both parities, in e3nn's order) as channels, last (the "ir_mul" layout), so
    that an equivariant linear layer is one matmul per degree (`LinearMatrix`);
  * the channelwise ("uvu") tensor product of NequIP, x (x) y with a weight per output irrep, is
    one fused multiply-and-sum per (input group, output degree) (`ChannelwiseProduct`), with
    e3nn's Clebsch-Gordan coefficients and path order.

Parameters are e3nn-haiku's (names, shapes, initialisation): trained models work unchanged, and
`tests/test_dense.py` checks the network against its e3nn-jax formulation.
"""

import functools

import e3nn_jax as e3nn
import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from e3nn_jax._src.linear import FunctionalLinear


#: gather and scatter mode over edges, whose indices are valid atoms (`graph.edges` points padded
#: edges at atom 0, `batch` at the last padding node): XLA then checks no bounds and the backward
#: pass masks nothing (an ethanol MD step ~10-15 % faster)
IN_BOUNDS = jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS


def instance_starts(irreps):
    """{l: e3nn component index of the first component of each instance of degree l}: the
    channels of each degree block, in order."""
    starts, offset = {}, 0
    for mul, ir in e3nn.Irreps(irreps):
        for _ in range(mul):
            starts.setdefault(ir.l, []).append(offset)
            offset += ir.dim
    return {l: np.array(v) for l, v in sorted(starts.items())}


def to_irreps_array(h, irreps):
    """Features by degree (laid out as `irreps`) as an IrrepsArray (N, D)."""
    flat = jnp.concatenate([block.reshape(block.shape[0], -1) for _, block in sorted(h.items())], -1)
    position, offset = np.zeros(e3nn.Irreps(irreps).dim, int), 0
    for l, starts in instance_starts(irreps).items():
        d = 2 * l + 1
        position[starts[None, :] + np.arange(d)[:, None]] = offset + np.arange(d * len(starts)).reshape(d, -1)
        offset += d * len(starts)
    return e3nn.IrrepsArray(irreps, flat[:, position])


@functools.lru_cache(maxsize=None)
def regroup_index(irreps):
    """(regrouped irreps, index): e3nn's `regroup()` (a stable sort by irrep, then merging
    neighbours) of an array laid out as `irreps` is `array[..., index]`."""
    irreps = e3nn.Irreps(irreps)
    order = sorted(range(len(irreps)), key=lambda i: irreps[i].ir)
    slices = irreps.slices()
    index = np.concatenate([np.arange(slices[i].start, slices[i].stop) for i in order] or [np.zeros(0, int)])
    return e3nn.Irreps([irreps[i] for i in order]).simplify(), index


def _matrix_index(lin):
    """Static assembly of a FunctionalLinear's matrix from its flattened, scaled weights:
    (index (D_in, D_out) into [0, weights...], scale (1 + num_weights,)), so that
    matrix = (concat([0], weights) * scale)[index] is one gather."""
    index = np.zeros((lin.irreps_in.dim, lin.irreps_out.dim), int)
    scale, offset = [0.0], 1
    for ins in lin.instructions:
        (mul_in, ir), mul_out = lin.irreps_in[ins.i_in], lin.irreps_out[ins.i_out].mul
        block = np.zeros((mul_in, ir.dim, mul_out, ir.dim), int)
        for m in range(ir.dim):
            block[:, m, :, m] = offset + np.arange(mul_in * mul_out).reshape(mul_in, mul_out)
        index[lin.irreps_in.slices()[ins.i_in], lin.irreps_out.slices()[ins.i_out]] = \
            block.reshape(mul_in * ir.dim, mul_out * ir.dim)
        scale += [ins.path_weight] * (mul_in * mul_out)
        offset += mul_in * mul_out
    return index, np.array(scale)


class LinearMatrix(hk.Module):
    """`e3nn_jax.haiku.Linear(irreps_out, force_irreps_out=..., num_indexed_weights=...)` on
    inputs with irreps `irreps_in`: the same parameters under the same module name, assembled by
    one gather into one matrix per degree, {l: (C_in_l, C_out_l)} (or (num_indexed, C_in_l,
    C_out_l)), acting on the channel axis of features by degree.

    `rows`, `cols`: {l: e3nn component indices of the first component of each input / output
    channel}, to read inputs or write outputs in another channel order (default: the instances
    of each degree in order). Returns (matrices, output irreps, reached): the output irreps are
    `irreps_out` if forced, otherwise those of its irreps that `irreps_in` can reach (e3nn's
    rule); `reached` (D_out,) bool marks the output components that have an input path (the
    others are exactly zero)."""

    def __init__(self, irreps_out, force_irreps_out=False, num_indexed_weights=None, name=None):
        super().__init__(name=name)
        self.irreps_out = e3nn.Irreps(irreps_out)
        self.force_irreps_out = force_irreps_out
        self.num_indexed_weights = num_indexed_weights

    def __call__(self, irreps_in, dtype, rows=None, cols=None):
        regrouped, order = regroup_index(str(e3nn.Irreps(irreps_in)))
        irreps_out = self.irreps_out.simplify()
        if not self.force_irreps_out:
            irreps_out = irreps_out.filter(keep=regrouped)
        lin = FunctionalLinear(regrouped, irreps_out)
        batch = () if self.num_indexed_weights is None else (self.num_indexed_weights,)
        weights = [hk.get_parameter(f"w[{ins.i_in},{ins.i_out}] {lin.irreps_in[ins.i_in]},"
                                    f"{lin.irreps_out[ins.i_out]}", batch + ins.path_shape, dtype,
                                    init=hk.initializers.RandomNormal(ins.weight_std))
                   for ins in lin.instructions]
        index, scale = _matrix_index(lin)
        index = index[np.argsort(order)]  # rows in the layout of irreps_in
        rows = instance_starts(irreps_in) if rows is None else rows
        cols = instance_starts(irreps_out) if cols is None else cols
        flat = jnp.concatenate([jnp.zeros(batch + (1,), dtype)] + [w.reshape(batch + (-1,)) for w in weights], -1)
        flat = flat * jnp.asarray(scale, flat.dtype)
        matrices = {l: flat[..., index[np.ix_(rows[l], cols[l])]] for l in cols if l in rows}
        return matrices, self.irreps_out if self.force_irreps_out else irreps_out, np.asarray(lin.output_mask)


def linear(h, irreps_h, irreps_out, name):
    """`e3nn_jax.haiku.Linear(irreps_out, force_irreps_out=True, name=name)` of features by degree
    with irreps `irreps_h`, as an IrrepsArray (N, irreps_out.dim) (same parameters)."""
    matrices, irreps_out, _ = LinearMatrix(irreps_out, True, name=name)(irreps_h, h[0].dtype)
    batch = h[0].shape[0]
    out = {l: h[l] @ matrices[l] if l in matrices else jnp.zeros((batch, 2 * l + 1, len(starts)), h[0].dtype)
           for l, starts in instance_starts(irreps_out).items()}
    return to_irreps_array(out, irreps_out)


@functools.lru_cache(maxsize=None)
def _product_table(irreps_x, irreps_y, filter_ir_out, with_x):
    """e3nn's product as a table (Dx, Dy, Dz), z = regroup(concat([x.filter(out) * y_0 (with_x),
    tensor_product(x, y, filter_ir_out=out)])), and the irreps of z: e3nn's loop over paths
    (component-normalized Clebsch-Gordan coefficients), in numpy."""
    irreps_x, irreps_y = e3nn.Irreps(irreps_x), e3nn.Irreps(irreps_y)
    keep = {ir for _, ir in e3nn.Irreps(filter_ir_out)}
    shape = (irreps_x.dim, irreps_y.dim)
    chunks = []  # ((mul, ir), table columns (Dx, Dy, mul * dim))
    if with_x:  # x itself, as the path x (x) y_0 (y_0 = 1 for component-normalized harmonics)
        for (mul, ir), sl in zip(irreps_x, irreps_x.slices()):
            if ir in keep:
                block = np.zeros(shape + (mul * ir.dim,))
                block[sl, 0, :] = np.eye(mul * ir.dim)
                chunks.append(((mul, ir), block))
    for (mul1, ir1), sl1 in zip(irreps_x, irreps_x.slices()):
        for (mul2, ir2), sl2 in zip(irreps_y, irreps_y.slices()):
            for ir_out in (ir for ir in ir1 * ir2 if ir in keep):
                cg = np.asarray(e3nn.clebsch_gordan(ir1.l, ir2.l, ir_out.l)) * np.sqrt(ir_out.dim)
                block = np.zeros(shape + (mul1 * mul2 * ir_out.dim,))
                for u in range(mul1):
                    for v in range(mul2):
                        block[sl1.start + u * ir1.dim:sl1.start + (u + 1) * ir1.dim,
                              sl2.start + v * ir2.dim:sl2.start + (v + 1) * ir2.dim,
                              (u * mul2 + v) * ir_out.dim:(u * mul2 + v + 1) * ir_out.dim] = cg
                chunks.append(((mul1 * mul2, ir_out), block))
    regrouped, index = regroup_index(str(e3nn.Irreps([c for c, _ in chunks])))
    return np.concatenate([b for _, b in chunks], axis=2)[:, :, index], regrouped


class ChannelwiseProduct:
    """z = regroup(concat([x.filter(out) (with_x), tensor_product(x, y, filter_ir_out=out)])),
    each output irrep times its own weight: NequIP's message h_j (x) Y(r_ij) with radial weights
    (y: the edge harmonics), or the field coupling h_i (x) F (y: the field, no weights).

    The input channels fall into groups that share their coefficients (same degree, same paths);
    group g reads x as one array (B, 2 l_g + 1, U_g) of the channels whose e3nn components (first
    of each) are `x_starts[g]`. The couplings S = y . CG of every group and output degree l3
    are one matmul (`couplings`); per group and l3 the product is then one fused multiply-and-sum
    over m1 (at most 2 lmax + 1 terms), written as
    features by degree {l3: (B, 2 l3 + 1, C_l3)}, channels ordered (group, path, channel), their
    e3nn components (first of each, in the layout of `z_irreps`) `z_starts[l3]`.
    """

    def __init__(self, irreps_x, irreps_y, filter_ir_out, with_x=False):
        table, self.z_irreps = _product_table(str(e3nn.Irreps(irreps_x)), str(e3nn.Irreps(irreps_y)),
                                              str(e3nn.Irreps(filter_ir_out)), with_x)
        instance = np.repeat(np.arange(self.z_irreps.num_irreps),
                             [ir.dim for mul, ir in self.z_irreps for _ in range(mul)])
        groups = []  # dict(cg (d1, Dy, K), x: channel starts, z: (K,) output components per channel)
        for l, starts in instance_starts(irreps_x).items():
            for start in starts:
                rows = start + np.arange(2 * l + 1)
                cols = np.flatnonzero(np.any(table[rows] != 0, axis=(0, 1)))
                cg = table[rows][:, :, cols]
                group = next((g for g in groups if g["cg"].shape == cg.shape
                              and np.allclose(g["cg"], cg, atol=1e-12)), None)
                if group is None:
                    groups.append(group := dict(cg=cg, x=[], z=[]))
                group["x"].append(start)
                group["z"].append(cols)
        self.x_starts = [np.array(g["x"]) for g in groups]
        self.x_degrees = [(g["cg"].shape[0] - 1) // 2 for g in groups]
        rebuilt, z_starts, self.paths = np.zeros_like(table), {}, []
        for g in groups:
            d1, dim_y, _ = g["cg"].shape
            z = np.stack(g["z"])  # (U, K): runs of 2 l3 + 1 components, one run per output irrep
            for x_start, cols in zip(g["x"], z):
                rebuilt[np.ix_(x_start + np.arange(d1), np.arange(dim_y), cols)] += g["cg"]
            first = np.flatnonzero(np.r_[True, instance[z[0, 1:]] != instance[z[0, :-1]]])
            by_degree = {}
            for f, size in zip(first, np.diff(np.r_[first, z.shape[1]])):
                by_degree.setdefault((size - 1) // 2, []).append(f)
            paths = {}
            for l3, fs in sorted(by_degree.items()):
                cols = np.array(fs)[:, None] + np.arange(2 * l3 + 1)  # (P, d3)
                paths[l3] = g["cg"][:, :, cols].transpose(1, 0, 3, 2).reshape(dim_y, -1)  # (Dy, d1 d3 P)
                z_starts.setdefault(l3, []).append(z[:, cols[:, 0]].T.ravel())  # (path, channel)
            self.paths.append(paths)
        assert np.allclose(rebuilt, table, atol=1e-12), "the product is not channelwise"
        self.z_starts = {l: np.concatenate(v) for l, v in sorted(z_starts.items())}
        # every path's y . CG in one matmul (one kernel instead of one per group and degree)
        self.couplings = np.concatenate([cg for paths in self.paths for cg in paths.values()], axis=1)
        self.coupling_offsets = np.cumsum([0] + [cg.shape[1] for paths in self.paths for cg in paths.values()])
        #: e3nn index of the weight (a radial-MLP output) of each output channel, degree by degree
        self.weight_index = instance[np.concatenate(list(self.z_starts.values()))]
        self.num_weights = self.z_irreps.num_irreps

    def __call__(self, xs, y, weights=None):
        """xs: per group (B, 2 l_g + 1, U_g); y: (B, Dy) laid out as irreps_y; weights: (B, C)
        per output channel in the order of `weight_index`, or None. Returns z by degree."""
        out, couplings = {}, y @ jnp.asarray(self.couplings, y.dtype)
        columns = iter(zip(self.coupling_offsets, self.coupling_offsets[1:]))
        for x, paths in zip(xs, self.paths):
            batch, d1, u = x.shape
            for l3, cg in paths.items():
                d3 = 2 * l3 + 1
                num_paths = cg.shape[1] // (d1 * d3)
                a, b = next(columns)
                coupling = couplings[:, a:b].reshape(batch, d1, d3, num_paths, 1)
                z = jnp.sum(coupling * x[:, :, None, None, :], axis=1).reshape(batch, d3, num_paths * u)
                out.setdefault(l3, []).append(z)
        out = {l: jnp.concatenate(v, -1) for l, v in sorted(out.items())}
        if weights is None:
            return out
        starts = np.cumsum([0] + [z.shape[-1] for z in out.values()])
        return {l: z * weights[:, None, a:b] for (l, z), a, b in zip(out.items(), starts, starts[1:])}


class RadialMLP(hk.Module):
    """The parameters of `e3nn_jax.haiku.MultiLayerPerceptron(list_neurons, act,
    output_activation=False)` (no biases, "path" gradient normalization) under its module name:
    calling it returns the weight matrices, already scaled by 1 / sqrt(fan_in), the last one's
    columns taken in the order `output_index` (the radial weights written straight in a
    product's channel order). `radial_mlp(matrices, act, x)` applies them: a pure function, so
    that it can run inside `jax.checkpoint` and `lax.scan` (`sum_over_edge_chunks`)."""

    def __init__(self, list_neurons, output_index, name=None):
        super().__init__(name=name)
        self.list_neurons, self.output_index = list_neurons, output_index

    def __call__(self, fan_in, dtype):
        if e3nn.config("gradient_normalization") not in ("path", 1.0):
            raise NotImplementedError("RadialMLP follows e3nn's default 'path' gradient normalization")
        matrices = []
        for i, width in enumerate(self.list_neurons):
            w = _Weights(width, name=f"linear_{i}")(fan_in, dtype) / np.sqrt(fan_in)
            matrices.append(w[:, self.output_index] if i == len(self.list_neurons) - 1 else w)
            fan_in = width
        return matrices


def radial_mlp(matrices, act, x):
    """The MLP of `RadialMLP`'s matrices on x (..., fan_in), with e3nn's normalized `act`
    between layers. No biases: x = 0 (a padded edge) gives exactly 0."""
    for i, w in enumerate(matrices):
        x = x @ w
        if i < len(matrices) - 1:
            x = normalized(act)(x)
    return x


def sum_over_edge_chunks(fn, edge_arrays, chunk_size):
    """sum over edges of fn(edge arrays) -> node features by degree {l: (N, 2l+1, C_l)}, in
    chunks of `chunk_size` edges when there are more: a `lax.scan` whose body is rematerialized
    (`jax.checkpoint`) in the backward pass, so that memory holds one chunk's per-edge
    intermediates instead of every edge's (linear and small in the number of atoms).

    fn(edge_arrays) must be a sum over its edges that an all-zero edge (the padding: zero radial
    features, senders and receivers 0) leaves unchanged. Chunk k holds the edges k, k + K,
    k + 2K, ... (K chunks): an edge axis split over devices in blocks (`batch.shard`) stays split
    within every chunk."""
    num_edges = edge_arrays[0].shape[0]
    if num_edges <= chunk_size:
        return fn(edge_arrays)
    num_chunks = -(-num_edges // chunk_size)
    chunks = [jnp.pad(a, [(0, num_chunks * chunk_size - num_edges)] + [(0, 0)] * (a.ndim - 1))
              .reshape(chunk_size, num_chunks, *a.shape[1:]).swapaxes(0, 1) for a in edge_arrays]
    body = jax.checkpoint(fn)
    first = jax.tree_util.tree_map(lambda a: a[0], chunks)
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(body, first))
    return jax.lax.scan(lambda total, chunk: (add(total, body(chunk)), None), zeros, chunks)[0]


class _Weights(hk.Module):
    """The weight matrix of haiku's `Linear` (parameter "w", no bias) under its module name."""

    def __init__(self, width, name=None):
        super().__init__(name=name)
        self.width = width

    def __call__(self, fan_in, dtype):
        return hk.get_parameter("w", (fan_in, self.width), dtype, init=hk.initializers.RandomNormal(1.0))


@functools.lru_cache(maxsize=None)
def _normalized(act, x64):
    return e3nn.normalize_function(act)


def normalized(act):
    """e3nn's second-moment normalized activation (as its gate and MLP use), computed once."""
    return _normalized(act, jax.config.jax_enable_x64)


def add(*features):
    """Sum of features by degree (a degree missing from one is zero there)."""
    out = {}
    for h in features:
        for l, x in h.items():
            out[l] = out[l] + x if l in out else x
    return out


def gate(h, irreps, reached):
    """e3nn's gate on features by degree with irreps `irreps` (`layers.gate_input_irreps` order:
    scalars, gate scalars, non-scalars): silu / tanh on even / odd scalars, sigmoid gates.
    `reached` (D,) bool marks the input components that are not identically zero. Returns the
    output without its identically zero irreps (e3nn drops them from a layer's input, and the
    parameter names follow), and the irreps of that output."""
    irreps = e3nn.Irreps(irreps)
    scalars = irreps.filter(keep=["0e", "0o"])
    nonscalars = irreps.filter(drop=["0e", "0o"])
    if irreps[:len(scalars)] != scalars:
        raise ValueError(f"gate input {irreps} must list its scalars first")
    num_extra = scalars.dim - nonscalars.num_irreps
    extra_irreps = [ir for mul, ir in scalars for _ in range(mul)][:num_extra]
    parity = np.array([ir.p for ir in extra_irreps])
    extra = h[0][..., :num_extra]
    extra = normalized(jax.nn.silu)(extra) if np.all(parity > 0) else \
        jnp.where(parity > 0, normalized(jax.nn.silu)(extra), normalized(jnp.tanh)(extra))
    gates = normalized(jax.nn.sigmoid)(h[0][..., num_extra:])
    # the j-th non-scalar instance (in order) is multiplied by the j-th gate
    gate_index, kept = {}, [(ir, reached[i]) for i, ir in enumerate(extra_irreps)]
    start = scalars.dim
    for j, ir in enumerate(ir for mul, ir in nonscalars for _ in range(mul)):
        gate_index.setdefault(ir.l, []).append(j)
        kept.append((ir, reached[start]))
        start += ir.dim
    starts = instance_starts(irreps)
    out = {0: extra[..., reached[starts[0][:num_extra]]]}
    out.update({l: (h[l] * gates[..., np.array(index)])[..., reached[starts[l]]]
                for l, index in gate_index.items() if l in h})
    return ({l: x for l, x in out.items() if x.shape[-1]},
            e3nn.Irreps([(1, ir) for ir, keep in kept if keep]).simplify())
