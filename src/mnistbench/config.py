"""params.yaml, validated once, up front, against a typed schema.

Every stage calls `load_params()` first, so a typo or a bad value stops the
pipeline before any work is done, with a message that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, create_model, field_validator, model_validator

from mnistbench.datasets import DATASETS, DataParams, SplitParams
from mnistbench.errors import ParamsError
from mnistbench.models import REGISTRY
from mnistbench.params_file import check_known, describe, merge, read_params, unknown
from mnistbench.schema import ModelSection, Section, Seed

def run_name(model: str, seed: int) -> str:
    """How one training of one model is named everywhere: DVC stage suffix, files, MLflow run."""
    return f"{model}-{seed}"


class AugmentParams(Section):
    """A random affine map per image and batch (augment.py); all zero = no augmentation."""

    degrees: float = Field(ge=0.0, le=180.0)  # rotation, up to ± this many degrees
    translate: float = Field(ge=0.0, lt=0.5)  # shift, up to ± this fraction of the image size
    scale: float = Field(ge=0.0, lt=1.0)  # zoom by a factor in [1 - scale, 1 + scale]


class TrainParams(Section):
    epochs: PositiveInt
    batch_size: PositiveInt
    optimizer: Literal["adam", "adamw", "sgd"]
    lr: PositiveFloat
    momentum: float = Field(ge=0.0, lt=1.0)
    weight_decay: float = Field(ge=0.0)
    # Learning-rate schedule, stepped per batch: constant (the write-up's); cosine (a linear warm-up over
    # `warmup_epochs`, then cosine decay to zero); onecycle (torch's OneCycleLR, peak `lr` after `warmup_epochs`).
    schedule: Literal["constant", "cosine", "onecycle"]
    warmup_epochs: float = Field(ge=0.0)
    label_smoothing: float = Field(ge=0.0, lt=1.0)
    augment: AugmentParams
    # bf16: forward and loss under torch.autocast (bfloat16 matmuls and convolutions, float32 weights,
    # optimizer and evaluation): faster where the device runs bf16 natively, much slower where it is emulated
    # (measured per CPU class: docs/hardware.md). auto: bf16 where native (environment.native_bf16), else fp32.
    # fp32: the write-up's.
    precision: Literal["auto", "fp32", "bf16"]
    threads: PositiveInt | None  # None: matrix.cpus_per_training (trainings), one per CPU core (sprints)
    device: Literal["cpu", "cuda", "auto"]  # auto: CUDA when torch sees a GPU
    # A small profile for tests and smoke runs: train on the first N images of the train split (None: all).
    limit_train_images: PositiveInt | None

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainParams:
        if self.schedule == "onecycle" and not 0 < self.warmup_epochs < self.epochs:
            raise ValueError(
                f"schedule onecycle needs 0 < warmup_epochs < epochs (its rising phase), "
                f"found warmup_epochs={self.warmup_epochs}, epochs={self.epochs}"
            )
        return self


# One field per registered model (src/mnistbench/models/), each validated by that model's own params class.
ModelsParams = create_model("ModelsParams", __base__=Section,
                            **{name: (spec.params, ...) for name, spec in REGISTRY.items()})


class PipelineParams(Section):
    # Which models the train/evaluate stages run (the DVC matrix), and the report compares.
    models: list[str] = Field(min_length=1)

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        return _no_repeats(check_known(models, REGISTRY, "model name"), "model name", "each model once")


class SeedsParams(Section):
    # Each model is trained once per seed (stage train); a model-seed pair whose outputs match its settings,
    # code and data is not trained again.
    train: list[Seed] = Field(min_length=1)
    # A model's own seeds, in place of `train` for it (a costly model trained on fewer seeds).
    per_model: dict[str, list[Seed]]

    @field_validator("train")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        # A repeated seed is the same run twice: it would count twice in a mean and fake a tight interval.
        return _no_repeats(seeds, "seed", "distinct seeds")

    @field_validator("per_model")
    @classmethod
    def _known_and_distinct(cls, per_model: dict[str, list[int]]) -> dict[str, list[int]]:
        for name, seeds in check_known(per_model, REGISTRY, "model name").items():
            if not seeds:
                raise ValueError(f"{name}: expected at least one seed, found none")
            _no_repeats(seeds, f"{name}: seed", "distinct seeds")
        return per_model


def _no_repeats(values: list, what: str, expected: str) -> list:
    repeated = sorted({v for v in values if values.count(v) > 1}, key=values.index)
    if repeated:
        raise ValueError(f"{what} {', '.join(map(str, repeated))} listed more than once; expected {expected}")
    return values


class MatrixParams(Section):
    # How stage `train` runs the pipeline.models x seeds.train matrix: ray (each training a Ray task, on a Ray
    # started for the stage or on the cluster $RAY_ADDRESS names) or local (one after another, in-process).
    executor: Literal["ray", "local"]
    # CPUs each training asks Ray for, and its torch threads when train.threads is null (either executor: the
    # thread count changes a run's last bits, so both give the same weights).
    cpus_per_training: PositiveInt
    # GPUs each Ray task asks for (Ray hides GPUs from a task that asks for none); auto: 1 when the cluster
    # has a GPU and train.device is not cpu, else 0. A fraction shares a GPU between trainings.
    gpus_per_training: Literal["auto"] | float = Field(union_mode="left_to_right")
    # A pair whose record holds today's identity but whose weights are not here: retrain it, or keep it by its
    # recorded evaluation of that training (a record that grows by new seeds; docs/identity.md).
    without_weights: Literal["retrain", "keep"]

    @field_validator("gpus_per_training")
    @classmethod
    def _not_negative(cls, value: str | float) -> str | float:
        if value != "auto" and not 0 <= value:
            raise ValueError(f"expected auto or a number of GPUs >= 0, found {value}")
        return value


class MlflowParams(Section):
    experiment: str = Field(min_length=1)


class Sprint(Section):
    """One time-to-accuracy sprint: a model, shortened by `train`, until its valid accuracy reaches `threshold`."""

    model: str  # a name in the model registry
    # Valid accuracy to reach, confirmed on test afterwards, per dataset: a threshold belongs to its dataset.
    threshold: dict[str, Annotated[float, Field(gt=0.0, le=1.0)]]
    goal_seconds: PositiveFloat  # the time the harness aims for, reported beside the measured one
    train: dict[str, Any]  # overrides of the model's own recipe, e.g. a shorter schedule

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        return check_known([name], REGISTRY, "model name")[0]

    @field_validator("threshold")
    @classmethod
    def _known_datasets(cls, thresholds: dict[str, float]) -> dict[str, float]:
        return check_known(thresholds, DATASETS, "dataset")


class TimeToAccuracyParams(Section):
    # Each sprint runs once per seed; MLPerf's rules: the olympic mean (fastest and slowest dropped), and the
    # result is invalid when more than one run misses the threshold.
    seeds: list[Seed] = Field(min_length=1)
    sprints: dict[str, Sprint]  # by the sprint's name; several may race one model to different thresholds

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        return _no_repeats(seeds, "seed", "distinct seeds")


class Params(Section):
    pipeline: PipelineParams
    data: DataParams
    split: SplitParams
    train: TrainParams
    models: ModelsParams
    seeds: SeedsParams
    matrix: MatrixParams
    mlflow: MlflowParams
    time_to_accuracy: TimeToAccuracyParams

    def model_names(self) -> list[str]:
        """The models this pipeline runs, in params order."""
        return list(self.pipeline.models)

    def seeds_for(self, name: str) -> list[int]:
        """The seeds `name` is trained on: its own under seeds.per_model, else seeds.train."""
        return self.seeds.per_model.get(name, self.seeds.train)

    def runs(self) -> list[tuple[str, int]]:
        """Every (model, seed) pair this pipeline trains, evaluates and compares, in params order."""
        return [(name, seed) for name in self.model_names() for seed in self.seeds_for(name)]

    def model_section(self, name: str) -> ModelSection:
        known = list(REGISTRY)
        if name not in known:
            raise ParamsError(unknown("model name", name, known))
        return getattr(self.models, name)

    def threads_for(self, name: str) -> int:
        """Torch threads of a training of `name` and of its evaluation."""
        return self.train_for(name).threads or self.matrix.cpus_per_training

    def train_for(self, name: str) -> TrainParams:
        """The shared train section with this model's overrides applied, validated again."""
        return _with_overrides(self.train, self.model_section(name).train, f"models.{name}.train.")

    def sprint_threshold(self, sprint: str) -> float | None:
        """The valid accuracy the sprint must reach on this pipeline's dataset; None when none is set for it."""
        return self.time_to_accuracy.sprints[sprint].threshold.get(self.data.dataset)

    def sprint_recipe(self, sprint: str) -> TrainParams:
        """The sprint's model's own recipe with the sprint's overrides on top (a shorter schedule)."""
        target = self.time_to_accuracy.sprints[sprint]
        return _with_overrides(self.train_for(target.model), target.train, f"time_to_accuracy.sprints.{sprint}.train.")


