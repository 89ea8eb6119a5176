"""RF mixing of configuration states into merged rows, with a hand-written gradient.

An instantaneous pulse (coefficients of ``sequences/engines/rf.py``, one per voxel) sends the
transverse amplitude ``F`` (keys ``q``), its conjugate (keys ``-q``) and the longitudinal
amplitude ``Z`` into merged rows (``index`` arrays from the key grouping):

    F'[i_f] += keep F      F'[i_c] += conj_ conj(F)      F'[i_z] += excite Z
    Z'[i_f] += store F     Z'[i_c] += conj(store F)      Z'[i_z] += cos Z

plus, in the row of the zero ``Z`` state, its T1 recovery sent through the pulse.

Autograd's ``index_add`` keeps its whole source alive for the backward pass, so these six
products (each as large as the states) would be saved per repetition. :class:`RfMix` keeps only
``F``, ``Z`` and the coefficients; its backward gathers the merged gradients back:

    dF = conj(keep) dF'[i_f] + conj_ conj(dF'[i_c]) + conj(store) (dZ'[i_f] + conj(dZ'[i_c]))
    dZ = conj(excite) dF'[i_z] + cos dZ'[i_z]

and the coefficients' gradients are the matching sums over states.

:class:`KeyMix` carries the *dual amplitudes* of merged states through the same mixing. A state
merged from members ``i`` (amplitudes ``f_i``, keys ``k_i``) has one key value, but at a later
readout each member contributes ``sum_v c_v(k_i) f_i[v]``, whose derivative needs
``sum_i f_i[v] dk_i`` per voxel (``c_v`` holds the intravoxel sinc and the T2' decay; the ratio
``f_i / f_m`` varies over voxels, so no shared key derivative gives it). Each state therefore
carries ``g`` (``[d, J, V]``, one slice per differentiated key column) whose *value is zero* and
whose derivative is ``sum_i f_i dk_i`` of its members relative to its own key. A pulse mixes

    g' = mix(g_F + F dk_F, g_Z)    with the conjugate pathways negated (their keys are ``-q``)

(``dk_F``: the derivative of the transverse keys since the last pulse, the free evolution's
moment and time, which all transverse states share; longitudinal keys do not move). Since
``g`` is zero, the coefficients' and ``F``'s derivatives through this mixing vanish and its
forward pass computes nothing; the backward pass is the adjoint mixing of the dual gradients
with the coefficients' values.
"""

from __future__ import annotations

import torch

from mrzero.sequences.engines import native
from mrzero.sequences.engines.rf import RfCoefficients
from mrzero.sequences.engines.rows import add_rows


