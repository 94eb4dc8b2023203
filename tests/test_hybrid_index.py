"""The hybrid score as inner products (issue 21's first step): the identity against
today's scorer, and a faiss flat index that returns the scorer's own top K per group."""

import faiss
import numpy as np
import pytest

from llarapp.models.hybrid import HybridParams, HybridScorer
from llarapp.models.hybrid_index import HybridForm, Moments
from llarapp.models.recommendations import seed_matrix


@pytest.fixture(scope="module")
def scorer(text_embeddings, graph_embeddings, cold_mapper):
    return HybridScorer.from_artifacts(text_embeddings, graph_embeddings, cold_mapper)


@pytest.fixture(scope="module")
def queries(scorer, text_embeddings, synthetic_split, synthetic_dataset):
    heldout = synthetic_split.heldout_for("test").head(40)
    return scorer.queries(seed_matrix(heldout["seeds"], synthetic_dataset.num_tracks),
                          text_embeddings.titles(heldout["pid"].to_numpy()))


@pytest.fixture(scope="module")
def form(scorer):
    return HybridForm.build(scorer.item_graph, scorer.item_text, scorer.warm)


def test_moments_give_the_z_score_of_any_linear_function():
    rng = np.random.default_rng(0)
    items, queries = rng.normal(size=(500, 8)) * 3 + 1, rng.normal(size=(4, 8))
    a, b = Moments.of(items).zscore(queries)
    scores = queries @ items.T
    expected = (scores - scores.mean(axis=1, keepdims=True)) / scores.std(axis=1, keepdims=True)
    np.testing.assert_allclose(a[:, None] * scores + b[:, None], expected, atol=1e-9)


@pytest.mark.parametrize("lam, cold_lambda", [(0.5, 2.0), (0.0, 0.0), (3.0, 0.25)])
def test_index_score_is_the_tuned_hybrid_score(scorer, queries, form, lam, cold_lambda):
    """Per group, inner product + constant = z(graph) + λ z(text), as the scorer computes
    them (cold with λ_cold, before the block offset)."""
    graph, text = scorer.components(queries)
    assert form.warm.items.size and form.cold.items.size
    for group, weight in ((form.warm, lam), (form.cold, cold_lambda)):
        vectors, constant = group.queries(
            queries.graph, queries.text, np.full(len(queries.graph), weight),
            group.graph.zscore(queries.graph), form.text.zscore(queries.text))
        served = vectors @ form.rows(group.items).T + constant[:, None]
        expected = graph[:, group.items] + weight * text[:, group.items]
        np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)


def test_faiss_flat_index_returns_each_groups_exact_top_k(scorer, queries, form):
    graph, text = scorer.components(queries)
    k = 20
    for group, weight in ((form.warm, 0.5), (form.cold, 2.0)):
        rows = form.rows(group.items)
        index = faiss.IndexFlatIP(rows.shape[1])
        index.add(rows)
        vectors, constant = group.queries(
            queries.graph, queries.text, np.full(len(queries.graph), weight),
            group.graph.zscore(queries.graph), form.text.zscore(queries.text))
        found, rows = index.search(vectors, k)
        exact = graph[:, group.items] + weight * text[:, group.items]
        best = np.sort(exact, axis=1)[:, ::-1][:, :k]
        np.testing.assert_allclose(found + constant[:, None], best, rtol=1e-4, atol=1e-4)
        recall = np.mean([len(set(r) & set(np.argsort(-e)[:k])) / k
                          for r, e in zip(rows, exact, strict=True)])
        assert recall >= 0.99


