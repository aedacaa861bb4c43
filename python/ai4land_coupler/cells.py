"""The land-use step's per-pixel and per-coarse-cell arithmetic, compiled with numba.

Every coarse cell (``k × k`` fine pixels) is worked on alone, in one fixed order, so the bits do not
depend on how the grid is cut into slabs, and no array is copied into cell blocks: the kernels read
and write the (classes, H, W) fields in place, and run on as many threads as torch has, each on a
block of rows (:mod:`.compiled`). They agree with the float64 NumPy formulation they replaced
to 1e-13 (``tests/test_cells.py`` keeps that formulation as the reference).

Class columns: ``column[c]`` is the conservation column of class ``c`` (the 5 scenario groups,
then inland water); -1 for ocean, which is in none. The cell kernels take the scenario per coarse
cell, (G, H/k, W/k) (a strided view of the fine one will do), and the previous map as class codes
with their levels ``level_of_code`` (-1: none).
"""
from __future__ import annotations

import collections

import numpy as np

from .compiled import borrowed, in_blocks, keep_alive, kernel, output_array


@kernel(inline=True)
def _softmax_at(logits, land, y, x, out, i):
    """``out[i]`` (K) float64, the class probabilities of pixel (y, x) from ``logits`` (K, H, W): on
    land, the softmax over the land classes 1..K-1 (ocean 0); elsewhere ocean 1 and the others 0."""
    n = logits.shape[0]
    if not land[y, x]:
        out[i, 0] = 1.0
        for c in range(1, n):
            out[i, c] = 0.0
        return
    out[i, 0] = 0.0
    top = np.float64(logits[1, y, x])
    for c in range(2, n):
        top = max(top, np.float64(logits[c, y, x]))
    total = 0.0
    for c in range(1, n):
        e = np.exp(np.float64(logits[c, y, x]) - top)
        out[i, c] = e
        total += e
    for c in range(1, n):
        out[i, c] /= total


@kernel
def _masked_softmax(logits, land, out, first, end):
    """Rows [first, end) of ``out`` (K, H, W) float64: :func:`_softmax_at` of every pixel."""
    w = logits.shape[2]
    pixels = out.reshape(out.shape[0], -1).T  # (H·W, K) view
    for y in range(first, end):
        for x in range(w):
            _softmax_at(logits, land, y, x, pixels, y * w + x)


@kernel(inline=True)
def _entropy(p):
    """The entropy of the land classes 1..K-1 of ``p`` (K) over log(K-1), clipped to [0, 1]."""
    n = p.size
    s = 0.0
    for c in range(1, n):
        v = p[c]
        if v > 0:
            s -= v * np.log(v)
    return min(max(s / np.log(np.float64(n - 1)), 0.0), 1.0)


@kernel(inline=True)
def _geometry(scenario, land, area, k, cy, cx, land_area, pixel_area, target):
    """One coarse cell's pixel areas, their land areas, and its target shares (6) of the cell's
    area: the scenario (G, H/k, W/k) scaled down to the land it has. Returns the cell's area, or 0
    when it has no land."""
    cell_area = 0.0
    land_total = 0.0
    for a in range(k):
        for b in range(k):
            i, y, x = a * k + b, cy * k + a, cx * k + b
            pixel_area[i] = area[y, x]
            land_area[i] = area[y, x] if land[y, x] else 0.0
            cell_area += pixel_area[i]
            land_total += land_area[i]
    if land_total == 0.0:
        return 0.0
    land_share = land_total / cell_area
    groups = scenario.shape[0]
    total = 0.0
    for g in range(groups):
        target[g] = scenario[g, cy, cx]
        total += target[g]
    fit = min(1.0, land_share / max(total, 1e-300))
    total = 0.0
    for g in range(groups):
        target[g] *= fit
        total += target[g]
    target[groups] = max(land_share - total, 0.0)
    return cell_area


@kernel(inline=True)
def _load(p, k, cy, cx, q):
    """q (k*k, K): the probabilities (K, H, W) of one coarse cell's pixels."""
    for a in range(k):
        for b in range(k):
            for c in range(p.shape[0]):
                q[a * k + b, c] = p[c, cy * k + a, cx * k + b]


