"""rootshift gateware: Amaranth components implementing the integer contract (docs/arithmetic.md)."""
