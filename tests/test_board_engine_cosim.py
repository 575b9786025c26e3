"""The whole board core with the network engine (UART pins, framing, packet buffer, the board's own
program) in cocotb + Verilator, the host's EngineDriver talking to it bit by bit on rx/tx at the real
frame format (sim/board_cosim.py, docs/boards.md "Pin-level simulation"): whole digits images equal the
golden model's logits, cycles equal the compiler's model, and a corrupted or dropped byte on the line,
either way, is a named LinkError, never a wrong result; the link works again after each."""

import pytest


@pytest.mark.slow
def test_digits_images_through_the_board_pins(exported, tmp_path):
    from rootshift.hw.board import framing as F
    from rootshift.hw.engine.engine import ENGINE_PROTOCOL_VERSION, MAGIC
    from rootshift.sim.board_cosim import DEFAULT_FAULTS, board_cosim

    rep = board_cosim(exported, board="ulx3s-85f", images=3, rows=4, cols=4, cache=tmp_path)  # the small array: CI time
    assert rep["array"] == "4x4" and rep["probe"][:2] == [MAGIC, ENGINE_PROTOCOL_VERSION]
    assert rep["mismatches"] == 0 and rep["mismatched_logits"] == 0, rep
    assert rep["cycles_per_image"] == rep["cycles_model"]
    assert rep["flags"] == [0]
    # INFER (17 words, protocol v4) in 8-word frames: three; a fault hits the second, after the engine took the first
    assert rep["max_words"] == 8 and rep["frames"] > 3 * 3
    assert [f["kind_seen"] for f in rep["faults"]] == [f["expect"] for f in DEFAULT_FAULTS]
    assert rep["wrong_answers"] == 0
    for f in rep["faults"]:
        assert "dropped" in f["message"] or "corrupted" in f["message"]
    # then overlapped (the next image's pixels on the line during the compute, and the logits leave the
    # board core's answer FIFO while the next image computes): exact, and faster
    assert rep["overlap_mismatches"] == 0 and rep["overlap_flags"] == 0
    compute = rep["cycles_per_image"] / rep["clk_hz"]
    answer = (F.ANSWER_HEADER + 4 * 10 + F.CRC_BYTES) * 10 / rep["baud"]
    request = (F.REQUEST_HEADER + 4 * (1 + 16) + F.CRC_BYTES) * 10 / rep["baud"]     # INFER + 16 pixel words
    assert rep["overlap_sim_s_per_image"] == pytest.approx(max(compute, answer + request), rel=0.02)
    assert rep["overlap_sim_s_per_image"] < compute + answer        # the answer no longer adds to the compute
    assert rep["overlap_sim_s_per_image"] < rep["sim_s_per_image"]


def test_only_a_network_engine_board_is_simulated_here(tmp_path):
    from rootshift.sim.board_cosim import board_cosim
    from rootshift.sw.errors import ConfigError

    with pytest.raises(ConfigError, match="icebreaker carries the tile engine"):
        board_cosim(tmp_path / "none.rsq", board="icebreaker")


def test_a_request_fault_past_its_frame_is_refused_before_the_build(exported, tmp_path):
    """On a 4x8 array a word is 8 bytes: the INFER of a digits image is 9 words, frames of 8 and 1, so a
    fault list written for 4x4 (byte 20 of the second frame) names a byte that frame does not have."""
    from rootshift.sim.board_cosim import DEFAULT_FAULTS, board_cosim
    from rootshift.sw.errors import ConfigError

    with pytest.raises(ConfigError, match=r"byte 20 of INFER frame 1: the INFER is 9 words of 8 bytes in frames "
                                          r"of 8 words \(71, 15 bytes\)"):
        board_cosim(exported, board="ulx3s-85f", images=2, rows=4, cols=8, faults=DEFAULT_FAULTS, cache=tmp_path)
    assert not any(tmp_path.iterdir())          # refused before any RTL was generated
