"""The ADC samples of one repetition from its configuration states, with a hand-written gradient.

States are split into groups by the side of their T2' echo (``sign`` +1 after, -1 before; a
single group with ``sign`` 0 without T2'). With the state amplitudes ``F`` (complex ``[J, V]``),
a group's intravoxel weights ``W_g`` (real ``[n, J_g]``: the box sinc of the state's moment at
the sample, zero where the sample belongs to the other group) and its rows ``F_g`` of ``F``,
the coil signal of the repetition's ``n`` samples is

    out[c, n] = sum_v coil[c, v] P[n, v] U[n, v],     U = sum_g M_g * (W_g (F_g E_g))

with the voxel-centre phase ``P = exp(-i 2 pi (m . x + t B0))``, the state part of the
Lorentzian T2' decay ``E_g = exp(-sign (tau + t_ref) / T2')`` and the sample part of the decays
``M_g = exp(-t / T2 - sign (t - t_ref) / T2')`` (``t``, ``m``: the samples' time and moment since
the pulse, ``x``: voxel centres, ``tau``: a state's time since its last refocusing).

Autograd through these lines would keep about ten ``[n, V]`` and ``[J, V]`` intermediates per
repetition, most of the engine's memory. :class:`Readout` keeps its inputs (``F`` is kept by
the next step anyway), ``P`` and each group's ``E_g``, ``F_g E_g`` and ``M_g W_g F_g E_g``, and
recomputes ``M_g`` and ``W_g`` in the backward pass, written out below;
``tests/sequences/test_gradients.py`` checks it with ``gradcheck``. Real-by-complex products
run as real matrix products (half the work of a complex one) and ``P`` is computed once for all
groups.

Merged states also bring their dual amplitudes ``G`` (complex ``[d, J, V]``, zero-valued, see
``sequences/engines/mixing.py``), which add ``sum_d (dW_g/dk_d) (G_d E_g)`` (and ``W_g (dE_g/dtau)
G_tau``) to ``U``: nothing in the forward pass, and in the backward pass
``dG_d = ((dW_g/dk_d)^T dY) E_g`` per moment column and ``dG_tau = (W_g^T dY) dE_g/dtau``.
On the CPU these and ``dF`` are added into their rows by one compiled loop
(``sequences/engines/native.py``), elsewhere by torch operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrzero.sequences.engines import native
from mrzero.sequences.engines.rows import add_rows
from mrzero.sequences.engines.voxels import VoxelSet

#: Exponents of the T2' factors are clamped here to stay finite (only reached when a readout
#: spans more than 60 T2').
MAX_EXPONENT = 60.0


@dataclass
class Group:
    """States on one side of their T2' echo: rows of ``F``, their keys and which samples they reach."""

    sign: float
    rows: torch.Tensor  # [J_g] rows of F
    tau: torch.Tensor  # [J_g] float64
    t_ref: torch.Tensor  # scalar: the first (sign +1) or last (sign -1) sample time
    moment: torch.Tensor  # [J_g, 3] float64, the states' moments (cycles/FOV)
    mask: torch.Tensor  # bool [n, J_g]: the samples at which the state is on this side of its echo


#: Flattened tensor fields of a :class:`Group`, in order, as the Function receives them.
GROUP_FIELDS = 5
#: Position of the first group field among :class:`Readout`'s inputs.
FIRST_GROUP = 7


def _sinc_factors(group: Group, moment: torch.Tensor, vox: VoxelSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Per axis the box sinc of the state at every sample and its argument, ``[3, n, J_g]`` float64."""
    u = (moment.double()[None, :, :] + group.moment[:, None, :]).permute(2, 1, 0)
    u = u * vox.size.double()[:, None, None]
    return torch.sinc(u), u


def _weights(group: Group, sincs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``W_g`` ``[n, J_g]``: the product of the axes' sincs where the sample is in the group."""
    return torch.where(group.mask, sincs.prod(0), 0.0).to(dtype)


def _sinc_slope(u: torch.Tensor, sinc: torch.Tensor) -> torch.Tensor:
    """d sinc(u) / du ``= (cos(pi u) - sinc(u)) / u``, by its series ``-pi^2 u / 3`` near 0."""
    small = u.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(u), u)
    return torch.where(small, (-(math.pi**2) / 3) * u, (torch.cos(math.pi * u) - sinc) / safe)


