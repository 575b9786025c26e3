"""Write one benchmark's section of docs/results.md (between its begin/end markers), atomically."""

from pathlib import Path

from sw.fileio import atomic_write_text

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def write_section(name, body):
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Results\n\nEvery table below was written by the command shown with it.\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        text = pre + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(RESULTS, text)
