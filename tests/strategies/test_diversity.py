"""Core-Set's k-center greedy against a brute-force reference; BADGE's factored distances and seeding."""

import pytest
import torch

from tidal.strategies import ScoreInputs, create_strategy, select_top_k
from tidal.strategies.diversity import (
    gradient_embedding_factors,
    kcenter_greedy,
    kmeans_pp_seeding,
    outer_product_sq_dists,
    pick_order_scores,
)


def kcenter_reference(x, centers, k):
    """Straightforward O(k n m) k-center greedy; with no centers the first pick is farthest from the mean."""
    chosen = [centers[j] for j in range(len(centers))]
    picked = []
    for _ in range(k):
        refs = chosen if chosen else [x.mean(dim=0)]
        best, best_d = None, -1.0
        for i in range(len(x)):
            if i in picked:
                continue
            d = min(float(((x[i] - c) ** 2).sum()) for c in refs)
            if d > best_d:  # strict: ties go to the lowest position
                best, best_d = i, d
        picked.append(best)
        chosen.append(x[best])
    return picked


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("m", [0, 1, 6])
def test_kcenter_matches_brute_force(seed, m):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    c = torch.randn(m, 4, generator=g, dtype=torch.float64)
    expected = kcenter_reference(x, c, 8)
    assert kcenter_greedy(x, c, 8).tolist() == expected
    assert kcenter_greedy(x, c, 8, block=7).tolist() == expected  # chunked initial distances


def test_kcenter_hand_example_and_determinism():
    x = torch.tensor([[0.0], [1.0], [5.0], [10.0]])
    # nearest-center distances from {0}: 0, 1, 5, 10 -> take 10; from {0, 10}: 0, 1, 5 -> take 5; then 1
    assert kcenter_greedy(x, torch.tensor([[0.0]]), 3).tolist() == [3, 2, 1]
    # no centers: the mean is 4, farthest is 10 (position 3); then 0, then 5
    assert kcenter_greedy(x, x[:0], 3).tolist() == [3, 0, 2]
    g = torch.Generator().manual_seed(1)
    y, c = torch.randn(50, 3, generator=g), torch.randn(5, 3, generator=g)
    assert torch.equal(kcenter_greedy(y, c, 10), kcenter_greedy(y, c, 10))


def test_kcenter_with_duplicates_picks_every_point_once():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    picked = kcenter_greedy(x, x[:1], 4)
    assert sorted(picked.tolist()) == [0, 1, 2, 3] and picked[0] == 2
    assert kcenter_greedy(x, x[:1], 0).shape == (0,)
    with pytest.raises(ValueError, match="k=5"):
        kcenter_greedy(x, x[:1], 5)


def test_factored_distance_equals_explicit_outer_product():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 5, generator=g, dtype=torch.float64)
    explicit = (a[:, :, None] * b[:, None, :]).reshape(7, 15)  # class-major: g[c * D + d] = a_c b_d
    for i in range(7):
        want = ((explicit - explicit[i]) ** 2).sum(dim=1)
        assert torch.allclose(outer_product_sq_dists(a, b, a[i], b[i]), want, atol=1e-12)


def test_gradient_embedding_is_the_last_layer_gradient_at_the_predicted_label():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    logits = z @ w.T
    y_hat = logits.argmax(dim=1)
    torch.nn.functional.cross_entropy(logits, y_hat).backward()
    a, b = gradient_embedding_factors(torch.softmax(logits.detach(), dim=1), z)
    assert torch.allclose((a[:, :, None] * b[:, None, :]).reshape(-1), w.grad.reshape(-1))
    # hand example: p = (0.7, 0.2, 0.1), ŷ = 0 -> p - onehot(ŷ) = (-0.3, 0.2, 0.1)
    scale, _ = gradient_embedding_factors(torch.tensor([[0.7, 0.2, 0.1]]), torch.ones(1, 2))
    assert torch.allclose(scale, torch.tensor([[-0.3, 0.2, 0.1]]))


