"""The MLflow model of a run, logged as code so no pickled object is ever loaded.

``mlflow.pyfunc.load_model(...).predict(images)`` takes ``n`` images as a user holds them
(raw pixels), each of any shape with as many values as the network has inputs (8x8 or 64
for the digits; CIFAR-10 channels first, 3x32x32, as the loader reads them), and returns
their ``n`` class labels. Any other input is refused, naming the shapes.
"""

import math
from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from sweeper.checkpoint import load_checkpoint
from sweeper.names import MODEL_CHECKPOINT


class CheckpointModel(PythonModel):
    # MLflow's switch for a predict whose input no type hint of its own describes (its chat
    # models set it too): no schema, no validation, so images of any shape and dtype pass, and
    # no warning at each log_model asking for hints. Hints MLflow reads would each warn or
    # reject arrays: np.ndarray (no signature inferred), Any (not a list), list[Any] (not a list).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.model, self.standardizer = load_checkpoint(context.artifacts[MODEL_CHECKPOINT])

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype=self.model.dtype)
        inputs = self.model.layer_sizes[0]
        if x.ndim < 2 or math.prod(x.shape[1:]) != inputs:
            raise ValueError(
                f"expected n images of {inputs} values each, shape (n, ...); got shape {x.shape}"
            )
        x = x.reshape(x.shape[0], inputs)
        if self.standardizer is not None:
            x = self.standardizer.transform(x)
        return self.model.predict(x)


mlflow.models.set_model(CheckpointModel())
