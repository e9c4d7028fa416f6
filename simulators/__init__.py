"""Seeded, reproducible synthetic behaviour with ground truth, in the canonical event schema.

`simulate` makes users with stable keystroke and mouse habits, their genuine sessions, and impostor,
bot, replay and hijack sessions; `system_load` makes CPU and memory series; `live_batches` paces
any events frame for a live replay. Nothing here touches the database.
"""

from simulators.live import live_batches
from simulators.scenario import EPOCH, GENERATOR_VERSION, LABELS, Simulation, simulate
from simulators.system import system_load

__all__ = ["EPOCH", "GENERATOR_VERSION", "LABELS", "Simulation", "live_batches", "simulate", "system_load"]
