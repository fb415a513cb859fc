"""The MLflow model of a run, logged as code so no pickled object is ever loaded.

``mlflow.pyfunc.load_model(...).predict(images)`` takes ``n`` images as a user holds them
(raw pixels) and returns their ``n`` class labels. The images come as an array (or nested
lists, or a DataFrame) of shape ``(n, *image_shape)``, the shape the dataset's loader reads
(``(n, 8, 8)`` for the digits, ``(n, 28, 28)`` for MNIST and its kin, ``(n, 3, 32, 32)``
channels first for CIFAR-10), or ``(n, inputs)`` flattened rows in that order. Grayscale
images may carry a channel axis, ``(n, 1, 28, 28)`` or ``(n, 28, 28, 1)``; colour images may
be channels last, ``(n, 32, 32, 3)`` as torchvision's and Keras's CIFAR-10 hold them, and are
transposed to channels first. A DataFrame's columns are read by their names, which must be
the integers ``0`` to ``inputs - 1`` (ints or digit strings, in any order, as a JSON
serialiser sorting keys leaves them). Any other shape, a DataFrame named otherwise, values
that are not real numbers (complex, dates, strings; booleans and integers are taken), pixels
that are not finite numbers (NaN, infinity, null) and pixels too large for the model's dtype
(beyond 3.4e+38 for float32) are refused with an ``MlflowException`` whose one-line message
says why; MLflow's scoring server passes it on to REST clients (a plain exception reaches
them as a generic error). A checkpoint written before the image shape was kept takes any
``(n, ...)`` shape of ``inputs`` values per image.
"""

import math
import re
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from sweeper.checkpoint import read_checkpoint
from sweeper.names import MODEL_CHECKPOINT

# Rows named in the refusal of non-finite pixels.
_ROWS_NAMED = 5
# The kinds of array taken (bool, int, uint, float), and objects, which are cast value by value
# (numbers, None as NaN); a complex value would be cast to its real part, a date to a number.
_NUMBER_KINDS = "biufO"


def _refused(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _refused_rows(bad: np.ndarray, n: int, hold: str, rule: str) -> MlflowException:
    """The refusal of the images at rows ``bad`` of ``n``: ``k of n images hold <hold> (rows
    i, j, ...); <rule>``."""
    rows = ", ".join(map(str, bad[:_ROWS_NAMED])) + (", ..." if len(bad) > _ROWS_NAMED else "")
    return _refused(
        f"{len(bad)} of {n} images hold {hold} ({'row' if len(bad) == 1 else 'rows'} {rows});"
        f" {rule}"
    )


def _column_position(name: object) -> int | None:
    """The integer a DataFrame column's name stands for, None for a name that is none."""
    if isinstance(name, bool):
        return None
    if isinstance(name, int | np.integer):
        return int(name)
    if isinstance(name, str) and re.fullmatch(r"[0-9]+", name):
        return int(name)
    return None


def _columns_by_name(frame: pd.DataFrame, inputs: int) -> pd.DataFrame:
    """``frame``'s columns in the order their names give; one of another width is left to
    the shape's check."""
    if frame.shape[1] != inputs:
        return frame
    positions = [_column_position(name) for name in frame.columns]
    if sorted(p if p is not None else -1 for p in positions) != list(range(inputs)):
        shown = ", ".join(repr(name) for name in frame.columns[:3])
        raise _refused(
            f"a DataFrame's columns must be named 0 to {inputs - 1} (ints or digit strings, in"
            f" any order), each the position of its value in the flattened image; got {shown},"
            " ...: name them so, or pass an array (DataFrame.to_numpy()) to read them in order"
        )
    return frame.iloc[:, np.argsort(np.asarray(positions))]


def _channels_last(image_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The channels-last form of a channels-first ``(C, H, W)`` image shape; None for a
    grayscale one, or where the two forms are one shape (C = H = W: read channels first)."""
    if len(image_shape) != 3:
        return None
    channels, height, width = image_shape
    last = (height, width, channels)
    return last if last != image_shape else None


def _accepted_shapes(inputs: int, image_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shapes of one image that ``predict`` takes, the flattened row last."""
    shapes = [image_shape]
    if len(image_shape) == 2:
        shapes += [(1, *image_shape), (*image_shape, 1)]
    if (last := _channels_last(image_shape)) is not None:
        shapes.append(last)
    return list(dict.fromkeys([*shapes, (inputs,)]))


def _shapes_text(shapes: list[tuple[int, ...]]) -> str:
    named = [f"(n, {', '.join(map(str, shape))})" for shape in shapes]
    return f"{', '.join(named[:-1])} or {named[-1]}" if len(named) > 1 else named[0]


class CheckpointModel(PythonModel):
    # MLflow's switch for a predict whose input no type hint of its own describes (its chat
    # models set it too): no schema, no validation, so images of any shape and dtype pass, and
    # no warning at each log_model asking for hints. Hints MLflow reads would each warn or
    # reject arrays: np.ndarray (no signature inferred), Any (not a list), list[Any] (not a list).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        checkpoint = read_checkpoint(context.artifacts[MODEL_CHECKPOINT])
        self.model, self.standardizer = checkpoint.model, checkpoint.standardizer
        self.image_shape = checkpoint.image_shape

    def predict(self, context, model_input, params=None):
        return self.model.predict(self._rows(model_input))

    def _rows(self, model_input: Any) -> np.ndarray:
        """``model_input`` as standardised ``(n, inputs)`` rows, or refused."""
        inputs = self.model.layer_sizes[0]
        if isinstance(model_input, pd.DataFrame):
            model_input = _columns_by_name(model_input, inputs)
        try:
            given = np.asarray(model_input)
            # Checked in float64: a value too large for the model's dtype is named as such,
            # not found infinite after the cast.
            x = given.astype(np.float64) if given.dtype.kind in _NUMBER_KINDS else None
        except (TypeError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _refused(f"images must be arrays of numbers: {reason}") from None
        if x is None:
            raise _refused(
                f"images must be arrays of real numbers (bool, int or float); got dtype"
                f" {given.dtype}"
            )
        if self.image_shape is None:
            # A checkpoint from before the image shape was kept: any shape of that many values.
            if x.ndim < 2 or math.prod(x.shape[1:]) != inputs:
                raise _refused(
                    f"expected n images of {inputs} values each, shape (n, ...); got shape"
                    f" {x.shape}"
                )
        else:
            shapes = _accepted_shapes(inputs, self.image_shape)
            if x.ndim < 2 or x.shape[1:] not in shapes:
                raise _refused(
                    f"expected n images as an array of shape {_shapes_text(shapes)} (flattened"
                    f" rows); got shape {x.shape}"
                )
            if x.shape[1:] == _channels_last(self.image_shape):
                x = x.transpose(0, 3, 1, 2)
        x = x.reshape(x.shape[0], inputs)
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            raise _refused_rows(
                np.flatnonzero(~finite),
                len(x),
                "NaN, infinite or missing (null) pixels",
                "every pixel must be a finite number",
            )
        dtype = np.dtype(self.model.dtype)
        largest = float(np.finfo(dtype).max)
        fits = (np.abs(x) <= largest).all(axis=1)
        if not fits.all():
            raise _refused_rows(
                np.flatnonzero(~fits),
                len(x),
                f"pixels too large for the model's {dtype}",
                f"every pixel must lie within +-{largest:.3g}",
            )
        x = x.astype(dtype)
        if self.standardizer is not None:
            x = self.standardizer.transform(x)
        return x


mlflow.models.set_model(CheckpointModel())
