"""The group tree of a library, and which of its levels a person is shown first.

HDBSCAN's condensed tree (with an absolute smallest group, ``MIN_GROUP``) holds every group
the library has at every level: animals -> dogs -> our dog. This module picks the level a
person names first, by rules that refer to what a person sees, never to a library's size:

1. *Stable groups* (excess of mass over log-density): a group that holds together over a
   wide range of density scales is preferred over its parts. Persistence is measured in
   log(lambda), so a group counts by how many-fold its density range spans, not by how
   dense it is: a burst of near-copies is no more "a group" than a spread-out class.
2. *Split what is mixed*: a chosen group is replaced by its sub-groups when they are
   distinct things (each member's nearest neighbours, in the backbone's own space, stay in
   its own sub-group well beyond chance: kappa >= ``DISTINCT_KAPPA``, "substantial
   agreement") and one name would be wrong for a big part of it (the sub-groups other
   than the largest hold >= ``MIXED_SHARE`` of it, or one of them is as big as the smaller
   chosen groups: in a library of many small groups, a distinct part of 36 inside a group of
   114 is a group of its own, while a mode of 20 inside a class of 800 beside classes of
   hundreds is not). Sizes are compared at the density where the part splits off: a part has
   lost its loosest members there, and so has every group at that density, so each chosen
   group counts the members it still holds at it (groups dissolved by then do not count). "The
   smaller groups" are the lower quartile (``SMALL_GROUPS``) of those counts, not the median:
   where look-alike classes came out merged, the merged groups are the big ones and pull the
   median above a single class. Whatever their sizes, two distinct sub-groups whose pictures are
   no more alike than two random pictures of the library (rule 3's yardstick for "nothing in
   common") are two things: beside groups of 100-800, caltech-small34's classes cut to 12 photos
   came out as one group of 519 with the bonsai class, because every part that split off was
   smaller than the smaller groups (~100), while a big class's modes stay more alike than that.
3. *Clutter is no group*: UMAP gives every picture a neighbourhood of the same size, so clutter
   (pictures that have nothing in common) can come out as a dense blob. A chosen group whose
   typical member is no more alike to the others, in the backbone's own space, than two pictures
   drawn at random from the library is replaced by its sub-groups that are groups, and what is
   left is unsorted. (It drops no group of the shared sets: by the mean pair distance their loosest
   group was 0.90 of the random-pair distance, cifar10-test's, and uniform clutter 1.3. A library
   where one tight group holds most pictures lowers the random-pair distance; a loose group there
   is shown by its tighter parts.) The median member of a tight set with a halo of clutter round it
   can be a halo row that lies between the two, so a chosen group that holds a set passing rule
   5's test while the rest of it alone is no more alike than random pictures is given up as well:
   rule 5 then finds the set among the unsorted rows, without its halo.
4. *A group is not the library, and pieces are no groups*: when that leaves fewer than 3 groups,
   one group holding most images, or groups that are not distinct from each other (with every
   image counted at its nearest group, a typical group's neighbour kappa is below ``DISTINCT_KAPPA``:
   the test rule 2 puts to sub-groups, put to each group of the level), the features are weakly
   separated and the stable level is none a person can name: it has cut a continuum into pieces
   that look alike. (Measured per group, the other shared shapes give 0.72-0.99 and cifar10-test's
   draws 0.37-0.57; its draws above 0.6, 0.68 and 0.72, have a group holding most of the library.)
   Then its leaves are shown at the finest smallest-group size (on a sqrt(2)-spaced ladder) at
   which no two of them look alike: with every image counted at its nearest leaf, the merge
   suggestions are empty. (The level whose leaves agree most is no answer: fewer groups have
   fewer borders, so agreement grows all the way to the coarsest level. In cifar10-test it
   chose 5 to 7 groups for 10 classes, where this rule chooses 18 to 37, by the draw.)
5. *A tight group is a group even where the reduced space blends it in*: among the rows left
   unsorted, rows that are each other's nearest neighbours in the backbone's own space, in a set
   of >= ``MIN_GROUP`` that mostly points to itself, stands apart from what surrounds it (the
   nearest row outside is >= ``COPY_SCALE`` times as far as the neighbours inside) and is no
   looser than the loosest group already shown, are a group (``tight_unsorted_groups``). This also finds a small group of which
   the fit sample of a big library holds only a few rows.
6. *A picture nearer another group is not this group's, unless the group is sure of it*: the rows
   that leave a chosen group of the stable level before it divides into sub-groups are its fringe;
   what it still holds where it divides is its core. A fringe row whose picture is nearer (mean
   cosine distance, in the backbone's space) to another group's core than to its own group's core
   is unsorted (``fringe``); it then meets the test every unsorted row meets. The core is what
   HDBSCAN is sure of; its fringe is where UMAP's fixed-size neighbourhoods draw in pictures of
   other kinds. In caltech-small34 a group of 45 held 25 octopus photos and 19 photos of 10 other
   kinds that left it before it divided into two octopus parts, so 12 looks at random members
   found no majority and the octopus class was never named. With this rule, 0.8892 -> 0.9016 of
   caltech-small34 was right after naming (benchmarks/README.md, round 15).
"""
from __future__ import annotations

