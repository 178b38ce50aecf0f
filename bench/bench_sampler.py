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

Part two (`--generation`) measures what was built instead, `interaction_sampler: tree` (a defined approximation of the
softmax, drawn exactly; see the data notebook): for users and communities both scaled (1x = 5,000 users x 300
communities, 20 interactions per user on average), the time to draw the interactions with the exact sampler and with
the tree (including building the tree), the fitted exponent of time against interactions, the peak memory, and the
tree distribution's distance to the exact softmax on a sample of users (computed in full, both ways):

    .venv/bin/python bench/bench_sampler.py --generation --sizes 1 3 10 30 100
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


def _peak_gib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def _blocks(scale: float, seed: int = 42):
    "The generator's user factors, per-user counts and community factors at a size, cut into its blocks of users."
    from thinkalike_ml import data as D
    U, V, b = _factors(scale, seed)
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0, 0.8, len(U))
    counts = rng.poisson(20.0 * activity / activity.mean())
    n, g = len(U), D.GEN_BLOCK_USERS
    zeros, ones = np.zeros(n), np.ones(n)
    return [(seed, k, U[s:s + g], counts[s:s + g], zeros[s:s + g], ones[s:s + g]) for k, s in enumerate(range(0, n, g))], U, V, b, int(counts.sum())


def _fit(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0]) if len(x) > 1 else float("nan")


def generation(sizes, users: int, exact_limit: float, seed: int = 42):
    "Time of the interaction draws, exact vs tree, and the tree distribution's distance to the exact softmax."
    from thinkalike_ml import data as D
    import sklearn.cluster  # noqa: F401  (imported before the clock starts)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'size':>5} {'users':>8} {'comm.':>7} {'interactions':>12} {'exact cpu s':>11} {'tree cpu s':>10} {'(build)':>8} {'tree wall s':>11} {'peak GiB':>8} "
          f"{'TV mean':>8} {'median':>7} {'p95':>7} {'max':>7} {'exact-scored mass':>17} {'TV, no frontier':>15}", flush=True)
    rows = []
    for scale in sizes:
        blocks, U, V, b, n_inter = _blocks(scale, seed)
        # exact: every block, or (above --exact-limit users x communities) the first blocks, scaled by users (marked ~)
        k = len(blocks) if len(U) * len(V) <= exact_limit else max(1, int(exact_limit // (D.GEN_BLOCK_USERS * len(V))))
        t = time.process_time()  # CPU time of this process: the machine is shared, so wall time measures the neighbours too
        for blk in blocks[:k]: D._interaction_block(*blk, item_factors=V, bias=b)
        t_exact = (time.process_time() - t) * sum(len(x[2]) for x in blocks) / sum(len(x[2]) for x in blocks[:k])
        t, w = time.process_time(), time.perf_counter()
        tree = D.build_item_tree(V, b, seed)
        t_build = time.process_time() - t
        for blk in blocks: D._interaction_block(*blk, item_factors=V, bias=b, tree=tree)
        t_tree, w_tree = time.process_time() - t, time.perf_counter() - w
        peak = _peak_gib()
        # distance to the exact softmax on a sample of users, both distributions in full
        S = U[np.random.default_rng(0).choice(len(U), min(users, len(U)), replace=False)]
        P = S @ V.T + b
        P = np.exp(P - P.max(1, keepdims=True)); P /= P.sum(1, keepdims=True)
        Q = D.tree_probabilities(tree, S)
        tv = 0.5 * np.abs(P - Q).sum(1)
        F, _ = D._frontier(tree, S)
        single = np.where(F >= 0, tree.item[np.maximum(F, 0)], -1)
        exact_mass = np.array([P[r, single[r][single[r] >= 0]].sum() for r in range(len(S))])
        tv0 = 0.5 * np.abs(P - D.tree_probabilities(tree, S, expansions=0)).sum(1)
        del P, Q
        rows.append((scale, len(U), len(V), n_inter, t_exact, k < len(blocks), t_tree))
        print(f"{scale:>4g}x {len(U):>8,} {len(V):>7,} {n_inter:>12,} {('~' if k < len(blocks) else '') + f'{t_exact:.2f}':>11} {t_tree:>10.2f} "
              f"{t_build:>8.2f} {w_tree:>11.2f} {peak:>8.2f} {tv.mean():>8.4f} {np.median(tv):>7.4f} {np.quantile(tv, 0.95):>7.4f} {tv.max():>7.4f} "
              f"{exact_mass.mean():>17.4f} {tv0.mean():>15.4f}", flush=True)
    x = np.array([r[3] for r in rows], float)
    measured = np.array([not r[5] for r in rows])
    print(f"exponent of CPU time vs interactions: exact {_fit(x[measured], np.array([r[4] for r in rows])[measured]):.2f} "
          f"(measured sizes only), tree {_fit(x, np.array([r[6] for r in rows])):.2f}"
          + (f"; tree from {rows[1][0]:g}x up {_fit(x[1:], np.array([r[6] for r in rows])[1:]):.2f}" if len(rows) > 2 else ""))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; peak memory {_peak_gib():.2f} GiB")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=None, help="sizes (default: 1 100, or with --generation 1 3 10 30)")
    ap.add_argument("--users", type=int, default=None, help="users sampled for the exact acceptance (2000) or the distances (500)")
    ap.add_argument("--generation", action="store_true", help="part two: time and distance of the tree sampler against the exact one")
    ap.add_argument("--exact-limit", type=float, default=2e9, help="with --generation: above this many users x communities, time the exact "
                    "sampler on the first blocks only and scale by users (printed with ~)")
    a = ap.parse_args(argv)
    if a.generation:
        return generation(a.sizes or [1, 3, 10, 30], a.users or 500, a.exact_limit)
    a.sizes, a.users = a.sizes or [1, 100], a.users or 2000
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
