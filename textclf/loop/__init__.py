"""The loop that keeps a served model healthy: retraining on feedback, the champion/challenger gate."""