@kernel(inline=True)
def _store(q, k, cy, cx, p):
    """The inverse of :func:`_load`: one coarse cell's q (k*k, K) into the probabilities (K, H, W)."""
    for a in range(k):
        for b in range(k):
            for c in range(p.shape[0]):
                p[c, cy * k + a, cx * k + b] = q[a * k + b, c]


@kernel(inline=True)
def _shares(q, land_area, cell_area, column, share):
    """Area-weighted share of the cell's area of each column."""
    share[:] = 0.0
    for i in range(q.shape[0]):
        for c in range(q.shape[1]):
            if column[c] >= 0:
                share[column[c]] += q[i, c] * land_area[i]
    share /= cell_area


FIT_TOLERANCE = 4e-16  # a round whose factors all change by less than this is the last one


@kernel(inline=True)
def _fit(q, land_area, cell_area, target, column, iterations, start, scale, factor, live):
    """Iterative proportional fitting of one cell: each round, one factor per column brings the
    cell's shares to the targets, then each land pixel is renormalised. A round keeps the ratios
    of the classes within a column, and renormalising commutes with the factors, so after any
    number of rounds a land pixel's column masses are ``start[g, i] · F[g] / Σ_h start[h, i] · F[h]``
    with ``F`` the product of the factors so far: the rounds update the 6 products alone (kept
    at a largest of 1) and the classes are scaled once at the end. The rounds stop early once
    the shares meet the targets to rounding (:data:`FIT_TOLERANCE`). A column without mass, or
    whose target is 0 (its factor then 0), adds exactly 0 to every sum: its pixel loops are
    skipped (``live``). ``start`` (columns, pixels) and ``scale`` (pixels) are work arrays, laid
    out so that the loops over pixels vectorise."""
    kk, n, ncol = q.shape[0], q.shape[1], factor.size
    start[:, :] = 0.0
    for i in range(kk):
        if land_area[i] > 0.0:
            for c in range(n):
                if column[c] >= 0:
                    start[column[c], i] += q[i, c]
    for g in range(ncol):
        factor[g] = 1.0
        live[g] = False
        for i in range(kk):
            live[g] = live[g] or start[g, i] > 0.0
    for _ in range(iterations):
        _column_totals(start, factor, live, scale)
        for i in range(kk):
            scale[i] = land_area[i] / max(scale[i], 1e-300)
        top = 0.0
        fitted = True
        for g in range(ncol):
            if live[g]:
                weight = 0.0
                for i in range(kk):
                    weight += start[g, i] * scale[i]
                share = factor[g] * weight / cell_area
                if share > 0:
                    ratio = target[g] / share
                    fitted = fitted and abs(ratio - 1.0) <= FIT_TOLERANCE
                    factor[g] *= ratio
            top = max(top, factor[g])
        top = top if top > 0 else 1.0
        for g in range(ncol):
            factor[g] /= top
            live[g] = live[g] and factor[g] > 0.0
        if fitted:  # a further round would move no factor by more than rounding
            break
    _column_totals(start, factor, live, scale)
    for i in range(kk):
        if land_area[i] == 0.0:
            continue
        inverse = 1.0 / max(scale[i], 1e-300)
        for c in range(n):
            g = column[c]
            q[i, c] = q[i, c] * (factor[g] * inverse) if g >= 0 and start[g, i] > 0 else 0.0


@kernel(inline=True)
def _column_totals(start, factor, live, total):
    """total[i] = Σ_g start[g, i] · factor[g], added in column order (the columns not ``live`` add 0)."""
    total[:] = 0.0
    for g in range(start.shape[0]):
        if live[g]:
            f = factor[g]
            for i in range(start.shape[1]):
                total[i] += start[g, i] * f


