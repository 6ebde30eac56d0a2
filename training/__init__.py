"""Training: streaming dataset readers, validation, model families, evaluation and MLflow tracking."""
