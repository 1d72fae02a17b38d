"""StemeDB simulator: the runbook's HTTP API over a replication model with fault injection.

See docs/stemedb-api.md (the contract) and docs/simulator.md (the model).
"""

from stemedb_sim.clock import ManualClock, WallClock
from stemedb_sim.model import ClusterConfig, ClusterModel
from stemedb_sim.simulation import Simulation

__all__ = ["ClusterConfig", "ClusterModel", "ManualClock", "Simulation", "WallClock"]
