"""What the cocotb benches share about driving a design's ``i_stream`` / ``o_stream`` (plain helpers,
no ``@cocotb.test`` here, so importing this never adds tests to a bench)."""

import os


class StreamPortBase:
    """A design's two streams seen from cocotb; subclasses implement ``send`` and ``recv`` for their
    design's ready/valid behaviour.

    ``ROOTSHIFT_INJECT_FAULT=N`` flips bit 0 of the N-th received word, to prove that the checker
    catches a wrong word.
    """

    def __init__(self, dut):
        self.dut = dut
        self.clk = dut.clk
        self.received = 0
        fault = os.environ.get("ROOTSHIFT_INJECT_FAULT")
        self.fault = int(fault) if fault else None

    def take(self, word):
        """Account one received word (and apply the injected fault, if it is this one)."""
        word = int(word)
        if self.received == self.fault:
            word ^= 1
        self.received += 1
        return word

    async def transact(self, request):
        await self.send(request.words)
        return await self.recv(request.n_out)
