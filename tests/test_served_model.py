"""The MLflow model a run logs, loaded as a user loads it: the forms of images it takes, read
as the run's test accuracy says, and the one-line refusals of the rest, in Python and as
MLflow's scoring server answers a REST client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.scoring_server import invocations
from mlflow.tracking import MlflowClient

from conftest import store_uri
from helpers import run_here, write_cifar
from sweeper.artifacts import SERVED_MODEL_CODE
from sweeper.data.digits import load_digits_split
from sweeper.experiment import CHECKPOINT_FILE
from sweeper.names import MODEL_CHECKPOINT

QUICK_RUN = {"train": {"epochs": 5, "patience": None}, "gradcheck": {"enabled": False}}
# The shapes the digits' model names in each refusal of a shape.
DIGITS_SHAPES = "(n, 8, 8), (n, 1, 8, 8), (n, 8, 8, 1) or (n, 64) (flattened rows)"


@dataclass
class Served:
    model: mlflow.pyfunc.PyFuncModel
    # The run's logged test accuracy.
    test_acc: float
    # The test split as its loader reads it (uint8 pixels) and its labels.
    images: np.ndarray
    labels: np.ndarray
    checkpoint: Path

    def accuracy(self, model_input: object) -> float:
        return float(np.mean(self.model.predict(model_input) == self.labels))


def served_run(
    tmp_path: Path, settings: dict[str, object]
) -> tuple[mlflow.pyfunc.PyFuncModel, float]:
    """A run of ``settings`` in ``tmp_path``'s store: its model as a user loads it, and its
    logged test accuracy."""
    outcome = run_here(tmp_path, {**QUICK_RUN, **settings}, threads=1)
    assert outcome.status == "FINISHED", outcome.reason
    uri = store_uri(tmp_path)
    mlflow.set_tracking_uri(uri)
    test_acc = MlflowClient(uri).get_run(str(outcome.run_id)).data.metrics["test_acc"]
    return mlflow.pyfunc.load_model(f"runs:/{outcome.run_id}/model"), test_acc


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Served:
    tmp_path = tmp_path_factory.mktemp("digits")
    model, test_acc = served_run(tmp_path, {})
    images, labels = load_digits_split("test", 10)
    return Served(model, test_acc, images, labels, tmp_path / "out" / CHECKPOINT_FILE)


def lit_by_class(n: int, seed: int) -> np.ndarray:
    """CIFAR-10 rows whose class ``k`` (row ``i``'s ``i % 10``) shows in the channels-first
    layout (rows 3k to 3k+2 of channel k % 3 lit), which a channels-last reading scrambles."""
    pixels = np.random.default_rng(seed).integers(0, 100, (n, 3, 32, 32), dtype=np.uint8)
    for i, image in enumerate(pixels):
        k = i % 10
        image[k % 3, 3 * k : 3 * k + 3] = 255
    return pixels.reshape(n, -1)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Served:
    tmp_path = tmp_path_factory.mktemp("cifar")
    test = write_cifar(tmp_path / "cifar", per_batch=40, n_test=100, draw=lit_by_class)
    images = test.reshape(-1, 3, 32, 32)
    dataset = {"name": "cifar10", "data_dir": str(tmp_path / "cifar"), "normalization": "channel"}
    model, test_acc = served_run(tmp_path, {"dataset": dataset})
    labels = np.arange(len(images)) % 10
    return Served(model, test_acc, images, labels, tmp_path / "out" / CHECKPOINT_FILE)


def test_cifar_images_channels_last_as_torchvision_and_keras_hold_them_are_read_right(
    cifar: Served,
) -> None:
    assert cifar.test_acc > 0.9
    # torchvision's CIFAR10.data and Keras's cifar10.load_data(): (n, 32, 32, 3) uint8.
    channels_last = cifar.images.transpose(0, 2, 3, 1)
    assert cifar.accuracy(channels_last) == cifar.test_acc
    assert cifar.accuracy(cifar.images) == cifar.test_acc
    assert cifar.accuracy(cifar.images.reshape(len(cifar.images), -1)) == cifar.test_acc
    # Another arrangement of the 3072 values is no image the model knows.
    with pytest.raises(MlflowException) as info:
        cifar.model.predict(cifar.images.reshape(-1, 32, 96))
    assert str(info.value) == (
        "expected n images as an array of shape (n, 3, 32, 32), (n, 32, 32, 3) or (n, 3072)"
        " (flattened rows); got shape (100, 32, 96)"
    )


def test_digits_are_taken_as_their_loader_reads_them_with_or_without_a_channel_axis(
    digits: Served,
) -> None:
    n = len(digits.images)
    for form in ((n, 8, 8), (n, 64), (n, 1, 8, 8), (n, 8, 8, 1)):
        assert digits.accuracy(digits.images.reshape(form)) == digits.test_acc, form
    assert digits.model.predict(digits.images[:0]).shape == (0,)
    # Another arrangement of the 64 values, or one image without its batch axis: refused.
    for wrong in (
        digits.images.reshape(n, 4, 16),
        digits.images.reshape(n, 2, 8, 4),
        digits.images[0],
    ):
        with pytest.raises(MlflowException) as info:
            digits.model.predict(wrong)
        assert str(info.value) == (
            f"expected n images as an array of shape {DIGITS_SHAPES}; got shape {wrong.shape}"
        )


def sorted_records(images: np.ndarray) -> list[dict[str, float]]:
    """The images as JSON records whose keys a serialiser sorted: "0", "1", "10", "11", ..."""
    flat = images.reshape(len(images), -1).astype(float)
    records = [{str(i): v for i, v in enumerate(row)} for row in flat.tolist()]
    return json.loads(json.dumps(records, sort_keys=True))


def test_a_dataframes_columns_are_read_by_their_names(digits: Served) -> None:
    frame = pd.DataFrame(sorted_records(digits.images))
    assert list(frame.columns[:4]) == ["0", "1", "10", "11"]
    assert digits.accuracy(frame) == digits.test_acc
    # Integer names as pandas gives an unnamed array.
    flat = digits.images.reshape(len(digits.images), 64)
    assert digits.accuracy(pd.DataFrame(flat)) == digits.test_acc
    assert digits.accuracy(pd.DataFrame(flat).iloc[:, ::-1]) == digits.test_acc
    # Names that say no position, or positions from 1: refused, not read in some order.
    for columns in ([f"pixel{i}" for i in range(64)], list(range(1, 65))):
        with pytest.raises(MlflowException) as info:
            digits.model.predict(pd.DataFrame(flat, columns=columns))
        assert str(info.value).startswith(
            "a DataFrame's columns must be named 0 to 63 (ints or digit strings, in any order)"
        )


def test_pixels_that_are_not_finite_numbers_are_refused_naming_their_rows(digits: Served) -> None:
    images = digits.images[:10].astype(np.float32)
    images[3, 2, 5] = np.nan
    images[7, 0, 0] = np.inf
    with pytest.raises(MlflowException) as info:
        digits.model.predict(images)
    assert str(info.value) == (
        "2 of 10 images hold NaN, infinite or missing (null) pixels (rows 3, 7); every pixel"
        " must be a finite number"
    )
    rows = digits.images[:2].reshape(2, 64).tolist()
    rows[1][10] = None
    with pytest.raises(MlflowException, match=r"^1 of 2 images hold .* \(row 1\);"):
        digits.model.predict(rows)


def test_values_that_are_no_real_numbers_or_too_large_for_float32_are_refused(
    digits: Served,
) -> None:
    images = digits.images[:2]
    # Each was cast before: a complex image to its real part, a date or duration to a count.
    for wrong in (
        images + 0j,
        images.astype("datetime64[s]"),
        images.astype("timedelta64[s]"),
        images.astype(str),
    ):
        with pytest.raises(MlflowException) as info:
            digits.model.predict(wrong)
        assert str(info.value) == (
            f"images must be arrays of real numbers (bool, int or float); got dtype {wrong.dtype}"
        )
    # Finite, but infinite as float32: named as too large, not as infinite.
    huge = images.reshape(2, 64).astype(np.float64)
    huge[1] = 1e300
    with pytest.raises(MlflowException) as info:
        digits.model.predict(huge)
    assert str(info.value) == (
        "1 of 2 images hold pixels too large for the model's float32 (row 1); every pixel must"
        " lie within +-3.4e+38"
    )
    # Booleans, and numbers held as objects, are taken as before.
    assert digits.model.predict(images > 8).shape == (2,)
    assert np.array_equal(digits.model.predict(images.astype(object)), digits.model.predict(images))


def rest(served: Served, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    """The status and JSON body MLflow's scoring server (``mlflow models serve``) answers a
    POST of ``body`` to /invocations with: its app calls ``invocations`` and turns the
    MlflowException it raises into the response."""
    try:
        answer = invocations(json.dumps(body), "application/json", served.model, None)
    except MlflowException as error:
        return error.get_http_status_code(), json.loads(error.serialize_as_json())
    return answer.status, json.loads(answer.response)


def test_a_rest_client_gets_the_predictions_of_its_images(digits: Served) -> None:
    for body in (
        {"dataframe_records": sorted_records(digits.images)},
        {"instances": digits.images.tolist()},
    ):
        status, answer = rest(digits, body)
        assert status == 200
        assert np.mean(np.asarray(answer["predictions"]) == digits.labels) == digits.test_acc


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"inputs": [[1.0] * 60]},
            f"expected n images as an array of shape {DIGITS_SHAPES}; got shape (1, 60)",
        ),
        (
            {"instances": [[None] * 64]},
            "1 of 1 images hold NaN, infinite or missing (null) pixels (row 0); every pixel must"
            " be a finite number",
        ),
    ],
)
def test_a_rest_client_is_told_why_its_input_is_refused(
    digits: Served, body: dict[str, object], reason: str
) -> None:
    status, answer = rest(digits, body)
    assert status == 400
    # MLflow's server puts the input before the model's reason: "Failed to predict data ...".
    assert str(answer["message"]).endswith(f"\nError: {reason}"), answer["message"]
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_checkpoint_without_its_image_shape_serves_as_before(
    digits: Served, tmp_path: Path
) -> None:
    with np.load(digits.checkpoint, allow_pickle=False) as data:
        assert data["image_shape"].tolist() == [8, 8]
        arrays = {name: data[name] for name in data.files if name != "image_shape"}
    older = tmp_path / "older.npz"
    np.savez(older, **arrays)
    mlflow.pyfunc.save_model(
        tmp_path / "model",
        python_model=str(SERVED_MODEL_CODE),
        artifacts={MODEL_CHECKPOINT: str(older)},
        pip_requirements=["numpy", "mlflow"],
    )
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    # Any shape of 64 values, as before; NaN is still refused.
    n = len(digits.images)
    assert np.array_equal(
        model.predict(digits.images.reshape(n, 4, 16)), digits.model.predict(digits.images)
    )
    with pytest.raises(MlflowException, match=r"expected n images of 64 values each"):
        model.predict(digits.images[0])
    with pytest.raises(MlflowException, match=r"\(row 0\)"):
        model.predict(np.full((1, 64), np.nan))
