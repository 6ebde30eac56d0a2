"""Classification metrics and the plots people would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

LATENCY_SAMPLE = 300  # single-text calls timed for the latency percentile


def classification_metrics(y_true: list[str], y_pred: list[str], labels: list[str]) -> dict[str, object]:
    """Accuracy, macro/weighted F1 and the per-class report (precision, recall, F1, support)."""
    report = classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
    per_class = {label: report[label] for label in labels}
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "test_rows": len(y_true),
        "per_class": per_class,
    }


def headline(metrics: dict[str, object]) -> dict[str, float]:
    """The scalar metrics (what DVC and MLflow compare across runs)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def plot_confusion_matrix(
    y_true: list[str], y_pred: list[str], labels: list[str], path: Path, title: str
) -> Path:
    """Row-normalised confusion matrix as a PNG; off-diagonal cells show where the model errs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(y_true, y_pred, labels=labels).astype(np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(6.0, len(labels) * 0.16)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
    ax.set_yticks(range(len(labels)), labels, fontsize=5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_learning_curves(history: list, path: Path, title: str) -> Path:
    """Loss and validation accuracy per epoch: is the model still learning, or over-fitting?"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h.epoch for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [h.train_loss for h in history], marker="o", label="train loss")
    loss_ax.plot(epochs, [h.val_loss for h in history], marker="o", label="validation loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.legend()
    acc_ax.plot(epochs, [h.val_accuracy for h in history], marker="o", label="validation accuracy")
    acc_ax.plot(epochs, [h.val_macro_f1 for h in history], marker="o", label="validation macro-F1")
    acc_ax.set_xlabel("epoch")
    acc_ax.legend()
    fig.suptitle(f"{title}: learning curves")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def evaluate_model_folder(
    folder: Path, texts: list[str], labels: list[str], plot_path: Path, batch_size: int = 32
) -> dict[str, object]:
    """Score an exported model exactly as the server runs it (one ONNX Runtime thread, as one
    server worker does); add its size, batched throughput and single-text latency."""
    import time

    from textclf.core.runtime import OnnxClassifier

    classifier = OnnxClassifier(folder, threads=1)
    probs = np.concatenate(
        [classifier.predict_proba(texts[i : i + 1024]) for i in range(0, len(texts), 1024)]
    )
    predictions = [classifier.labels[i] for i in probs.argmax(axis=1)]
    metrics = classification_metrics(labels, predictions, classifier.labels)

    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            classifier.predict_proba(texts[i : i + batch_size])
        best = min(best, time.perf_counter() - started)
    single = []
    for text in texts[:LATENCY_SAMPLE]:
        started = time.perf_counter()
        classifier.predict_proba([text])
        single.append((time.perf_counter() - started) * 1000)

    meta = classifier.metadata
    plot_confusion_matrix(
        labels,
        predictions,
        classifier.labels,
        plot_path,
        title=f"{meta.family} {meta.precision} (ONNX): accuracy {metrics['accuracy']:.3f}",
    )
    return metrics | {
        "onnx_mb": (folder / "model.onnx").stat().st_size / 1e6,
        "texts_per_s": len(texts) / best,
        "p95_ms_single": float(np.percentile(single, 95)),
    }
