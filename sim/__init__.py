"""rootshift verification side: host driver, cocotb co-simulation, and the command line (uses sw and hw)."""
