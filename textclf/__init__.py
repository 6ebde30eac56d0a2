"""textclf: train, convert, serve and watch text classifiers."""

__version__ = "0.1.0"
