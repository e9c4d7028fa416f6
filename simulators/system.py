"""Synthetic machine load, one sample per second, for the system-metrics views and jobs."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from simulators.scenario import EPOCH


def _smoothed_noise(n: int, sd: float, persistence: float, rng: np.random.Generator) -> np.ndarray:
    """AR(1)-like noise (x_t = persistence * x_{t-1} + e_t), as a truncated convolution."""
    if n == 0:
        return np.zeros(0)
    kernel = persistence ** np.arange(min(n, int(np.ceil(np.log(1e-4) / np.log(persistence)))))
    return np.convolve(rng.normal(0.0, sd, n), kernel)[:n]


def _lagged(signal: np.ndarray, persistence: float) -> np.ndarray:
    """Exponential smoothing with unit gain: y_t = persistence * y_{t-1} + (1 - persistence) * x_t."""
    if len(signal) == 0:
        return signal
    kernel = (1.0 - persistence) * persistence ** np.arange(
        min(len(signal), int(np.ceil(np.log(1e-4) / np.log(persistence))))
    )
    return np.convolve(signal, kernel)[: len(signal)]


def system_load(seconds: int, seed: int, start: datetime | None = None) -> pl.DataFrame:
    """`seconds` rows, one per second from `start` (default 2026-01-05 09:00:00, naive UTC).

    cpu_percent (0-100) is a base level with short-memory noise and bursts of 3-25 s lifting it by
    30-70 points about once a minute and a half; mem_percent (0-100) varies slowly (periods of
    10 minutes to 3 hours) and creeps up a little during long bursts.
    """
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    begin = EPOCH if start is None else start
    if begin.tzinfo is not None:
        begin = begin.astimezone(UTC).replace(tzinfo=None)
    rng = np.random.default_rng(seed)
    n = seconds

    bursts = rng.poisson(n / 90.0)
    burst_start = rng.integers(0, max(n, 1), bursts)
    burst_end = np.minimum(burst_start + rng.integers(3, 26, bursts), n)
    burst_height = rng.uniform(30.0, 70.0, bursts)
    steps = np.zeros(n + 1)
    np.add.at(steps, burst_start, burst_height)
    np.add.at(steps, burst_end, -burst_height)
    burst_level = np.cumsum(steps)[:n]

    cpu = rng.uniform(8.0, 25.0) + _smoothed_noise(n, 2.5, 0.7, rng) + burst_level
    periods_s = rng.uniform(600.0, 10_800.0, 3)
    phases = rng.uniform(0.0, 2 * np.pi, 3)
    amplitudes = rng.uniform(1.0, 4.0, 3)
    t = np.arange(n, dtype=np.float64)
    waves = (amplitudes[:, None] * np.sin(2 * np.pi * t[None, :] / periods_s[:, None] + phases[:, None])).sum(axis=0)
    mem_from_bursts = 0.05 * _lagged(burst_level, persistence=0.97)  # memory follows CPU slowly
    mem = rng.uniform(35.0, 60.0) + waves + _smoothed_noise(n, 0.05, 0.9, rng) + mem_from_bursts

    at = pl.Series(np.arange(n, dtype=np.int64) * 1_000_000, dtype=pl.Int64).cast(pl.Duration("us")) + begin
    return pl.DataFrame(
        {
            "at": at.cast(pl.Datetime("us")),
            "cpu_percent": np.clip(cpu, 0.0, 100.0),
            "mem_percent": np.clip(mem, 0.0, 100.0),
        }
    )
