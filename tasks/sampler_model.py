"""MLflow "models from code" entry point of every registered musicflow model.

``tracking.log_model`` logs this file with each version instead of a pickle, so
``mlflow.pyfunc.load_model("models:/<dataset>-<model>/<version>")`` works in any Python with
musicflow installed and no pickled object is ever stored. musicflow's own loader
(``tasks/generate.load_sampler``) does not run this file: it reads the version's data files
only (JSON, Keras weights, the numpy sampler's arrays).
"""

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import set_model

from musicflow.tasks.generate import RollSampler


class PyfuncSampler(RollSampler, mlflow.pyfunc.PythonModel):
    """:class:`RollSampler` as MLflow's pyfunc model (``RollSampler`` itself stays free of
    MLflow, so that ``musicflow generate`` does not import it)."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return RollSampler.predict(self, context, model_input, params)


set_model(PyfuncSampler())
