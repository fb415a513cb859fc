"""The MLflow model of a run, logged as code so no pickled object is ever loaded.

``mlflow.pyfunc.load_model(...).predict(images)`` takes images of any shape ``(n, ...)`` as
a user holds them (raw pixels) and returns class labels.
"""

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from sweeper.checkpoint import load_checkpoint


class CheckpointModel(PythonModel):
    # MLflow's switch for a predict whose input no type hint of its own describes (its chat
    # models set it too): no schema, no validation, so images of any shape and dtype pass, and
    # no warning at each log_model asking for hints. Hints MLflow reads would each warn or
    # reject arrays: np.ndarray (no signature inferred), Any (not a list), list[Any] (not a list).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.model, self.standardizer = load_checkpoint(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype=self.model.dtype)
        x = x.reshape(len(x), -1)
        if self.standardizer is not None:
            x = self.standardizer.transform(x)
        return self.model.predict(x)


mlflow.models.set_model(CheckpointModel())
