"""lwq: layer-wise quantization of large language models through llama.cpp."""

__version__ = "0.1.0"
