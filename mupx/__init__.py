"""mupx: a command-line runner for μP hyperparameter transfer."""

__version__ = "0.1.0"
