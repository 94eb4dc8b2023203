"""A bundle that ships the IVF retrieval index: it serves the ranking exact scoring gives,
it is mapped from the bundle's files rather than copied, a changed index file is refused,
and a bundle exported with the earlier HNSW index still serves."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llarapp.errors import BundleError
from llarapp.serving import bundle as B
from llarapp.serving.engine import Engine, Request


def without_index(bundle, tmp_path):
    folder = shutil.copytree(bundle.folder, tmp_path / "exact")
    shutil.rmtree(folder / B.INDEX_FOLDER)
    manifest = json.loads((folder / B.MANIFEST).read_text())
    manifest["retrieval"]["index"] = None
    manifest["files"] = B.file_table(folder)
    (folder / B.MANIFEST).write_text(json.dumps(manifest))
    return B.Bundle.load(folder)


def test_the_test_bundle_ships_an_ivf_index_calibrated_per_query_kind(bundle):
    from llarapp.serving.index import WIDTHS

    index = bundle.index
    assert index["kind"] == "ivf"
    assert {"index/warm.faiss", "index/cold.faiss", "index/text_pca.faiss"} == set(
        bundle.index_files) <= set(bundle.manifest["files"])
    widths, recall = index["search_width"], index["calibration"]["recall"]
    assert set(widths) == set(recall) <= {"seeded", "title_only"} and widths
    for kind, width in widths.items():  # the narrowest reaching the target, or the widest
        assert width in WIDTHS
        assert recall[kind] >= index["calibration"]["target"] or width == WIDTHS[-1]
    assert Engine(bundle).index.search_width == widths


def test_indexed_serving_matches_exact_scoring(bundle, tmp_path):
    """At the depth export calibrates the search width for: the ranker's candidates."""
    catalogue = bundle.catalogue
    warm = catalogue.loc[catalogue["warm"], "track_uri"].tolist()
    indexed, exact = Engine(bundle), Engine(without_index(bundle, tmp_path))
    k = indexed.num_candidates
    requests = [Request("summer hits", warm[i:i + 5], k=k) for i in range(0, 200, 10)]
    requests.append(Request("road trip", [], k=k))
    assert indexed.index is not None and exact.index is None
    same = total = 0
    for a, b in zip(indexed.recommend(requests), exact.recommend(requests), strict=True):
        got = [r.track_uri for r in a.recommendations]
        want = [r.track_uri for r in b.recommendations]
        same, total = same + len(set(got) & set(want)), total + len(want)
    assert same / total >= 0.99


def test_served_vectors_and_index_are_mapped_from_the_bundle_not_copied(bundle):
    """Worker processes share the catalogue's pages only if each maps the files."""
    from llarapp.models.hybrid_index import HybridIndex
    from llarapp.serving.index import search_widths

    engine = Engine(bundle)
    mapped = {Path(line.split()[-1]).resolve() for line in
              Path("/proc/self/maps").read_text().splitlines() if len(line.split()) >= 6}
    folder = bundle.folder.resolve()
    for name in ("vectors/item_graph.npy", "vectors/item_text.npy", "index/warm.faiss",
                 "index/cold.faiss"):
        assert folder / name in mapped, f"{name} is not mapped"
    for array in (engine.item_graph, engine.scorer.item_text, engine.index.form.item_text):
        assert not array.flags.writeable
    unmapped = Engine(bundle)
    unmapped.index = HybridIndex.load(bundle.path(B.INDEX_FOLDER), engine.index.form, "ivf",
                                      search_widths(bundle.index))
    warm = bundle.catalogue.loc[bundle.catalogue["warm"], "track_uri"].tolist()
    requests = [Request("night drive", warm[i:i + 3], k=20) for i in range(0, 60, 6)]
    assert engine.recommend(requests) == unmapped.recommend(requests)


def test_a_changed_index_file_is_refused(bundle, tmp_path):
    folder = shutil.copytree(bundle.folder, tmp_path / "tampered")
    with open(folder / bundle.index_files[0], "r+b") as handle:
        handle.seek(-8, 2)
        handle.write(b"\0" * 8)
    with pytest.raises(BundleError, match="does not match its sha256"):
        B.Bundle.load(folder)


def test_a_manifest_that_names_an_index_it_lacks_is_refused(bundle, tmp_path):
    folder = shutil.copytree(bundle.folder, tmp_path / "no-index")
    shutil.rmtree(folder / B.INDEX_FOLDER)
    manifest = json.loads((folder / B.MANIFEST).read_text())
    manifest["files"] = B.file_table(folder)
    (folder / B.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="does not record index/warm.faiss"):
        B.Bundle.load(folder)


def test_a_bundle_with_the_earlier_hnsw_index_still_serves(bundle, tmp_path):
    """Bundles exported before IVF name ``hnsw`` and ``ef_search`` in the manifest."""
    from llarapp.models.hybrid_index import HybridIndex

    folder = shutil.copytree(bundle.folder, tmp_path / "hnsw")
    shutil.rmtree(folder / B.INDEX_FOLDER)
    engine = Engine(bundle)
    HybridIndex(engine.index.form, "hnsw").save(folder / B.INDEX_FOLDER)
    manifest = json.loads((folder / B.MANIFEST).read_text())
    manifest["retrieval"]["index"] = {"kind": "hnsw", "ef_search": {"seeded": 512,
                                                                    "title_only": 1024}}
    manifest["files"] = B.file_table(folder)
    (folder / B.MANIFEST).write_text(json.dumps(manifest))
    old = Engine(B.Bundle.load(folder))
    assert old.index.kind == "hnsw" and old.index.search_width["title_only"] == 1024
    warm = bundle.catalogue.loc[bundle.catalogue["warm"], "track_uri"].tolist()
    requests = [Request("late night", warm[i:i + 4], k=20) for i in range(0, 80, 8)]
    got = [[r.track_uri for r in a.recommendations] for a in old.recommend(requests)]
    want = [[r.track_uri for r in a.recommendations]
            for a in Engine(without_index(bundle, tmp_path)).recommend(requests)]
    assert np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, want, strict=True)]) >= 0.99
