"""The self-sequencing engine (issue 9): compiler (``.rsq`` -> :class:`Program`), its reference executor,
the analytical cycle model, and the Amaranth components that run a program with no host involvement.

Nothing here is wired into ``rootshift cosim`` yet; docs/engine.md says what is done and what is not.
"""
