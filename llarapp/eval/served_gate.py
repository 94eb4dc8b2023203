"""The deploy gate's second question: is the ranking the bundle serves at least as good on
the test split as retrieval alone?

eval-llara chose the ranker on validation; its test figures travel in the bundle manifest
(``ranker.selection``). A bundle that serves a reranker whose test NDCG@10 is below
retrieval's is refused, and so is one with no recorded comparison. The pipeline's gate
scalar becomes :data:`REFUSED` then, below any threshold.
"""

from __future__ import annotations

from typing import Any

REFUSED = -1.0


def served_ranking_gate(manifest: dict[str, Any], metric: str = "ndcg@10") -> dict[str, Any]:
    ranker = manifest.get("ranker", {})
    kind = ranker.get("kind")
    test = {row["ranker"]: row for row in ranker.get("selection", []) if row["split"] == "test"}
    if kind == "retrieval":
        return {"ranker": kind, "passed": True, "why": "serves retrieval alone"}
    if kind not in test or "retrieval" not in test:
        return {"ranker": kind, "passed": False,
                "why": "the bundle records no test comparison with retrieval alone; export "
                       "it with the eval-llara artifact (--evaluation)"}
    served, alone = float(test[kind][metric]), float(test["retrieval"][metric])
    passed = served >= alone
    return {"ranker": kind, "passed": passed, f"served_{metric}": served,
            f"retrieval_{metric}": alone,
            "why": f"{kind} test {metric} {served:.4f} "
                   f"{'>=' if passed else '<'} retrieval alone {alone:.4f}"}
