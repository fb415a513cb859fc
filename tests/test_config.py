"""The config: its choices are the core's tables of options, and it checks every value the
core trusts, once, before any run."""

from __future__ import annotations

import math

import pytest

from sweeper import config, core, data
from sweeper.config import (
    ConfigError,
    DatasetConfig,
    GradCheckConfig,
    OptimizerConfig,
    RegularizerConfig,
    TrainConfig,
)


@pytest.mark.parametrize(
    ("choices", "table"),
    [
        (config.ActivationName, core.ACTIVATIONS),
        (config.OptimizerName, core.OPTIMIZERS),
        (config.MomentumForm, core.MOMENTUM_FORMS),
        (config.LrSchedule, core.LR_SCHEDULES),
        (config.RegularizerName, core.REGULARIZERS),
        (config.EvalTrain, core.EVAL_TRAIN),
        (config.DatasetName, data.DATASETS),
    ],
)
def test_each_choice_is_a_name_in_the_table_that_implements_it(choices: type, table: dict) -> None:
    assert [member.value for member in choices] == list(table)  # type: ignore[attr-defined]


def test_init_and_dtype_choices_come_from_the_core() -> None:
    assert [m.value for m in config.InitName] == ["auto", *core.INITIALIZERS]
    assert [m.value for m in config.Dtype] == [d.name for d in core.SUPPORTED_DTYPES]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: OptimizerConfig(lr=0.0), "optimizer.lr=0.0 is invalid: must be finite, > 0"),
        (lambda: OptimizerConfig(lr=math.inf), "optimizer.lr=inf is invalid: must be finite"),
        (lambda: OptimizerConfig(momentum=1.0), "optimizer.momentum=1.0 is invalid"),
        (lambda: OptimizerConfig(beta2=1.0), "optimizer.beta2=1.0 is invalid"),
        (lambda: TrainConfig(epochs=0), "train.epochs=0 is invalid: must be >= 1"),
        (lambda: TrainConfig(batch_size=0), "train.batch_size=0 is invalid: must be >= 1"),
        (lambda: TrainConfig(patience=0), "train.patience=0 is invalid"),
        (lambda: RegularizerConfig(p=1.0), "regularizer.p=1.0 is invalid"),
        (lambda: RegularizerConfig(lam=-1.0), "regularizer.lam=-1.0 is invalid: must be finite"),
        (lambda: RegularizerConfig(lam=math.inf), "regularizer.lam=inf is invalid: must be finite"),
        (lambda: GradCheckConfig(eps=math.inf), "gradcheck.eps=inf is invalid: must be finite"),
        (lambda: GradCheckConfig(tol=math.nan), "gradcheck.tol=nan is invalid: must be finite"),
        (lambda: RegularizerConfig(input_p=1.0), "regularizer.input_p=1.0 is invalid"),
        (lambda: RegularizerConfig(max_norm=0.0), "regularizer.max_norm=0.0 is invalid"),
        (lambda: DatasetConfig(val_fraction=1.0), "dataset.val_fraction=1.0 is invalid"),
        # The data layer trusts this range (preprocessing.stratified_split).
        (lambda: DatasetConfig(val_fraction=0.0), "dataset.val_fraction=0.0 is invalid"),
        (lambda: DatasetConfig(data_dir=" "), "dataset.data_dir=' ' is invalid: an empty path"),
    ],
)
def test_the_values_the_core_trusts_are_checked_here(make: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make()  # type: ignore[operator]


def test_a_regularizer_sets_only_the_training_argument_its_name_says() -> None:
    def strengths(name: str) -> tuple[float, float, float]:
        reg = RegularizerConfig(config.RegularizerName[name], lam=0.1, p=0.5)
        return reg.l1, reg.l2, reg.dropout

    assert strengths("none") == (0.0, 0.0, 0.0)
    assert strengths("l1") == (0.1, 0.0, 0.0)
    assert strengths("l2") == (0.0, 0.1, 0.0)
    assert strengths("dropout") == (0.0, 0.0, 0.5)
    inputs = {
        n: RegularizerConfig(config.RegularizerName[n], input_p=0.2) for n in ("l2", "dropout")
    }
    assert (inputs["l2"].input_dropout, inputs["dropout"].input_dropout) == (0.0, 0.2)


@pytest.mark.parametrize("name", list(core.REGULARIZERS))
def test_a_regularizer_reads_the_settings_of_its_entry_and_no_other(name: str) -> None:
    """One entry of the core's REGULARIZERS says which settings a regularizer reads and the
    argument each sets: what the run trains with, which keys the run leaves unread, whether
    it draws dropout masks, and the seed it records for them follow from it alone."""
    from sweeper.experiment import run_seeds

    reads = core.REGULARIZERS[name]
    reg = RegularizerConfig(config.RegularizerName[name], lam=0.1, p=0.5, input_p=0.2)
    values = {"lam": 0.1, "p": 0.5, "input_p": 0.2}
    assert reg.arguments == {argument: values[key] for key, argument in reads.items()}
    params = {"regularizer.name": name, "optimizer.name": "sgd", "topology.hidden": [64]}
    unread = {k for k in config.unread_keys(params) if k.startswith("regularizer.")}
    assert unread == {f"regularizer.{k}" for k in values if k not in reads}
    drops = "dropout" in reads.values()
    assert reg.drops is drops
    seeds = run_seeds(config.ExperimentConfig(regularizer=reg, seed=3))
    assert seeds["seed.dropout"] == (str(core.dropout_seed(3)) if drops else "none")


def test_without_a_hidden_layer_dropout_max_norm_and_the_activation_are_unread() -> None:
    def computes(**settings: object) -> str:
        params = {
            "topology.hidden": [],
            "activation.name": "tanh",
            "activation.init": "auto",
            "regularizer.name": "dropout",
            "regularizer.p": 0.5,
            "regularizer.input_p": 0.0,
            "regularizer.max_norm": None,
            "optimizer.name": "sgd",
            **{k.replace("__", "."): v for k, v in settings.items()},
        }
        return config.config_hash(config.read_params(params))

    softmax = computes()
    assert computes(activation__name="sigmoid") == softmax  # both pick xavier
    assert computes(regularizer__p=0.2) == softmax
    assert computes(regularizer__max_norm=3.0) == softmax
    assert computes(activation__name="relu") != softmax  # he
    assert computes(activation__name="relu", activation__init="xavier") == softmax
    assert computes(regularizer__input_p=0.2) != softmax  # the inputs are dropped still
    assert computes(topology__hidden=[8], activation__name="sigmoid") != computes(
        topology__hidden=[8]
    )


def test_each_activation_of_the_core_is_an_option_of_the_activation_group() -> None:
    from sweeper.app import CONF_DIR

    options = {path.stem for path in (CONF_DIR / "activation").glob("*.yaml")}
    assert options == set(core.ACTIVATIONS)


def test_an_empty_data_dir_is_refused_in_one_line_that_says_null() -> None:
    # `dataset.data_dir=$UNSET_VAR` in a shell: Hydra composes an empty string.
    from hydra import compose, initialize_config_dir

    from sweeper.app import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", ["dataset=mnist", "dataset.data_dir="])
    with pytest.raises(ConfigError) as info:
        config.to_experiment_config(cfg)
    assert str(info.value) == (
        "dataset.data_dir='' is invalid: an empty path; use null for the dataset's default"
        " place, or a directory"
    )
