"""The export stage's config, validated when built."""

from __future__ import annotations

from dataclasses import dataclass, field

from llarapp.config import TrackedConfig, require
from llarapp.export.quantize import VARIANTS
from llarapp.serving.runtime import PROVIDERS

CHOOSE = "auto"
ATTENTION = ("fused", "eager", "sdpa")


@dataclass
class ExportConfig(TrackedConfig):
    opset: int = 17
    # eager: matmul + additive mask. fused: onnxruntime's GroupQueryAttention per layer,
    # rotary included (Llama family, llarapp.llara.fused_attention): 0.88-0.94x the int8
    # ranker's time alone on the CPU, but served end to end no gain was resolved (README,
    # "Attention as one operator"). sdpa exports NaN guards over every (B, H, T, T) score
    # tensor, slower for fp32 and int8 alike on the CPU
    attention: str = "eager"
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    # auto: the fastest variant at batch 8 whose |ΔHR@1| on validation prompts is within
    # max_delta_hr; or name one variant.
    quantization: str = CHOOSE
    max_delta_hr: float = 0.005
    keep_head_fp32: bool = True  # projector, label pointer and logits stay fp32
    parity_tolerance: float = 1e-4  # max |ORT fp32 − torch| on the label logits
    min_text_cosine: float = 0.99  # mean cosine of the int8 text encoder to fp32
    text_parity_texts: int = 1000
    calibration_prompts: int = 64
    eval_prompts: int = 500  # per split; protocol (a) prompts for ΔHR@1 and ΔNDCG
    latency_batches: list[int] = field(default_factory=lambda: [1, 8, 32])
    latency_repeats: int = 5
    threads: int = 0  # ORT intra-op threads; 0: every available CPU
    providers: list[str] = field(default_factory=lambda: ["cpu"])
    # Catalogues of at least this many tracks ship an IVF retrieval index (serving then
    # searches it; llarapp.models.group_index); smaller ones are scored exactly in numpy
    index_min_tracks: int = 50_000
    drift_reference_size: int = 2000  # validation playlists the drift reference is fit on
    model_version: str = ""  # empty: <ranker kind>-<UTC time>-<hash of the bundle files>
    seed: int = 0

    def validate(self) -> None:
        require(self.opset >= 17, "opset must be 17 or higher")
        require(self.attention in ATTENTION, f"attention must be one of {', '.join(ATTENTION)}")
        require(bool(self.variants) and set(self.variants) <= set(VARIANTS),
                f"variants must be a non-empty subset of {', '.join(VARIANTS)}")
        require(self.quantization == CHOOSE or self.quantization in self.variants,
                f"quantization must be {CHOOSE} or one of the variants {self.variants}")
        require(0 <= self.max_delta_hr < 1, "max_delta_hr is a fraction in [0, 1)")
        require(0 < self.min_text_cosine <= 1, "min_text_cosine must be in (0, 1]")
        require(self.parity_tolerance > 0, "parity_tolerance must be positive")
        require(self.index_min_tracks >= 0, "index_min_tracks must be >= 0 (0: always)")
        for name in ("calibration_prompts", "eval_prompts", "latency_repeats",
                     "text_parity_texts", "drift_reference_size"):
            require(getattr(self, name) >= 1, f"{name} must be at least 1")
        require(bool(self.latency_batches) and min(self.latency_batches) >= 1,
                "latency_batches must be positive batch sizes")
        require(self.threads >= 0, "threads must be >= 0 (0: all CPUs)")
        require(bool(self.providers) and (self.providers == ["auto"]
                                          or set(self.providers) <= set(PROVIDERS)),
                f"providers: auto, or a list from {', '.join(PROVIDERS)}")