import numpy as np

MIN_GROUP = 10          # the smallest group a person would call a group, at any library size
MIN_SAMPLES = 5         # density from 5 neighbours: half the smallest group, so it has a dense core
DISTINCT_KAPPA = 0.6    # chance-corrected neighbour agreement of "distinct" sub-groups
MIXED_SHARE = 1 / 3     # a name wrong for a third of a group is a wrong name
SMALL_GROUPS = 25       # percentile of chosen group sizes that counts as "the smaller groups"
AGREEMENT_K = 10        # neighbours per image for agreement, splits and merge suggestions
COPY_SIMILARITY = 0.99  # the same picture re-encoded or resized: identical to the backbone
# Copies that a crop, a brightness change or a burst make (cosine 0.8-0.97, the range where
# distinct photos of one class also lie) are told by what surrounds them, not by a threshold:
COPY_GAP = 1.5          # ...the nearest other picture is >= 1.5x as far (cosine distance) as the farthest
# copy (the largest jump in the row's sorted neighbour distances). With the two rules below, it
# joins one set of 5 frames in caltech-small34 (1,472 photos), two 5-shot series in caltech101-8
# (2,463) and nothing in cifar10-test (10,000), libraries of distinct photos; in the x10 shape it
# joins 12,993 of 14,720 rows (the rest are copies of originals that are near-duplicates already).
COPY_SCALE = 2.0        # ...and the copies are >= 2x closer together than this library's pictures are to
# their nearest other picture (median over the library). A tight group of distinct photos standing
# apart (10 photos of one object beside clutter) has a gap too, but its members are as far apart as
# pictures usually are: it is a group, not one picture.
COPY_LOOK = 3 * MIN_GROUP  # the largest set of copies looked for: a burst of more than 30 is a group
# A set of fewer than MIN_SAMPLES copies is left as it is: density comes from each row's 5th
# neighbour, so so few copies make no dense core of their own (and duplicate pairs, common in
# libraries of distinct photos, are two photos a person kept).


