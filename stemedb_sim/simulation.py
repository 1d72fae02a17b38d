"""Many clusters on one clock; clusters are stepped lazily when touched."""

from __future__ import annotations

import time
from dataclasses import replace

from stemedb_sim.clock import Clock, ManualClock
from stemedb_sim.model import ClusterConfig, ClusterModel


class Simulation:
    def __init__(
        self,
        clock: Clock | None = None,
        *,
        seed: int = 1,
        default_config: ClusterConfig | None = None,
        epoch: float | None = None,
    ) -> None:
        self.clock: Clock = clock or ManualClock()
        self.seed = seed
        self.default_config = default_config or ClusterConfig()
        self.epoch = time.time() if epoch is None else epoch
        self.clusters: dict[str, ClusterModel] = {}
        self._initial: list[tuple[str, ClusterConfig]] = []

    def now(self) -> float:
        return self.clock.now()

    def create_cluster(
        self, name: str, config: ClusterConfig | None = None, *, initial: bool = False
    ) -> ClusterModel:
        if name in self.clusters:
            raise KeyError(name)
        cfg = replace(config or self.default_config)
        model = ClusterModel(name, cfg, seed=self.seed, start=self._grid_now(cfg),
                             epoch=self.epoch)
        self.clusters[name] = model
        if initial:
            self._initial.append((name, replace(cfg)))
        return model

    def _grid_now(self, cfg: ClusterConfig) -> float:
        # start on the dt grid so lazy stepping is independent of when a cluster is touched
        return (self.now() // cfg.dt) * cfg.dt

    def delete_cluster(self, name: str) -> None:
        del self.clusters[name]

    def get(self, name: str) -> ClusterModel | None:
        """The cluster stepped to the current sim time, or None."""
        model = self.clusters.get(name)
        if model is not None:
            model.advance_to(self.now())
        return model

    def advance(self, seconds: float) -> float:
        return self.clock.advance(seconds)

    def advance_to(self, t: float) -> None:
        """Explicit drive for tests/benches: move a manual clock to t and step every cluster."""
        if t > self.now():
            self.clock.advance(t - self.now())
        for model in self.clusters.values():
            model.advance_to(t)

    def reset(self) -> None:
        """Back to the startup clusters, sim time 0, empty logs."""
        self.clock.reset()
        self.clusters = {}
        initial, self._initial = self._initial, []
        for name, cfg in initial:
            self.create_cluster(name, cfg, initial=True)
