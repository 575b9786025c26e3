"""A shift W4A4 digits ResNet-8 (shift weights x shift activations, issue 10) on shift2 hardware: the
host driver over the Python device model and over the RTL (cocotb + Verilator) against the golden
model, every layer value by value and the logits. The stem (8-bit pixels, mode shift) runs bit-serially."""

import numpy as np
import pytest

from rootshift.sim.cosim import compare_layers, cosim_model
from rootshift.sim.driver import HostDriver, hardware_for, run_sync
from rootshift.sim.model import DeviceModel
from rootshift.sw import golden, rsq
from rootshift.sw.data import load_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shift_model(tmp_path_factory):
    from rootshift.sw.export import export_checkpoint
    from rootshift.sw.train import TrainConfig, load_checkpoint, train

    d = tmp_path_factory.mktemp("shift44")
    train(TrainConfig(epochs=1, wq="shift", aq="shift", wbits=4, abits=4, out=str(d / "run")), progress=False)
    path = d / "model.rsq"
    rsq.save(export_checkpoint(load_checkpoint(d / "run")), path)
    return path


def test_shift_network_maps_to_shift2_hardware(shift_model):
    im = rsq.load(shift_model)
    assert {op["mode"] for op in im.layers()} == {"shift", "shift2"}
    p = hardware_for(im, 4, 4)
    assert (p.pe, p.base, p.abits, p.act_exponent) == ("shift2", "2", 4, 14)
    x = load_dataset("digits").test.x[:3].numpy()
    rec = {}
    dev = DeviceModel(p)
    drv = HostDriver(p, im)
    assert drv.maps["conv1"].expand == 8 and drv.maps["conv1"].k == 72
    logits = run_sync(drv.run(x, rec), lambda r: dev.transact(r.words, r.n_out))
    assert np.array_equal(logits, golden.run(im, x))
    assert compare_layers(im, x, rec, p)[0] is None


def test_shift_network_is_bit_exact_on_verilator(shift_model):
    rep = cosim_model(shift_model, "verilator", images=1, rows=4, cols=4)
    assert rep["mismatches"] == 0 and rep["compared_values"] > 5000
    assert rep["rtl_acc"] == rep["integer_acc"]
