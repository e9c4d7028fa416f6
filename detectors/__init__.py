"""Features, per-user detectors, thresholds, persistence and evaluation.

`features.py` turns events into feature windows; `base.py` holds the `Detector` contract and the registry
(`DETECTORS`, `make_detector`, `register`), `adapters.py` the registered detectors (imported here, so
importing the package registers them), `thresholds.py` score calibration and evidence, `persistence.py`
saved models and `UserModel`, `evaluation.py` EER / ROC / DET and the CMU protocol, `session_protocols.py`
session-level protocols for event datasets. Importing the package is cheap (numpy only): PyOD, torch and
numba load when a model is first fitted. Nothing here opens the database or imports Streamlit.
"""

from detectors import adapters
from detectors.base import DETECTORS, Detector, make_detector, register

__all__ = ["DETECTORS", "Detector", "adapters", "make_detector", "register"]
