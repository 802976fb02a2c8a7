"""params.yaml, validated once, up front, against a typed schema.

Every stage calls `load_params()` first, so a typo or a bad value stops the
pipeline before any work is done, with a message that names the key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, field_validator, model_validator

MNIST_TRAIN_IMAGES = 60_000
# Seeds go to Python, NumPy and torch; NumPy takes 0 <= seed < 2**32.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def run_name(model: str, seed: int) -> str:
    """How one training of one model is named everywhere: DVC stage suffix, files, MLflow run."""
    return f"{model}-{seed}"


class ParamsError(ValueError):
    """A bad params.yaml: the message names the key, what was expected and what was found."""


class Section(BaseModel):
    # extra="forbid" turns a typo into an error instead of a silently ignored key; no NaN or infinity
    # passes for a number (an infinite warm-up or learning rate is never what was meant).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataParams(Section):
    # A folder holding the four .gz files; None downloads them from the public mirrors.
    # The environment variable MNIST_DIR overrides it (see stages/download.py).
    local_dir: str | None = "../shared/mnist"


class SplitParams(Section):
    seed: Seed = 20240601
    train_size: PositiveInt = 48_000
    valid_size: PositiveInt = 12_000

    @model_validator(mode="after")
    def _sizes_cover_mnist(self) -> SplitParams:
        if self.train_size + self.valid_size != MNIST_TRAIN_IMAGES:
            raise ValueError(
                f"split.train_size + split.valid_size must be {MNIST_TRAIN_IMAGES} (the MNIST training set), "
                f"found {self.train_size} + {self.valid_size} = {self.train_size + self.valid_size}"
            )
        return self


class AugmentParams(Section):
    """A random affine map per image and batch (augment.py); all zero = no augmentation."""

    degrees: float = Field(0.0, ge=0.0, le=180.0)  # rotation, up to ± this many degrees
    translate: float = Field(0.0, ge=0.0, lt=0.5)  # shift, up to ± this fraction of the image size
    scale: float = Field(0.0, ge=0.0, lt=1.0)  # zoom by a factor in [1 - scale, 1 + scale]


class TrainParams(Section):
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: PositiveFloat = 1e-3
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    # Learning-rate schedule, stepped per batch: constant (the write-up's); cosine (a linear warm-up
    # over `warmup_epochs`, then cosine decay to zero); onecycle (torch's OneCycleLR, peak `lr`
    # after `warmup_epochs`).
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    warmup_epochs: float = Field(0.0, ge=0.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    augment: AugmentParams = AugmentParams()
    # bf16: forward and loss under torch.autocast (bfloat16 matmuls and convolutions, float32 weights,
    # optimizer and evaluation); about 2x faster steps where the device runs bf16 natively, 10x slower where
    # it is emulated. auto: bf16 where native (environment.native_bf16), else fp32. fp32: the write-up's.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads: PositiveInt | None = None  # None: one per CPU core
    device: Literal["cpu", "cuda", "auto"] = "auto"  # auto: CUDA when torch sees a GPU
    # A small profile for tests and smoke runs: train on the first N images of the train split.
    limit_train_images: PositiveInt | None = None

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainParams:
        if self.schedule == "onecycle" and not 0 < self.warmup_epochs < self.epochs:
            raise ValueError(
                f"schedule onecycle needs 0 < warmup_epochs < epochs (its rising phase), "
                f"found warmup_epochs={self.warmup_epochs}, epochs={self.epochs}"
            )
        return self


class MlpParams(Section):
    hidden: PositiveInt = 100
    train: dict[str, Any] = {}  # overrides of the shared train section, for this model only


class CnnParams(Section):
    max_params: PositiveInt = 50_000
    train: dict[str, Any] = {}


class VitParams(Section):
    patch_size: PositiveInt = 7
    dim: PositiveInt = 64
    depth: PositiveInt = 4
    heads: PositiveInt = 4
    mlp_dim: PositiveInt = 128
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    train: dict[str, Any] = {}

    @model_validator(mode="after")
    def _shapes_fit(self) -> VitParams:
        if 28 % self.patch_size:
            raise ValueError(f"patch_size must divide 28, found {self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim must be a multiple of heads, found dim={self.dim}, heads={self.heads}")
        return self


class VitSeedParams(VitParams):
    """The write-up's ViT as written (models/vit_seed.py): our ViT's sizes, plus the width of each head."""

    dim_head: PositiveInt = 16


class MlpTunedParams(Section):
    hidden: list[PositiveInt] = Field(default_factory=lambda: [1024, 1024], min_length=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    train: dict[str, Any] = {}


class CnnTunedParams(Section):
    # Conv widths per stage; each stage ends in a 2x2 max-pool, so at most 4 stages (28 -> 1).
    stages: list[list[PositiveInt]] = Field(default_factory=lambda: [[16], [32, 32], [64]], min_length=1, max_length=4)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    max_params: PositiveInt = 50_000
    train: dict[str, Any] = {}


class ModelsParams(Section):
    mlp: MlpParams = MlpParams()
    cnn: CnnParams = CnnParams()
    vit: VitParams = VitParams()
    vit_seed: VitSeedParams = VitSeedParams()
    mlp_tuned: MlpTunedParams = MlpTunedParams()
    cnn_tuned: CnnTunedParams = CnnTunedParams()
    vit_tuned: VitParams = VitParams()


class PipelineParams(Section):
    # Which models the train/evaluate stages run (the DVC matrix), and the report compares.
    models: list[str] = Field(default_factory=lambda: ["mlp", "cnn", "vit"], min_length=1)

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        for name in models:
            if name not in ModelsParams.model_fields:
                raise ValueError(_unknown("model name", name, list(ModelsParams.model_fields)))
        return _no_repeats(models, "model name", "each model once")


class SeedsParams(Section):
    # Each model is trained once per seed (DVC stages train@<model>-<seed>). `make seeds` runs
    # five; DVC skips the seeds it has already trained.
    train: list[Seed] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("train")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        # A repeated seed is the same run twice: it would count twice in a mean and fake a tight interval.
        return _no_repeats(seeds, "seed", "distinct seeds")


def _no_repeats(values: list, what: str, expected: str) -> list:
    repeated = sorted({v for v in values if values.count(v) > 1}, key=values.index)
    if repeated:
        raise ValueError(f"{what} {', '.join(map(str, repeated))} listed more than once; expected {expected}")
    return values


class MlflowParams(Section):
    experiment: str = Field("mnistbench", min_length=1)


class AccuracyTarget(Section):
    threshold: float = Field(gt=0.0, le=1.0)  # valid accuracy to reach, confirmed on test afterwards
    goal_seconds: PositiveFloat  # the time the harness aims for, reported beside the measured one
    train: dict[str, Any] = {}  # overrides of the model's own recipe, e.g. a shorter schedule


class TimeToAccuracyParams(Section):
    seed: Seed = 0
    models: dict[str, AccuracyTarget] = Field(default_factory=lambda: {
        "cnn_tuned": AccuracyTarget(threshold=0.99, goal_seconds=20),
        "vit_tuned": AccuracyTarget(threshold=0.98, goal_seconds=60),
    })

    @field_validator("models")
    @classmethod
    def _known_models(cls, models: dict[str, AccuracyTarget]) -> dict[str, AccuracyTarget]:
        for name in models:
            if name not in ModelsParams.model_fields:
                raise ValueError(_unknown("model name", name, list(ModelsParams.model_fields)))
        return models


class Params(Section):
    pipeline: PipelineParams = PipelineParams()
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    models: ModelsParams = ModelsParams()
    seeds: SeedsParams = SeedsParams()
    mlflow: MlflowParams = MlflowParams()
    time_to_accuracy: TimeToAccuracyParams = TimeToAccuracyParams()

    def model_names(self) -> list[str]:
        """The models this pipeline runs, in params order."""
        return list(self.pipeline.models)

    def model_section(self, name: str) -> BaseModel:
        known = list(ModelsParams.model_fields)
        if name not in known:
            raise ParamsError(_unknown("model name", name, known))
        return getattr(self.models, name)

    def train_for(self, name: str) -> TrainParams:
        """The shared train section with this model's overrides applied, validated again."""
        return _with_overrides(self.train, self.model_section(name).train, f"models.{name}.train.")

    def time_to_accuracy_recipe(self, name: str) -> TrainParams:
        """The model's own recipe with its time-to-accuracy overrides on top (a shorter schedule)."""
        target = self.time_to_accuracy.models[name]
        return _with_overrides(self.train_for(name), target.train, f"time_to_accuracy.models.{name}.train.")


