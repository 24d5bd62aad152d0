"""python -m alfred.simulator: serve the simulator configured from the environment."""

import os

from alfred.simulator import run_simulator
from alfred.simulator.config import SimulatorConfig

if __name__ == "__main__":
    run_simulator(
        SimulatorConfig.from_env(),
        host=os.environ.get("SIMULATOR_HOST", "127.0.0.1"),
        port=int(os.environ.get("SIMULATOR_PORT", "8081")),
    )