@pytest.mark.parametrize("params", [
    HybridParams(0.5, 2.0, 0, 100),
    HybridParams(0.5, 2.0, 3, 10),  # slots inside the top 20
    HybridParams(1.0, 0.5, 5, 5),  # the block opens the list
    HybridParams(0.0, 1.0, 4, 100),
])
@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_top_n_is_the_scorers_top_n(scorer, queries, form, params, kind):
    """Same candidates (the approximate index: recall >= 0.99), hybrid scores and
    standardised parts as scoring the catalogue."""
    from llarapp.models.hybrid_index import HybridIndex
    from llarapp.models.recommendations import top_n

    n, rows = 20, np.arange(len(queries.graph))[:, None]
    every = [params] * len(queries.graph)
    parts = scorer.components(queries)
    scores = scorer.hybrid_scores(parts, every, queries.seeds)
    expected = top_n(scores, queries.seeds, n)
    # IVF: 48 probes cover this small catalogue's 43 warm cells, so what is tested is its
    # projected text block and the rescoring (cell pruning is calibrated at export)
    width = 48 if kind == "ivf" else None
    got = HybridIndex(form, kind, width).top(queries.graph, queries.text, every, queries.seeds,
                                             n)
    agree = np.mean([len(set(a) & set(b)) / n for a, b in zip(got.candidates, expected,
                                                              strict=True)])
    assert agree >= 0.99
    same = got.candidates == expected
    assert same.mean() >= 0.95  # order too, but for float32 near-ties
    items = np.maximum(got.candidates, 0)
    np.testing.assert_allclose(got.hybrid, scores[rows, items], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.graph, parts[0][rows, items], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got.text, parts[1][rows, items], rtol=1e-4, atol=1e-4)
    for row, seeds in enumerate(np.split(queries.seeds.indices, queries.seeds.indptr[1:-1])):
        assert not set(seeds) & set(got.candidates[row])


def test_cold_group_is_searched_only_where_a_cold_track_can_reach_the_top_n(
        scorer, queries, form, monkeypatch):
    """Per-query mixes: slots inside the top 20 for every third query, below it for the
    rest. The cold index answers only the first kind, and every list is still the scorer's."""
    from llarapp.models.hybrid_index import HybridIndex
    from llarapp.models.recommendations import top_n

    n, count = 20, len(queries.graph)
    every = [HybridParams(0.5, 2.0, 3, 10) if i % 3 == 0 else HybridParams(0.5, 2.0, 30, 100)
             for i in range(count)]
    index = HybridIndex(form, "flat")
    searched = {"warm": 0, "cold": 0}
    search = index._search

    def counting(name, vectors, *args):
        searched[name] += len(vectors)
        return search(name, vectors, *args)

    monkeypatch.setattr(index, "_search", counting)
    got = index.top(queries.graph, queries.text, every, queries.seeds, n)
    assert searched["cold"] == len(range(0, count, 3)) and searched["warm"] >= count
    scores = scorer.hybrid_scores(scorer.components(queries), every, queries.seeds)
    expected = top_n(scores, queries.seeds, n)
    assert (got.candidates == expected).mean() >= 0.999  # but for float32 near-ties
    cold = ~scorer.warm[np.maximum(got.candidates, 0)]
    assert not cold[[i for i in range(count) if i % 3]].any()


def test_cold_tracks_fill_the_list_once_the_warm_run_out(scorer, queries, form):
    """A list longer than the warm group: the cold block's scores sit exactly where the
    scorer puts them (below the warm minimum, found by the negated query's search)."""
    from llarapp.models.hybrid_index import HybridIndex
    from llarapp.models.recommendations import top_n

    n = int(scorer.warm.sum()) + 5
    every = [HybridParams(0.5, 2.0, 0, 100)] * len(queries.graph)
    scores = scorer.hybrid_scores(scorer.components(queries), every, queries.seeds)
    expected = top_n(scores, queries.seeds, n)
    got = HybridIndex(form, "flat").top(queries.graph, queries.text, every, queries.seeds, n)
    assert (~scorer.warm[np.maximum(got.candidates, 0)]).any(axis=1).all()
    assert (got.candidates == expected).mean() >= 0.999  # but for float32 near-ties
    rows, items = np.arange(len(expected))[:, None], np.maximum(got.candidates, 0)
    np.testing.assert_allclose(got.hybrid, scores[rows, items], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target, expected", [(0.0, "narrowest"), (1.01, "widest"),
                                              (0.99, "reaching")])
def test_calibration_picks_the_narrowest_width_reaching_the_target(scorer, queries, form,
                                                                   target, expected):
    from llarapp.models.hybrid_index import HybridIndex
    from llarapp.serving.index import WIDTHS, calibrate_widths

    kinds = ["seeded" if k else "title_only" for k in np.diff(queries.seeds.indptr)]
    every = [HybridParams(0.5, 2.0, 3, 10)] * len(kinds)
    index = HybridIndex(form, "ivf")
    found = calibrate_widths(index, scorer, queries, every, kinds, 20, target)
    widths, recall = found["search_width"], found["calibration"]["recall"]
    assert set(widths) == set(kinds) and index.search_width == widths
    for kind, width in widths.items():
        if expected == "narrowest":
            assert width == WIDTHS[0]
        elif expected == "widest":
            assert width == WIDTHS[-1] and recall[kind] < target
        else:
            assert recall[kind] >= target or width == WIDTHS[-1]


