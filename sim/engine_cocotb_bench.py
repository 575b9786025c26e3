"""cocotb test bench (cocotb 2.x) of the self-sequencing engine, through the host protocol only.

Launched by :mod:`rootshift.sim.engine_cosim` through ``cocotb_tools.runner``. The job (a pickle named
by ``ROOTSHIFT_JOB``) holds the program's bytes and the pixel codes of every image (and ``load``: the
engine was built with ``baked=False``, so the program is loaded over the stream first). The host side is
:class:`~rootshift.sim.engine_driver.EngineDriver` over this bench's streams (the same driver a board
uses): per image ``INFER`` with the pixels, the logits, every word of the fine memory and of the code
banks (``READ_FINE`` / ``READ_CODES``: with a ``debug`` program every layer's tensor is still there) and
``STATUS``. Every word crosses a valid/ready handshake, as on a board. The decoded answers go back to
the caller, which compares them with the golden model and makes the report.

``ROOTSHIFT_INJECT_FAULT=N`` flips bit 0 of the N-th received word: the test of the checker.
"""

import os
import pickle
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, ValueChange, with_timeout
from cocotb.utils import get_sim_time

from rootshift.hw.engine.program import Program
from rootshift.sim.cocotb_streams import StreamPortBase
from rootshift.sim.engine_driver import EngineDriver

PERIOD_NS = 10


def _now():
    return int(get_sim_time("ns")) // PERIOD_NS


class EnginePort(StreamPortBase):
    """The engine's two streams, one word per clock at most, each through its valid/ready handshake.
    ``sent_at``: the clock count of the edge that took the last word sent."""

    sent_at = 0

    async def send(self, words):
        dut = self.dut
        for w in words:
            dut.i_stream__payload.value = int(w)
            dut.i_stream__valid.value = 1
            await ReadOnly()
            while not int(dut.i_stream__ready.value):     # wait for ready without a trigger per cycle
                await RisingEdge(dut.i_stream__ready)
                await ReadOnly()
            await RisingEdge(self.clk)                    # the word is taken on this edge
        self.sent_at = _now()
        dut.i_stream__valid.value = 0

    async def recv(self, n):
        dut = self.dut
        out = []
        dut.o_stream__ready.value = 1
        while len(out) < n:
            await ReadOnly()
            if int(dut.o_stream__valid.value):
                out.append(self.take(dut.o_stream__payload.value))
                await RisingEdge(self.clk)
            else:                                          # computing: one trigger, not one per cycle
                await RisingEdge(dut.o_stream__valid)
        dut.o_stream__ready.value = 0
        return out


async def _step_times(dut, n_steps):
    """Clock count at which the engine's step counter ``pc`` becomes 1, 2, .. ``n_steps`` (the ``NEXT``
    of each step: measured step boundaries); None where the simulator does not expose ``pc``."""
    try:
        pc = dut.pc
    except AttributeError:
        return None
    times = {}
    while len(times) < n_steps:
        await ValueChange(pc)
        v = int(pc.value)
        if 1 <= v <= n_steps:
            times[v] = _now()
    return [times[i] for i in range(1, n_steps + 1)]


async def run_image(port, drv, job, pixels):
    dut = port.dut
    timer = cocotb.start_soon(_step_times(dut, len(drv.program.steps)))
    logits = await drv.infer(pixels)
    t0 = port.sent_at                 # the edge that took the last pixel word: step 0 starts here
    times = await timer
    res = {"logits": logits, "step_cycles": None}
    if times is not None:
        edges = [t0] + times
        res["step_cycles"] = [b - a for a, b in zip(edges, edges[1:])]
    for kind in ("fine", "codes"):
        res[kind] = await drv.read_memory(kind)
    res["status"] = await drv.status()
    return res


@cocotb.test()
async def run_job(dut):
    with open(os.environ["ROOTSHIFT_JOB"], "rb") as f:
        job = pickle.load(f)
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.i_stream__valid.value = 0
    dut.o_stream__ready.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    port = EnginePort(dut)
    drv = EngineDriver(Program.from_bytes(job["program"]), port)
    t0 = time.perf_counter()
    load = None
    if job.get("load"):               # an engine built with baked=False: the program goes in over the stream
        c0, words = _now(), sum(len(w) for w in drv.load_words())
        await with_timeout(drv.load_program(), (2 * words + 10_000) * PERIOD_NS, "ns")
        st = await drv.status()
        load = {"words": words, "cycles": _now() - c0, "flags": st.flags}
    images = []
    for i, pixels in enumerate(job["images"]):
        # a hang fails with a message instead of blocking: twice the image's expected clock count
        res = await with_timeout(run_image(port, drv, job, pixels), job["budget_cycles"] * PERIOD_NS, "ns")
        images.append(res)
        if job.get("progress"):
            with open(job["progress"], "a") as f:
                f.write("\n")
    with open(job["result"], "wb") as f:
        pickle.dump({"images": images, "load": load, "wall_s": time.perf_counter() - t0}, f)
