"""Sequencer: walks the program's steps once per image (docs/engine.md, "Sequencer")."""

from amaranth.hdl import Array, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rootshift.sw import contract as C
from rootshift.sw.errors import ConfigError

KIND_INPUT, KIND_QUANT, KIND_CONV, KIND_VEC, KIND_POOL = 0, 1, 2, 3, 4


class Sequencer(wiring.Component):
    """Runs steps ``0 .. n_steps - 1`` from ``start`` to ``done``: ``FETCH`` (the descriptor memory reads
    step ``pc``), ``DISPATCH`` by the step's kind (``input``: nothing; ``quant``: :class:`QuantStep`,
    whose beta goes into the step's beta slot; ``conv``/``linear``: :class:`MultSetup` then
    :class:`ConvUnit`; ``add_relu``/``avgpool``: :class:`VectorUnit`; ``maxpool``: :class:`MaxPoolUnit`),
    the unit's ``done``, ``NEXT``.
    Three cycles per step around the unit (``SEQ`` in hw/engine/cycles.py); ``done`` is high in the last
    step's ``NEXT`` cycle.

    Members
    -------
    start : In(1)                  -- run the program (pulse; taken in ``IDLE`` only)
    done : Out(1)                  -- the last step is finished (one cycle)
    busy : Out(1)                  -- a step is running (the image's cycle counter counts these cycles)
    pc : Out(16)                   -- the step being run: the descriptor memory's read address
    kind : In(3); beta_slot : In(signed(8))    -- of step ``pc`` (the descriptor memory's data)
    quant_start, setup_start, conv_start, vec_start, pool_start : Out(1)
    quant_done, setup_done, conv_done, vec_done, pool_done : In(1)
    quant_beta : In(63)            -- the sample's beta from a finished quant step
    setup_beta : Out(63)           -- the beta of step ``pc``'s slot (``2^16`` for slot -1) for :class:`MultSetup`
    fetching : Out(1)              -- in ``FETCH``
    desc_ready : In(1)             -- with ``fetch_wait``: ``FETCH`` lasts until it is high (a :class:`DescFetch`)

    ``fetch_wait`` (``EngineParams.desc_fetch == "serial"``): the descriptor arrives over several cycles;
    without it ``FETCH`` is one cycle and ``desc_ready`` is not read.
    """

    def __init__(self, n_steps, slots, fetch_wait=False):
        for name, v in (("n_steps", n_steps), ("slots", slots)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < 1 << 16:
                raise ConfigError(f"{name} must be an integer in 1..65535, not {v!r}")
        if slots > 128:
            raise ConfigError(f"slots must be at most 128 (a signed 8-bit beta slot), not {slots}")
        self.n_steps, self.slots, self.fetch_wait = n_steps, slots, bool(fetch_wait)
        super().__init__({"fetching": Out(1), "desc_ready": In(1),
            "start": In(1), "done": Out(1), "busy": Out(1), "pc": Out(16), "kind": In(3), "beta_slot": In(signed(8)),
            "quant_start": Out(1), "setup_start": Out(1), "conv_start": Out(1), "vec_start": Out(1), "pool_start": Out(1),
            "quant_done": In(1), "setup_done": In(1), "conv_done": In(1), "vec_done": In(1), "pool_done": In(1),
            "quant_beta": In(63), "setup_beta": Out(63)})

    def elaborate(self, platform):
        m = Module()
        pc = self.pc
        beta = Array(Signal(63, name=f"beta{i}") for i in range(self.slots))
        slot = self.beta_slot[:max(1, (self.slots - 1).bit_length())]
        m.d.comb += self.setup_beta.eq(Mux(self.beta_slot < 0, 1 << C.FINE_FRAC, beta[slot]))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += pc.eq(0)
                    m.next = "FETCH"
            with m.State("FETCH"):          # the descriptor memory answers next cycle
                m.d.comb += [self.busy.eq(1), self.fetching.eq(1)]
                if self.fetch_wait:
                    with m.If(self.desc_ready):
                        m.next = "DISPATCH"
                else:
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(self.kind):
                    with m.Case(KIND_INPUT):
                        m.next = "NEXT"
                    with m.Case(KIND_QUANT):
                        m.d.comb += self.quant_start.eq(1)
                        m.next = "QUANT"
                    with m.Case(KIND_CONV):
                        m.d.comb += self.setup_start.eq(1)
                        m.next = "SETUP"
                    with m.Case(KIND_VEC):
                        m.d.comb += self.vec_start.eq(1)
                        m.next = "VEC"
                    with m.Case(KIND_POOL):
                        m.d.comb += self.pool_start.eq(1)
                        m.next = "POOL"
            with m.State("QUANT"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.quant_done):
                    with m.If(self.beta_slot >= 0):
                        m.d.sync += beta[slot].eq(self.quant_beta)
                    m.next = "NEXT"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.setup_done):
                    m.d.comb += self.conv_start.eq(1)
                    m.next = "CONV"
            with m.State("CONV"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.conv_done):
                    m.next = "NEXT"
            with m.State("VEC"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.vec_done):
                    m.next = "NEXT"
            with m.State("POOL"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.pool_done):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += pc.eq(pc + 1)
                with m.If(pc == self.n_steps - 1):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.next = "FETCH"
        return m
