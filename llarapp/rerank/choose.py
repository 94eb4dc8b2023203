"""Which ranker the bundle ships: the best on validation NDCG@10 of the reranked top K.

The rivals are ``retrieval`` (the hybrid's own order, no ranker), ``lambdamart`` and
``llara``. A reranker must beat retrieval alone by more than ``tolerance`` (relative) to
be shipped, so noise never buys a ranker that costs serving time; between rerankers, LLaRA
wins a tie within the same tolerance. A ranker whose validation figure is missing (not
trained, or not exportable) cannot be chosen.
"""

from __future__ import annotations

import math

from llarapp.config import require

RANKERS = ("retrieval", "lambdamart", "llara")
PREFERENCE = ("llara", "lambdamart", "retrieval")  # tie-break order among near-equals


def choose_ranker(ndcg: dict[str, float], tolerance: float) -> tuple[str, str]:
    """(ranker, why) from validation NDCG@10 per ranker."""
    require(set(ndcg) <= set(RANKERS), f"unknown rankers {sorted(set(ndcg) - set(RANKERS))}; "
            f"expected some of {', '.join(RANKERS)}")
    require("retrieval" in ndcg and not math.isnan(ndcg["retrieval"]),
            "the ranker choice needs retrieval's own validation NDCG@10")
    base = ndcg["retrieval"]
    better = {name: value for name, value in ndcg.items()
              if name != "retrieval" and not math.isnan(value) and value > base * (1 + tolerance)}
    if not better:
        return "retrieval", (f"no reranker beats retrieval alone (validation NDCG@10 "
                             f"{base:.4f}) by more than {tolerance:.0%}")
    best = max(better.values())
    chosen = next(name for name in PREFERENCE
                  if name in better and better[name] >= best * (1 - tolerance))
    return chosen, (f"{chosen} has validation NDCG@10 {better[chosen]:.4f} against "
                    f"retrieval's {base:.4f} ({better[chosen] / base:.2f}x)"
                    + ("" if better[chosen] == best else
                       f"; within {tolerance:.0%} of the best, {best:.4f}, and preferred"))
