"""The inference algorithms, one module each; none knows which clock it runs on."""

from dsi_online.schedulers.base import Generation, RunResult, Scheduler
from dsi_online.schedulers.dsi import DSI
from dsi_online.schedulers.nonsi import NonSI
from dsi_online.schedulers.si import SI

__all__ = ["DSI", "SI", "Generation", "NonSI", "RunResult", "Scheduler"]
