"""RegisteredMemory (hw/engine/bram_outreg.py): the ECP5 path (DP16KD tiles with the output register)
against the model (``lib.memory`` + a register) cycle for cycle in Icarus, with random reads, writes
(write enables per granule, reads of words being written), resets and memory inits; the INITVAL layout
against what Yosys itself writes for an inferred memory of each DP16KD width."""

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rootshift.hw.engine.bram_outreg import MODES, RegisteredMemory, initvals, is_ecp5, tiling

MODEL = Path(__file__).parent / "data" / "dp16kd_sim.v"
icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")


class Pair(wiring.Component):
    """The same inputs into the DP16KD path and the model."""

    def __init__(self, width, depth, init, granularity):
        self.args = (width, depth, init, granularity)
        n = width // granularity if granularity and granularity < width else 1
        super().__init__({"raddr": In(range(max(2, depth))), "waddr": In(range(max(2, depth))), "wdata": In(width),
                          "wen": In(n), "q_prim": Out(width), "q_model": Out(width)})

    def elaborate(self, platform):
        m = Module()
        w, d, init, g = self.args
        for name, prim, q in (("prim", True, self.q_prim), ("model", False, self.q_model)):
            m.submodules[name] = mem = RegisteredMemory(w, d, init=init, granularity=g, primitive=prim)
            m.d.comb += [mem.raddr.eq(self.raddr), mem.waddr.eq(self.waddr), mem.wdata.eq(self.wdata),
                         mem.wen.eq(self.wen), q.eq(mem.rdata)]
        return m


TB = """
module tb;
  reg clk = 0, rst = 0;
  reg [{ab}-1:0] raddr = 0, waddr = 0;
  reg [{w}-1:0] wdata = 0;
  reg [{n}-1:0] wen = 0;
  wire [{w}-1:0] q_prim, q_model;
  pair dut(.clk(clk), .rst(rst), .raddr(raddr), .waddr(waddr), .wdata(wdata), .wen(wen), .q_prim(q_prim), .q_model(q_model));
  integer i, errors = 0, checked = 0, seed = {seed};
  reg c0 = 0, c1 = 0;   // a read of the word written in its cycle: its answer (a cycle after the next) may be X
  function [{ab}-1:0] hot(input integer r);   // a few words in each stacked block, so reads meet writes
    hot = ((r >>> 4) % {tiles}) * {words} + (r & 7);
  endfunction
  always #5 clk = ~clk;
  initial begin
    for (i = 0; i < {cycles}; i = i + 1) begin
      @(negedge clk);
      if (i >= 2 && c1 == 0) begin   // (before the first read the model's read register holds X)
        checked = checked + 1;
        if (q_prim !== q_model) begin
          errors = errors + 1;
          if (errors < 5) $display("cycle %0d: prim %h model %h", i, q_prim, q_model);
        end
      end
      rst = ($random(seed) % 61) == 0;
      raddr = ($random(seed) & 1) ? hot($random(seed) & 32'hFFFF) : (($random(seed) & 32'h7FFFFFFF) % {depth});
      waddr = ($random(seed) & 1) ? hot($random(seed) & 32'hFFFF) : (($random(seed) & 32'h7FFFFFFF) % {depth});
      if ($random(seed) & 1) waddr = raddr;
      wdata = {{{reps}{{$random(seed)}}}};
      wen = ($random(seed) & 1) ? $random(seed) : 0;
      @(posedge clk);
      #1;
      c1 = c0; c0 = (wen != 0) && (waddr == raddr);
    end
    $display("CHECKED %0d ERRORS %0d", checked, errors);
    $finish;
  end
endmodule
"""


