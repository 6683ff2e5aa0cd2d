"""What benchmarks/bench_train.py measures: one ``recs train`` run and the baselines beside it,
and the targets they are judged on."""

from __future__ import annotations

from dataclasses import dataclass, field

TRAIN_RATIO_TARGET = 1.5
NN_RATIO_TARGET = 5.0
PEAK_MB_TARGET = 4096.0


@dataclass
class TrainRun:
    label: str
    wall: float
    peak_mb: float
    ok: bool
    timed_out: bool = False
    stages: dict[str, float] = field(default_factory=dict)
    # user + sys CPU seconds of the child: other users' load inflates wall time, not this.
    cpu: float = 0.0


@dataclass
class Baselines:
    read: float
    text_fit: float
    tag_fit: float
    sdt_full: float
    nn_fit: float
    nn_sample: float
    sdt_sample: float
    sample: int
    n: int
    shape: tuple[int, int]
    nnz: int
    # models.topk.top_k on the same matrix, all rows (the model's own top-k, k neighbours).
    model_topk: float
    extra: dict[str, float] = field(default_factory=dict)
    # CPU seconds (all threads of this process) of the same steps, by step name.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def tfidf_sdt_cpu(self) -> float:
        return self.cpu["text+tags"] + self.cpu["sdt full"]

    @property
    def nn_extrapolated_cpu(self) -> float:
        return self.cpu["nn sample"] * self.n / self.sample

    @property
    def tfidf_sdt(self) -> float:
        return self.text_fit + self.tag_fit + self.sdt_full

    @property
    def nn_extrapolated(self) -> float:
        return self.nn_fit + self.nn_sample * self.n / self.sample
