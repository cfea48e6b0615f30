"""The notebooks in notebooks/ execute without errors (nbclient) and show what they promise;
the stored copies carry no outputs."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

import quantkit

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "quantkit-test-python"


def test_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_accuracy_vs_size.ipynb",
                                           "03_layer_by_layer.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs"
            assert cell.execution_count is None, f"cell {i} has an execution count"


def _kernel_manager(tmp_path: Path):
    """A kernel that runs this interpreter (the venv's), whatever kernelspecs the machine has,
    with TF's C++ logging off and matplotlib's inline backend (figures become image/png)."""
    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "quantkit tests", "language": "python",
        "env": {"TF_CPP_MIN_LOG_LEVEL": "3",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline"}}))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def _text(nb) -> str:
    """Every stream and text/plain output, in order."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "text/plain" in out.get("data", {}):
                parts.append(out.data["text/plain"])
    return "".join(parts)


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {})
               for cell in nb.cells for out in cell.get("outputs", []))


def _check_quickstart(text: str, images: int) -> None:
    float_acc = float(re.search(r"\n +float32 +[\d,]+ +([\d.]+)", text).group(1))
    match = re.search(r"\n +int8 +[\d,]+ +([\d.]+) +([\d.]+) dB", text)
    assert match, text
    int8_acc, sqnr = float(match.group(1)), float(match.group(2))
    assert float_acc > 0.9 and int8_acc > float_acc - 0.03 and sqnr > 20, text
    difference = re.search(r"largest difference from Keras: (\S+)", text).group(1)
    assert float(difference) < 1e-4, text
    for converter in ("quantkit", "tf.lite"):
        assert re.search(rf"{re.escape(converter)}: [\d,]+ bytes, accuracy 0\.9", text), text


def _check_accuracy_vs_size(text: str, images: int) -> None:
    assert images == 1, "the accuracy-vs-size plot"
    # quantkit.bench's Markdown table: model | mode | converter | size (KB) | ops | accuracy
    # | SQNR (dB) | ...
    rows = re.findall(r"\n\| \w+ \| (\w+) \| (quantkit|tf\.lite) \| ([\d,.]+) \| \d+ \| "
                      r"([\d.]+) \| ([\d.]+|inf) \|", text)
    assert {(p, c) for p, c, *_ in rows} == {(p.value, c) for p in quantkit.Preset
                                             for c in ("quantkit", "tf.lite")}, text
    assert all(float(acc) > 0.85 for *_, acc, _ in rows), text
    kib = {(p, c): float(size.replace(",", "")) for p, c, size, *_ in rows}
    for converter in ("quantkit", "tf.lite"):
        assert kib["int8", converter] < 0.4 * kib["float32", converter], text
        assert kib["float16", converter] < 0.6 * kib["float32", converter], text


def _check_layer_by_layer(text: str, images: int) -> None:
    """Notebook 03: the debugger finds the layer with the dominated range, accuracy control
    fixes it, and the before/after plot is drawn."""
    assert images == 1, "the before/after per-layer SQNR bar chart"
    assert "(same function)" in text
    float_acc = float(re.search(r"float32: +[\d,]+ bytes, accuracy ([\d.]+)", text).group(1))
    int8_acc = float(re.search(r"int8: +[\d,]+ bytes, accuracy ([\d.]+)", text).group(1))
    assert float_acc > 0.9 and int8_acc < float_acc - 0.05, text
    assert "op_name,tensor_idx,num_elements,stddev,mean_error" in text  # TF's CSV
    first = re.search(r"\n +1 +(-?[\d.]+) +(-?[\d.]+) CONV_2D .* expand /", text)
    assert first and float(first.group(1)) < 6, text  # the culprit ranks first
    hand = float(re.search(r"in int16: [\d,]+ bytes, accuracy ([\d.]+)", text).group(1))
    assert hand > float_acc - 0.02, text
    final = re.search(r"final ([\d.]+) \(met\), (\d) tensor", text)
    assert final and float(final.group(1)) > float_acc - 0.011 and int(final.group(2)) <= 3
    size = float(re.search(r"\(([\d.]+)x plain int8\)", text).group(1))
    assert size <= 1.15, text
    after = re.findall(r"\n(\w+) +\w+ +(-?[\d.]+) dB -> +(-?[\d.]+) dB", text)
    assert len(after) == 6 and all(float(db) > 25 for *_, db in after), text


CHECKS = {"01_quickstart.ipynb": _check_quickstart,
          "02_accuracy_vs_size.ipynb": _check_accuracy_vs_size,
          "03_layer_by_layer.ipynb": _check_layer_by_layer}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, km=_kernel_manager(tmp_path),
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # a cell that raises fails the test with CellExecutionError
    CHECKS[path.name](_text(nb), _images(nb))
