"""Results that show themselves in a notebook: summaries as HTML tables, diagrams as SVG,
dissections as their self-contained report page."""

import html
import os
from typing import Any, Dict, List


class Summary:
    """A model summary: ``rows`` (one dict per module: name, type, depth, input/output
    shapes, params, mult-adds, …) and ``totals`` as data; ``str()`` is the printed table;
    in Jupyter it renders as an HTML table."""

    def __init__(self, text: str, data: Dict[str, Any]):
        self.text = text
        self.model: str = data["model"]
        self.input_shape: List[int] = data["input_shape"]
        self.rows: List[Dict[str, Any]] = data["rows"]
        self.totals: Dict[str, Any] = data["totals"]

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return (
            f"Summary({self.model}, input {self.input_shape}, "
            f"{self.totals['params']:,} params, {self.totals['mult_adds']:,} mult-adds)"
        )

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>" for h in ("Layer (type)", "Output Shape", "Param #", "Mult-Adds")
        )
        body = []
        for row in self.rows:
            if not row["is_leaf"]:
                continue
            name = "&nbsp;" * 2 * max(row["depth"] - 1, 0) + html.escape(
                f"{row['type']} ({row['key_prefix']})"
            )
            body.append(
                f"<tr><td>{name}</td><td>{row['output_shape']}</td>"
                f"<td style='text-align:right'>{row['params']:,}</td>"
                f"<td style='text-align:right'>{row['mult_adds']:,}</td></tr>"
            )
        t = self.totals
        foot = (
            f"<p>Total params: {t['params']:,} (trainable {t['trainable_params']:,}) · "
            f"mult-adds: {t['mult_adds']:,} · params: {t['param_bytes'] / 2**20:.2f} MB · "
            f"activations: {t['activation_bytes'] / 2**20:.2f} MB</p>"
        )
        return (
            f"<p><b>{html.escape(self.model)}</b>, input {self.input_shape}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{foot}"
        )


class SVG:
    """An SVG picture (``str()`` is the SVG text); renders inline in Jupyter."""

    def __init__(self, svg: str):
        self.svg = svg

    def __str__(self) -> str:
        return self.svg

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: "os.PathLike[str] | str") -> None:
        """Writes the SVG to ``path`` (a ``.svg``, or a ``.png`` rendering of it), atomically:
        an interrupted save leaves any previous file whole."""
        from . import _vgg

        _vgg.save_svg(os.fspath(path), self.svg)


class Report:
    """One image's trip through a network (``vgg.dissect``): renders inline in Jupyter;
    ``save(dir)`` writes ``index.html`` and the PNGs; ``top`` lists the top classes."""

    def __init__(self, dissection):
        self._dissection = dissection

    @property
    def top(self):
        """``[(class name, probability), …]``, most probable first."""
        return self._dissection.top

    def html(self) -> str:
        """The self-contained page (pictures embedded)."""
        return self._dissection.html()

    def _repr_html_(self) -> str:
        return self.html()

    def save(self, directory: "os.PathLike[str] | str") -> None:
        """Writes ``index.html`` and one PNG per picture into ``directory``."""
        self._dissection.save(os.fspath(directory))

    def __repr__(self) -> str:
        name, prob = self.top[0]
        return f"Report(top class {name!r} at {prob:.2%})"
