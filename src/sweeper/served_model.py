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
    def load_context(self, context: Any) -> None:
        self.model, self.standardizer = load_checkpoint(context.artifacts["checkpoint"])

    # No type hints on purpose: MLflow would turn them into a schema that rejects image arrays.
    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input, dtype=self.model.dtype)
        x = x.reshape(len(x), -1)
        if self.standardizer is not None:
            x = self.standardizer.transform(x)
        return self.model.predict(x)


mlflow.models.set_model(CheckpointModel())
