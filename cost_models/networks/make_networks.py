"""Writes the hand-written network descriptions of the Coral benchmark models.

Run `python cost_models/networks/make_networks.py` to regenerate the JSON files
beside this script (see README.md there for sources and assumptions); the
builders are in `cost_models.reference_networks`. Each file loads with
`search_spaces.network.load`; `tests/test_simulator.py` checks their
parameter counts against the well-known ones.
"""

from __future__ import annotations

import os

from cost_models.reference_networks import NETWORKS
from search_spaces.fileio import write_json_atomic

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    for name, build in NETWORKS.items():
        net = build()
        path = os.path.join(HERE, f"{name}.json")
        write_json_atomic(path, net.to_json(), indent=1)
        print(f"{path}: {len(net.layers)} layers, {net.params:,} params, "
              f"{net.macs / 1e6:.1f} MMACs")


if __name__ == "__main__":
    main()