class RfMix(torch.autograd.Function):
    """``(F', Z')`` ``[rows, V]`` from ``F`` ``[J_f, V]`` and ``Z`` ``[J_z, V]`` (module docstring)."""

    @staticmethod
    def forward(
        ctx,
        f: torch.Tensor,
        z: torch.Tensor,
        i_f: torch.Tensor,
        i_c: torch.Tensor,
        i_z: torch.Tensor,
        rows: int,
        keep: torch.Tensor,
        conj_: torch.Tensor,
        excite: torch.Tensor,
        store: torch.Tensor,
        cos: torch.Tensor,
        recovered_row: int,
        recovered_f: torch.Tensor | None,
        recovered_z: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        f_m = f.new_zeros(rows, f.shape[1])
        add_rows(add_rows(add_rows(f_m, i_f, keep * f), i_c, conj_ * f.conj()), i_z, excite * z)
        stored = store * f
        z_m = z.new_zeros(rows, z.shape[1])
        add_rows(add_rows(add_rows(z_m, i_f, stored), i_c, stored.conj()), i_z, cos * z)
        if recovered_f is not None:
            f_m[recovered_row] += recovered_f
            z_m[recovered_row] += recovered_z
        ctx.save_for_backward(f, z, i_f, i_c, i_z, keep, conj_, excite, store, cos)
        ctx.recovered_row = recovered_row
        return f_m, z_m

    @staticmethod
    def backward(ctx, g_fm: torch.Tensor, g_zm: torch.Tensor):
        f, z, i_f, i_c, i_z, keep, conj_, excite, store, cos = ctx.saved_tensors
        need = ctx.needs_input_grad
        g_keep_f, g_conj_f, g_exc_z = g_fm[i_f], g_fm[i_c], g_fm[i_z]
        g_stored = g_zm[i_f]  # + conj(dZ'[i_c]), added on real views (faster than complex add_ on CPU)
        torch.view_as_real(g_stored).add_(torch.view_as_real(torch.conj_physical(g_zm[i_c])))
        g_cos_z = g_zm[i_z]
        g_f = g_z = None
        if need[0]:
            g_f = (g_keep_f * keep.conj()).addcmul_(torch.conj_physical(g_conj_f), conj_)
            g_f.addcmul_(g_stored, store.conj())
        if need[1]:
            g_z = (g_cos_z * cos).addcmul_(g_exc_z, excite.conj())
        # sum_j conj(x) y per voxel is torch.linalg.vecdot over the state axis
        g_keep = torch.linalg.vecdot(f, g_keep_f, dim=0) if need[6] else None
        g_conj = (f * g_conj_f).sum(0) if need[7] else None
        g_excite = torch.linalg.vecdot(z, g_exc_z, dim=0) if need[8] else None
        g_store = torch.linalg.vecdot(f, g_stored, dim=0) if need[9] else None
        g_cos = torch.linalg.vecdot(z, g_cos_z, dim=0).real if need[10] else None
        row = ctx.recovered_row
        g_rec_f = g_fm[row] if need[12] else None
        g_rec_z = g_zm[row].real if need[13] else None
        return (
            g_f,
            g_z,
            None,
            None,
            None,
            None,
            g_keep,
            g_conj,
            g_excite,
            g_store,
            g_cos,
            None,
            g_rec_f,
            g_rec_z,
        )


def rf_mix(
    f: torch.Tensor,
    z: torch.Tensor,
    index: torch.Tensor,
    rows: int,
    c: RfCoefficients,
    recovered: tuple[int, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix ``F`` and ``Z`` by the pulse ``c`` into ``rows`` merged rows.

    ``index`` holds the merged row of every source row in the order ``F``, ``conj F``, ``Z``;
    ``recovered`` (merged row, complex ``[V]`` added to ``F'``, real ``[V]`` added to ``Z'``)
    is the T1 recovery of the zero state sent through the pulse.
    """
    j_f = f.shape[0]
    i_f, i_c, i_z = index[:j_f], index[j_f : 2 * j_f], index[2 * j_f :]
    coefs = [
        co if co.shape == f.shape[1:] else torch.broadcast_to(co, f.shape[1:])
        for co in (c.keep, c.conj, c.excite, c.store, c.cos)
    ]
    row, rec_f, rec_z = recovered if recovered is not None else (0, None, None)
    return RfMix.apply(f, z, i_f, i_c, i_z, rows, *coefs, row, rec_f, rec_z)


class KeyMix(torch.autograd.Function):
    """Dual amplitudes ``(g_F', g_Z')`` ``[d, kept, V]`` of the merged rows (module docstring):
    zero-valued, differentiable in the transverse keys' shift ``[d]`` and the previous ``g_F``, ``g_Z``.

    With the merged rows' dual gradients ``dG_F'``, ``dG_Z'`` the backward pass is

        dH   = P[i_f] - conj(Q[i_c])     P = conj(keep) dG_F' + conj(store) dG_Z'
        dG_Z = R[i_z]                    Q = conj(conj_) dG_F' + store dG_Z'
        d shift = Re sum conj(F) dH      R = conj(excite) dG_F' + cos dG_Z'

    (``H = G_F + F dk_F``; combining over the merged rows first, then gathering, is fewer
    passes over ``[d, J, V]`` than gathering first). Pruned rows have no gradient: they read a
    zero row appended to ``P``, ``Q``, ``R``. On the CPU this runs as one compiled loop per
    output (``sequences/engines/native.py``), elsewhere as the torch operations of
    :func:`dual_adjoint`.
    """

    @staticmethod
    def forward(
        ctx,
        moved: torch.Tensor,
        f: torch.Tensor,
        g_f: torch.Tensor | None,
        g_z: torch.Tensor | None,
        i_f: torch.Tensor,
        i_c: torch.Tensor,
        i_z: torch.Tensor,
        rows: int,
        kept: torch.Tensor | None,
        coefs: RfCoefficients,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        if kept is not None:  # merged row -> position among the kept rows, pruned -> the zero row
            position = torch.full((rows,), kept.shape[0], dtype=i_f.dtype, device=i_f.device)
            position[kept] = torch.arange(kept.shape[0], device=i_f.device)
            i_f, i_c, i_z = position[i_f], position[i_c], position[i_z]
        ctx.save_for_backward(f, i_f, i_c, i_z)
        # the weights of dG_F' in P, Q, R, then those of dG_Z' (class docstring), [6, V]
        c = coefs
        ctx.weights = torch.stack(
            [c.keep.conj(), c.conj.conj(), c.excite.conj(), c.store.conj(), c.store, c.cos.to(c.store.dtype)]
        )
        ctx.pruned = kept is not None
        # zero values need no memory: expanded views of one zero
        shape = (moved.shape[0], rows if kept is None else kept.shape[0], f.shape[1])
        return f.new_zeros(()).expand(shape), f.new_zeros(()).expand(shape)

    @staticmethod
    def backward(ctx, g_gf: torch.Tensor | None, g_gz: torch.Tensor | None):
        f, i_f, i_c, i_z = ctx.saved_tensors
        need = ctx.needs_input_grad
        if g_gf is None and g_gz is None:
            return (None,) * 10
        need_h, need_z = need[0] or need[2], need[3]
        if native.usable(g_gf, g_gz, f, ctx.weights):
            g_h, g_z, g_moved = native.dual_adjoint(g_gf, g_gz, ctx.weights, f, i_f, i_c, i_z, need_h, need_z)
        else:
            g_h, g_z, g_moved = dual_adjoint(
                g_gf, g_gz, ctx.weights, f, i_f, i_c, i_z, ctx.pruned, need_h, need_z
            )
        g_moved = g_moved if need[0] else None
        return g_moved, None, g_h if need[2] else None, g_z, None, None, None, None, None, None


def dual_adjoint(
    g_gf: torch.Tensor | None,
    g_gz: torch.Tensor | None,
    weights: torch.Tensor,
    f: torch.Tensor,
    i_f: torch.Tensor,
    i_c: torch.Tensor,
    i_z: torch.Tensor,
    pruned: bool,
    need_h: bool,
    need_z: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dH, dZ, d moved)`` of :class:`KeyMix`'s backward pass as torch operations (the
    reference and fallback of ``sequences/engines/native.py``, which takes the same arguments
    but ``pruned``: whether the indices address a zero row after the ``k`` incoming rows)."""
    terms = [(g, w) for g, w in ((g_gf, weights[:3]), (g_gz, weights[3:])) if g is not None]
    d, k, v = terms[0][0].shape
    # P, Q, R over the kept rows in one tensor, and a zero row when some were pruned
    pqr = terms[0][0].new_empty(3, d, k + pruned, v)
    torch.mul(terms[0][0], terms[0][1][:, None, None], out=pqr[:, :, :k])
    for g, w in terms[1:]:
        pqr[:, :, :k].addcmul_(g, w[:, None, None])
    if pruned:
        pqr[:, :, k].zero_()
    p, q, r = pqr.unbind(0)
    g_h = g_moved = g_z = None
    if need_h:
        g_h = p.index_select(1, i_f)
        # subtracted on real views (torch 2.13's complex sub_ is slower on CPU)
        torch.view_as_real(g_h).sub_(torch.view_as_real(q.index_select(1, i_c).conj_physical_()))
        # Re(sum_jv conj(F) dH) per column
        g_moved = torch.view_as_real(g_h).reshape(d, -1) @ torch.view_as_real(f).reshape(-1)
        g_moved = g_moved.double()
    if need_z:
        g_z = r.index_select(1, i_z)
    return g_h, g_z, g_moved


def key_mix(
    moved: torch.Tensor,
    f: torch.Tensor,
    g_f: torch.Tensor | None,
    g_z: torch.Tensor | None,
    index: torch.Tensor,
    rows: int,
    kept: torch.Tensor | None,
    c: RfCoefficients,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The merged rows' dual amplitudes after the pulse ``c`` (kept rows only; ``None``: all).

    ``moved`` ``[d]`` is the shift of every transverse key since the previous pulse in the
    differentiated columns (only its derivative is used), ``g_f``/``g_z`` the sources' dual
    amplitudes (``None``: none yet), ``index`` the merged row of every source as in :func:`rf_mix`.
    """
    j_f = f.shape[0]
    i_f, i_c, i_z = index[:j_f], index[j_f : 2 * j_f], index[2 * j_f :]
    coefs = torch.broadcast_tensors(*(co.detach() for co in (c.keep, c.conj, c.excite, c.store, c.cos)))
    detached = RfCoefficients(*coefs)
    return KeyMix.apply(moved, f, g_f, g_z, i_f, i_c, i_z, rows, kept, detached)
