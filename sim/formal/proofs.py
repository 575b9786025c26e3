"""The registry of formal proofs: each property, its method and depth, and its mutation checks.

A proof *holds* when SymbiYosys returns PASS for the harness and FAIL (a real counterexample, not an
unclosed induction) for every deliberately broken variant, in the same run: a property that cannot
fail proves nothing. docs/verification.md ("Formal proofs") lists the same table with run times.
"""

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

from rootshift.hw.params import ArrayParams

from .sby import FormalToolError, run_sby


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str                       # the planted bug, in words
    build: Callable[[], object]     # -> a harness with ``ports()``
    mode: str = "bmc"
    depth: int = 4
    skip: int = 0                   # BMC: assertions unchecked in the first ``skip`` steps (a deep counterexample
                                    # is found without proving every shorter prefix safe first)


@dataclass(frozen=True)
class Proof:
    name: str
    prop: str                       # the property, in words
    build: Callable[[], object]
    mode: str                       # "prove" (k-induction: unbounded) or "bmc" (bounded)
    depth: int
    mutants: tuple = ()
    fast: bool = False              # part of ``make test`` (tests/test_formal.py)

    @property
    def method(self):
        if self.mode == "prove":
            return f"k-induction, k = {self.depth}"
        if self.depth == 1:
            return "exhaustive (combinational, one step)"
        return f"BMC, {self.depth} cycles"


@dataclass
class Outcome:
    proof: Proof
    status: str                     # PASS, FAIL, UNKNOWN, ERROR (of the unbroken harness)
    seconds: float
    detail: str = ""
    mutants: list = field(default_factory=list)   # (mutant, status, seconds)

    @property
    def ok(self):
        return self.status == "PASS" and all(s == "FAIL" for _, s, _ in self.mutants)


def check(proof, timeout=1800, keep=None):
    """Run a proof and its mutation checks; never raises on a tool failure (status ERROR instead)."""
    t0 = time.monotonic()
    try:
        h = proof.build()
        r = run_sby(h, h.ports(), proof.mode, proof.depth, name=proof.name, timeout=timeout, keep=keep)
        out = Outcome(proof, r.status, r.seconds, r.detail)
    except FormalToolError as e:
        return Outcome(proof, "ERROR", time.monotonic() - t0, str(e))
    for mu in proof.mutants:
        try:
            h = mu.build()
            r = run_sby(h, h.ports(), mu.mode, mu.depth, name=f"{proof.name}_{mu.name}", timeout=timeout, skip=mu.skip)
            out.mutants.append((mu, r.status, r.seconds))
        except FormalToolError:
            out.mutants.append((mu, "ERROR", 0.0))
    return out


# --- the proofs --------------------------------------------------------------------------------------

def _decoder(bits):
    from .decoder import DecoderHarness, decoder_formats

    fmts = [f for f in decoder_formats() if f.bits == bits]
    return Proof(
        f"post_decoder_w{bits}",
        f"PostDecoder, {bits}-bit codes, both bases, the exponent windows of max_shift 1, 2, 3, 7, 30 and the zero-less "
        f"format ({len(fmts)} decoders): sign, zero, E-k and odd equal sw.numfmt's decode for every code; "
        "illegal codes decode as zero",
        lambda: DecoderHarness(fmts), "bmc", 1,
        (Mutant("boundary", "reference shift off by one at the window's largest exponent",
                lambda: DecoderHarness(fmts, mutant=True), "bmc", 1),),
        fast=True)


def _pe(pe, wbits=4, abits=8, max_k=1152, depth=3, fast=False, tag=""):
    from .pe import PEHarness

    base = "2" if pe in ("shift", "shift2") else "sqrt2"
    p = ArrayParams(wbits=wbits, abits=abits, base=base, pe=pe, rows=2, cols=2, max_k=max_k) if pe != "mult" else \
        ArrayParams(wbits=wbits, abits=abits, base="sqrt2", pe=pe, rows=2, cols=2, max_k=max_k)
    small = dataclasses.replace(p, max_k=3)
    carry = ("weight read as unsigned in the reference" if pe == "mult" else
             "reference drops the +1 of a negative term's two's complement (-|t| - 1)")
    return Proof(
        f"pe_{pe}{tag}",
        f"PE {pe}, w{wbits}a{abits}, max_k {max_k} ({p.acc_bits}-bit accumulators): for every input sequence with "
        f"<= max_k terms between clears, acc (and acc_odd) equal a 64-bit reference sum of the contract's terms, "
        f"so no accumulator overflows; the same for the engine's capture_next PE, whose acc_next (acc_odd_next) equal "
        f"the reference sum with the term in stage 2",
        lambda: PEHarness(p), "prove", depth,
        (Mutant("carry" if pe != "mult" else "sign", carry, lambda: PEHarness(p, "carry"), "bmc", 4),
         Mutant("unzeroed", "capture_next PE only: stage-1 terms not zeroed when not accumulated (the engine's "
                "shadow registers would take them)", lambda: PEHarness(p, "unzeroed"), "bmc", 4),
         Mutant("narrow", "accumulator one bit narrower than the contract's bound (max_k 3 instance)",
                lambda: PEHarness(small, "narrow"), "bmc", 6)),
        fast=fast)


def _requantizer(n_acc, acc_bits=30, fast=False, tag=""):
    from rootshift.hw.requantizer import Requantizer

    from .requantizer import RequantizerHarness

    lat = Requantizer.LATENCY
    return Proof(
        f"requantizer_{'dual' if n_acc == 2 else 'single'}{tag}",
        f"Requantizer, {n_acc} accumulator(s) of {acc_bits} bits, every M (32-bit), B (64-bit), S, relu: y equals "
        "clamp(rshift_round(sum acc*M + B, S), lo, 2^31-1) computed in 140-bit arithmetic, LATENCY cycles later, "
        "and o_valid is i_valid delayed",
        lambda: RequantizerHarness(acc_bits, n_acc), "prove", lat + 1,
        (Mutant("half", "reference rounds half down (2^(S-1) - 1)", lambda: RequantizerHarness(acc_bits, n_acc, "half"),
                "bmc", lat + 2),
         Mutant("relu", "reference forgets the ReLU floor", lambda: RequantizerHarness(acc_bits, n_acc, "relu"),
                "bmc", lat + 2)),
        fast=fast)


def all_proofs():
    """Every proof, in the order ``--all`` runs them (fast ones first within each component)."""
    proofs = [_decoder(b) for b in range(2, 9)]
    proofs += [_pe("dual", abits=4, max_k=64, fast=True, tag="_w4a4_k64"), _pe("dual"), _pe("lut", max_k=576), _pe("shift"),
               _pe("mult")]
    from rootshift.hw.params import PE_MODES

    if "shift2" in PE_MODES:
        proofs.append(_pe("shift2", abits=4, fast=True))
    proofs += [_requantizer(1, acc_bits=8, fast=True, tag="_acc8"), _requantizer(2), _requantizer(1)]
    from .controller import proofs as controller_proofs

    proofs += controller_proofs()
    from .engine_port import proofs as engine_port_proofs

    proofs += engine_port_proofs()
    return proofs