@kernel(inline=True)
def _correct(q, land_area, cell_area, target, column, share, rate, give, moved, mass, cell_split, split, keep,
             norm):
    """The exact correction of one cell's probabilities q (k*k, K) after the fitting, then clipped
    to [0, 1]: each column's excess over its target is taken in proportion to its mass at each
    pixel and given to the columns in deficit, split among their classes as at the pixel (or as
    in the cell where the pixel has none of the column). A column without excess keeps its
    classes (a factor of exactly 1), and one without deficit receives exactly 0: both skipped."""
    kk, n, ncol = q.shape[0], q.shape[1], share.size
    _shares(q, land_area, cell_area, column, share)
    given_total = 0.0
    for g in range(ncol):
        given_total += max(target[g] - share[g], 0.0)
    given_total = max(given_total, 1e-300)
    for g in range(ncol):
        rate[g] = max(share[g] - target[g], 0.0) / share[g] if share[g] > 0 else 0.0
        give[g] = max(target[g] - share[g], 0.0) / given_total
    for i in range(kk):  # take each column's excess ...
        moved[i] = 0.0
        if land_area[i] == 0.0:
            continue
        _column_masses(q, i, column, mass)
        for g in range(ncol):
            taken = mass[g] * rate[g]
            moved[i] += taken
            keep[g] = min(max(1.0 - taken / mass[g], 0.0), 1.0) if rate[g] > 0.0 and mass[g] > 0.0 else 1.0
        for c in range(n):
            if column[c] >= 0 and keep[column[c]] != 1.0:  # a factor of exactly 1 changes nothing
                q[i, c] *= keep[column[c]]
    for c in range(n):  # ... and give it to the columns in deficit
        cell_split[c] = 1e-300 if column[c] >= 0 else 0.0
        for i in range(kk):
            if land_area[i] > 0:
                cell_split[c] += q[i, c]
    for i in range(kk):
        if moved[i] > 0.0:
            _column_masses(q, i, column, mass)
            for c in range(n):
                g = column[c]
                split[c] = 0.0 if g < 0 else (q[i, c] if mass[g] > 0 else cell_split[c])
            norm[:] = 0.0
            for c in range(n):
                if column[c] >= 0:
                    norm[column[c]] += split[c]
            for c in range(n):
                g = column[c]
                if g >= 0 and give[g] > 0.0:
                    q[i, c] += moved[i] * give[g] * (split[c] / max(norm[g], 1e-300))
        for c in range(n):
            q[i, c] = min(max(q[i, c], 0.0), 1.0)


@kernel(inline=True)
def _column_masses(q, i, column, mass):
    """mass (columns): the sum of pixel i's classes in each column."""
    mass[:] = 0.0
    for c in range(q.shape[1]):
        if column[c] >= 0:
            mass[column[c]] += q[i, c]


Work = collections.namedtuple("Work", "q land_area pixel_area target share factor rate give start scale moved mass "
                                       "cell_split split key pair_pixel pair_group chosen group_prob live keep norm")


@kernel
def _work(kk, n, ncol):
    """The work arrays of the cell kernels, for cells of kk pixels, K classes and ncol columns."""
    return Work(np.empty((kk, n)), np.empty(kk), np.empty(kk), np.empty(ncol), np.empty(ncol), np.empty(ncol),
                np.empty(ncol), np.empty(ncol), np.empty((ncol, kk)), np.empty(kk), np.empty(kk), np.empty(ncol),
                np.empty(n), np.empty(n), np.empty(kk * ncol), np.empty(kk * ncol, dtype=np.int64),
                np.empty(kk * ncol, dtype=np.int64), np.empty(kk, dtype=np.int64), np.empty((kk, ncol)), np.empty(ncol, dtype=np.bool_), np.empty(ncol),
                np.empty(ncol))


@kernel(inline=True)
def _project(q, land_area, cell_area, target, column, iterations, w):
    """One land cell's probabilities q projected on its targets: the fitting, then the exact correction."""
    if iterations > 0:
        _fit(q, land_area, cell_area, target, column, iterations, w.start, w.scale, w.factor, w.live)
    _correct(q, land_area, cell_area, target, column, w.share, w.rate, w.give, w.moved, w.mass, w.cell_split, w.split,
             w.keep, w.norm)


