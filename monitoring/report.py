"""The drift check as one self-contained HTML page: a verdict banner, then per feature the reference and
the window side by side (histograms from the profiles' KLL sketches, a bar chart of the top predicted
classes), the test, its p values and its verdict.

A person deciding whether to retrain looks at shapes, not p values: the plots come from the same sketches
the tests read, so what the page shows is what was tested. Plots are PNGs inlined as base64 (matplotlib,
Agg backend), so the file can be mailed or attached to a ticket and opens anywhere without a server.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from monitoring.drift import DRIFT, NO_DRIFT, DriftReport, FeatureDrift, class_counts
from monitoring.profiles import DatasetProfileView
from textclf.core.features import CATEGORICAL_FEATURES

REFERENCE_COLOR, WINDOW_COLOR = "#8c96a3", "#d9480f"
TOP_CLASSES = 15
BINS = 30
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
EXPLAIN = {
    "chars": "characters per text",
    "tokens": "model tokens per text",
    "oov_rate": "share of words outside the model's vocabulary",
    "confidence": "top class probability",
    "margin": "top minus second probability",
    "entropy": "entropy of the probabilities (nats)",
    "predicted": "predicted class",
}


def write_html(
    path: Path,
    report: DriftReport,
    window: DatasetProfileView | None,
    reference: DatasetProfileView,
    context: Mapping[str, str] | None = None,
) -> Path:
    """Render the page and write it to `path` (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, window, reference, context), encoding="utf-8")
    return path


def render_html(
    report: DriftReport,
    window: DatasetProfileView | None,
    reference: DatasetProfileView,
    context: Mapping[str, str] | None = None,
) -> str:
    """The page as a string. `context`: a few lines a reader needs (model, window, profiles folder)."""
    cards = [_card(f, window, reference) for f in report.features]
    if not cards:
        cards = ['<p class="muted">No feature was tested (see the banner).</p>']
    return _PAGE.format(
        title=html.escape(f"textclf drift: {report.verdict}"),
        banner=_banner(report, context or {}),
        problems=_problems(report.problems),
        cards="\n".join(cards),
        method=_METHOD.format(alpha=report.alpha, min_texts=report.min_texts),
    )


def _banner(report: DriftReport, context: Mapping[str, str]) -> str:
    kind = {DRIFT: "drift", NO_DRIFT: "ok"}.get(report.verdict, "none")
    facts = [
        ("texts in window", f"{report.texts:,}"),
        ("texts in reference", f"{report.reference_texts:,}"),
        ("overall p (Holm)", _p(report.p_value)),
        ("family-wise alpha", f"{report.alpha:g}"),
    ]
    if report.model_outputs is not None:
        group = report.model_outputs
        facts.append(
            ("model outputs p (Bonferroni)", f"{_p(group.p_value)} {'drift' if group.drifted else 'ok'}")
        )
    if report.estimated_accuracy is not None:
        ref = report.reference_confidence
        facts.append(
            (
                "estimated accuracy (mean confidence)",
                f"{report.estimated_accuracy:.3f}" + ("" if ref is None else f" (reference {ref:.3f})"),
            )
        )
    facts += [(k, v) for k, v in context.items()]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts)
    drifted = [f.feature for f in report.features if f.drifted]
    headline = {
        "drift": f"Drift detected in {', '.join(drifted)}",
        "ok": "No drift: the window looks like the reference",
    }.get(kind, f"No verdict: {report.verdict}")
    return (
        f'<section class="banner {kind}"><h1>{html.escape(headline)}</h1>'
        f'<table class="facts">{rows}</table></section>'
    )


def _problems(problems: list[str]) -> str:
    if not problems:
        return ""
    items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
    return f'<section class="problems"><h2>Problems</h2><ul>{items}</ul></section>'


def _card(feature: FeatureDrift, window: DatasetProfileView | None, reference: DatasetProfileView) -> str:
    name = feature.feature
    badge = "drift" if feature.drifted else ("ok" if feature.p_value is not None else "none")
    label = {"drift": "drift", "ok": "no drift", "none": "not tested"}[badge]
    stats = [
        ("test", feature.test),
        ("statistic", "—" if feature.statistic is None else f"{feature.statistic:.4g}"),
        ("p value", _p(feature.p_value)),
        ("p adjusted (Holm)", _p(feature.p_adjusted)),
        ("Hellinger distance", "—" if feature.hellinger is None else f"{feature.hellinger:.3f}"),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{html.escape(v)}</td></tr>" for k, v in stats)
    if name in CATEGORICAL_FEATURES:
        plot = _class_plot(name, window, reference)
        detail = ""
    else:
        plot = _numeric_plot(name, window, reference)
        detail = _quantile_table(name, window, reference)
    note = f'<p class="muted">{html.escape(feature.note)}</p>' if feature.note else ""
    image = f'<img alt="{html.escape(name)}: reference vs window" src="{plot}">' if plot else ""
    return (
        f'<article class="card {badge}"><header><h2>{html.escape(name)}</h2>'
        f'<span class="badge {badge}">{label}</span></header>'
        f'<p class="muted">{html.escape(EXPLAIN.get(name, ""))}</p>{image}'
        f'<table class="stats">{table}</table>{detail}{note}</article>'
    )


def _sketch(view: DatasetProfileView | None, name: str):
    if view is None:
        return None
    column = view.get_column(name)
    metric = None if column is None else column.get_metric("distribution")
    if metric is None or metric.kll.value.is_empty():
        return None
    return metric.kll.value


def _numeric_plot(name: str, window: DatasetProfileView | None, reference: DatasetProfileView) -> str:
    sketches = [(label, s, c) for label, s, c in _sides(name, window, reference) if s is not None]
    if not sketches:
        return ""
    low = min(s.get_min_value() for _, s, _ in sketches)
    high = max(s.get_max_value() for _, s, _ in sketches)
    if not high > low:
        high = low + 1.0
    edges = np.linspace(low, high, BINS + 1)
    fig, ax = _figure()
    for label, sketch, color in sketches:
        pmf = np.asarray(sketch.get_pmf(list(edges[1:-1])), dtype=float)  # BINS shares
        if label == "reference":
            ax.stairs(pmf, edges, fill=True, color=color, alpha=0.45, label=f"{label} (n={sketch.get_n():,})")
        else:
            ax.stairs(pmf, edges, color=color, linewidth=2, label=f"{label} (n={sketch.get_n():,})")
    ax.set_xlabel(EXPLAIN.get(name, name))
    ax.set_ylabel("share of texts")
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)


