"""The champion gate: the candidate against the registered production (else staging)
version, on the same test playlists, with paired bootstrap intervals."""

import numpy as np
import pytest

from llarapp.eval.champion import bootstrap, compare_with_champion, find_champion
from llarapp.registry.aliases import Registry
from llarapp.registry.register import RegisterConfig, run_register


def registered_as(tmp_path, folder, alias):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_register(RegisterConfig(tracking_uri=uri), folder, tmp_path / "reg")
    registry = Registry("llarapp", uri)
    for step in ("staging", "canary", "production")[:("staging", "canary",
                                                       "production").index(alias) + 1]:
        registry.move(step, result["version"])
    return uri


def compare(candidate, dataset, split, uri, tolerance=0.01):
    return compare_with_champion(candidate, dataset, split, "llarapp", uri, tolerance, 300,
                                 MIN_PLAYLISTS)


MIN_PLAYLISTS = 50


def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_playlists():
    rng = np.random.default_rng(1)
    small, large = bootstrap(rng.normal(0.3, 0.1, 50), 500), bootstrap(
        rng.normal(0.3, 0.1, 5000), 500)
    assert small.low < small.mean < small.high and large.low < 0.3 < large.high
    assert large.high - large.low < (small.high - small.low) / 5
    assert np.isnan(bootstrap(np.array([np.nan]), 100).mean)


def test_a_first_run_has_no_champion_and_the_floor_decides(bundle, synthetic_dataset,
                                                           synthetic_split, tmp_path):
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    result = compare(bundle, synthetic_dataset, synthetic_split, uri)
    assert result["champion"] is None and result["passed"] and "floor" in result["why"]
    ndcg = result["candidate"]["ndcg@10 all"]
    assert ndcg["low"] <= ndcg["mean"] <= ndcg["high"]


@pytest.mark.parametrize(("champion", "candidate", "alias", "passes"), [
    ("bundle", "shuffled", "production", False),  # worse than production: refused
    ("shuffled", "bundle", "production", True),  # better: deployed
    ("bundle", "bundle", "staging", True),  # equal, within noise: as the tolerance says
])
def test_candidate_against_champion(request, synthetic_dataset, synthetic_split, tmp_path,
                                    champion, candidate, alias, passes):
    champion, candidate = request.getfixturevalue(champion), request.getfixturevalue(candidate)
    uri = registered_as(tmp_path, champion.folder, alias)
    assert find_champion("llarapp", uri)["alias"] == alias
    result = compare(candidate, synthetic_dataset, synthetic_split, uri)
    assert result["passed"] is passes, (result["why"], result["conditions"])
    assert result["champion"]["model_version"] == champion.version
    conditions = {c["metric"]: c for c in result["conditions"]}
    assert set(conditions) == {"ndcg@10 all", "r_precision all", "recall@100 cold"}
    ndcg = conditions["ndcg@10 all"]
    assert ndcg["difference"]["mean"] == pytest.approx(ndcg["candidate"] - ndcg["champion"],
                                                       abs=1e-6)
    for condition in conditions.values():
        assert condition["judged"] is (condition["playlists"] >= MIN_PLAYLISTS)
    assert ndcg["judged"] and not conditions["recall@100 cold"]["judged"]  # few cold targets
    if champion is candidate:
        assert all(c["difference"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
                   for c in conditions.values())
    if not passes:
        assert "worse than v1 (production)" in result["why"] and "ndcg@10 all" in result["why"]


@pytest.fixture(scope="module")
def baseline_recs(synthetic_dataset, synthetic_split, tmp_path_factory):
    from llarapp.models.baselines import BaselinesConfig, run_baselines

    root = tmp_path_factory.mktemp("recs") / "recs"
    run_baselines(BaselinesConfig(), synthetic_dataset, synthetic_split, root)
    return root


@pytest.mark.parametrize("worse", [True, False])
def test_the_report_opens_with_the_verdict_and_why(bundle, shuffled, synthetic_dataset,
                                                   synthetic_split, baseline_recs, tmp_path,
                                                   worse):
    from llarapp.eval.evaluate import EvaluateConfig, run_evaluate
    from llarapp.eval.served_gate import REFUSED

    champion, candidate = (bundle, shuffled) if worse else (shuffled, bundle)
    uri = registered_as(tmp_path, champion.folder, "production")
    comparison = compare(candidate, synthetic_dataset, synthetic_split, uri)
    result = run_evaluate(EvaluateConfig(track=False, gate_model="popularity"), synthetic_dataset,
                      synthetic_split, [baseline_recs], tmp_path / "eval",
                      champion=comparison,
                      manifest=candidate.manifest)
    assert (result["gate"]["value"] == REFUSED) is worse, result["verdict"]["failed"]
    assert result["verdict"]["deploy"] is not worse
    markdown = (tmp_path / "eval" / "metrics.md").read_text()
    first = markdown.splitlines()[0]
    assert first.startswith("# Verdict: HOLD" if worse else "# Verdict: DEPLOY")
    assert f"serves **{candidate.ranker_kind}**" in markdown
    assert "ndcg@10 all vs v1 (production)" in markdown and "difference" in markdown
    page = (tmp_path / "eval" / "report.html").read_text()
    assert page.index("Verdict:") < page.index("Headline metrics") < page.index("<img")
    assert page.index("<img") < page.index("<details>")  # per-category tables, folded
    assert "<table>" in page[:page.index("<img")]  # the conditions, as a table
