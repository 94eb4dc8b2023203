import json

import pandas as pd
import pytest

from llarapp.eval.evaluate import EvaluateConfig, run_evaluate
from llarapp.models.baselines import BaselinesConfig, run_baselines


@pytest.fixture(scope="module")
def evaluation(synthetic_dataset, synthetic_split, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    run_baselines(BaselinesConfig(), synthetic_dataset, synthetic_split, root / "recs")
    cfg = EvaluateConfig(tracking_uri=f"sqlite:///{root}/mlflow.db", experiment="test",
                         gate_model="")  # no hybrid here: the gate takes the best model
    result = run_evaluate(cfg, synthetic_dataset, synthetic_split, [root / "recs"], root / "eval")
    return root, result


def test_outputs_are_written(evaluation):
    root, result = evaluation
    for name in ("metrics.json", "metrics.csv", "metrics.md", "report.html",
                 "per_playlist.parquet", "manifest.json"):
        assert (root / "eval" / name).is_file(), name
    report = (root / "eval" / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 4
    assert "Warm targets against cold targets" in report
    assert "## Warm targets against cold targets" in (root / "eval" / "metrics.md").read_text()
    assert json.loads((root / "eval" / "metrics.json").read_text())["gate"] == result["gate"]


def test_breakdown_by_model_segment_and_category(evaluation):
    _, result = evaluation
    summary = pd.DataFrame(result["summary"])
    assert set(summary["model"]) == {"popularity", "item_knn"}
    assert set(summary["segment"]) == {"all", "warm", "cold"}
    assert {"title_only", "first_1", "first_5", "all"} <= set(summary["category"])
    overall = summary[(summary["segment"] == "all") & (summary["category"] == "all")]
    assert overall["playlists"].eq(60).all()  # every test playlist once per model


def test_cold_targets_are_unreachable_for_collaborative_baselines(evaluation):
    summary = pd.DataFrame(evaluation[1]["summary"])
    cold = summary[(summary["segment"] == "cold") & (summary["category"] == "all")]
    assert cold["r_precision"].eq(0).all() and cold["clicks"].eq(51).all()


def test_item_knn_beats_popularity_on_synthetic_data(evaluation):
    table = evaluation[1]["table"]
    overall = table[table["category"] == "all"].set_index("model")
    assert overall.loc["item_knn", "r_precision"] > overall.loc["popularity", "r_precision"]
    assert overall.loc["item_knn", "ndcg"] > overall.loc["popularity", "ndcg"]


def test_gate_is_the_best_models_metric(evaluation):
    gate = evaluation[1]["gate"]
    assert gate["model"] == "item_knn" and gate["metric"] == "ndcg" and 0 < gate["value"] <= 1


def test_run_is_tracked_in_mlflow(evaluation):
    from mlflow.tracking import MlflowClient

    root, result = evaluation
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    run = client.get_run(result["mlflow"]["run_id"])
    assert run.data.metrics["gate"] == pytest.approx(result["gate"]["value"])
    assert "item_knn.all.all.r_precision" in run.data.metrics
    assert run.data.params["split.seed"] == "3"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.csv", "metrics.md", "report.html"} <= artifacts


def test_a_playlist_a_model_skipped_scores_as_a_miss():
    import numpy as np

    from llarapp.eval.evaluate import per_playlist_metrics

    heldout = pd.DataFrame({"pid": [1, 2], "category": ["first_1", "first_1"],
                            "targets": [np.array([3]), np.array([4])]})
    recs = pd.DataFrame({"model": ["m"], "pid": [1], "recs": [np.array([3, 0])]})
    frame = per_playlist_metrics(heldout, recs, np.ones(5, bool), np.arange(5), (10,))
    overall = frame[frame["segment"] == "all"].set_index("pid")
    assert overall.loc[1, "clicks"] == 0 and overall.loc[2, "clicks"] == 51
    assert overall.loc[2, "r_precision"] == 0


def test_warm_cold_table_puts_each_models_segments_side_by_side(evaluation):
    _, result = evaluation
    table = pd.DataFrame(result["warm_cold"]).set_index("model")
    summary = pd.DataFrame(result["summary"])
    overall = summary[summary["category"] == "all"].set_index(["model", "segment"])
    assert set(table.index) == {"popularity", "item_knn"}
    for model in table.index:
        assert table.loc[model, "warm NDCG"] == pytest.approx(overall.loc[(model, "warm"), "ndcg"])
        assert table.loc[model, "cold Recall@100"] == pytest.approx(
            overall.loc[(model, "cold"), "recall@100"])


@pytest.mark.parametrize("served, refused", [
    ({"ranker": "lambdamart", "passed": False, "why": "lambdamart test ndcg@10 < retrieval"},
     True),
    ({"ranker": "llara", "passed": True, "why": "llara test ndcg@10 >= retrieval"}, False),
    (None, False),
])
def test_a_served_ranking_worse_than_retrieval_refuses_the_gate(
        synthetic_dataset, synthetic_split, evaluation, tmp_path, served, refused):
    from llarapp.eval.served_gate import REFUSED

    root, passed = evaluation
    cfg = EvaluateConfig(track=False, gate_model="")
    result = run_evaluate(cfg, synthetic_dataset, synthetic_split, [root / "recs"],
                      tmp_path / "eval", served=served)
    gate = result["gate"]
    assert gate["served_ranking"] == served
    assert gate["value"] == (REFUSED if refused else passed["gate"]["value"])


LLARA_RESULT = {
    "split": "test", "schedule": "curriculum", "hybrid_prompts": 0.5,
    "candidates": [{"model": m, "segment": s, "playlists": 200, "hr@1": 0.5, "hr@5": 0.8,
                    "ndcg@20": 0.7} for m in ("llara", "feature_head", "lightgcn", "hybrid")
                   for s in ("all", "warm_target", "cold_target")],
    "position_bias": {"hr@1_target_first": 0.68, "hr@1_target_last": 0.66},
    "rerank": {"recall@10_before": 0.09, "ndcg@10_before": 0.41, "recall@10_after": 0.08,
               "ndcg@10_after": 0.40}}
SELECTION = [{"split": s, "ranker": r, "playlists": 90, "ndcg@10": 0.4, "recall@10": 0.1,
              "r_precision": 0.1} for s in ("select", "test")
             for r in ("retrieval", "lambdamart", "llara")]


def test_no_report_legend_covers_another_plot(tmp_path):
    """The LLaRA figure's legend once sat under its neighbour's labels."""
    from llarapp.eval.plots import legend_overlaps
    from llarapp.eval.sections import llara_section, rankers_section

    (tmp_path / "metrics.json").write_text(json.dumps(LLARA_RESULT))
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"ranker": {"kind": "llara", "why": "best", "selection": SELECTION}}))
    figures = [*llara_section(tmp_path).figures, *rankers_section(tmp_path).figures]
    assert len(figures) == 2
    for figure in figures:
        assert legend_overlaps(figure) == []
