"""Could the generator's interaction draws be exact *and* linear? The acceptance rate of exact rejection samplers.

The generator draws each user's communities from softmax(u . v_i + b_i) over all communities (12 latent dimensions),
which costs users x communities. An exact sampler whose cost grows with the draws instead would propose communities
from the popularity part exp(b_i) restricted to a region, and accept with exp(u . v_i - B), B an upper bound of u . v over
the region. Its cost per draw is 1 / acceptance. This script measures that acceptance (exactly: Z_u / proposal mass,
with Z_u computed in full for a sample of users) on the generator's own factors, at 1x and 100x the default size, for
two ways of bounding:

- cells: k-means cells of the communities, box bound per cell (a mixture proposal over cells; cost per user: cells x 12);
- tree: a k-d tree over the communities (leaves of one community, whose bound is exact), refined per user best-first
  (split the node of largest bounded mass) for a fixed number of splits.

    .venv/bin/python bench/bench_sampler.py                 # about 3 minutes on a busy 2-core machine
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402


def _factors(scale: float, seed: int = 42):
    from thinkalike_ml import data as D
    n, m = int(5000 * scale), int(300 * scale)
    rng = np.random.default_rng(seed)
    span = (D.TIME_END - D.TIME_START).total_seconds()
    users, lat = D._generate_users(rng, n, 0.92, 0.0, span * 0.8)
    _, il = D._generate_items(rng, m, users, lat)
    lat["taste"], il["taste"] = D._hidden_taste(seed, n, m)
    return D._user_factors(lat), D._item_factors(il), D.POPULARITY_WEIGHT * il["popularity"]


def _logsumexp(x, axis=1):
    top = x.max(axis, keepdims=True)
    return (np.log(np.exp(x - top).sum(axis, keepdims=True)) + top).squeeze(axis)


def _cells(V, k, seed=42, iters=8):
    "Lloyd's k-means labels (k cells)."
    C = V[np.random.default_rng(seed).choice(len(V), min(k, len(V)), replace=False)].copy()
    for _ in range(iters):
        lab = ((V ** 2).sum(1)[:, None] - 2 * V @ C.T + (C ** 2).sum(1)[None]).argmin(1)
        for j in range(len(C)):
            if (lab == j).any(): C[j] = V[lab == j].mean(0)
    return ((V ** 2).sum(1)[:, None] - 2 * V @ C.T + (C ** 2).sum(1)[None]).argmin(1)


def cell_acceptance(U, V, b, k):
    lab = _cells(V, k)
    K = lab.max() + 1
    lo, hi = np.full((K, V.shape[1]), np.inf), np.full((K, V.shape[1]), -np.inf)
    np.minimum.at(lo, lab, V); np.maximum.at(hi, lab, V)
    logW = np.log(np.bincount(lab, np.exp(b - b.max()), minlength=K)) + b.max()
    B = np.maximum(U, 0) @ hi.T + np.minimum(U, 0) @ lo.T
    return np.exp(_logsumexp(U @ V.T + b) - _logsumexp(B + logW))


def _tree(V, b):
    "k-d tree (median split of the widest dimension) down to single communities: ranges, children, boxes, log weights."
    perm, lo, hi, left, right, stack = np.arange(len(V)), [0], [len(V)], [-1], [-1], [0]
    while stack:
        k = stack.pop()
        a, z = lo[k], hi[k]
        if z - a <= 1: continue
        idx = perm[a:z]
        dim = int(np.argmax(V[idx].max(0) - V[idx].min(0)))
        perm[a:z] = idx[np.argsort(V[idx, dim], kind="stable")]
        mid = a + (z - a) // 2
        for s, e in ((a, mid), (mid, z)): lo.append(s); hi.append(e); left.append(-1); right.append(-1)
        left[k], right[k] = len(lo) - 2, len(lo) - 1
        stack += [len(lo) - 2, len(lo) - 1]
    lo, hi, left, right = map(np.array, (lo, hi, left, right))
    Vp, n = V[perm], len(lo)
    blo, bhi = np.empty((n, V.shape[1])), np.empty((n, V.shape[1]))
    for k in range(n - 1, -1, -1):
        if left[k] < 0: blo[k], bhi[k] = Vp[lo[k]:hi[k]].min(0), Vp[lo[k]:hi[k]].max(0)
        else: blo[k], bhi[k] = np.minimum(blo[left[k]], blo[right[k]]), np.maximum(bhi[left[k]], bhi[right[k]])
    cum = np.concatenate([[0.0], np.cumsum(np.exp(b[perm] - b.max()))])
    return dict(left=left, right=right, blo=blo, bhi=bhi, logw=np.log(cum[hi] - cum[lo]) + b.max())


def tree_acceptance(U, V, b, splits):
    t = _tree(V, b)
    bound = lambda rows, nodes: (np.maximum(U[rows], 0) * t["bhi"][nodes] + np.minimum(U[rows], 0) * t["blo"][nodes]).sum(1)
    nb, rows = len(U), np.arange(len(U))
    front, B = np.full((nb, splits + 1), -1), np.full((nb, splits + 1), -np.inf)
    front[:, 0], B[:, 0] = 0, bound(rows, np.zeros(nb, int))
    for r in range(splits):
        f = np.maximum(front, 0)
        mass = np.where((front >= 0) & (t["left"][f] >= 0), B + t["logw"][f], -np.inf)
        j = mass.argmax(1)
        go = np.isfinite(mass[rows, j])
        node = front[rows, j]
        for col, child in ((j, t["left"]), (np.full(nb, r + 1), t["right"])):
            c = child[np.maximum(node, 0)]
            front[rows[go], col[go]], B[rows[go], col[go]] = c[go], bound(rows[go], c[go])
    mass = np.where(front >= 0, B + t["logw"][np.maximum(front, 0)], -np.inf)
    return np.exp(_logsumexp(U @ V.T + b) - _logsumexp(mass))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1, 100])
    ap.add_argument("--users", type=int, default=2000, help="users sampled for the exact acceptance")
    a = ap.parse_args(argv)
    print(f"{'size':>5} {'communities':>11} {'proposal':<22} {'mean acc.':>10} {'median':>10} {'5th pct':>10} {'draws per sample':>17} {'s/user':>8}")
    for scale in a.sizes:
        U, V, b = _factors(scale)
        U = U[np.random.default_rng(0).choice(len(U), min(a.users, len(U)), replace=False)]
        for name, fn, ks in (("cells", cell_acceptance, (64, 256)), ("tree", tree_acceptance, (63, 127))):
            for k in ks:
                t = time.perf_counter()
                acc = fn(U, V, b, k)
                s = (time.perf_counter() - t) / len(U)
                label = f"{name} ({k} {'cells' if name == 'cells' else 'splits'})"
                print(f"{scale:>4g}x {len(V):>11,} {label:<22} {acc.mean():>10.2e} {np.median(acc):>10.2e} {np.quantile(acc, 0.05):>10.2e} "
                      f"{np.mean(1 / acc):>17.3g} {s:>8.1e}", flush=True)


if __name__ == "__main__":
    main()
