"""The gate's verdict as a person reads it first: what was built, each condition with its
value, threshold and result, and the candidate's figures with their intervals.

The conditions: the floor (the gate model's metric at least the threshold), the served
ranking at least retrieval alone, not worse than the champion (one row per metric), and
the int8 ranker's parity with fp32. All must pass to deploy.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def _interval(values: dict[str, Any], signed: bool = False) -> str:
    if values.get("mean") is None:
        return "n/a"
    sign = "+" if signed else ""
    return (f"{values['mean']:{sign}.4f} [{values['low']:{sign}.4f}, "
            f"{values['high']:{sign}.4f}]")


def conditions(gate: dict[str, Any], threshold: float, parity: dict[str, Any] | None
               ) -> list[dict[str, Any]]:
    rows = [{"condition": f"floor: {gate['model']} {gate['metric']}",
             "value": f"{gate['floor']:.4f}", "threshold": f">= {threshold:g}",
             "result": gate["floor"] >= threshold}]
    served = gate.get("served_ranking")
    if served:
        rows.append({"condition": f"served ranking ({served['ranker']}) vs retrieval alone",
                     "value": served["why"], "threshold": "not below", "result":
                     served["passed"]})
    champion = gate.get("champion") or {}
    if champion.get("champion") is None:
        rows.append({"condition": "champion", "value": champion.get("why", "not compared"),
                     "threshold": "", "result": True})
    for condition in champion.get("conditions", []):
        who = champion["champion"]
        rows.append({
            "condition": f"{condition['metric']} vs v{who['version']} ({who['alias']})",
            "value": f"{condition['candidate']:.4f} vs {condition['champion']:.4f}, "
                     f"difference {_interval(condition['difference'], signed=True)}",
            "threshold": (f"low > -{champion['tolerance']:g}" if condition["judged"] else
                          f"too few playlists ({condition['playlists']})"),
            "result": condition["passed"], "judged": condition["judged"]})
    if parity:
        rows.append({"condition": f"int8 parity ({parity.get('variant', '')})",
                     "value": f"validation ΔHR@1 {parity.get('val_delta_hr@1', 0.0):+.4f}",
                     "threshold": f"within {parity.get('max_delta_hr', 0.0):g}",
                     "result": bool(parity.get("passed"))})
    return rows


def verdict(gate: dict[str, Any], threshold: float, manifest: dict[str, Any]
            ) -> dict[str, Any]:
    rows = conditions(gate, threshold, manifest.get("quantization", {}).get("int8_parity"))
    failed = [r["condition"] for r in rows if not r["result"]]
    return {"deploy": not failed, "failed": failed, "conditions": rows,
            "model_version": manifest.get("model_version", ""),
            "ranker": manifest.get("ranker", {}).get("kind", ""),
            "ranker_why": manifest.get("ranker", {}).get("why", "")}


def verdict_markdown(result: dict[str, Any], candidate: dict[str, dict[str, Any]]) -> str:
    """The summary that opens metrics.md and the report."""
    word = "DEPLOY" if result["deploy"] else "HOLD: " + "; ".join(result["failed"])
    table = pd.DataFrame([{**r, "result": "not judged" if not r.get("judged", True) else
                           "pass" if r["result"] else "FAIL"} for r in result["conditions"]])
    table = table.drop(columns="judged", errors="ignore")
    figures = pd.DataFrame([{"metric": name, "candidate, 95% interval": _interval(values)}
                            for name, values in candidate.items()])
    return (f"# Verdict: {word}\n\n"
            f"Bundle `{result['model_version']}`; serves **{result['ranker']}** "
            f"({result['ranker_why']}).\n\n{table.to_markdown(index=False)}\n\n"
            + (f"{figures.to_markdown(index=False)}\n" if len(figures) else ""))
