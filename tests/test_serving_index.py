"""A bundle that ships the HNSW retrieval index: it serves the ranking exact scoring gives,
it is mapped from the bundle's files rather than copied, and a changed index file is
refused."""

import json
import shutil
from pathlib import Path

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


def test_the_test_bundle_ships_an_hnsw_index_calibrated_per_query_kind(bundle):
    from llarapp.serving.index import WIDTHS

    index = bundle.index
    assert index["kind"] == "hnsw"
    assert set(B.INDEX_FILES) <= set(bundle.manifest["files"])
    widths, recall = index["ef_search"], index["calibration"]["recall"]
    assert set(widths) == set(recall) <= {"seeded", "title_only"} and widths
    for kind, width in widths.items():  # the narrowest reaching the target, or the widest
        assert width in WIDTHS
        assert recall[kind] >= index["calibration"]["target"] or width == WIDTHS[-1]
    assert Engine(bundle).index.ef_search == widths


def test_indexed_serving_matches_exact_scoring(bundle, tmp_path):
    catalogue = bundle.catalogue
    warm = catalogue.loc[catalogue["warm"], "track_uri"].tolist()
    requests = [Request("summer hits", warm[i:i + 5], k=30) for i in range(0, 200, 10)]
    requests.append(Request("road trip", [], k=30))
    indexed, exact = Engine(bundle), Engine(without_index(bundle, tmp_path))
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
    for name in ("vectors/item_graph.npy", "vectors/item_text.npy", *B.INDEX_FILES):
        assert folder / name in mapped, f"{name} is not mapped"
    for array in (engine.item_graph, engine.scorer.item_text, engine.index.form.item_text):
        assert not array.flags.writeable
    unmapped = Engine(bundle)
    unmapped.index = HybridIndex.load(bundle.path(B.INDEX_FOLDER), engine.index.form, "hnsw",
                                      search_widths(bundle.index))
    warm = bundle.catalogue.loc[bundle.catalogue["warm"], "track_uri"].tolist()
    requests = [Request("night drive", warm[i:i + 3], k=20) for i in range(0, 60, 6)]
    assert engine.recommend(requests) == unmapped.recommend(requests)


def test_a_changed_index_file_is_refused(bundle, tmp_path):
    folder = shutil.copytree(bundle.folder, tmp_path / "tampered")
    with open(folder / B.INDEX_FILES[0], "r+b") as handle:
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
