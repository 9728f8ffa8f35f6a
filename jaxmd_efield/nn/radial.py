"""Radial embedding of edge lengths: a Bessel basis times a smooth polynomial cutoff."""

import e3nn_jax as e3nn


def smooth_cutoff(r, r_cut, p=6):
    """NequIP's polynomial envelope u_p(r / r_cut): 1 at r = 0, exactly 0 for r >= r_cut,
    with p - 1 vanishing derivatives at 0 and 2 at r_cut (energy and forces are smooth).

    r: (...) distances in Å.
    """
    return e3nn.poly_envelope(p - 1, 2)(r / r_cut)


def bessel_embedding(r, r_cut, num_basis, p=6):
    """sqrt(2/r_cut) sin(n pi r / r_cut) / r for n = 1..num_basis, times the smooth cutoff.

    r: (E,) distances in Å (strictly positive). Returns (E, num_basis); rows with
    r >= r_cut are exactly zero.
    """
    return e3nn.bessel(r, num_basis, r_cut) * smooth_cutoff(r, r_cut, p)[:, None]
