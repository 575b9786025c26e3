"""``python -m rootshift.sim.formal``: run the formal proofs (``make formal`` runs ``--all``).

Exit codes: 0 every proof holds; 1 a proof or a mutation check failed (or the tools gave no verdict);
2 bad arguments (an unknown proof name).
"""

import argparse
import signal
import sys
import time

from .proofs import all_proofs, check


def _table(outcomes):
    rows = [("proof", "method", "result", "time", "mutants (must FAIL)")]
    for o in outcomes:
        mus = ", ".join(f"{mu.name}: {s}" for mu, s, _ in o.mutants) or "-"
        secs = o.seconds + sum(t for _, _, t in o.mutants)
        rows.append((o.proof.name, o.proof.method, ("ok " if o.ok else "BAD ") + o.status, f"{secs:.1f} s", mus))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # lets run_sby end its sby/solver process group


def main(argv=None):
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(prog="python -m rootshift.sim.formal",
                                 description="SymbiYosys proofs of the rootshift hardware against the contract")
    sel = ap.add_mutually_exclusive_group(required=True)
    sel.add_argument("--all", action="store_true", help="every proof")
    sel.add_argument("--fast", action="store_true", help="the fast proofs (those make test runs)")
    sel.add_argument("--only", action="append", metavar="NAME", help="one proof by name (repeatable)")
    sel.add_argument("--list", action="store_true", help="list the proofs and exit")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per SymbiYosys job (default 1800)")
    args = ap.parse_args(argv)

    proofs = all_proofs()
    if args.list:
        for p in proofs:
            print(f"{p.name:28s} {'fast ' if p.fast else 'slow '} {p.method:36s} {p.prop}")
        return 0
    if args.only:
        names = {p.name: p for p in proofs}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            ap.error(f"unknown proof {', '.join(unknown)}; --list shows the {len(proofs)} proofs")
        proofs = [names[n] for n in args.only]
    elif args.fast:
        proofs = [p for p in proofs if p.fast]

    outcomes = []
    t0 = time.monotonic()
    for i, p in enumerate(proofs, 1):
        print(f"[{i}/{len(proofs)}] {p.name}: {p.method} ...", flush=True)
        o = check(p, timeout=args.timeout)
        outcomes.append(o)
        mus = "; ".join(f"mutant {mu.name} {s}{'' if s == 'FAIL' else ' (should FAIL)'}" for mu, s, _ in o.mutants)
        print(f"[{i}/{len(proofs)}] {p.name}: {o.status} in {o.seconds:.1f} s; {mus}"
              + ("" if o.ok else f"  <-- {o.detail.splitlines()[0] if o.detail else 'FAILED'}"), flush=True)
    print()
    print(_table(outcomes))
    bad = [o.proof.name for o in outcomes if not o.ok]
    print(f"\n{len(outcomes) - len(bad)}/{len(outcomes)} proofs hold ({time.monotonic() - t0:.0f} s)"
          + (f"; failed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
