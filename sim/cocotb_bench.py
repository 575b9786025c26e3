"""cocotb test bench (cocotb 2.x): runs one job file against the generated ``rootshift_top``.

Launched by :mod:`sim.cosim` through ``cocotb_tools.runner``. The job (a pickle named by
``ROOTSHIFT_JOB``) is either a list of raw protocol requests (``tiles``) or a whole model on images
(``model``, through :class:`sim.driver.HostDriver`); the bench writes what the device answered to the
job's result file. Comparison with the golden model happens in the caller, where the report is made.
"""

import os
import pickle
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from rootshift.hw.protocol import OP_START
from rootshift.sim.cocotb_streams import StreamPortBase


class StreamPort(StreamPortBase):
    """The accelerator's two streams, driven from cocotb one word per clock at most."""

    async def send(self, words):
        """One word per clock. The controller is ready in IDLE and in every LOAD state (docs/hardware.md),
        so only a word that follows ``START`` waits for ``ready``; that keeps one trigger per word."""
        dut = self.dut
        dut.i_stream__valid.value = 1
        wait = True  # the first word of a request: the device may still be busy
        for w in words:
            dut.i_stream__payload.value = int(w)
            if wait:
                await ReadOnly()
                if not int(dut.i_stream__ready.value):
                    # a tile is running: sleep until the controller is ready again (one trigger, not K)
                    await RisingEdge(dut.i_stream__ready)
            await RisingEdge(self.clk)
            wait = (int(w) >> 28) == OP_START
        dut.i_stream__valid.value = 0

    async def recv(self, n):
        dut = self.dut
        out = []
        if n == 0:
            return out
        dut.o_stream__ready.value = 1
        while len(out) < n:
            await ReadOnly()
            if int(dut.o_stream__valid.value):
                out.append(self.take(dut.o_stream__payload.value))
            await RisingEdge(self.clk)
        dut.o_stream__ready.value = 0
        return out


class _ImageProgress:
    """Append one line per finished image to ``path``: the parent process draws a progress bar from it."""

    def __init__(self, path, n):
        self.path, self.n, self.done = path, n, 0

    def _mark(self, upto):
        if self.path and upto > self.done:
            with open(self.path, "a") as f:
                f.write("\n" * (upto - self.done))
        self.done = max(self.done, upto)

    def wrap(self, transact):
        async def transact_and_track(req):
            self._mark(int((req.info or {}).get("image", 0)))  # a request for image n: images < n are done
            return await transact(req)

        return transact_and_track

    def finish(self):
        self._mark(self.n)


@cocotb.test(timeout_time=2, timeout_unit="sec")  # 200M cycles of simulated time: a hang fails, never blocks
async def run_job(dut):
    with open(os.environ["ROOTSHIFT_JOB"], "rb") as f:
        job = pickle.load(f)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.i_stream__valid.value = 0
    dut.o_stream__ready.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    port = StreamPort(dut)
    prof = None
    if os.environ.get("ROOTSHIFT_PROFILE"):
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    result = {}
    if job["kind"] == "tiles":
        result["outputs"] = [await port.transact(r) for r in job["requests"]]
    else:
        from rootshift.hw.params import ArrayParams
        from rootshift.sim.driver import HostDriver, run_async
        from rootshift.sw import rsq

        from rootshift.sw.errors import RootshiftError

        driver = HostDriver(ArrayParams(**job["params"]), rsq.load(job["model"]))
        record = {}
        tracker = _ImageProgress(job.get("progress"), len(job["pixels"]))
        try:
            result["logits"] = await run_async(driver.run(job["pixels"], record), tracker.wrap(port.transact))
        except RootshiftError as e:   # the host's verdict on the device (flags, wrong answer): the caller re-raises it
            result["error"] = {"type": type(e).__name__, "message": str(e), "flags": getattr(e, "flags", 0),
                               "where": getattr(e, "where", "")}
        tracker.finish()
        result["record"] = record
    result["wall_s"] = time.perf_counter() - t0
    if prof is not None:
        prof.disable()
        prof.dump_stats(os.environ["ROOTSHIFT_PROFILE"])
    with open(job["result"], "wb") as f:
        pickle.dump(result, f)
