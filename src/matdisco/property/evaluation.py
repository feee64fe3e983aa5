"""Regression metrics, parity / error-CDF plots and the HTML report of a run."""

from __future__ import annotations

import base64
import html
from typing import Any

import numpy as np
import pandas as pd

from matdisco import MatdiscoError
from matdisco._io import finite_column, read_table, write_text
from matdisco.training import RunDir


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """MAE, RMSE, median absolute error, R² and the number of rows."""
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    err = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum()) if len(y_true) else 0.0
    return {
        "mae": float(np.abs(err).mean()) if len(err) else float("nan"),
        "rmse": float(np.sqrt((err ** 2).mean())) if len(err) else float("nan"),
        "median_ae": float(np.median(np.abs(err))) if len(err) else float("nan"),
        "r2": float(1 - (err ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "n": int(len(err)),
    }


def read_run_metrics(run: RunDir) -> dict[str, Any]:
    """Read a run's ``metrics.json``, checking the layout the summary and report use.

    Raises
    ------
    MatdiscoError
        When the file is missing or corrupt, or an entry has the wrong type (naming it).
    """
    path = run / "metrics.json"
    if not path.exists():
        raise MatdiscoError(f"{path}: file not found (is the run finished?)")
    met = run.read_metrics()
    if not isinstance(met, dict):
        raise MatdiscoError(f"{path}: expected a JSON object")
    sections: list[tuple[str, Any]] = [(k, met[k]) for k in ("cv", "test", "train") if k in met]
    holdout = met.get("holdout", {})
    if not isinstance(holdout, dict):
        raise MatdiscoError(f"{path}: field 'holdout' must be an object")
    sections += [(f"holdout.{k}", v) for k, v in holdout.items()]
    for name, m in sections:
        if not isinstance(m, dict):
            raise MatdiscoError(f"{path}: field {name!r} must be an object of metrics")
        for key in ("mae", "rmse", "r2", "n"):
            value = m.get(key)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, int | float)):
                raise MatdiscoError(f"{path}: field '{name}.{key}' is {value!r}, not a "
                                    "number")
    seconds = met.get("train_seconds")
    if seconds is not None and (isinstance(seconds, bool)
                                or not isinstance(seconds, int | float)):
        raise MatdiscoError(f"{path}: field 'train_seconds' is {seconds!r}, not a number")
    return met


def read_predictions(run: RunDir) -> pd.DataFrame:
    """Read a run's ``predictions.csv`` for the plots, validating it.

    Raises
    ------
    MatdiscoError
        When the file is missing, empty or unreadable, lacks the ``target``,
        ``prediction`` or ``split`` column, or has a value that is not a finite number
        (naming the row, numbered from 0 as in every input file).
    """
    path = run / "predictions.csv"
    if not path.exists():
        raise MatdiscoError(f"{path}: file not found (is the run finished?)")
    df = read_table(path)
    missing = [c for c in ("target", "prediction", "split") if c not in df.columns]
    if missing:
        raise MatdiscoError(f"{path}: missing column(s) {missing}; found columns "
                            f"{list(df.columns)}")
    if len(df) == 0:
        raise MatdiscoError(f"{path}: the file has no data rows")
    for col in ("target", "prediction"):
        df[col] = finite_column(df, col, str(path))
    df["split"] = df["split"].astype(str)
    return df


def write_plots(run: RunDir, preds: pd.DataFrame) -> list[str]:
    """Parity plot and error CDF per split; returns the PNG names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(5, 5))
    both = np.concatenate([preds["target"].to_numpy(float), preds["prediction"].to_numpy(float)])
    lo, hi = (float(v) for v in np.percentile(both, [0.05, 99.95]))
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    for split, g in preds.groupby("split"):
        mae = float(np.abs(g["prediction"] - g["target"]).mean())
        ax.scatter(g["target"], g["prediction"], s=4, alpha=0.5,
                   label=f"{split} (n={len(g)}, MAE={mae:.3f})")
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title("Parity")
    ax.legend(fontsize=7, markerscale=3)
    run.save_plot("parity.png", fig)
    names.append("parity.png")
    fig, ax = plt.subplots(figsize=(5, 4))
    for split, g in preds.groupby("split"):
        e = np.sort(np.abs(g["prediction"] - g["target"]).to_numpy())
        ax.plot(e, np.arange(1, len(e) + 1) / len(e), label=str(split))
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("absolute error")
    ax.set_ylabel("cumulative fraction")
    ax.set_title("Error CDF")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    run.save_plot("error_cdf.png", fig)
    names.append("error_cdf.png")
    return names


def _img(path: Any) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:48%">'


def _table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    cols = ["mae", "rmse", "median_ae", "r2", "n"]
    out = ["<table><tr><th>set</th>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"]
    for name, m in rows:
        cells = "".join(
            f"<td>{m[c]:.4f}</td>" if isinstance(m.get(c), float)
            else "<td>n/a</td>" if c in m and m[c] is None  # undefined, e.g. R² of one row
            else f"<td>{m.get(c, '')}</td>"
            for c in cols
        )
        out.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_report(run: RunDir, name: str | None = None) -> str:
    """Write ``report.html`` (metrics table, parity plot, error CDF) into the run.

    ``name`` titles the page (default: the run directory's name; a run written in a
    staging folder passes the name it is published under).
    """
    name = run.path.name if name is None else name
    cfg = run.read_config()
    met = read_run_metrics(run)
    rows: list[tuple[str, dict[str, Any]]] = []
    for key in ("cv", "test", "train"):
        if key in met:
            rows.append((key, met[key]))
    for system, m in met.get("holdout", {}).items():
        rows.append((f"holdout {system}", m))
    imgs = "".join(_img(run / n) for n in ("parity.png", "error_cdf.png") if (run / n).exists())
    raw_data = cfg.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    features = cfg.get("features")
    feat_name = features.get("name") if isinstance(features, dict) else features
    clean = data.get("cleaning")
    seconds = float("nan") if met.get("train_seconds") is None else met["train_seconds"]
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>matdisco run {html.escape(name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head><body>
<h1>matdisco property run: {html.escape(name)}</h1>
<p>model <b>{html.escape(str(cfg.get('model')))}</b> on
<b>{html.escape(str(feat_name))}</b> features;
data {html.escape(str(data.get('source')))}
({html.escape(str(data.get('rows')))} rows after cleaning); split
{html.escape(str(cfg.get('split')))}; transfer from {html.escape(str(cfg.get('init')))}.</p>
<p>cleaning: {html.escape(str(clean))}</p>
<h2>Metrics</h2>{_table(rows)}
<p>training time {seconds:.1f} s</p>
<h2>Plots</h2>{imgs}
</body></html>
"""
    write_text(run / "report.html", page)
    return str(run / "report.html")