class GroupTree:
    """The condensed tree over ``m`` fitted rows: nodes, parents, members and exit densities."""

    def __init__(self, condensed: np.ndarray, m: int):
        par = condensed["parent"].astype(np.int64)
        child = condensed["child"].astype(np.int64)
        lam = np.asarray(condensed["lambda_val"], np.float64)
        size = condensed["child_size"].astype(np.int64)
        self.m = m
        self.root = m
        top = int(max(par.max(initial=m), child.max(initial=m))) + 1
        is_node = child >= m
        self.parent = np.full(top, -1, np.int64)
        self.parent[child[is_node]] = par[is_node]
        self.birth = np.zeros(top)
        self.birth[child[is_node]] = lam[is_node]
        self.nodes = np.unique(np.concatenate([[m], par, child[is_node]]))  # parents before children
        self.children: dict[int, list[int]] = {}
        for p, c in zip(par[is_node], child[is_node]):
            self.children.setdefault(int(p), []).append(int(c))
        self.point_node = np.full(m, m, np.int64)     # the node each row falls out of
        self.point_lambda = np.zeros(m)
        pts = ~is_node
        self.point_node[child[pts]], self.point_lambda[child[pts]] = par[pts], lam[pts]
        self._rows = {}
        for v in self.nodes[::-1]:
            parts = [np.flatnonzero(self.point_node == v)] + [self._rows[c] for c in self.children.get(int(v), [])]
            self._rows[int(v)] = np.concatenate(parts)
        self._par, self._lam, self._size = par, lam, size

    def rows(self, v: int) -> np.ndarray:
        return self._rows[int(v)]

    def stable_selection(self, log: bool = True) -> list[int]:
        """Excess-of-mass selection (the root is never a group); log=True measures persistence
        in log(lambda)."""
        f = (lambda x: np.log(np.maximum(x, 1e-12))) if log else (lambda x: x)
        lam = np.where(np.isfinite(self._lam), self._lam, np.nanmax(self._lam[np.isfinite(self._lam)], initial=1.0))
        start = f(self.birth)
        start[self.root] = f(lam[self._par == self.root].min()) if (self._par == self.root).any() else 0.0
        stability = np.zeros(len(self.parent))
        np.add.at(stability, self._par, self._size * (f(lam) - start[self._par]))
        best, chosen = {}, {}
        for v in self.nodes[::-1]:
            v = int(v)
            kids = self.children.get(v, [])
            total = sum(best[c] for c in kids)
            if kids and (total > stability[v] or v == self.root):
                best[v], chosen[v] = total, [x for c in kids for x in chosen[c]]
            else:
                best[v], chosen[v] = stability[v], [v]
        return [v for v in chosen[self.root] if v != self.root]

    def leaves(self) -> list[int]:
        return [int(v) for v in self.nodes if v != self.root and not self.children.get(int(v))]

    def split_mixed(self, selected: list[int], neighbours: np.ndarray,
                    Xn: np.ndarray | None = None) -> list[int]:
        """Replace each group by its sub-groups while they are distinct and they matter: one name
        would be wrong for >= MIXED_SHARE of it, a sub-group other than the largest is as big
        as the smaller groups of ``selected`` are at the density where it splits off (a part the
        size of groups this library has is a group a person names; measured on the library
        itself, so no size is fixed), or, with ``Xn`` (the rows as unit vectors in the backbone's
        own space), the two largest sub-groups' pictures are no more alike than two random
        pictures of the library. See rule 2 above. Recursive."""
        # every chosen group's rows with their exit densities: a group's size at a density is a count
        members = [self.rows(v) for v in selected]
        exits = np.concatenate([self.point_lambda[r] for r in members]) if members else np.zeros(0)
        owner = np.repeat(np.arange(len(members)), [len(r) for r in members])

        def smaller_groups_at(lam: float) -> float:
            # only groups that still exist at that density: one that has dissolved there is no
            # yardstick (counted as 0, it would let any late split inside a blob through)
            held = np.bincount(owner[exits >= lam], minlength=len(selected))
            held = held[held > 0]
            return float(np.percentile(held, SMALL_GROUPS)) if len(held) else np.inf

        random_pair = pair_distance(Xn) if Xn is not None else np.inf

        def unrelated(kids) -> bool:  # mean distance between the two largest parts' pictures
            if Xn is None:
                return False
            a, b = sorted((self.rows(c) for c in kids), key=len)[-2:]
            sa, sb = Xn[a].sum(axis=0, dtype=np.float64), Xn[b].sum(axis=0, dtype=np.float64)
            return 1.0 - float(sa @ sb) / (len(a) * len(b)) >= random_pair

        out, todo = [], list(selected)
        while todo:
            v = todo.pop()
            kids = self.children.get(v, [])
            sizes = sorted((len(self.rows(c)) for c in kids), reverse=True)
            matters = len(kids) >= 2 and (sum(sizes[1:]) >= MIXED_SHARE * len(self.rows(v)) or
                                          sizes[1] >= smaller_groups_at(self.birth[kids[0]]) or
                                          unrelated(kids))
            if matters and kappa([self.rows(c) for c in kids], neighbours) >= DISTINCT_KAPPA:
                todo.extend(kids)
            else:
                out.append(v)
        return out

    def without_loose(self, selected: list[int], Xn: np.ndarray,
                      wide: tuple[np.ndarray, np.ndarray]) -> tuple[list[int], int]:
        """Rule 3: each chosen group whose typical member (the median, over members, of the mean
        cosine distance to the other members, in ``Xn``: the rows as unit vectors, ``unit_rows``)
        is no more alike to the rest than two
        random pictures of the library are to each other is replaced by its children, recursively;
        a leaf that fails is dropped. The median, not the mean: a tight handful inside a blob of
        clutter makes the blob's mean look like a group while most of its members are clutter.
        A group that is a tight set plus a halo (``core_with_halo``) is given up too: the halo
        goes unsorted and rule 5 finds the tight set there. ``wide``: each row's ``COPY_LOOK``
        nearest rows and their similarities in ``Xn``.
        Returns (selection, number of groups given up)."""
        library = pair_distance(Xn)
        out, todo, dropped = [], list(selected), 0
        while todo:
            v = todo.pop()
            rows = self.rows(v)
            if typical_distance(Xn[rows]) < library:
                if core_with_halo(Xn, rows, wide, library):
                    dropped += 1
                    continue
                out.append(v)
            else:
                dropped += 1
                todo.extend(self.children.get(v, []))
        return (list(selected) if not dropped else out), dropped

    def fringe(self, selected: list[int], Xn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rule 6: the rows that leave a chosen group before it divides into sub-groups (a group
        without sub-groups has no such density) and whose pictures are nearer another chosen
        group's core than their own (mean cosine distance to the core's members, in ``Xn``: the
        rows as unit vectors in the backbone's space). The core is what the group still holds where
        it divides. Returns those rows and, per row, the node it falls back to: the group's parent
        (-1 at the root), of which it still is a member."""
        from scipy.sparse import csr_matrix

        group, _ = self.labels(selected)
        out = [np.zeros(0, np.int64)]
        for v in selected:
            if self.children.get(int(v)):
                r = self.rows(v)
                out.append(r[self.point_node[r] == v])
        out = np.concatenate(out)
        if not len(out):
            return out, out.copy()
        own = group[out]
        core = group.copy()
        core[out] = -1
        ok = np.flatnonzero(core >= 0)
        sums = csr_matrix((np.ones(len(ok)), (core[ok], ok)), shape=(len(selected), len(Xn))) @ Xn
        counts = np.bincount(core[ok], minlength=len(selected))
        toward = (sums / np.maximum(counts, 1)[:, None]).T.astype(np.float32)  # mean similarity to a core's members
        near = np.concatenate([np.argmax(Xn[out[a:a + 4096]] @ toward, axis=1)   # rows x groups, bounded
                               for a in range(0, len(out), 4096)])
        away = near != own
        up = np.array([int(self.parent[v]) if int(self.parent[v]) != self.root else -1 for v in selected], np.int64)
        return out[away].astype(np.int64), up[own[away]]

    def labels(self, selected: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(flat label per row, -1 outside every selected group; membership strength in [0, 1])."""
        labels = np.full(self.m, -1, np.int64)
        strength = np.zeros(self.m, np.float32)
        for i, v in enumerate(selected):
            r = self.rows(v)
            labels[r] = i
            lam = self.point_lambda[r]
            lam = np.where(np.isfinite(lam), lam, np.nan)
            top = np.nanmax(lam) if np.isfinite(lam).any() else 1.0
            strength[r] = np.nan_to_num(lam / top if top > 0 else 1.0, nan=1.0)
        return labels, strength

    def finest_node(self, keep: set[int]) -> np.ndarray:
        """Per row, the deepest node of ``keep`` that holds it (-1 if none)."""
        out = np.full(self.m, -1, np.int64)
        for v in self.nodes:  # parents first, so deeper nodes overwrite
            if int(v) in keep:
                out[self.rows(v)] = v
        return out

    def ancestors(self, v: int) -> list[int]:
        out = []
        if v >= len(self.parent):  # a group found beside the tree (rule 5) has none
            return out
        while self.parent[v] >= 0 and self.parent[v] != self.root:
            v = int(self.parent[v])
            out.append(v)
        return out

    def descendants(self, v: int) -> list[int]:
        out, todo = [], list(self.children.get(v, []))
        while todo:
            c = todo.pop()
            out.append(c)
            todo.extend(self.children.get(c, []))
        return out


def unit_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def mean_pair_distance(square_of_sum, n):
    """Mean cosine distance over all pairs of distinct rows of a set of n unit vectors whose sum
    has squared norm ``square_of_sum``: the pairs' similarities add up to that minus the rows' own n."""
    n = np.maximum(np.asarray(n, np.float64), 2)
    return 1.0 - (np.asarray(square_of_sum, np.float64) - n) / (n * (n - 1))


def pair_distance(Xn: np.ndarray) -> float:
    """Mean cosine distance over all pairs of distinct rows of ``Xn`` (unit vectors), exactly."""
    if len(Xn) < 2:
        return 0.0
    total = Xn.sum(axis=0, dtype=np.float64)
    return float(mean_pair_distance(total @ total, len(Xn)))


def typical_distance(Xn: np.ndarray) -> float:
    """The median over rows of each row's mean cosine distance to the other rows (unit vectors)."""
    n = len(Xn)
    if n < 2:
        return 0.0
    total = Xn.sum(axis=0, dtype=np.float64)
    return float(np.median(1.0 - (Xn @ total - 1.0) / (n - 1)))


def tight_unsorted_groups(X: np.ndarray, unsorted: np.ndarray, reference: np.ndarray,
                          loosest: float) -> list[tuple[np.ndarray, float]]:
    """Rule 5: groups among the unsorted rows that the reduced space could not show (a tight group
    of 10 inside clutter, which UMAP's fixed-size neighbourhoods blend into it; a small group of
    which the fit sample holds only a few rows). In the backbone's own space: the rows that are
    each other's nearest neighbours (mutual among their MIN_GROUP - 1 nearest, searched among
    ``unsorted`` and the ``reference`` rows), in sets of >= MIN_GROUP whose members' neighbours
    are mostly each other and that are no looser (mean pair distance) than ``loosest``, the
    loosest group the library already shows. Returns (rows, share of the members' neighbours
    inside the set) per group."""
    import faiss

    if len(unsorted) < MIN_GROUP:
        return []
    pool = np.union1d(unsorted, reference)
    Xp = np.ascontiguousarray(unit_rows(np.asarray(X[pool])))
    index = faiss.IndexFlatIP(Xp.shape[1])
    index.add(Xp)
    at = np.searchsorted(pool, unsorted)
    look = int(min(COPY_LOOK, len(pool) - 1))
    sim, wide = index.search(Xp[at], look + 1)
    own = wide == at[:, None]                          # drop the row itself, keep `look` others
    first = np.where(own.any(axis=1), own.argmax(axis=1), look)
    keep = np.ones_like(own)
    keep[np.arange(len(at)), first] = False
    wide, dist = wide[keep].reshape(len(at), look), 1.0 - sim[keep].reshape(len(at), look)
    return [(unsorted[members], inside) for members, inside in _tight_sets(Xp, at, wide, dist, loosest)]


def _tight_sets(Xn: np.ndarray, at: np.ndarray, wide: np.ndarray, dist: np.ndarray,
                loosest: float) -> list[tuple[np.ndarray, float]]:
    """Rule 5's test on candidate rows ``at`` (ids into ``Xn``, unit vectors): ``wide`` and ``dist``
    are each candidate's nearest rows (ids into ``Xn``, -1 for none) and cosine distances, nearest
    first. Sets of >= MIN_GROUP candidates that are each other's nearest (mutual among the
    MIN_GROUP - 1 nearest), whose neighbours are mostly each other, no looser than ``loosest`` and
    standing apart. Returns (positions into ``at``, share of the neighbours inside the set) per set."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    k = MIN_GROUP - 1
    nbr = wide[:, :k]
    pos = np.full(len(Xn), -1, np.int64)
    pos[at] = np.arange(len(at))
    src = np.repeat(np.arange(len(at)), k)
    dst = np.where(nbr.ravel() >= 0, pos[np.maximum(nbr.ravel(), 0)], -1)
    ok = dst >= 0
    graph = coo_matrix((np.ones(int(ok.sum()), np.int8), (src[ok], dst[ok])), shape=(len(at),) * 2).tocsr()
    count, comp = connected_components(graph.minimum(graph.T), directed=False)
    sizes = np.bincount(comp, minlength=count)
    out = []
    for c in np.flatnonzero(sizes >= MIN_GROUP):
        members = np.flatnonzero(comp == c)
        inside = float(np.isin(nbr[members], at[members]).mean())
        if inside >= 0.5 and pair_distance(Xn[at[members]]) <= loosest \
                and _stands_apart(wide[members], dist[members], at[members], k):
            out.append((members, inside))
    return out


def core_with_halo(Xn: np.ndarray, rows: np.ndarray, wide: tuple[np.ndarray, np.ndarray],
                   library: float) -> bool:
    """Rule 3, second half: a group that holds a tight set (rule 5's test, within the group) while
    the rest of it, taken alone, is no more alike than two random pictures of the library is a tight
    group with a halo of clutter that UMAP's fixed-size neighbourhoods gathered round it: its median
    member may be a clutter row that happens to lie between the tight set and the halo.
    ``wide``: each row's nearest rows and similarities in ``Xn``."""
    if len(rows) < MIN_GROUP + 2:
        return False
    nbr, sim = wide
    core = np.zeros(len(rows), bool)
    for members, _ in _tight_sets(Xn, rows, nbr[rows], 1.0 - sim[rows], library):
        core[members] = True
    rest = rows[~core]
    return bool(core.any()) and len(rest) >= 2 and typical_distance(Xn[rest]) >= library


def _stands_apart(wide: np.ndarray, dist: np.ndarray, members: np.ndarray, k: int) -> bool:
    """The typical member's nearest row outside the set is >= COPY_SCALE times as far as its
    farthest neighbour inside it (among its k nearest): the set is apart from what surrounds it,
    not a denser spot of a continuum (ten jittered shots of one photo among other photos)."""
    mine = np.isin(wide, members)
    near_in = np.where(mine[:, :k], dist[:, :k], 0.0).max(axis=1)
    outside = ~mine
    near_out = np.where(outside.any(axis=1), dist[np.arange(len(wide)), outside.argmax(axis=1)], dist[:, -1])
    return bool(np.median(near_out / np.maximum(near_in, 1e-9)) >= COPY_SCALE)


def neighbour_graph(X: np.ndarray, k: int = AGREEMENT_K, with_similarity: bool = False):
    """Each row's k nearest other rows by cosine (exact, faiss), m x k (and their similarities)."""
    import faiss

    Xn = np.ascontiguousarray(X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12), dtype=np.float32)
    index = faiss.IndexFlatIP(Xn.shape[1])
    index.add(Xn)
    k = int(min(k, len(Xn) - 1))
    sim, nbr = index.search(Xn, k + 1)
    # a row's exact copy may come before the row itself: drop the row, keep k others
    own = nbr == np.arange(len(Xn))[:, None]
    first = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(len(Xn)), first] = False
    nbr, sim = nbr[keep].reshape(len(Xn), k), sim[keep].reshape(len(Xn), k)
    return (nbr, sim) if with_similarity else nbr


