"""The statistics of drift, and nothing else: PSI over buckets fixed from a reference, the similarity of embedding
centroids, and the noise floors that keep small windows from crying wolf.

PSI (the population stability index) of window proportions p against reference proportions q, both clipped at
1e-4: sum((p - q) * ln(p / q)). It is the symmetric KL divergence; for two samples of one distribution (n in the
window, m in the reference) it is about chi-square(B - 1) * (1/n + 1/m), so a 100-sample window of unchanged traffic
already scores about 0.09 on 10 buckets -- the "watch" limit. `psi_floor` is that bound at 1 - 1e-6: a window counts
as past a limit only when its PSI is past the limit *and* past the floor for its size. Clipping makes the tail heavier
than chi-square's for small windows (an empty bucket alone scores 0.69), so a PSI is judged only on windows of at least
PSI_MIN_SAMPLES, where an empty bucket has a chance of a few in a billion.

The embedding signal is the cosine similarity of the window's centroid with the reference's. A raw centroid of n unit
vectors is longer than the population's by noise (E|c|^2 = |mu|^2 + (1 - |mu|^2) / n), and the noise points anywhere:
with prompts as varied as a chat service's, a 100-sample window of unchanged traffic has a raw similarity near 0.85.
`centroid_similarity` divides by the unbiased estimate of the centroid's length instead (the mean dot product of
distinct pairs, (|sum x|^2 - sum |x|^2) / (n (n - 1))), which is what the limits mean: the cosine between where the
window's prompts are and where the reference's were.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

BUCKETS = 10
CLIP = 1e-4
# The floor's quantile: one window in a million. A monitor judges 86,400 windows a day; at 99.9 % the floor let
# through a few hundred, and three overlapping windows in a row are not three independent chances.
_Z_FLOOR = 4.753424  # the standard normal's 1 - 1e-6 quantile
# The fewest samples a PSI is judged on: with 10 buckets of a tenth each, a window of n leaves one empty with a chance
# of about 10 x 0.9^n (2.7e-4 at 100, 7e-9 at 200), and an empty bucket alone scores 0.69 once clipped at 1e-4.
PSI_MIN_SAMPLES = 200

Vector = npt.NDArray[np.float64]


def bucket_edges(values: Sequence[float], buckets: int = BUCKETS) -> list[float]:
    """Cut points at the reference's deciles (fewer where values tie: a bucket per distinct cut)."""
    if not values:
        raise ValueError("no values to bucket")
    ordered = sorted(values)
    cuts = [ordered[min(len(ordered) - 1, (len(ordered) * k) // buckets)] for k in range(1, buckets)]
    return sorted(set(cuts))


def bucket_of(edges: Sequence[float], value: float) -> int:
    """The bucket of a value: 0 below the first cut, len(edges) at or above the last."""
    return bisect.bisect_right(edges, value)


def proportions(counts: Sequence[int | float]) -> list[float]:
    total = float(sum(counts))
    if total <= 0:
        raise ValueError("no samples")
    return [max(c / total, CLIP) for c in counts]


def psi(reference: Sequence[float], counts: Sequence[int | float]) -> float:
    """PSI of a window's bucket counts against the reference's proportions (both clipped at 1e-4)."""
    if len(reference) != len(counts):
        raise ValueError(f"{len(counts)} window buckets against {len(reference)} reference buckets")
    window = proportions(counts)
    return float(sum((p - q) * math.log(p / q) for p, q in zip(window, (max(q, CLIP) for q in reference), strict=True)))


def chi2_quantile(df: int, z: float = _Z_FLOOR) -> float:
    """Wilson-Hilferty's approximation of chi-square's quantile (z: the normal quantile); within 1 % for df >= 3."""
    if df < 1:
        return 0.0
    a = 2.0 / (9.0 * df)
    return float(df * (1.0 - a + z * math.sqrt(a)) ** 3)


def psi_floor(buckets: int, window: int, reference: int) -> float:
    """The PSI two samples of one distribution exceed once in a million: chi2_(1-1e-6)(B - 1) * (1/n + 1/m)."""
    if window <= 0:
        return math.inf
    return chi2_quantile(buckets - 1) * (1.0 / window + 1.0 / max(reference, 1))


def squared_centroid(total: Vector, count: int, squared_norms: float) -> float:
    """The unbiased estimate of |mu|^2 from n vectors: (|sum x|^2 - sum |x|^2) / (n (n - 1)); >= 0."""
    if count < 2:
        return math.nan
    return max(float(total @ total - squared_norms) / (count * (count - 1)), 0.0)


def centroid_similarity(total: Vector, count: int, squared_norms: float, reference: Vector,
                        reference_squared: float) -> float:
    """The cosine between the window's population centroid and the reference's, estimated without the small-window
    bias (see the module's docstring); in [-1, 1], NaN below 2 samples."""
    window_squared = squared_centroid(total, count, squared_norms)
    if math.isnan(window_squared) or reference_squared <= 0:
        return math.nan
    if window_squared <= 0:
        return 0.0  # the window's prompts point everywhere: nothing in common with the reference
    dot = float(total @ reference) / count
    return max(-1.0, min(1.0, dot / math.sqrt(window_squared * reference_squared)))


def raw_similarity(total: Vector, count: int, reference: Vector) -> float:
    """The plain cosine of the window's centroid with the reference centroid (small windows look drifted)."""
    norm = float(np.linalg.norm(total)) * float(np.linalg.norm(reference))
    return float(total @ reference) / norm if count and norm else math.nan


def kmeans(vectors: Vector, k: int, *, iterations: int = 25, seed: int = 0) -> tuple[Vector, list[int]]:
    """Spherical k-means (cosine), deterministic for a seed: (unit centroids k x d, each vector's cluster)."""
    count = len(vectors)
    k = max(1, min(k, count))
    rng = np.random.default_rng(seed)
    # k-means++ seeding on cosine distance
    centroids = [vectors[int(rng.integers(count))]]
    for _ in range(1, k):
        distance = 1.0 - np.max(vectors @ np.array(centroids).T, axis=1)
        distance = np.clip(distance, 0, None) ** 2
        total = float(distance.sum())
        pick = int(rng.choice(count, p=distance / total)) if total > 0 else int(rng.integers(count))
        centroids.append(vectors[pick])
    matrix = np.array(centroids, dtype=np.float64)
    labels = np.zeros(count, dtype=np.int64)
    for _ in range(iterations):
        labels_next = np.argmax(vectors @ matrix.T, axis=1)
        for cluster in range(k):
            members = vectors[labels_next == cluster]
            if len(members):
                mean = members.sum(axis=0)
                norm = np.linalg.norm(mean)
                matrix[cluster] = mean / norm if norm > 0 else matrix[cluster]
        if np.array_equal(labels_next, labels):
            break
        labels = labels_next
    return matrix, [int(label) for label in np.argmax(vectors @ matrix.T, axis=1)]
