"""The network engine's HostPort against host protocol v4 (sim/formal/engine_port.py). Its fast bounded
proofs (every single command and its answer from reset, baked and unbaked) are in the registry, so
tests/test_formal.py runs them (PASS, and every planted reference bug FAILs); the deep one runs in
``make formal``. Here: the registry holds them, each with mutants."""

import pytest

from rootshift.sim.formal.engine_port import PROOFS, EnginePortHarness, small_config
from rootshift.sim.formal.proofs import all_proofs


def test_registry_entries():
    names = [p.name for p in PROOFS]
    assert names == ["engine_port", "engine_port_baked", "engine_port_session"]
    registry = {p.name: p for p in all_proofs()}
    assert all(registry[p.name].fast == p.fast and registry[p.name].mutants for p in PROOFS)
    assert all(p.mutants for p in PROOFS) and any(not p.fast for p in PROOFS)
    with pytest.raises(ValueError, match="unknown engine port mutant 'bogus'"):
        EnginePortHarness(small_config(), "bogus")