def run_pair(tmp, width, depth, init, granularity, cycles=3000, seed=1):
    v = verilog.convert(Pair(width, depth, init, granularity), name="pair", emit_src=False)
    (tmp / "pair.v").write_text(v)
    bits, words, across, down = tiling(width, depth, granularity)
    n = width // granularity if granularity and granularity < width else 1
    (tmp / "tb.v").write_text(TB.format(ab=max(1, (max(2, depth) - 1).bit_length()), w=width, n=n, seed=seed,
                                        tiles=down, words=words, depth=depth, cycles=cycles, reps=-(-width // 32)))
    subprocess.run(["iverilog", "-g2012", "-o", str(tmp / "sim"), str(tmp / "tb.v"), str(tmp / "pair.v"), str(MODEL)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(tmp / "sim")], check=True, capture_output=True, text=True).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("CHECKED")][-1]
    return int(line.split()[1]), int(line.split()[3]), out


def test_tiling_fewest_blocks_with_a_small_multiplexer():
    assert tiling(32, 19408) == (2, 8192, 16, 3)           # the digits 4x4 weight memory: 48 blocks, 3:1
    assert tiling(32, 320) == (36, 512, 1, 1)              # a code bank: one x36 block
    assert tiling(64, 19408, 32) == (2, 8192, 32, 3)       # 32-bit write granules: no block straddles two
    assert tiling(96, 900, 32) == (18, 1024, 6, 1)            # two x18 blocks per granule, 4 bits unused
    assert tiling(672, 24, 32) == (36, 512, 21, 1)             # the descriptor memory: a x36 block per granule
    assert tiling(512, 87) == (36, 512, 15, 1)                 # the requantization words (4x4)
    assert tiling(1, 200_000)[3] == 13                     # past MAX_DOWN blocks: the fewest stacked


def test_bad_arguments():
    with pytest.raises(TypeError, match="width must be a positive integer"):
        RegisteredMemory(0, 4)
    with pytest.raises(TypeError, match="granularity must be a positive divisor of width 32"):
        RegisteredMemory(32, 4, granularity=5)
    with pytest.raises(ValueError, match="more than its depth 4"):
        RegisteredMemory(8, 4, init=[0] * 5)
    with pytest.raises(ValueError, match="unsigned 8-bit"):
        RegisteredMemory(8, 4, init=[256])
    assert is_ecp5(type("P", (), {"family": "ecp5"})()) and not is_ecp5(None)


@icarus
@pytest.mark.parametrize("width,depth,granularity,n_init", [
    (32, 19408, None, 19408),    # the weight memory's shape: x2 blocks, three stacked, baked init
    (64, 9000, 32, 500),         # 32-bit write granules (a LOAD chunk), two stacked
    (96, 900, 32, 900),          # 32-bit granules in x18 blocks (two per granule, 4 bits unused)
    (96, 500, 32, 500),          # x36 (pseudo dual port) blocks, a granule each, byte enables
    (70, 1500, None, 1500),      # x36 blocks, three stacked, padded width
    (32, 320, None, 0),          # a code bank: one x36 block, no init
    (13, 3000, None, 3000),      # x4 blocks, padded width
    (20, 700, None, 100),        # x18 blocks, padded width
    (9, 2048, None, 2048),       # x9 blocks, exactly full
])
def test_dp16kd_path_equals_the_model(tmp_path, width, depth, granularity, n_init):
    rng = random.Random(width * depth)
    init = [rng.getrandbits(width) for _ in range(n_init)]
    checked, errors, out = run_pair(tmp_path, width, depth, init, granularity)
    assert checked > 2000 and errors == 0, out


@icarus
def test_the_comparison_can_fail(tmp_path):
    """A wrong INITVAL (one bit flipped in a block's image) is seen: the bench is not vacuous."""
    import rootshift.hw.engine.bram_outreg as B

    real = B.initvals

    def flipped(bits, words):
        return real(bits, [w ^ 1 for w in words])
    B.initvals = flipped
    try:
        _, errors, _ = run_pair(tmp_path, 18, 1024, list(range(1024)), None, cycles=500)
    finally:
        B.initvals = real
    assert errors > 0


@pytest.mark.parametrize("bits,words", MODES)
def test_initval_layout_is_yosys_own(tmp_path, bits, words):
    """An inferred memory of exactly one block in each DP16KD width: Yosys's INITVAL == :func:`initvals`."""
    from rootshift.hw.tools import synth

    rng = random.Random(bits)
    init = [rng.getrandbits(bits) for _ in range(words)]

    class One(wiring.Component):
        def __init__(self):
            super().__init__({"ra": In(range(words)), "wa": In(range(words)), "wd": In(bits), "we": In(1),
                              "q": Out(bits)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=bits, depth=words, init=init)
            rd, wr = mem.read_port(), mem.write_port()
            m.d.comb += [rd.addr.eq(self.ra), self.q.eq(rd.data), wr.addr.eq(self.wa), wr.data.eq(self.wd),
                         wr.en.eq(self.we)]
            return m

    v = tmp_path / "one.v"
    v.write_text(verilog.convert(One(), name="one", emit_src=False))
    synth(v, "ecp5", top="one", json_out=tmp_path / "one.json")
    cells = json.loads((tmp_path / "one.json").read_text())["modules"]["one"]["cells"]
    brams = [c for c in cells.values() if c["type"] == "DP16KD"]
    assert len(brams) == 1
    prm = brams[0]["parameters"]
    assert int(prm["DATA_WIDTH_B"], 2) == bits or int(prm["DATA_WIDTH_A"], 2) == bits
    mine = initvals(bits, init)
    for j in range(64):
        assert int(prm[f"INITVAL_{j:02X}"], 2) == mine[f"p_INITVAL_{j:02X}"].value, f"INITVAL_{j:02X}"
