"""The statistics against values computed by hand."""

import math

import numpy as np
import pytest

from llmops.drift import stats


def test_psi_matches_the_formula_computed_by_hand():
    reference = [0.1] * 10
    counts = [20, 10, 10, 10, 10, 10, 10, 10, 5, 5]  # 100 samples
    # (0.2-0.1)ln(2) + 2 x (0.05-0.1)ln(0.5); the other buckets are equal
    expected = 0.1 * math.log(2) + 2 * (-0.05) * math.log(0.5)
    assert stats.psi(reference, counts) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.13863, abs=1e-5)


def test_psi_clips_empty_buckets_at_1e_4():
    reference = [0.5, 0.5, 0.0]
    counts = [0, 50, 50]
    p, q = [1e-4, 0.5, 0.5], [0.5, 0.5, 1e-4]
    expected = sum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert stats.psi(reference, counts) == pytest.approx(expected)
    assert math.isfinite(stats.psi(reference, counts))


def test_psi_of_the_same_proportions_is_zero_and_bucket_counts_must_match():
    assert stats.psi([0.25] * 4, [5, 5, 5, 5]) == 0
    with pytest.raises(ValueError, match="3 window buckets against 4 reference buckets"):
        stats.psi([0.25] * 4, [1, 2, 3])


def test_bucket_edges_are_the_reference_deciles_and_ties_merge():
    edges = stats.bucket_edges(list(range(100)))
    assert edges == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert [stats.bucket_of(edges, v) for v in (0, 9.9, 10, 55, 99, 1000)] == [0, 0, 1, 5, 9, 9]
    assert stats.bucket_edges([1] * 50 + [2] * 50) == [1, 2]  # two distinct cuts: three buckets


def test_chi2_quantile_is_close_to_the_table():
    # chi-square quantiles from the table: 99.9 %: df 9 -> 27.877, df 4 -> 18.467; 1 - 1e-6: df 9 -> 45.725
    assert stats.chi2_quantile(9, z=3.090232) == pytest.approx(27.877, rel=0.01)
    assert stats.chi2_quantile(4, z=3.090232) == pytest.approx(18.467, rel=0.02)
    assert stats.chi2_quantile(9) == pytest.approx(45.725, rel=0.01)


def test_psi_floor_falls_with_the_window():
    assert stats.psi_floor(10, 100, 10_000) == pytest.approx(stats.chi2_quantile(9) * (1 / 100 + 1 / 10_000))
    assert stats.psi_floor(10, 1000, 10_000) < 0.1 < stats.psi_floor(10, 200, 10_000)
    assert stats.psi_floor(10, 0, 100) == math.inf


def test_centroid_similarity_by_hand():
    # Two window vectors e1 and e2: the sum is (1, 1), the unbiased |mu|^2 = (|s|^2 - sum |x|^2) / (n(n-1)) = 0;
    # both point away from each other's component: nothing in common.
    total = np.array([1.0, 1.0])
    assert stats.squared_centroid(total, 2, 2.0) == 0
    # Four copies of (0.6, 0.8): |mu|^2 = (|4x|^2 - 4) / 12 = (16 - 4) / 12 = 1; against the reference (1, 0) whose
    # |mu|^2 is 1: cosine = (4 x 0.6 / 4) / 1 = 0.6.
    x = np.array([0.6, 0.8])
    assert stats.centroid_similarity(4 * x, 4, 4.0, np.array([1.0, 0.0]), 1.0) == pytest.approx(0.6)
    # The raw cosine of the same centroid agrees when every vector is the same.
    assert stats.raw_similarity(4 * x, 4, np.array([1.0, 0.0])) == pytest.approx(0.6)
    assert math.isnan(stats.centroid_similarity(x, 1, 1.0, np.array([1.0, 0.0]), 1.0))


def test_bias_correction_keeps_small_windows_of_unchanged_traffic_near_one():
    rng = np.random.default_rng(0)
    mu = np.zeros(64)
    mu[0] = 0.3

    def draw(n):
        v = mu + rng.normal(size=(n, 64)) * 0.12
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    reference = draw(20_000)
    ref_total = reference.sum(axis=0)
    ref_mean = ref_total / len(reference)
    ref_squared = stats.squared_centroid(ref_total, len(reference), float((reference * reference).sum()))
    window = draw(100)
    debiased = stats.centroid_similarity(window.sum(axis=0), 100, float((window * window).sum()), ref_mean, ref_squared)
    raw = stats.raw_similarity(window.sum(axis=0), 100, ref_mean)
    assert debiased > 0.95 > raw  # the raw cosine of a small window reads as drift of unchanged traffic


def test_kmeans_is_deterministic_and_separates_clusters():
    rng = np.random.default_rng(1)
    a = np.array([1.0, 0, 0]) + rng.normal(size=(50, 3)) * 0.05
    b = np.array([0, 1.0, 0]) + rng.normal(size=(50, 3)) * 0.05
    vectors = np.vstack([a, b])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    centroids, labels = stats.kmeans(vectors, 2, seed=3)
    again, labels_again = stats.kmeans(vectors, 2, seed=3)
    assert labels == labels_again and np.allclose(centroids, again)
    assert len(set(labels[:50])) == 1 and len(set(labels[50:])) == 1 and labels[0] != labels[50]