def near_copy_representatives(neighbours: np.ndarray, similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows that are one picture joined into one: identical to the backbone (cosine >=
    COPY_SIMILARITY to a neighbour), or a set of copies by the relative rule (COPY_GAP, COPY_SCALE)
    over each row's sorted neighbours (``neighbours``/``similarity``: m x k, nearest first; copy
    sets up to k rows are seen). Returns (sorted representative rows, position of each row's
    representative among them)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    m, k = neighbours.shape if neighbours.ndim == 2 else (len(neighbours), 0)
    if m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = np.nonzero(similarity >= COPY_SIMILARITY)
    src, dst = [rows], [neighbours[rows, cols]]
    if k >= 2:
        dist = np.maximum(1.0 - similarity.astype(np.float64), 0.0)        # ascending per row
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(dist[:, 1:] > 0, dist[:, :-1] / dist[:, 1:], 1.0)
        size = ratio.argmin(axis=1) + 1                  # copies = the `size` nearest, then the gap
        gap = ratio[np.arange(m), size - 1] <= 1.0 / COPY_GAP
        beyond = np.where(gap, dist[np.arange(m), np.minimum(size, k - 1)], dist[:, 0])
        scale = float(np.median(beyond))                 # distance to the nearest other picture
        ok = gap & (dist[np.arange(m), size - 1] * COPY_SCALE <= scale) & (size + 1 >= MIN_SAMPLES)
        inside = np.arange(k)[None, :] < size[:, None]
        r, c = np.nonzero(ok[:, None] & inside)
        src.append(r)
        dst.append(neighbours[r, c])
    a, b = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(m, m))
    _, comp = connected_components(graph, directed=False)
    first = np.full(comp.max() + 1, m, np.int64)
    np.minimum.at(first, comp, np.arange(m))           # each set's representative: its first row
    reps = np.unique(first)
    return reps, np.searchsorted(reps, first[comp])


