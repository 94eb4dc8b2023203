"""The quantization report: choose a variant, then JSON, Markdown and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from llarapp.manifest import write_json


def choose_variant(table: pd.DataFrame, quantization: str, max_delta_hr: float
                   ) -> tuple[str, str]:
    """(variant, why). ``auto``: the fastest at batch 8 among those whose validation HR@1
    moved at most ``max_delta_hr`` from fp32; if none qualifies, the most accurate."""
    fp32 = table.set_index("model").loc["fp32"]
    variants = table[table["model"] != "fp32"].copy()
    variants["val_delta_hr"] = (variants["val_hr@1"] - fp32["val_hr@1"]).abs()
    speed = "latency_b8_ms" if "latency_b8_ms" in variants else \
        [c for c in variants if c.startswith("latency_")][0]
    if quantization != "auto":
        return quantization, "named in the config"
    ok = variants[variants["val_delta_hr"] <= max_delta_hr + 1e-12]
    if len(ok):
        best = ok.sort_values(speed).iloc[0]
        return str(best["model"]), (f"fastest at {speed.split('_')[1]} ({best[speed]:.1f} ms) "
                                    f"with validation |ΔHR@1| {best['val_delta_hr']:.4f} "
                                    f"≤ {max_delta_hr}")
    best = variants.sort_values(["val_delta_hr", speed]).iloc[0]
    return str(best["model"]), (f"no variant kept validation |ΔHR@1| ≤ {max_delta_hr}; "
                                f"the most accurate ({best['val_delta_hr']:.4f}) was chosen")


def int8_parity(table: pd.DataFrame, chosen: str, max_delta_hr: float) -> dict[str, Any]:
    """The deploy gate's parity check: the shipped int8 ranker's validation HR@1 stays
    within ``max_delta_hr`` of fp32 (the test split is for reporting, not for gating)."""
    rows = table.set_index("model")
    delta = abs(float(rows.loc[chosen, "val_hr@1"] - rows.loc["fp32", "val_hr@1"]))
    return {"variant": chosen, "val_delta_hr@1": delta, "max_delta_hr": max_delta_hr,
            "passed": bool(delta <= max_delta_hr + 1e-12)}


def summary(table: pd.DataFrame, chosen: str) -> dict[str, float]:
    """The acceptance figures: size ratio, batch-8 speed-up, test ΔHR@1 and ΔNDCG (int8 − fp32)."""
    rows = table.set_index("model")
    fp32, int8 = rows.loc["fp32"], rows.loc[chosen]
    ndcg = [c for c in rows if c.startswith("test_ndcg")][0]
    out = {"size_ratio": fp32["size_mb"] / int8["size_mb"],
           "test_delta_hr@1": int8["test_hr@1"] - fp32["test_hr@1"],
           f"test_delta_{ndcg[5:]}": int8[ndcg] - fp32[ndcg]}
    for col in rows:
        if col.startswith("latency_b"):
            out[f"speedup_{col[8:-3]}"] = fp32[col] / int8[col]
    return {k: float(v) for k, v in out.items()}


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = table.set_index("model")[[c for c in table if c.startswith("latency_b")]]
    latency.columns = [f"batch {c[9:-3]}" for c in latency.columns]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    table.set_index("model")["size_mb"].plot.bar(ax=left, color="#4c72b0", rot=0)
    left.set(title="ranker size", ylabel="MB")
    latency.plot.bar(ax=right, rot=0)
    right.set(title="ORT latency (median)", ylabel="ms")
    right.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(folder: Path, table: pd.DataFrame, chosen: str, why: str,
                 extra: dict[str, Any]) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    result = {"chosen": chosen, "why": why, "summary": summary(table, chosen),
              "variants": table.to_dict(orient="records"), **extra}
    write_json(folder / "quantization.json", result)
    figures = pd.DataFrame([result["summary"]]).T.rename(columns={0: chosen})
    (folder / "quantization.md").write_text(
        f"# Ranker quantization\n\nChosen: **{chosen}**, {why}.\n\n"
        f"{table.to_markdown(index=False, floatfmt='.4f')}\n\n"
        f"## {chosen} against fp32 (test split)\n\n{figures.to_markdown(floatfmt='.4f')}\n\n"
        f"Text encoder (int8 vs fp32 on catalogue track texts): {extra.get('text_encoder')}\n\n"
        f"Ranker parity (ORT fp32 vs torch, max |Δ logit|): {extra.get('ranker_parity')}\n\n"
        f"int8 parity gate: {extra.get('int8_parity')}\n")
    plot(table, folder / "quantization.png")
    return result