def test_kmeans_pp_picks_k_distinct_largest_norm_first_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 3, generator=g), torch.randn(40, 6, generator=g)
    picked = kmeans_pp_seeding(a, b, 12, torch.Generator().manual_seed(5))
    assert picked.shape == (12,) and picked.dtype == torch.int64 and len(set(picked.tolist())) == 12
    norms = (a * a).sum(dim=1) * (b * b).sum(dim=1)
    assert picked[0] == torch.argmax(norms)
    assert torch.equal(picked, kmeans_pp_seeding(a, b, 12, torch.Generator().manual_seed(5)))
    draws = {tuple(kmeans_pp_seeding(a, b, 12, torch.Generator().manual_seed(s)).tolist()) for s in range(5)}
    assert len(draws) > 1  # the generator does drive the draws


def test_kmeans_pp_draws_proportionally_to_squared_distance():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    ones = torch.ones(3, 1)
    # first: largest norm, x = 3; then D^2 = (9, 4, 0) -> P(0) = 9/13, P(1) = 4/13
    gen = torch.Generator().manual_seed(0)
    seconds = [kmeans_pp_seeding(ones, x, 2, gen).tolist() for _ in range(800)]
    assert all(s[0] == 2 for s in seconds)
    freq0 = sum(s[1] == 0 for s in seconds) / len(seconds)
    assert abs(freq0 - 9 / 13) < 0.07  # about 4 standard deviations


def test_kmeans_pp_with_identical_points_still_picks_distinct_ones():
    same = torch.ones(5, 2)
    picked = kmeans_pp_seeding(torch.ones(5, 1), same, 5, torch.Generator().manual_seed(0))
    assert sorted(picked.tolist()) == [0, 1, 2, 3, 4]


def test_pick_order_scores_make_the_top_k_the_batch():
    scores = pick_order_scores(torch.tensor([2, 0]), 4)
    assert scores.tolist() == [1.0, 0.0, 2.0, 0.0]
    assert select_top_k(scores, torch.tensor([10, 11, 12, 13]), 2)[0].tolist() == [12, 10]


def test_coreset_strategy_on_hand_inputs():
    inputs = ScoreInputs(candidates=torch.tensor([100, 101, 102, 103]), labeled=torch.tensor([7]), k=3,
                         generator=torch.Generator(), embedding=torch.tensor([[0.0], [1.0], [5.0], [10.0]]),
                         labeled_embedding=torch.tensor([[0.0]]))
    scores = create_strategy("coreset").score(inputs)
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    idx, top = select_top_k(scores, inputs.candidates, 3)
    assert idx.tolist() == [103, 102, 101] and top.tolist() == [3.0, 2.0, 1.0]


def test_badge_strategy_on_hand_inputs():
    # C = 2, D = 1 with z = 1, so g = p - onehot(ŷ):
    # (0.9, 0.1) -> (-0.1, 0.1); (0.6, 0.4) -> (-0.4, 0.4); (0.3, 0.7) -> (0.3, -0.3); largest norm: position 1
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])

    def inputs(k, seed):
        return ScoreInputs(candidates=torch.tensor([50, 51, 52]), labeled=torch.tensor([0]), k=k,
                           generator=torch.Generator().manual_seed(seed), probs=probs, embedding=torch.ones(3, 1))

    badge = create_strategy("badge")
    scores = badge.score(inputs(3, 0))
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    idx, top = select_top_k(scores, torch.tensor([50, 51, 52]), 3)
    assert idx[0] == 51 and sorted(idx.tolist()) == [50, 51, 52] and top.tolist() == [3.0, 2.0, 1.0]
    a, b = gradient_embedding_factors(probs, torch.ones(3, 1))
    expected = kmeans_pp_seeding(a, b, 2, torch.Generator().manual_seed(4))
    assert select_top_k(badge.score(inputs(2, 4)), torch.tensor([50, 51, 52]), 2)[0].tolist() == (
        50 + expected).tolist()
