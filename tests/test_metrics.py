"""Every metric against values worked out by hand (see each comment)."""

import math

import numpy as np
import pytest

from llarapp.eval import metrics as M

NUM_ITEMS = 10
ARTIST_OF = np.arange(NUM_ITEMS) // 2  # items 2a and 2a+1 share artist a


def recs(*rows, width=12):
    matrix = np.full((len(rows), width), -1)
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    return matrix


def relevant(*target_lists):
    return M.relevance_matrix([np.array(t) for t in target_lists], NUM_ITEMS)


# G = {1, 2, 3, 5}; R = [5, 7, 1, 9, 2, 4]: hits at ranks 1, 3 and 5.
G = relevant([1, 2, 3, 5])
R = recs([5, 7, 1, 9, 2, 4])


def test_r_precision():
    assert M.r_precision(R, G)[0] == pytest.approx(2 / 4)  # {5, 1} in the top |G| = 4


def test_challenge_ndcg():
    dcg = 1 + 1 / math.log2(3) + 1 / math.log2(5)  # rel_1 + Σ rel_i / log2(i)
    idcg = 1 + 1 / math.log2(2) + 1 / math.log2(3)  # |G ∩ R| = 3 retrieved
    assert M.challenge_ndcg(R, G)[0] == pytest.approx(dcg / idcg)


@pytest.mark.parametrize("first_hit_rank, expected", [(1, 0), (10, 0), (11, 1), (25, 2),
                                                     (500, 49)])
def test_clicks_are_pages_of_ten_before_the_first_hit(first_hit_rank, expected):
    ranking = np.zeros((1, 500), dtype=int)  # item 0 is not relevant
    ranking[0, first_hit_rank - 1] = 3
    assert M.clicks(ranking, relevant([3]))[0] == expected


def test_clicks_are_51_when_nothing_relevant_is_recommended():
    assert M.clicks(recs([0, 4, 6]), relevant([3]))[0] == M.NO_CLICK


def test_recall_and_ndcg_at_k():
    assert M.recall_at_k(R, G, 2)[0] == pytest.approx(1 / 4)
    assert M.recall_at_k(R, G, 5)[0] == pytest.approx(3 / 4)
    dcg = 1 / math.log2(2) + 1 / math.log2(4) + 1 / math.log2(6)
    idcg = sum(1 / math.log2(i + 1) for i in range(1, 5))  # min(|G|, 5) = 4
    assert M.ndcg_at_k(R, G, 5)[0] == pytest.approx(dcg / idcg)


@pytest.mark.parametrize("ranking, targets, expected", [
    # track hits 5 and 1; the misses 7, 9 are artists 3, 4: no artist credit
    ([5, 7, 1, 9], [1, 2, 3, 5], 2 / 4),
    # no track hits; artists 0 and 2 of the top 4 are wanted → 2 × 0.25
    ([0, 4, 6, 8], [1, 2, 3, 5], 0.5 / 4),
    # an artist earns credit once, however many of its tracks are recommended
    ([0, 1], [2, 6], 0.0 / 2),
    ([2, 3], [1, 9], 0.0),
    ([0, 8], [1, 9], (0.25 + 0.25) / 2),
    # an exact hit does not also earn its artist's credit
    ([1, 7], [1, 6], (1 + 0.25) / 2),
])
def test_artist_r_precision(ranking, targets, expected):
    value = M.artist_r_precision(recs(ranking), relevant(targets), ARTIST_OF)[0]
    assert value == pytest.approx(expected)


def test_artist_credit_once_per_artist():
    artist_of = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    value = M.artist_r_precision(recs([0, 1]), relevant([2, 5]), artist_of)[0]
    assert value == pytest.approx(0.25 / 2)


def test_playlists_without_targets_are_undefined_not_zero():
    values = M.playlist_metrics(recs([1, 2], [1, 2]), relevant([1], []), ARTIST_OF)
    for name, column in values.items():
        assert not np.isnan(column[0]), name
        assert np.isnan(column[1]), name


def test_padding_never_counts_as_a_hit():
    assert M.recall_at_k(recs([-1, -1]), relevant([0]), 2)[0] == 0


def test_candidate_metrics():
    scores = np.array([[0.1, 0.9, 0.3], [0.5, 0.2, 0.1], [0.4, 0.4, 0.0]])
    out = M.candidate_metrics(scores, np.array([1, 2, 0]), ks=(1, 5))
    assert out["hit_ratio@1"].tolist() == [1, 0, 0]  # a tie counts against the true item
    assert out["recall@5"].tolist() == [1, 1, 1]
    assert out["ndcg@5"] == pytest.approx([1, 1 / math.log2(4), 1 / math.log2(3)])


def test_vectorised_matches_a_plain_loop_on_random_data():
    rng = np.random.default_rng(0)
    targets = [rng.choice(NUM_ITEMS, rng.integers(1, 6), replace=False) for _ in range(50)]
    ranking = np.stack([rng.permutation(NUM_ITEMS) for _ in range(50)])
    expected = [len(set(r[: len(t)]) & set(t)) / len(t)
                for r, t in zip(ranking, targets, strict=True)]
    assert M.r_precision(ranking, M.relevance_matrix(targets, NUM_ITEMS)) == \
        pytest.approx(expected)