def _real_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real ``a`` ``[p, q]`` times complex ``b`` ``[q, r]`` as one real product."""
    q, r = b.shape
    return torch.view_as_complex((a @ torch.view_as_real(b).reshape(q, 2 * r)).reshape(-1, r, 2))


def voxel_phase(moment: torch.Tensor, time: torch.Tensor, vox: VoxelSet) -> torch.Tensor:
    """``exp(-i 2 pi (m . x + t B0))`` at the voxel centres, complex ``[n, V]`` for moments
    ``[n, 3]`` and times ``[n]`` (cos and sin: torch.polar's CPU kernel is 2.5x slower)."""
    phase = (-2 * math.pi) * (moment @ vox.pos.T + time[:, None] * vox.b0[None])
    return torch.complex(torch.cos(phase), torch.sin(phase))


@dataclass
class _Terms:
    """A group's factors: ``E_g``, ``F_g E_g``, ``M_g`` and ``M_g W_g F_g E_g``."""

    decay: torch.Tensor  # E_g, real [J_g, V]
    states: torch.Tensor  # F_g E_g, complex [J_g, V]
    magnitude: torch.Tensor  # M_g, real [n, V]
    part: torch.Tensor  # M_g W_g F_g E_g, complex [n, V]
    unclamped: torch.Tensor | None  # where the exponent of E_g stayed below MAX_EXPONENT (None: everywhere)


def _magnitude(time: torch.Tensor, group: Group, t2_decay: torch.Tensor, vox: VoxelSet) -> torch.Tensor:
    """``M_g`` ``[n, V]``: T2 decay since the pulse and the samples' part of the T2' decay."""
    if group.sign:
        t2_decay = t2_decay - group.sign * (time - group.t_ref)[:, None] * vox.r2dash[None]
    return torch.exp(t2_decay)


def _group_terms(
    f: torch.Tensor,
    time: torch.Tensor,
    group: Group,
    weights: torch.Tensor,
    t2_decay: torch.Tensor,
    vox: VoxelSet,
) -> _Terms:
    """The factors of one group, computed in the forward pass and kept for the backward (all
    but ``M_g``, which is cheaper to recompute than to keep)."""
    rate = (-group.sign * (group.tau + group.t_ref.double())).to(vox.r2dash.dtype)  # [J_g]
    exponent = rate[:, None] * vox.r2dash[None]
    # the largest exponent is a product of extremes of the two factors (T2' rates are >= 0)
    unclamped = None
    if rate.numel() and float(rate.max()) * float(vox.r2dash.max()) >= MAX_EXPONENT:
        unclamped = exponent < MAX_EXPONENT
        exponent = exponent.clamp(max=MAX_EXPONENT)
    decay = torch.exp(exponent)
    states = f[group.rows] * decay
    magnitude = _magnitude(time, group, t2_decay, vox)
    return _Terms(decay, states, magnitude, _real_mm(weights, states) * magnitude, unclamped)


def _gradient_columns(vox: VoxelSet) -> torch.Tensor:
    """``[2V, 6]``: what the backward pass contracts ``view_as_real(q)`` with, rows (re, im) of
    every voxel: ``Im`` against x, y, z and B0, ``Re`` against 1/T2 and 1/T2'. Cached per voxel set."""
    cached = vox.derived.get("readout_columns")
    if cached is None:
        zero = torch.zeros_like(vox.b0)
        re = torch.stack([zero, zero, zero, zero, 1.0 / vox.t2, vox.r2dash], 1)
        im = torch.stack([vox.pos[:, 0], vox.pos[:, 1], vox.pos[:, 2], vox.b0, zero, zero], 1)
        cached = torch.stack([re, im], 1).reshape(2 * vox.n_voxels, 6)
        vox.derived["readout_columns"] = cached
    return cached


def _r2dash_pairs(vox: VoxelSet) -> torch.Tensor:
    """``[2V]``: every voxel's T2' rate twice, to contract a real view of ``[J, V]`` complex. Cached."""
    cached = vox.derived.get("r2dash_pairs")
    if cached is None:
        cached = vox.derived["r2dash_pairs"] = vox.r2dash.repeat_interleave(2)
    return cached


def _transposed_mm(a: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """``a^T dY``, complex ``[J, V]``, for real ``a`` ``[n, J]`` and ``dY`` ``[n, 2V]`` (a real view)."""
    j, v = a.shape[1], gy.shape[1] // 2
    return torch.view_as_complex((a.T.to(gy.dtype) @ gy).reshape(j, v, 2))


def _add_state_gradients(
    group: Group,
    dims: tuple[int, ...],
    constant: tuple[int, ...],
    sinc: torch.Tensor,
    slope: torch.Tensor | None,
    dw: torch.Tensor | None,
    weights: torch.Tensor,
    gy: torch.Tensor,
    terms: _Terms,
    vox: VoxelSet,
    g_f: torch.Tensor | None,
    g_g: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Add a group's ``dF = (W^T dY) E`` to ``g_f`` and its dual gradients to ``g_g``
    (``[d, J, V]``): ``((dW/dk_d)^T dY) E`` for a moment column (``dw`` ``[3, n, J_g]``),
    ``(W^T dY) dE/dtau`` for tau (``slope``: the sincs' slopes ``[3, n, J_g]``, given whenever
    ``dims`` has a moment column). Returns ``dA = W^T dY`` as ``B`` and a per-state factor (None: 1).

    An axis in ``constant`` has the same sample moment at every sample, so its sinc and slope
    are per-state factors: ``dF`` and the dual gradients of such axes come from one product
    ``B = (W / prod_constant sinc)^T dY`` (a Cartesian readout: one instead of three). All
    products of the group are one matrix product.
    """
    factored = [d for d in dims if d in constant]
    varying_dims = [d for d in dims if d < 3 and d not in constant]
    real = terms.decay.dtype
    scale = None  # [J_g], the constant axes' sincs
    if factored:
        varying = [a for a in range(3) if a not in constant]
        weights = torch.where(group.mask, sinc[varying].prod(0), 0.0)
        fixed = {a: sinc[a, 0] for a in constant}  # [J_g] each
        scale = math.prod(fixed.values()).to(real)
    left = torch.cat([weights.to(gy.dtype), *(dw[d].to(gy.dtype) for d in varying_dims)], 1)
    j_g = group.rows.shape[0]
    products = _transposed_mm(left, gy)
    # per dual: dG_d = B_p E a r with B_p one of the products, a per state, r per voxel (None: 1)
    spec: list[tuple[int, torch.Tensor | None, torch.Tensor | None]] = []
    size = vox.size.double()
    for d in dims:
        if d in factored:
            factor = slope[d, 0] * size[d]
            spec.append((0, math.prod((fixed[a] for a in constant if a != d), start=factor).to(real), None))
        elif d < 3:
            spec.append((1 + varying_dims.index(d), None, None))
        else:  # (W^T dY) dE/dtau = dF (-sign r2'), zero where the exponent was clamped
            spec.append((0, scale, (-group.sign) * vox.r2dash))
    states = products[:j_g], scale
    if g_f is None and not dims:
        return states
    outputs = [x for x in (g_f, g_g if dims else None) if x is not None]
    if (
        terms.unclamped is None
        and all(x.is_contiguous() for x in outputs)
        and native.usable(products, *outputs)
    ):
        ones_j, ones_v = terms.decay.new_ones(j_g), terms.decay.new_ones(terms.decay.shape[1])
        row_factor = torch.stack([ones_j if a is None else a for a in (scale, *(a for _, a, _ in spec))])
        voxel_factor = torch.stack([ones_v if r is None else r for _, _, r in spec]) if spec else ones_v[None]
        native.readout_duals(
            group.rows,
            products.reshape(-1, j_g, products.shape[1]),
            [p for p, _, _ in spec],
            terms.decay,
            row_factor,
            voxel_factor,
            g_f,
            g_g if dims else None,
        )
        return states
    products = products.split(j_g)
    decayed = products[0] * terms.decay  # B E
    if g_f is not None:
        add_rows(g_f, group.rows, decayed if scale is None else decayed * scale[:, None])  # dF
    if not dims:
        return states
    parts = decayed.new_empty(len(dims), *decayed.shape)
    for part, d, (p, a, r) in zip(parts, dims, spec, strict=True):
        if p:
            torch.mul(products[p], terms.decay, out=part)
        elif a is not None:
            torch.mul(decayed, a[:, None], out=part)
        else:
            part.copy_(decayed)
        if r is not None:
            part.mul_(r)
        if d == 3 and terms.unclamped is not None:
            part.masked_fill_(~terms.unclamped, 0.0)
    add_rows(g_g, group.rows, parts, dim=1)
    return states


def _groups(signs: tuple[float, ...], flat: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> list[Group]:
    return [Group(s, *flat[GROUP_FIELDS * i : GROUP_FIELDS * (i + 1)]) for i, s in enumerate(signs)]


class Readout(torch.autograd.Function):
    """``out [C, n]`` of one repetition and the dual amplitudes ``g`` passed on (zero-valued,
    None without); differentiable in ``f``, ``g`` (key columns ``dims``), ``moment``, ``time``
    and every group's ``tau``, ``t_ref`` and state ``moment`` (the tissue in ``vox`` is a
    constant)."""

    @staticmethod
    def forward(
        ctx,
        f: torch.Tensor,
        g: torch.Tensor | None,
        moment: torch.Tensor,
        time: torch.Tensor,
        vox: VoxelSet,
        signs: tuple[float, ...],
        dims: tuple[int, ...],
        *flat: torch.Tensor,
    ) -> torch.Tensor:
        groups = _groups(signs, flat)
        t2_decay = -time[:, None] / vox.t2[None]
        weights = [_weights(g, _sinc_factors(g, moment, vox)[0], time.dtype) for g in groups]
        terms = [_group_terms(f, time, g, w, t2_decay, vox) for g, w in zip(groups, weights, strict=True)]
        combined = terms[0].part if len(terms) == 1 else terms[0].part + terms[1].part
        phase = voxel_phase(moment, time, vox)
        kept = [x for t in terms for x in (t.decay, t.states, t.part, t.unclamped)]
        ctx.save_for_backward(f, moment, time, phase, *kept, *flat)
        ctx.signs, ctx.vox, ctx.dims = signs, vox, dims
        ctx.set_materialize_grads(False)
        passed = None if g is None else g.new_zeros(()).expand(g.shape)
        return vox.coil @ (phase * combined).T, passed

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor | None, grad_passed: torch.Tensor | None):
        if grad_out is None:  # the signal is not used: only the passed duals' gradient goes on
            return (None, grad_passed, *(None for _ in ctx.needs_input_grad[2:]))
        f, moment, time, phase, *rest = ctx.saved_tensors
        vox, n, v, k = ctx.vox, moment.shape[0], ctx.vox.n_voxels, len(ctx.signs)
        kept, flat = rest[: 4 * k], rest[4 * k :]
        groups = _groups(ctx.signs, flat)
        t2_decay = -time[:, None] / vox.t2[None]
        sincs = [_sinc_factors(g, moment, vox) for g in groups]
        weights = [_weights(g, sinc, time.dtype) for g, (sinc, _) in zip(groups, sincs, strict=True)]
        terms = [
            _Terms(
                kept[4 * i],
                kept[4 * i + 1],
                _magnitude(time, g, t2_decay, vox),
                kept[4 * i + 2],
                kept[4 * i + 3],
            )
            for i, g in enumerate(groups)
        ]
        need, dims = ctx.needs_input_grad, ctx.dims if ctx.needs_input_grad[1] else ()
        group_need = [
            need[FIRST_GROUP + GROUP_FIELDS * i : FIRST_GROUP + GROUP_FIELDS * (i + 1)] for i in range(k)
        ]
        timing = need[3] or any(gn[1] or gn[2] for gn in group_need)  # time, tau or t_ref
        moments = need[2] or any(gn[3] for gn in group_need)  # sample or state moments
        # moment axes equal at every sample (a Cartesian readout's phase and slice axes)
        constant = tuple(a for a in range(3) if bool((moment[:, a] == moment[0, a]).all())) if dims else ()
        slopes = moments or any(d < 3 for d in dims)  # the [3, n, J_g] slopes
        # dU = conj(P) dS, with dS = d/dS of sum_v coil S the same for every sample's voxels
        grad_u = (grad_out.T @ vox.coil.conj()) * phase.conj()
        # q_g = conj(dU) M_g Y_g: Re(q_g) is the gradient of log M_g, -Im(sum q_g) that of arg P
        grad_u_conj = grad_u.conj_physical()  # once for both groups
        q = [grad_u_conj * t.part for t in terms]
        q_sum = q[0] if len(q) == 1 else q[0] + q[1]
        columns = _gradient_columns(vox)
        sums = torch.view_as_real(q_sum).reshape(n, 2 * v) @ columns[:, : 5 if timing else 3]  # [n, 5 or 3]
        g_moment = (2 * math.pi) * sums[:, :3]
        g_time = (2 * math.pi) * sums[:, 3] - sums[:, 4] if timing else None
        g_f = torch.zeros_like(f) if need[0] else None
        g_g = None
        if dims:  # the readout's dual gradients are added to those of the later pulses (see readout())
            g_g = grad_passed if grad_passed is not None else f.new_zeros(len(dims), f.shape[0], v)
        g_flat: list[torch.Tensor | None] = []
        for group, q_g, t, w, (sinc, u) in zip(groups, q, terms, weights, sincs, strict=True):
            s = group.sign
            gy = torch.view_as_real(grad_u * t.magnitude).reshape(n, 2 * v)  # dY
            slope = dw = None
            if slopes:  # dW/dk_a = dW/dm_a, [3, n, J_g]
                slope = _sinc_slope(u, sinc)
                others = torch.stack([sinc[1] * sinc[2], sinc[0] * sinc[2], sinc[0] * sinc[1]])
                dw = torch.where(group.mask, slope * others, 0.0) * vox.size.double()[:, None, None]
            g_states, g_scale = _add_state_gradients(
                group, dims, constant, sinc, slope, dw, w, gy, t, vox, g_f, g_g
            )
            g_tau = g_ref = g_keys = None
            if timing:
                r2_sums = torch.view_as_real(q_g).reshape(n, 2 * v) @ columns[:, 5]  # Re(q_g) @ r2'
                g_time = g_time - s * r2_sums
                g_ref = s * r2_sums.sum()
                g_tau = torch.zeros_like(group.tau)
                if s:  # d/d exponent of E: Re(conj(dA) A), zero where the exponent was clamped
                    if t.unclamped is None:  # Re(conj(B) A) r2' summed over voxels, on real views
                        pairs = torch.view_as_real(g_states) * torch.view_as_real(t.states)
                        g_exp = pairs.reshape(-1, 2 * v) @ _r2dash_pairs(vox)
                    else:
                        g_exp = (g_states.conj() * t.states).real
                        g_exp = torch.where(t.unclamped, g_exp, torch.zeros_like(g_exp)) @ vox.r2dash
                    g_exp = g_exp if g_scale is None else g_exp * g_scale  # dA = B scale
                    g_tau = (-s) * g_exp.double()
                    g_ref = g_ref + g_tau.sum().to(g_ref.dtype)
                g_ref = g_ref.reshape(group.t_ref.shape)
            if moments:  # W = prod_a sinc(u_a), u_a = (k_a + m_a) w_a: to state keys and sample moments
                g_weights = gy @ torch.view_as_real(t.states).reshape(-1, 2 * v).T  # Re(dY A^H)
                g_u = g_weights.double() * dw
                g_moment = g_moment + g_u.sum(2).T.to(g_moment.dtype)
                g_keys = g_u.sum(1).T
            g_flat += [None, g_tau, g_ref, g_keys, None]
        g_time = g_time if need[3] else None
        return (g_f, g_g, g_moment if need[2] else None, g_time, None, None, None, *g_flat)


def readout(
    f: torch.Tensor,
    g: torch.Tensor | None,
    dims: tuple[int, ...],
    moment: torch.Tensor,
    time: torch.Tensor,
    groups: list[Group],
    vox: VoxelSet,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The repetition's signal ``[C, n]`` from the states ``f`` and their dual amplitudes ``g``
    (key columns ``dims``; None without) (see the module docstring), and ``g`` passed on.

    The later pulses should take their duals from the passed ``g``: the backward pass then adds
    this readout's dual gradients into theirs in place, instead of starting from zeros and
    leaving autograd to add the two ``[d, J, V]`` gradients (the later pulses' is a fresh
    tensor of ``KeyMix``'s backward pass, so writing into it is safe)."""
    tissue = (vox.t2, vox.r2dash, vox.b0, vox.pos, vox.coil)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tissue):
        raise ValueError(
            "the fast engine's readout is differentiable in the sequence only; "
            "T2, T2', B0, positions and coil maps must not require grad"
        )
    flat = [x for gr in groups for x in (gr.rows, gr.tau, gr.t_ref, gr.moment, gr.mask)]
    signal, passed = Readout.apply(f, g, moment, time, vox, tuple(gr.sign for gr in groups), dims, *flat)
    return signal, passed