def _with_overrides(base: TrainParams, overrides: dict, prefix: str) -> TrainParams:
    try:
        return TrainParams(**{**base.model_dump(), **overrides})
    except ValidationError as err:
        raise ParamsError(_describe(err, prefix=prefix, schema=TrainParams)) from None


def _unknown(what: str, found: str, known: list[str]) -> str:
    close = difflib.get_close_matches(found, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {what} '{found}': expected one of {', '.join(known)}{hint}"


def _schema_at(schema: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic class that owns the key at `loc`, for suggesting the nearest key."""
    for part in loc:
        field = schema.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return schema
        schema = annotation
    return schema


def _describe(err: ValidationError, prefix: str = "", schema: type[BaseModel] = Params) -> str:
    lines = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            owner = _schema_at(schema, e["loc"][:-1])
            lines.append(f"{key}: {_unknown('key', str(e['loc'][-1]), list(owner.model_fields))}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            found = "" if isinstance(e.get("input"), dict) else f" (found {e.get('input')!r})"
            lines.append(f"{key}: {msg}{found}")
    return "\n".join(lines)


def parse_params(raw: dict, source: str = "params.yaml") -> Params:
    try:
        params = Params(**(raw or {}))
    except ValidationError as err:
        raise ParamsError(f"{source}: invalid parameters\n{_describe(err)}") from None
    try:  # check every recipe's overrides now, not when its stage runs
        for name in ModelsParams.model_fields:
            _batch_fits(params, params.train_for(name), [f"models.{name}.train"])
        for name in params.time_to_accuracy.models:
            _batch_fits(params, params.time_to_accuracy_recipe(name),
                        [f"time_to_accuracy.models.{name}.train", f"models.{name}.train"])
    except ParamsError as err:
        raise ParamsError(f"{source}: invalid parameters\n{err}") from None
    return params


def _batch_fits(params: Params, tp: TrainParams, overrides: list[str]) -> None:
    """A batch larger than the training set is one partial step per epoch: not the experiment anyone meant.
    `overrides`: the sections that may set the batch size, most specific first; the message names the one that did."""
    images = min(params.split.train_size, tp.limit_train_images or params.split.train_size)
    if tp.batch_size <= images:
        return
    found = {f"models.{n}.train": getattr(params.models, n).train for n in ModelsParams.model_fields}
    found |= {f"time_to_accuracy.models.{n}.train": t.train for n, t in params.time_to_accuracy.models.items()}
    key = next((f"{o}.batch_size" for o in overrides if "batch_size" in found.get(o, {})), "train.batch_size")
    seen = f"split.train_size {params.split.train_size}" + (
        f", train.limit_train_images {tp.limit_train_images}" if tp.limit_train_images else "")
    raise ParamsError(f"{key}: {tp.batch_size} is larger than the {images} training images the run sees ({seen}); "
                      f"expected at most {images} (found {tp.batch_size})")


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        found = "a folder, not a file" if path.is_dir() else "file not found"
        raise ParamsError(f"{path}: {found}; expected the pipeline's parameters in YAML")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                          "expected the pipeline's parameters in UTF-8 YAML") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, found {type(raw).__name__}")
    return raw or {}


def load_params(*paths: str | Path) -> Params:
    """Read params.yaml (or several files, each later one replacing whole sections of the earlier)."""
    paths = [Path(p) for p in paths] or [Path("params.yaml")]
    raw: dict = {}
    for path in paths:
        raw.update(_read_yaml(path))
    return parse_params(raw, " + ".join(map(str, paths)))
