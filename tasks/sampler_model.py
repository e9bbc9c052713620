"""MLflow "models from code" entry point of every registered musicflow model.

``tracking.log_model`` logs this file with each version instead of a pickle, so
``mlflow.pyfunc.load_model("models:/<dataset>-<model>/<version>")`` works in any Python with
musicflow installed and no pickled object is ever stored. musicflow's own loader
(``tasks/generate.load_sampler``) does not run this file: it reads the version's JSON and
Keras weight files only.
"""

from mlflow.models import set_model

from musicflow.tasks.generate import RollSampler

set_model(RollSampler())
