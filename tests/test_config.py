import pytest
import yaml

from conftest import ROOT
from mnistbench.config import ParamsError, load_params, parse_params
from mnistbench.models import build_model


def committed() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(section: str, key: str, value) -> dict:
    raw = committed()
    node = raw
    for part in section.split("."):
        node = node[part]
    node[key] = value
    return raw


def test_the_projects_params_are_valid():
    """Valid whatever the user set in them (their values are the user's: no test asserts them)."""
    params = load_params(ROOT / "params.yaml")
    assert params.model_names() and params.runs()


@pytest.mark.parametrize("key", ["epochs", "batch_size"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_counts(key, value):
    with pytest.raises(ParamsError, match=rf"train\.{key}: Input should be greater than 0 \(found {value}\)"):
        parse_params(with_change("train", key, value))


def test_non_numeric_learning_rate():
    with pytest.raises(ParamsError, match=r"train\.lr: .*found 'fast'"):
        parse_params(with_change("train", "lr", "fast"))


def test_typo_gets_a_suggestion():
    raw = committed()
    raw["train"]["epocs"] = 3
    with pytest.raises(ParamsError, match=r"train\.epocs: unknown key 'epocs'.*did you mean 'epochs'\?"):
        parse_params(raw)


def test_typo_in_a_model_override_gets_a_suggestion():
    raw = with_change("models.vit", "train", {"lr_": 0.1})
    with pytest.raises(ParamsError, match=r"models\.vit\.train\.lr_: unknown key 'lr_'.*did you mean 'lr'\?"):
        parse_params(raw)


def test_split_sizes_must_cover_mnist():
    with pytest.raises(ParamsError, match=r"must be 60000 .*found 48000 \+ 10000 = 58000"):
        parse_params(with_change("split", "valid_size", 10_000))


def test_unknown_model_name():
    params = parse_params(committed())
    with pytest.raises(ParamsError, match=r"unknown model name 'cnm'.*did you mean 'cnn'\?"):
        params.model_section("cnm")


def test_cnn_over_its_parameter_budget():
    params = parse_params(with_change("models.cnn", "max_params", 40_000))
    with pytest.raises(ParamsError, match=r"models\.cnn\.max_params: the model has 40,730 parameters, over the budget of 40,000"):
        build_model("cnn", params)


def test_model_overrides_apply_to_that_model_only():
    params = parse_params(with_change("models.vit", "train", {"lr": 0.01}))
    assert params.train_for("vit").lr == 0.01
    assert params.train_for("mlp").lr == params.train.lr


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="nothere.yaml: file not found"):
        load_params(tmp_path / "nothere.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="params.yaml: not valid YAML"):
        load_params(bad)


def test_onecycle_needs_a_rising_phase():
    raw = with_change("models.cnn_tuned.train", "warmup_epochs", 0)
    with pytest.raises(ParamsError, match=r"models\.cnn_tuned\.train\.: schedule onecycle needs 0 < warmup_epochs < epochs"):
        parse_params(raw)


def test_augmentation_out_of_range_names_the_key():
    raw = with_change("train", "augment", {"degrees": 0, "translate": 0.7, "scale": 0})
    with pytest.raises(ParamsError, match=r"train\.augment\.translate: Input should be less than 0\.5 \(found 0\.7\)"):
        parse_params(raw)


def test_unknown_precision_names_the_key_and_the_choices():
    raw = with_change("train", "precision", "fp16")
    with pytest.raises(ParamsError, match=r"train\.precision: Input should be 'auto', 'fp32' or 'bf16' \(found 'fp16'\)"):
        parse_params(raw)


def test_time_to_accuracy_checks_model_names_and_overrides():
    raw = committed()
    raw["time_to_accuracy"]["sprints"]["cnn_tuned_99"]["model"] = "cnn_tunde"
    with pytest.raises(ParamsError, match=r"unknown model name 'cnn_tunde'.*did you mean 'cnn_tuned'\?"):
        parse_params(raw)
    raw = with_change("time_to_accuracy.sprints.vit_tuned_98", "train", {"epochs": 2, "warmup_epochs": 3})
    with pytest.raises(ParamsError, match=r"time_to_accuracy\.sprints\.vit_tuned_98\.train\.: schedule onecycle needs"):
        parse_params(raw)


def test_tuned_cnn_over_its_parameter_budget():
    params = parse_params(with_change("models.cnn_tuned", "stages", [[32], [64, 64], [128]]))
    with pytest.raises(ParamsError, match=r"models\.cnn_tuned\.max_params: the model has [\d,]+ parameters, over the budget of 50,000"):
        build_model("cnn_tuned", params)


@pytest.mark.parametrize("section, key, value, message", [
    ("pipeline", "models", ["mlp", "cnn", "mlp"], r"pipeline\.models: model name mlp listed more than once; "
                                                  r"expected each model once \(found \['mlp', 'cnn', 'mlp'\]\)"),
    ("seeds", "train", [0, 1, 0], r"seeds\.train: seed 0 listed more than once; expected distinct seeds"),
])
def test_repeated_runs_are_refused(section, key, value, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(with_change(section, key, value))


def test_a_batch_larger_than_the_training_set_is_refused():
    raw = with_change("train", "limit_train_images", 2000)
    raw["train"]["batch_size"] = 5000
    with pytest.raises(ParamsError, match=r"train\.batch_size: 5000 is larger than the 2000 training images the run "
                                          r"sees \(split\.train_size 48000, train\.limit_train_images 2000\)"):
        parse_params(raw)
    raw = with_change("models.vit_tuned.train", "batch_size", 50_000)  # the model's own override is named
    with pytest.raises(ParamsError, match=r"models\.vit_tuned\.train\.batch_size: 50000 is larger than the 48000"):
        parse_params(raw)


def test_non_utf8_params_name_the_file_and_the_byte(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes((ROOT / "params.yaml").read_bytes().replace(b"adam", b"ad\xe9m", 1))
    with pytest.raises(ParamsError, match=r"params\.yaml: not UTF-8 text \(byte 0xe9 at offset \d+\)"):
        load_params(path)


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "lr", float("nan"), r"train\.lr: Input should be a finite number"),
    ("train", "warmup_epochs", float("inf"), r"train\.warmup_epochs: Input should be a finite number"),
    ("seeds", "train", [0, -1], r"seeds\.train\.1: Input should be greater than or equal to 0 \(found -1\)"),
    ("seeds", "train", [2**32], r"seeds\.train\.0: Input should be less than 4294967296"),
    ("split", "seed", -5, r"split\.seed: Input should be greater than or equal to 0"),
    ("mlflow", "experiment", "", r"mlflow\.experiment: String should have at least 1 character"),
])
def test_values_no_run_could_use_are_refused(section, key, value, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(with_change(section, key, value))


def test_an_overlay_changes_only_the_keys_it_names_and_its_typo_is_named_alone(tmp_path):
    """A variant's params.yaml: merged key by key (a section it names keeps the keys it does not), and a bad key in
    it is the only line of the error, which names both files."""
    overlay = tmp_path / "variant.yaml"
    overlay.write_text("train: {epochs: 3}\npipeline: {models: [mlp, cnn]}\nseeds: {per_model: {mlp: [0, 1]}}\n")
    params = load_params(ROOT / "params.yaml", overlay)
    committed = load_params(ROOT / "params.yaml")
    assert params.train.epochs == 3 and params.train.lr == committed.train.lr
    assert params.seeds_for("mlp") == [0, 1] and params.seeds_for("cnn") == committed.seeds.train
    assert [run for run in params.runs() if run[0] == "mlp"] == [("mlp", 0), ("mlp", 1)]
    overlay.write_text("train: {epocs: 3}\n")
    with pytest.raises(ParamsError) as raised:
        load_params(ROOT / "params.yaml", overlay)
    lines = str(raised.value).splitlines()
    assert lines[0] == f"{ROOT / 'params.yaml'} + {overlay}: invalid parameters"
    assert len(lines) == 2 and lines[1].startswith("train.epocs: unknown key 'epocs'") and "did you mean 'epochs'" in lines[1]


def test_the_data_stages_read_only_their_sections(tmp_path):
    """download and split validate data and split only: a bad train section is the train stage's to report,
    and a bad split key is named."""
    from mnistbench.datasets import DataParams, SplitParams
    from mnistbench.params_file import load_sections
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["epochs"] = -1
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    sections = load_sections([path], data=DataParams, split=SplitParams)
    assert (sections.data.dataset, sections.split.train_size) == ("mnist", 48_000)
    raw["split"]["valid_size"] = 100
    del raw["data"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError) as err:
        load_sections([path], data=DataParams, split=SplitParams)
    assert "data: expected a section" in str(err.value)
    assert "split.train_size + split.valid_size must be 60000" in str(err.value)
