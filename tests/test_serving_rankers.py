"""Bundles that ship LambdaMART or no ranker at all: they load without LLaRA's files and
serve what eval-llara measured."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from llarapp.errors import BundleError
from llarapp.rerank.features import FEATURES, CatalogueFeatures
from llarapp.rerank.lambdamart import LambdaMart, LambdaMartParams
from llarapp.rerank.lists import retrieved_lists
from llarapp.serving import bundle as B
from llarapp.serving.engine import Engine, Request
from llarapp.serving.rankers import check_feature_width


def rebundle(bundle, tmp_path, kind, lambdamart=None, sources=None):
    """A copy of ``bundle`` that ships ``kind``: LLaRA's files dropped, LambdaMART's added."""
    folder = shutil.copytree(bundle.folder, tmp_path / kind)
    for name in B.RANKER_FILES["llara"]:
        (folder / name).unlink()
    if kind == "lambdamart":
        (folder / "rerank").mkdir(exist_ok=True)
        lambdamart.save(folder / "rerank")
        CatalogueFeatures.from_split(sources.dataset.tracks, sources.split.train).save(
            folder / "rerank")
    manifest = json.loads((folder / B.MANIFEST).read_text())
    manifest["ranker"]["kind"] = kind
    manifest["files"] = B.file_table(folder)
    (folder / B.MANIFEST).write_text(json.dumps(manifest))
    return B.Bundle.load(folder)


@pytest.fixture(scope="module")
def lambdamart(llara_sources):
    tables = CatalogueFeatures.from_split(llara_sources.dataset.tracks,
                                          llara_sources.split.train)
    lists = retrieved_lists(llara_sources, tables, llara_sources.split.heldout_for("val"), 6)
    return LambdaMart.fit(lists.features, lists.labels, LambdaMartParams(trees=10,
                                                                         min_child_samples=2))


def warm_seeds(bundle, count=4):
    catalogue = bundle.catalogue
    return catalogue.loc[catalogue["warm"], "track_uri"].head(count).tolist()


def test_a_bundle_without_a_ranker_serves_the_retrieval_order(bundle, tmp_path):
    plain = rebundle(bundle, tmp_path, "retrieval")
    assert not (plain.folder / B.RANKER["int8"]).exists()
    engine = Engine(plain)
    requests = [Request("summer hits", warm_seeds(bundle), k=engine.num_candidates + 3),
                Request("road trip", [], k=5)]
    for response in engine.recommend(requests):
        ranks = [r.retrieval_rank for r in response.recommendations]
        assert ranks == list(range(len(ranks)))  # served order is the retrieval order
        scores = [r.score for r in response.recommendations]
        assert scores == sorted(scores, reverse=True)
    with pytest.raises(BundleError, match="serves ranker 'retrieval'"):
        engine.rerank([])


def test_a_lambdamart_bundle_serves_lambdamart_scores(bundle, tmp_path, lambdamart,
                                                      llara_sources):
    shipped = rebundle(bundle, tmp_path, "lambdamart", lambdamart, llara_sources)
    engine = Engine(shipped)
    response = engine.recommend([Request("summer hits", warm_seeds(bundle), k=6)])[0]
    assert len(response.recommendations) == 6
    scores = [r.score for r in response.recommendations]
    assert scores == sorted(scores, reverse=True)
    assert len({round(s, 6) for s in scores}) > 1  # the booster, not a constant


def test_a_lambdamart_bundle_without_its_model_is_refused(bundle, tmp_path, lambdamart,
                                                          llara_sources):
    shipped = rebundle(bundle, tmp_path, "lambdamart", lambdamart, llara_sources)
    (shipped.folder / "rerank" / "lambdamart.txt").unlink()
    with pytest.raises(BundleError, match="rerank/lambdamart.txt is missing"):
        B.Bundle.load(shipped.folder)


def test_an_unknown_ranker_kind_is_refused(bundle, tmp_path):
    folder = shutil.copytree(bundle.folder, tmp_path / "odd")
    manifest = json.loads((folder / B.MANIFEST).read_text())
    manifest["ranker"]["kind"] = "gbdt"
    (folder / B.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="ranker.kind: Input should be 'llara', 'lambdamart' or "
                                          "'retrieval'"):
        B.Bundle.load(folder)


def test_served_scores_match_lambdamart_on_the_eval_features(bundle, tmp_path, lambdamart,
                                                             llara_sources):
    """The server computes the features as eval-llara did: same top K, same scores (with
    the titles encoded as text_embed did; the served int8 encoder differs slightly)."""
    heldout = llara_sources.split.heldout_for("test")
    heldout = heldout[heldout["num_seeds"] > 0].head(3)
    tables = CatalogueFeatures.from_split(llara_sources.dataset.tracks,
                                          llara_sources.split.train)
    lists = retrieved_lists(llara_sources, tables, heldout, 6)
    engine = Engine(rebundle(bundle, tmp_path, "lambdamart", lambdamart, llara_sources))
    uris = engine.uris
    titles = llara_sources.text.titles(heldout["pid"].to_numpy())
    engine.text.encode = lambda texts, batch_size=None: titles[:len(texts)]
    served = engine.recommend([Request(name, [uris[i] for i in seeds], k=6)
                               for name, seeds in zip(heldout["name"], heldout["seeds"],
                                                      strict=True)])
    expected = lambdamart.score(lists.features)
    for i, response in enumerate(served):
        got = {r.track_uri: r.score for r in response.recommendations}
        want = {uris[c]: s for c, s in zip(lists.candidates[i], expected[i], strict=True)}
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[u] for u in want], list(want.values()), atol=1e-4)


def test_served_llara_scores_use_the_candidate_features(bundle, trained_llara, llara_sources):
    """The LLaRA bundle computes the candidate features as eval-llara does and its fp32
    ranker scores the retrieved list as the torch ranker does, features included."""
    import torch

    from llarapp.llara.checkpoint import LlaraArtifact
    from llarapp.llara.layout import Example
    from llarapp.llara.stage import make_collator

    artifact = LlaraArtifact.load(trained_llara)
    ranker, cfg = artifact.ranker(), artifact.config
    assert ranker.feature_head is not None and bundle.manifest["ranker"]["candidate_features"]
    heldout = llara_sources.split.heldout_for("test")
    heldout = heldout[heldout["num_seeds"] > 0].head(3)
    tables = CatalogueFeatures.from_split(llara_sources.dataset.tracks,
                                          llara_sources.split.train)
    lists = retrieved_lists(llara_sources, tables, heldout, cfg.num_candidates)
    examples = [Example(str(llara_sources.titles.get(pid, "")),
                        np.asarray(seeds, np.int64)[-cfg.history_len:], lists.candidates[i], -1,
                        lists.graph_queries[i], features=lists.features[i])
                for i, (pid, seeds) in enumerate(zip(heldout["pid"], heldout["seeds"],
                                                     strict=True))]
    with torch.no_grad():
        expected = ranker(make_collator(ranker.backbone, llara_sources, cfg)(examples)).numpy()
    without = [Example(e.title, e.history, e.candidates, -1, e.playlist_vector)
               for e in examples]
    with torch.no_grad():
        plain = ranker(make_collator(ranker.backbone, llara_sources, cfg)(without)).numpy()
    assert not np.allclose(expected, plain, atol=1e-4)  # the features change the scores
    engine = Engine(bundle, precision="fp32")
    titles = llara_sources.text.titles(heldout["pid"].to_numpy())
    engine.text.encode = lambda texts, batch_size=None: titles[:len(texts)]
    uris = engine.uris
    served = engine.recommend([Request(name, [uris[i] for i in seeds], k=cfg.num_candidates)
                               for name, seeds in zip(heldout["name"], heldout["seeds"],
                                                      strict=True)])
    for i, response in enumerate(served):
        got = {r.track_uri: r.score for r in response.recommendations}
        want = {uris[c]: s for c, s in zip(lists.candidates[i], expected[i], strict=True)}
        assert got.keys() == want.keys()
        np.testing.assert_allclose([got[u] for u in want], list(want.values()), atol=1e-3)


class _Session:
    """Just what check_feature_width reads of an onnxruntime session."""

    def __init__(self, **shapes):
        self.inputs = [SimpleNamespace(name=n, shape=s) for n, s in shapes.items()]

    def get_inputs(self):
        return self.inputs


@pytest.mark.parametrize("shapes, refused", [
    ({"candidate_features": ["batch", 20, len(FEATURES)]}, False),
    ({"candidate_features": ["batch", 20, len(FEATURES) + 5]}, True),  # another version's
    ({"candidate_features": ["batch", 20, len(FEATURES) - 1]}, True),
    ({"candidate_features": ["batch", 20, "features"]}, False),  # a dynamic width
    ({"input_ids": ["batch", "tokens"]}, False),  # a ranker that reads no features
])
def test_a_ranker_exported_for_other_features_is_refused(shapes, refused):
    if refused:
        with pytest.raises(BundleError, match="re-run eval-llara and export"):
            check_feature_width(_Session(**shapes), "ranker.onnx")
    else:
        check_feature_width(_Session(**shapes), "ranker.onnx")


def test_a_real_ranker_graph_for_other_features_is_refused_at_load(bundle, monkeypatch):
    """onnxruntime reports the exported width as an int, so the check fires on real graphs."""
    monkeypatch.setattr("llarapp.serving.rankers.FEATURES", (*FEATURES, "a_newer_feature"))
    with pytest.raises(BundleError, match=f"takes {len(FEATURES)} candidate features"):
        Engine(bundle, precision="fp32")
