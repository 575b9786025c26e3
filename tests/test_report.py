"""``rootshift report``: one self-contained HTML page, every section present, every image a real PNG."""

import base64
import io
import json
import shutil
from html.parser import HTMLParser

import pytest
from PIL import Image

from rootshift.sim.report import write_report
from rootshift.sw.errors import ConfigError

VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(HTMLParser):
    """Collects section ids and images, and checks that every tag is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.sections, self.images, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unbalanced </{tag}>")


@pytest.fixture
def full_run(trained_run, exported, tmp_path):
    """A run directory with a checkpoint, metrics, an export, a co-simulation and a build report."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    shutil.copy(exported, run / "model.rsq")
    (run / "cosim.json").write_text(json.dumps({
        "sim": "verilator", "array": "4x4", "images": 2, "mismatches": 0, "compared_values": 1234,
        "cycles_per_image": 98765.0, "utilization": 0.36,
        "utilization_per_layer": {"conv1": 0.2, "stages.0.0.conv1": 0.41, "fc": 0.05}}))
    (run / "build").mkdir()
    (run / "build" / "board.json").write_text(json.dumps({
        "board": "icebreaker", "clock_mhz": 12, "fmax_mhz": 31.5, "sha256": "ab" * 32,
        "resources": {"LUT": {"used": 3000, "available": 5280}, "DSP": {"used": 4, "available": 8}}}))
    return run


def _parse(path):
    c = _Checker()
    c.feed(path.read_text())
    c.close()
    return c


def test_report_has_every_section_and_valid_pngs(full_run):
    out = write_report(full_run)
    page = _parse(full_run / "report.html")
    assert not page.errors and not page.stack, page.errors or page.stack
    expected = {"summary", "training", "weights", "codes", "beta", "agreement", "cosim", "build"}
    assert expected <= set(page.sections), set(page.sections)
    assert set(out["sections"]) == set(page.sections) - {"absent"}
    assert len(page.images) >= 5  # training, weights, codes, beta, utilization
    for src in page.images:
        assert src.startswith("data:image/png;base64,"), "images must be embedded (no network)"
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.verify()
        assert img.format == "PNG"
        assert 200 <= img.width <= 4000 and 100 <= img.height <= 4000, img.size
    text = (full_run / "report.html").read_text()
    assert "http://" not in text and "https://" not in text


def test_report_of_a_bare_training_run_lists_what_is_absent(trained_run, tmp_path):
    run = tmp_path / "bare"
    shutil.copytree(trained_run, run)
    out = write_report(run, tmp_path / "r.html")
    page = _parse(tmp_path / "r.html")
    assert {"training", "weights", "beta"} <= set(page.sections)
    assert "cosim" not in out["sections"] and "codes" not in out["sections"]
    assert "absent" in page.sections


def test_report_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(ConfigError, match="holds no run"):
        write_report(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        write_report(tmp_path / "missing")