def _class_plot(name: str, window: DatasetProfileView | None, reference: DatasetProfileView) -> str:
    ref, win = class_counts(reference, name), class_counts(window, name)
    if not ref and not win:
        return ""
    ref_total, win_total = max(sum(ref.values()), 1), max(sum(win.values()), 1)
    classes = sorted(
        set(ref) | set(win), key=lambda c: -max(ref.get(c, 0) / ref_total, win.get(c, 0) / win_total)
    )[:TOP_CLASSES]
    y = np.arange(len(classes))
    fig, ax = _figure(height=0.28 * len(classes) + 1.0)
    ax.barh(
        y - 0.2, [ref.get(c, 0) / ref_total for c in classes], 0.4, color=REFERENCE_COLOR, label="reference"
    )
    ax.barh(y + 0.2, [win.get(c, 0) / win_total for c in classes], 0.4, color=WINDOW_COLOR, label="window")
    ax.set_yticks(y, [c if len(c) <= 32 else c[:31] + "…" for c in classes], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"share of texts (top {len(classes)} of {len(set(ref) | set(win))} classes)")
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)


def _quantile_table(name: str, window: DatasetProfileView | None, reference: DatasetProfileView) -> str:
    rows = []
    for label, sketch, _ in _sides(name, window, reference):
        values = (
            ["—"] * len(QUANTILES)
            if sketch is None
            else [f"{q:.3g}" for q in sketch.get_quantiles(list(QUANTILES))]
        )
        rows.append(f"<tr><th>{label}</th>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
    head = "".join(f"<th>q{int(q * 100):02d}</th>" for q in QUANTILES)
    return f'<table class="quantiles"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def _sides(name: str, window: DatasetProfileView | None, reference: DatasetProfileView):
    return [
        ("reference", _sketch(reference, name), REFERENCE_COLOR),
        ("window", _sketch(window, name), WINDOW_COLOR),
    ]


def _figure(height: float = 2.6):
    import matplotlib

    matplotlib.use("Agg")  # no display; must come before pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


_METHOD = """<section class="method"><h2>How this was decided</h2><p>Numeric features: two-sample
Kolmogorov-Smirnov test on the whylogs KLL sketches (whylogs' implementation). Predicted class:
chi-square test of homogeneity on the class counts (Monte Carlo p value when expected counts are small).
A feature drifts when its Holm-adjusted p value is at most alpha = {alpha:g}, so the whole check has a
false-alarm rate of at most alpha. "Model outputs" (confidence, margin, entropy, predicted class;
black-box shift detection, Rabanser et al. 2019) is judged on its own with Bonferroni inside the group.
Windows with fewer than {min_texts} texts get no verdict. The Hellinger distance is an effect size:
with many texts a tiny shift can be significant, and a large distance is what matters.</p></section>"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1rem; color: #222; }}
.banner {{ border-radius: 8px; padding: 1rem 1.5rem; color: #fff; }}
.banner.ok {{ background: #2b8a3e; }} .banner.drift {{ background: #c92a2a; }}
.banner.none {{ background: #5c677d; }}
.banner h1 {{ margin: 0 0 .5rem; font-size: 1.5rem; }}
.facts th {{ text-align: left; font-weight: normal; opacity: .85; padding-right: 1rem; }}
.problems {{ background: #fff4e6; border-left: 4px solid #e8590c; margin: 1rem 0; padding: .5rem 1rem; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1rem; }}
.card {{ border: 1px solid #dee2e6; border-radius: 8px; padding: .75rem 1rem; }}
.card.drift {{ border: 2px solid #c92a2a; }}
.card header {{ display: flex; justify-content: space-between; align-items: center; }}
.card h2 {{ margin: 0; font-size: 1.15rem; }} .card img {{ max-width: 100%; }}
.badge {{ border-radius: 999px; padding: .15rem .7rem; color: #fff; font-size: .85rem; }}
.badge.ok {{ background: #2b8a3e; }} .badge.drift {{ background: #c92a2a; }}
.badge.none {{ background: #868e96; }}
table {{ border-collapse: collapse; font-size: .9rem; }} td, th {{ padding: .1rem .5rem; }}
.stats th, .quantiles th {{ text-align: left; color: #555; font-weight: normal; }}
.quantiles {{ margin-top: .5rem; }} .muted {{ color: #666; font-size: .9rem; }}
.method {{ color: #444; font-size: .9rem; border-top: 1px solid #dee2e6; margin-top: 1rem; }}
</style></head>
<body>
{banner}
{problems}
<main class="grid">
{cards}
</main>
{method}
</body></html>
"""