@kernel
def _conserve(p, scenario, land, area, k, column, iterations, first, end):
    """Project probabilities (K, H, W) float64 in the coarse-cell rows [first, end), in place, so
    that every coarse cell's area-weighted share of each scenario group (and inland water) is the
    scenario's (:func:`_project`); cells without land are left as they are."""
    owned = _work(k * k, p.shape[0], scenario.shape[0] + 1)
    w, p, scenario, land, area, column = borrowed((owned, p, scenario, land, area, column))
    q, land_area, pixel_area, target = w.q, w.land_area, w.pixel_area, w.target
    for cy in range(first, end):
        for cx in range(p.shape[2] // k):
            cell_area = _geometry(scenario, land, area, k, cy, cx, land_area, pixel_area, target)
            if cell_area == 0.0:
                continue
            _load(p, k, cy, cx, q)
            _project(q, land_area, cell_area, target, column, iterations, w)
            _store(q, k, cy, cx, p)
    keep_alive(owned)


@kernel(inline=True)
def _insert(key, pixel, group, m, value, i, g):
    """Insert ``value`` and its pair (pixel i, group g) into the ``m`` sorted keys ``key[:m]`` and
    their pairs, after the keys equal to it (ties in insertion order); returns the new count. The
    keys move with their pairs, so no comparison waits on a load through an index."""
    j = m
    while j > 0 and key[j - 1] > value:
        key[j] = key[j - 1]
        pixel[j] = pixel[j - 1]
        group[j] = group[j - 1]
        j -= 1
    key[j] = value
    pixel[j] = i
    group[j] = g
    return m + 1


@kernel(inline=True)
def _choose(q, land_area, pixel_area, target, cell_area, column, previous, level_of_code, codes, k, cy, cx, out, w):
    """The class codes of one land cell's pixels in ``out`` (H, W) from its conserved probabilities q
    (k*k, K): (pixel, group) pairs in decreasing order of the group's probability (ties in pixel,
    then group order); a pair is taken while the pixel is free and the group still lacks half the
    pixel's area; pixels left over take their most probable group. Within its group a pixel keeps
    class in the ``previous`` map of codes (its level ``level_of_code[code]``, -1: none) when that is
    in the group, else its most probable one.
    Uses up ``target``."""
    key, pair_pixel, pair_group, chosen, group_prob = w.key, w.pair_pixel, w.pair_group, w.chosen, w.group_prob
    kk, n, ncol = q.shape[0], q.shape[1], target.size
    for g in range(ncol):
        target[g] *= cell_area  # the area still to give to each group
    pairs = 0  # sorted so far, by decreasing probability (increasing key)
    for i in range(kk):
        group_prob[i, :] = 0.0
        for c in range(n):
            if column[c] >= 0:
                group_prob[i, column[c]] += q[i, c]
        for g in range(ncol):  # a pair whose group lacks less than half the pixel now never will: not sorted
            if land_area[i] > 0 and target[g] >= 0.5 * pixel_area[i] and np.isfinite(group_prob[i, g]):
                pairs = _insert(key, pair_pixel, pair_group, pairs, -group_prob[i, g], i, g)
        chosen[i] = -1
    for r in range(pairs):
        i, g = pair_pixel[r], pair_group[r]
        if chosen[i] < 0 and target[g] >= 0.5 * pixel_area[i]:  # land pixels only: the rest are not sorted
            chosen[i] = g
            target[g] -= pixel_area[i]
    for a in range(k):
        for b in range(k):
            i = a * k + b
            if land_area[i] == 0.0:
                out[cy * k + a, cx * k + b] = codes[0]
                continue
            if chosen[i] < 0:
                chosen[i] = np.argmax(group_prob[i])
            level, best = 0, -1.0
            for c in range(n):
                value = q[i, c] if column[c] == chosen[i] else -1.0
                if value > best:
                    level, best = c, value
            before = level_of_code[previous[cy * k + a, cx * k + b]]
            if before >= 0 and column[before] == chosen[i]:
                level = before
            out[cy * k + a, cx * k + b] = codes[level]


@kernel
def _allocate(p, scenario, land, area, k, column, previous, level_of_code, codes, out, first, end):
    """The class codes of the coarse-cell rows [first, end) of ``out`` (H, W) from conserved
    probabilities (K, H, W) (:func:`_choose`); ocean where a cell has no land."""
    owned = _work(k * k, p.shape[0], scenario.shape[0] + 1)
    w, p, scenario, land, area, column, previous, level_of_code, codes, out = borrowed(
        (owned, p, scenario, land, area, column, previous, level_of_code, codes, out))
    q, land_area, pixel_area, target = w.q, w.land_area, w.pixel_area, w.target
    for cy in range(first, end):
        for cx in range(p.shape[2] // k):
            cell_area = _geometry(scenario, land, area, k, cy, cx, land_area, pixel_area, target)
            if cell_area == 0.0:
                for a in range(k):
                    for b in range(k):
                        out[cy * k + a, cx * k + b] = codes[0]
                continue
            _load(p, k, cy, cx, q)
            _choose(q, land_area, pixel_area, target, cell_area, column, previous, level_of_code, codes, k, cy, cx, out, w)
    keep_alive(owned)


@kernel
def _post(logits, scenario, land, area, k, column, iterations, previous, level_of_code, codes, probs, uncertainty, shares,
          fine_map, first, end):
    """The land-use step's cell work on the coarse-cell rows [first, end), one cell at a time while
    its pixels are in cache: the probabilities from the logits (:func:`_softmax_at`), projected on
    the scenario (:func:`_project`), into ``probs`` (K, H, W); their normalised entropy into
    ``uncertainty`` (H, W); each scenario group's area-weighted share of the cell into ``shares``
    (G, H/k, W/k), what the conservation check compares with the scenario; the allocated class
    codes into ``fine_map`` (H, W) (:func:`_choose`). The same bits as :func:`_masked_softmax`,
    :func:`_conserve`, :func:`_normalised_entropy`, :func:`_group_shares` and :func:`_allocate` in turn."""
    owned = _work(k * k, logits.shape[0], scenario.shape[0] + 1), np.empty(shares.shape[0])
    (w, total), logits, scenario, land, area, column, previous, level_of_code, codes = borrowed(
        (owned, logits, scenario, land, area, column, previous, level_of_code, codes))
    probs, uncertainty, shares, fine_map = borrowed((probs, uncertainty, shares, fine_map))
    q, land_area, pixel_area, target = w.q, w.land_area, w.pixel_area, w.target
    for cy in range(first, end):
        for cx in range(logits.shape[2] // k):
            cell_area = _geometry(scenario, land, area, k, cy, cx, land_area, pixel_area, target)
            if cell_area == 0.0:  # all ocean: what the steps below give such a cell
                _ocean_cell(area, k, cy, cx, codes[0], probs, uncertainty, shares, fine_map)
                continue
            for a in range(k):
                for b in range(k):
                    _softmax_at(logits, land, cy * k + a, cx * k + b, q, a * k + b)
            _project(q, land_area, cell_area, target, column, iterations, w)
            _store(q, k, cy, cx, probs)
            for i in range(k * k):
                y, x = cy * k + i // k, cx * k + i % k
                uncertainty[y, x] = _entropy(q[i]) if land[y, x] else 0.0
            _cell_shares(q, area, k, cy, cx, column, total, shares)
            _choose(q, land_area, pixel_area, target, cell_area, column, previous, level_of_code, codes, k, cy, cx,
                    fine_map, w)
    keep_alive(owned)


@kernel(inline=True)
def _ocean_cell(area, k, cy, cx, ocean, probs, uncertainty, shares, fine_map):
    """A coarse cell without land in :func:`_post`'s outputs: ocean probability 1, no uncertainty,
    group shares 0 (0 over the cell's area, as :func:`_cell_shares` gives), the ocean code."""
    weight = 0.0
    for a in range(k):
        for b in range(k):
            y, x = cy * k + a, cx * k + b
            weight += area[y, x]
            probs[0, y, x] = 1.0
            for c in range(1, probs.shape[0]):
                probs[c, y, x] = 0.0
            uncertainty[y, x] = 0.0
            fine_map[y, x] = ocean
    for g in range(shares.shape[0]):
        shares[g, cy, cx] = 0.0 / weight


@kernel
def _landuse_inputs(scenario, codes, level_of_code, nodata, area, static, k, column, mean, std, with_grid, out, faults,
                    first, end):
    """Coarse-cell rows [first, end) of the land-use inputs ``out`` (C, H, W) float32, ``(raw - mean)
    / std`` per channel, from the fine scenario (G, H, W) float32, the previous map's class codes
    (H, W) and their levels ``level_of_code`` (-1: none), the pixel areas and the static fields (a
    tuple of (H, W) float32). Raw channels: the scenario; the scenario minus the area-weighted group
    fractions of the previous map in the cell (summed in pixel order, as :func:`_group_shares`); the
    pixel's position in its cell; the static fields; the one-hot previous class (none for
    ``nodata``). The channels of the grid alone (the position and the static fields) only
    ``with_grid``. Sets ``faults[0]`` where the scenario varies inside a coarse cell and ``faults[1]``
    where a code is neither a class nor ``nodata``. Written a fine row and a channel at a time."""
    groups, n, w = scenario.shape[0], column.size, area.shape[1]
    cells_x = w // k
    share = np.empty((groups, cells_x))
    weight = np.empty(cells_x)
    share_row = np.empty((groups, w), dtype=np.float32)  # each pixel's cell's share, as float32
    first_row = np.empty((groups, w), dtype=np.float32)  # each pixel's cell's first scenario value
    level = np.empty(w, dtype=np.int64)
    hot, cold = np.empty(n, dtype=np.float32), np.empty(n, dtype=np.float32)  # the one-hot values, normalised
    c = 2 * groups + 2 + len(static)
    for lv in range(n):
        hot[lv] = (np.float32(1.0) - mean[c + lv]) / std[c + lv]
        cold[lv] = (np.float32(0.0) - mean[c + lv]) / std[c + lv]
    c = 2 * groups
    column_position = np.empty(w, dtype=np.float32)  # normalised
    for xc in range(cells_x):  # no integer division in the loops over pixels
        for b in range(k):
            column_position[xc * k + b] = (np.float32((b + 0.5) / k - 0.5) - mean[c + 1]) / std[c + 1]
    for cy in range(first, end):
        share[:] = 0.0
        weight[:] = 0.0
        for y in range(cy * k, cy * k + k):  # each cell's pixels in order: its rows, then columns
            for xc in range(cells_x):
                for x in range(xc * k, xc * k + k):
                    weight[xc] += area[y, x]
                    c = level_of_code[codes[y, x]]
                    if c < 0 and codes[y, x] != nodata:
                        faults[1] = 1
                    if c >= 0 and 0 <= column[c] < groups:
                        share[column[c], xc] += area[y, x]
        for g in range(groups):
            for xc in range(cells_x):
                value = np.float32(share[g, xc] / weight[xc])
                for x in range(xc * k, xc * k + k):
                    share_row[g, x] = value
                    first_row[g, x] = scenario[g, cy * k, xc * k]
        varies = False
        for y in range(cy * k, cy * k + k):
            for g in range(groups):
                d = groups + g
                for x in range(w):
                    varies = varies | (scenario[g, y, x] != first_row[g, x])
                    out[g, y, x] = (scenario[g, y, x] - mean[g]) / std[g]
                for x in range(w):
                    out[d, y, x] = (scenario[g, y, x] - share_row[g, x] - mean[d]) / std[d]
            c = 2 * groups
            row = (np.float32((y - cy * k + 0.5) / k - 0.5) - mean[c]) / std[c]
            for x in range(w if with_grid else 0):
                out[c, y, x] = row
                out[c + 1, y, x] = column_position[x]
            for s in range(len(static) if with_grid else 0):
                c = 2 * groups + 2 + s
                field = static[s]
                for x in range(w):
                    out[c, y, x] = (field[y, x] - mean[c]) / std[c]
            for x in range(w):
                level[x] = level_of_code[codes[y, x]]
            for lv in range(n):
                c = 2 * groups + 2 + len(static) + lv
                for x in range(w):
                    out[c, y, x] = hot[lv] if level[x] == lv else cold[lv]
        if varies:
            faults[0] = 1


@kernel
def _normalised_entropy(p, land, out, first, end):
    """Rows [first, end) of ``out`` (H, W): :func:`_entropy` on land, 0 elsewhere."""
    for y in range(first, end):
        for x in range(p.shape[2]):
            out[y, x] = _entropy(p[:, y, x]) if land[y, x] else 0.0


@kernel(inline=True)
def _cell_shares(q, weights, k, cy, cx, column, total, out):
    """``out[g, cy, cx]`` (G, H/k, W/k): the ``weights``-weighted mean over one coarse cell of its
    probabilities q (k*k, K) of the classes of each column g < G (columns ≥ G and -1 count in
    none), its pixels added in order; ``total`` (G) a work array."""
    groups = out.shape[0]
    total[:] = 0.0
    weight = 0.0
    for i in range(k * k):
        w = weights[cy * k + i // k, cx * k + i % k]
        weight += w
        for c in range(q.shape[1]):
            g = column[c]
            if 0 <= g < groups:
                total[g] += q[i, c] * w
    for g in range(groups):
        out[g, cy, cx] = total[g] / weight


@kernel
def _group_shares(p, weights, k, column, out, first, end):
    """Coarse-cell rows [first, end) of ``out`` (G, H/k, W/k): :func:`_cell_shares` of every cell."""
    q = np.empty((k * k, p.shape[0]))
    total = np.empty(out.shape[0])
    for cy in range(first, end):
        for cx in range(p.shape[2] // k):
            _load(p, k, cy, cx, q)
            _cell_shares(q, weights, k, cy, cx, column, total, out)


@kernel
def conservation_error(shares, scenario, k, land_share, tolerance) -> tuple:
    """(the largest |share − scenario| of the group shares (G, H/k, W/k) over the coarse cells whose
    scenario fits their land (Σ_g scenario ≤ ``land_share`` + ``tolerance``), NaN if any of those
    is NaN; the count of those cells; the count of the others). The scenario is the fine one
    (G, H, W), read at each cell's first pixel."""
    worst, broken, feasible, infeasible = 0.0, False, 0, 0
    for cy in range(shares.shape[1]):
        for cx in range(shares.shape[2]):
            total = 0.0
            for g in range(shares.shape[0]):
                total += np.float64(scenario[g, cy * k, cx * k])
            if not total <= land_share[cy, cx] + tolerance:
                infeasible += 1
                continue
            feasible += 1
            for g in range(shares.shape[0]):
                error = abs(shares[g, cy, cx] - np.float64(scenario[g, cy * k, cx * k]))
                broken = broken or np.isnan(error)
                worst = max(worst, error)
    return (np.nan if broken else worst), feasible, infeasible


def masked_softmax(logits, land):
    """(K, H, W) float64 class probabilities from logits (K, H, W): on land, the softmax over the
    land classes 1..K-1 (ocean 0); elsewhere ocean 1 and the others 0."""
    out = np.empty(logits.shape)
    in_blocks(_masked_softmax, logits.shape[1], logits, land, out)
    return out


def conserve(p, scenario, land, area, k, column, iterations) -> None:
    """Project probabilities (K, H, W) float64 in place onto the scenario (see :func:`_conserve`)."""
    in_blocks(_conserve, p.shape[1] // k, p, scenario, land, area, k, column, iterations)


def allocate(p, scenario, land, area, k, column, previous, level_of_code, codes) -> np.ndarray:
    """The fine class map (H, W) uint8 of class codes (see :func:`_allocate`)."""
    out = np.empty(land.shape, dtype=np.uint8)
    in_blocks(_allocate, land.shape[0] // k, p, scenario, land, area, k, column, previous, level_of_code, codes, out)
    return out


def group_shares(p, weights, k, column, groups) -> np.ndarray:
    """(groups, H/k, W/k) float64: per coarse cell, the weighted mean of the classes of each column."""
    out = np.empty((groups, p.shape[1] // k, p.shape[2] // k))
    in_blocks(_group_shares, p.shape[1] // k, p, weights, k, column, out)
    return out


def landuse_inputs(scenario, codes, level_of_code, nodata, area, static, k, column, mean, std, out=None,
                   with_grid=True) -> tuple:
    """(the land-use inputs (C, H, W) float32, normalised by ``mean`` and ``std`` (C) float32, in the
    leading corner of ``out`` if given (:func:`.compiled.output_array`); faults (2)): see
    :func:`_landuse_inputs`. Without ``with_grid``, the channels of the grid alone are left as
    ``out`` has them."""
    out = output_array(out, (mean.size,) + area.shape)
    faults = np.zeros(2, dtype=np.int64)
    in_blocks(_landuse_inputs, area.shape[0] // k, scenario, codes, level_of_code, nodata, area, static, k, column,
              mean, std, bool(with_grid), out, faults)
    return out[:, :area.shape[0], :area.shape[1]], faults


def normalised_entropy(p, land) -> np.ndarray:
    """(H, W) entropy of the land classes over its maximum, in [0, 1]; 0 off land."""
    out = np.empty(land.shape)
    in_blocks(_normalised_entropy, land.shape[0], p, land, out)
    return out


def post(logits, scenario, land, area, k, column, iterations, previous, level_of_code, codes, groups) -> tuple:
    """(probabilities (K, H, W) float64, uncertainty (H, W), group shares (groups, H/k, W/k), class
    codes (H, W) uint8) from logits (K, H, W): :func:`_post`."""
    n, h, w = logits.shape
    out = (np.empty((n, h, w)), np.empty((h, w)), np.empty((groups, h // k, w // k)), np.empty((h, w), dtype=np.uint8))
    in_blocks(_post, h // k, logits, scenario, land, area, k, column, iterations, previous, level_of_code, codes, *out)
    return out