def test_unknown_index_kind_names_the_valid_ones(form):
    from llarapp.models.hybrid_index import HybridIndex

    with pytest.raises(ValueError, match="flat, hnsw, ivf"):
        HybridIndex(form, "pq")


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_find_the_best_inner_products_whatever_the_item_norms(
        kind, monkeypatch):
    """Items whose norms differ a lot: a plain L2 search would return the nearest items,
    not the best inner products; the lifted one returns the best. The text block is wider
    than IVF's principal axes, so IVF also searches a projected text block and relies on
    exact rescoring of its candidates."""
    from llarapp.models import group_index
    from llarapp.models.hybrid_index import HybridIndex

    monkeypatch.setattr(group_index, "TEXT_COMPONENTS", 12)
    rng = np.random.default_rng(0)
    graph = rng.normal(size=(4000, 4)) * rng.lognormal(sigma=1.0, size=(4000, 1))
    text = rng.normal(size=(4000, 24)) * np.geomspace(1.0, 0.05, 24)  # decaying variance
    warm = np.ones(4000, bool)
    warm[:50] = False
    form = HybridForm.build(graph.astype(np.float32), text.astype(np.float32), warm)
    index = HybridIndex(form, kind, 64)
    queries = rng.normal(size=(30, 28)).astype(np.float32)
    items, scores = index._search("warm", queries, np.zeros(30), 20)
    exact = queries @ form.rows(form.warm.items).T
    best = form.warm.items[np.argsort(-exact, axis=1)[:, :20]]
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(items, best, strict=True)])
    assert recall >= 0.95  # hnsw 0.98 measured; unlifted, 0.0
    own = np.take_along_axis(exact, np.searchsorted(form.warm.items, items), axis=1)
    np.testing.assert_allclose(scores, own, rtol=1e-5)  # exact scores of what it found


def test_ivf_space_keeps_the_graph_block_and_projects_the_text_block(monkeypatch):
    """The identity behind IVF's search: q·[v, x] = [q_g, Pᵀq_t]·[v, Pᵀ(x − μ)] + q_t·μ
    + q_tᵀ(I − PPᵀ)(x − μ), with P the top principal axes of the text vectors (checked
    against numpy's eigenvectors); with every axis kept the residual vanishes."""
    from llarapp.models import group_index
    from llarapp.models.group_index import SearchSpace

    rng = np.random.default_rng(1)
    graph = rng.normal(size=(500, 3)).astype(np.float32)
    text = (rng.normal(size=(500, 10)) * np.geomspace(3.0, 0.3, 10) + 2.0).astype(np.float32)
    form = HybridForm.build(graph, text, np.ones(500, bool))
    queries = rng.normal(size=(7, 13))
    exact = queries @ form.rows(np.arange(500)).T
    mean = text.mean(axis=0, dtype=np.float64)
    eigenvectors = np.linalg.eigh(np.cov(text.T, bias=True))[1][:, ::-1]
    for components in (10, 4):
        monkeypatch.setattr(group_index, "TEXT_COMPONENTS", components)
        space = SearchSpace.fit("ivf", text)
        searched = space.queries(queries, 3)
        assert searched.shape == (7, 3 + components + 1) and not searched[:, -1].any()
        np.testing.assert_array_equal(searched[:, :3], queries[:, :3].astype(np.float32))
        top = eigenvectors[:, :components]
        projector = top @ top.T  # P Pᵀ from numpy, independent of faiss
        residual = queries[:, 3:] @ (np.eye(10) - projector) @ (text - mean).T
        approximate = searched[:, :-1] @ space.rows(form, np.arange(500)).T
        np.testing.assert_allclose(approximate + (queries[:, 3:] @ mean)[:, None] + residual,
                                   exact, rtol=1e-3, atol=1e-2)
        if components == 10:
            np.testing.assert_allclose(residual, 0.0, atol=1e-3)
        else:
            assert np.abs(residual).max() > 1e-1