def _with_overrides(base: TrainParams, overrides: dict, prefix: str) -> TrainParams:
    try:  # a nested section (augment) takes the keys it names, keeps the rest
        return TrainParams(**merge(base.model_dump(), overrides))
    except ValidationError as err:
        raise ParamsError(describe(err, TrainParams, prefix=prefix)) from None


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    try:
        params = Params(**(raw or {}))
    except ValidationError as err:
        raise ParamsError(f"{source}: invalid parameters\n{describe(err, Params)}") from None
    try:  # check every recipe's overrides now, not when its stage runs
        for name in REGISTRY:
            _batch_fits(params, params.train_for(name), [f"models.{name}.train"])
        for name, sprint in params.time_to_accuracy.sprints.items():
            _batch_fits(params, params.sprint_recipe(name),
                        [f"time_to_accuracy.sprints.{name}.train", f"models.{sprint.model}.train"])
    except ParamsError as err:
        raise ParamsError(f"{source}: invalid parameters\n{err}") from None
    return params


def _batch_fits(params: Params, tp: TrainParams, overrides: list[str]) -> None:
    """A batch larger than the training set is one partial step per epoch: not the experiment anyone meant.
    `overrides`: the sections that may set the batch size, most specific first; the message names the one that did."""
    images = min(params.split.train_size, tp.limit_train_images or params.split.train_size)
    if tp.batch_size <= images:
        return
    found = {f"models.{n}.train": getattr(params.models, n).train for n in REGISTRY}
    found |= {f"time_to_accuracy.sprints.{n}.train": t.train for n, t in params.time_to_accuracy.sprints.items()}
    key = next((f"{o}.batch_size" for o in overrides if "batch_size" in found.get(o, {})), "train.batch_size")
    seen = f"split.train_size {params.split.train_size}" + (
        f", train.limit_train_images {tp.limit_train_images}" if tp.limit_train_images else "")
    raise ParamsError(f"{key}: {tp.batch_size} is larger than the {images} training images the run sees ({seen}); "
                      f"expected at most {images} (found {tp.batch_size})")


def load_params(*paths: str | Path) -> Params:
    """Read params.yaml (or several files, each later one changing the keys it names in the earlier)."""
    return parse_params(*read_params(*paths))
