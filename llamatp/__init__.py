"""llamatp: run GGUF models on one or several devices, split by layer or by tensor."""

__version__ = "0.1.0"
