"""Formal proofs (sim/formal, docs/verification.md "Formal proofs"): the fast ones here (about a minute of
CPU), all of them in ``make formal``. Each proof must PASS and each of its mutants (a planted bug) must FAIL."""

import subprocess
import sys

import pytest
from amaranth.hdl import Assert, Elaboratable, Module, Signal

from rootshift.sim.formal import all_proofs, check
from rootshift.sim.formal.controller import ControllerHarness, small_params
from rootshift.sim.formal.decoder import DecoderHarness, decoder_formats
from rootshift.sim.formal.pe import PEHarness
from rootshift.sim.formal.sby import run_sby

PROOFS = all_proofs()


@pytest.mark.parametrize("proof", [p for p in PROOFS if p.fast], ids=lambda p: p.name)
def test_proof_holds_and_mutants_fail(proof):
    out = check(proof, timeout=900)
    assert out.status == "PASS", f"{proof.name}: {out.status}\n{out.detail}"
    assert proof.mutants, "a proof without a mutation check proves nothing"
    for mu, status, _ in out.mutants:
        assert status == "FAIL", f"{proof.name}: mutant {mu.name} ({mu.what}) gave {status}, not a counterexample"


def test_registry_covers_every_component():
    names = {p.name for p in PROOFS}
    assert {f"post_decoder_w{b}" for b in range(2, 9)} <= names
    assert {"pe_dual", "pe_lut", "pe_shift", "pe_mult", "requantizer_dual", "requantizer_single",
            "controller_dual", "controller_shift", "controller_dual_8x8"} <= names
    controllers = [p for p in PROOFS if p.name.startswith("controller")]
    assert all(p.mode == "prove" for p in controllers), "the controller proofs are unbounded (k-induction)"
    mutants = {mu.name for p in controllers for mu in p.mutants}
    assert mutants == set(ControllerHarness.MUTANTS) - {None}, "every controller mutant is run by some proof"
    from rootshift.hw.params import PE_MODES

    assert {f"pe_{mode}" for mode in PE_MODES} <= names, "every PE mode the generator builds has a proof"
    assert len(names) == len(PROOFS), "proof names must be unique"
    fast = [p for p in PROOFS if p.fast]
    assert fast and all(p.mutants for p in PROOFS)


def test_decoder_formats_cover_every_width_and_base():
    fmts = decoder_formats()
    assert {(f.bits, f.base) for f in fmts} == {(b, base) for b in range(2, 9) for base in ("sqrt2", "2")}
    assert any(not f.has_zero for f in fmts)


def test_harness_rejects_unknown_mutant():
    from rootshift.hw.params import ArrayParams

    with pytest.raises(ValueError, match="unknown PE mutant"):
        PEHarness(ArrayParams(), mutant="bogus")
    with pytest.raises(ValueError, match="unknown controller mutant"):
        ControllerHarness(small_params(), mutant="bogus")
    assert DecoderHarness(decoder_formats()[:1]).ports()


class _FailsAt(Elaboratable):
    """A counter that violates its assertion only in cycle ``at``."""

    def __init__(self, at):
        self.at, self.tick = at, Signal()

    def ports(self):
        return [self.tick]

    def elaborate(self, platform):
        m = Module()
        n = Signal(8, reset_less=True)   # the free reset cannot bring ``at`` back later
        m.d.sync += n.eq(n + 1)
        m.d.comb += Assert(n != self.at)
        return m


def test_bmc_skip_checks_only_the_last_steps():
    """``skip`` (used by the deep controller mutants) leaves the first steps unchecked and still finds a
    counterexample in the steps after them."""
    assert run_sby(_FailsAt(5), [_FailsAt(5).tick], "bmc", 7, name="late", skip=4).status == "FAIL"
    assert run_sby(_FailsAt(2), [_FailsAt(2).tick], "bmc", 7, name="early", skip=4).status == "PASS"
    with pytest.raises(ValueError, match="skip is for BMC only"):
        run_sby(_FailsAt(2), [], "prove", 2, skip=1)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "rootshift.sim.formal", *args], capture_output=True, text=True,
                          timeout=900)


def test_cli_list_and_bad_name():
    r = _cli("--list")
    assert r.returncode == 0 and "pe_dual" in r.stdout and "controller_dual" in r.stdout
    r = _cli("--only", "no_such_proof")
    assert r.returncode == 2 and "unknown proof no_such_proof" in r.stderr


def test_cli_runs_one_proof_with_summary():
    r = _cli("--only", "post_decoder_w2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[1/1] post_decoder_w2" in r.stdout and "1/1 proofs hold" in r.stdout
    assert "mutant boundary FAIL" in r.stdout


def test_a_timeout_kills_every_process_of_the_tools_session():
    """sby's solvers sit in process groups of their own inside sby's session: a timeout must end them too."""
    import os
    import subprocess
    import sys
    import time

    from rootshift.sim.formal.sby import _kill_session

    # A child that starts a grandchild in a process group of its own, as sby starts its solvers. Python's
    # process_group=0 does this without a shell's job control (bash's `set -m` in a subshell flaked under load).
    launcher = ("import subprocess, sys, time; "
                "subprocess.Popen(['sleep', '301'], process_group=0); "
                "sys.stdout.write('started\\n'); sys.stdout.flush(); time.sleep(302)")
    p = subprocess.Popen([sys.executable, "-c", launcher], start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "started\n"

    def alive():
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    st = open(f"/proc/{d}/stat").read()
                except OSError:
                    continue
                f = st[st.rindex(")") + 2:].split()
                if f[3] == str(p.pid) and f[0] != "Z":
                    out.append(int(d))
        return out

    deadline = time.monotonic() + 10
    while len(alive()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(alive()) >= 2            # the launcher and the other group's sleep 301
    groups = {open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[2] for pid in alive()}
    assert len(groups) >= 2, groups     # the grandchild really is in a process group of its own
    _kill_session(p.pid)
    p.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive() == []
