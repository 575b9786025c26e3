"""The network engine's HostPort against host protocol v3 (sim/formal/engine_port.py): the fast bounded
proofs (every single command and its answer from reset, baked and unbaked) must PASS and every planted
reference bug must FAIL with a counterexample; the deep proof runs in ``make formal``."""

import pytest

from rootshift.sim.formal.engine_port import PROOFS, EnginePortHarness, small_config
from rootshift.sim.formal.proofs import check


@pytest.mark.parametrize("proof", [p for p in PROOFS if p.fast], ids=lambda p: p.name)
def test_engine_port_proof_holds_and_mutants_fail(proof):
    out = check(proof, timeout=900)
    assert out.status == "PASS", f"{proof.name}: {out.status}\n{out.detail}"
    assert proof.mutants
    for mu, status, _ in out.mutants:
        assert status == "FAIL", f"{proof.name}: mutant {mu.name} ({mu.what}) gave {status}, not a counterexample"


def test_registry_entries():
    names = [p.name for p in PROOFS]
    assert names == ["engine_port", "engine_port_baked", "engine_port_session"]
    assert all(p.mutants for p in PROOFS) and any(not p.fast for p in PROOFS)
    with pytest.raises(ValueError, match="unknown engine port mutant 'bogus'"):
        EnginePortHarness(small_config(), "bogus")
