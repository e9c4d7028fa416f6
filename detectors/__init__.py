"""Features, per-user detectors, thresholds, persistence and evaluation.

`features.py` turns events into feature windows; `base.py` holds the `Detector` contract and the registry
(`DETECTORS`, `make_detector`, `register`), `adapters.py` the registered detectors, `thresholds.py` score
normalisation and verdicts, `persistence.py` saved models and `UserModel`, `evaluation.py` EER / ROC / DET
and the CMU protocol. Importing the package is cheap: PyOD and torch load when a model is first fitted.
Nothing here opens the database or imports Streamlit.
"""

from detectors.base import DETECTORS, Detector, make_detector, register

__all__ = ["DETECTORS", "Detector", "make_detector", "register"]