def kappa(parts: list[np.ndarray], neighbours: np.ndarray) -> float:
    """Chance-corrected share of neighbour pairs (both inside ``parts``) that stay in one part:
    1 = the parts never touch, 0 = they mix as if assigned at random."""
    which = np.full(len(neighbours), -1, np.int64)
    for j, r in enumerate(parts):
        which[r] = j
    rows = np.concatenate(parts)
    nb = which[neighbours[rows]]
    inside = nb >= 0
    if not inside.any():
        return 0.0
    agree = float((nb == which[rows][:, None])[inside].mean())
    share = np.bincount(which[rows], minlength=len(parts)) / len(rows)
    chance = float((share ** 2).sum())
    return (agree - chance) / (1 - chance) if chance < 1 else 0.0


def agreement(labels: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Per flat group: the share of its members' nearest neighbours that are in the group too
    (how tightly its members agree; 1 = a closed world, low = it bleeds into others)."""
    k = int(labels.max()) + 1 if len(labels) else 0
    ok = labels >= 0
    same = (labels[neighbours] == labels[:, None]).mean(axis=1)
    sums = np.bincount(labels[ok], weights=same[ok], minlength=k)
    counts = np.bincount(labels[ok], minlength=k)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


def merge_suggestions(labels: np.ndarray, neighbours: np.ndarray, limit: int = 20) -> list[tuple[int, int, float]]:
    """Pairs of groups that look like one thing: our own splitting rule would not have kept them
    apart (kappa of the pair < DISTINCT_KAPPA). (a, b, kappa), most alike first."""
    ok = labels >= 0
    a = np.repeat(labels, neighbours.shape[1])
    b = labels[neighbours].ravel()
    cross = (a >= 0) & (b >= 0) & (a != b)
    if not cross.any():
        return []
    pairs, counts = np.unique(np.sort(np.stack([a[cross], b[cross]], 1), axis=1), axis=0, return_counts=True)
    out = []
    for (x, y) in pairs[np.argsort(-counts)][: 5 * limit]:
        kp = kappa([np.flatnonzero(ok & (labels == x)), np.flatnonzero(ok & (labels == y))], neighbours)
        if kp < DISTINCT_KAPPA:
            out.append((int(x), int(y), round(kp, 3)))
    return sorted(out, key=lambda t: t[2])[:limit]


def level_kappa(t: "GroupTree", selected: list[int], neighbours: np.ndarray,
                E: np.ndarray | None = None) -> float:
    """How distinct the ``selected`` groups are, as a person meets them: one group at a time. Per
    group, the chance-corrected share of its members' neighbours (those in any group) that are in
    it too, every row counted at its nearest group in ``E``; the mean over groups. Per group, not
    per row: one big distinct group beside many pieces that look alike would otherwise outweigh them."""
    if len(selected) < 2:
        return 1.0
    labels = placed_labels(t, selected, E)
    near = labels[neighbours]
    inside = near >= 0
    share = np.bincount(labels[labels >= 0], minlength=len(selected)) / max(1, int((labels >= 0).sum()))
    same = np.where(inside, near == labels[:, None], False).sum(axis=1)
    held = np.bincount(labels[labels >= 0], weights=same[labels >= 0], minlength=len(selected))
    looked = np.bincount(labels[labels >= 0], weights=inside.sum(axis=1)[labels >= 0], minlength=len(selected))
    agree = held / np.maximum(looked, 1)
    return float(np.mean((agree - share) / np.maximum(1 - share, 1e-12)))


def most_distinct_leaf_level(single_linkage: np.ndarray, m: int, neighbours: np.ndarray,
                             start: int = MIN_GROUP, E: np.ndarray | None = None
                             ) -> tuple[int, list[int], "GroupTree | None"]:
    """Leaves of the condensed tree at the finest smallest-group size (start * sqrt(2)^i, up to
    m/3) at which no two leaves look like one thing: with every row placed at its nearest leaf (in
    ``E``, where the tree was built), ``merge_suggestions`` has nothing to offer (each pair that
    touches has neighbour kappa >= DISTINCT_KAPPA, the test rule 2 puts to sub-groups). Finer
    levels cut things in pieces a person would merge again; coarser ones merge distinct things.
    (The most agreeing level is no answer: fewer groups have fewer borders, so agreement grows
    all the way to the coarsest.) Counting every row, not only the leaves, matters: the leaves of
    any level stand apart, since the rows between them are left out. Where every level has
    look-alikes, the one whose groups agree most. Without ``E``, the leaves' own rows are used."""
    from hdbscan._hdbscan_tree import condense_tree

    best = (-1.0, start, [], None)
    size = float(start)
    while size <= m / 3:
        mcs = int(round(size))
        t = GroupTree(condense_tree(single_linkage, mcs), m)
        leaves = t.leaves()
        if len(leaves) < 3:
            break
        labels = placed_labels(t, leaves, E)
        if not merge_suggestions(labels, neighbours, limit=len(leaves) ** 2):
            return mcs, leaves, t
        score = kappa([np.flatnonzero(labels == j) for j in range(len(leaves))], neighbours)
        if score > best[0]:
            best = (score, mcs, leaves, t)
        size *= 2 ** 0.5
    return best[1], best[2], best[3]


def placed_labels(t: "GroupTree", leaves: list[int], E: np.ndarray | None) -> np.ndarray:
    """Per row, the index of its leaf in ``leaves``; with ``E``, a row outside every leaf takes the
    leaf of its nearest leaf row in E (without, it stays -1)."""
    which = np.full(t.m, -1, np.int64)
    for j, v in enumerate(leaves):
        which[t.rows(v)] = j
    outside = np.flatnonzero(which < 0)
    if E is not None and len(outside):
        import faiss

        inside = np.flatnonzero(which >= 0)
        E = np.ascontiguousarray(E, np.float32)
        index = faiss.IndexFlatL2(E.shape[1])
        index.add(E[inside])
        _, near = index.search(E[outside], 1)
        which[outside] = which[inside[near[:, 0]]]
    return which
