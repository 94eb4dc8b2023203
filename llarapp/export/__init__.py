"""Export to ONNX, QInt8 quantization, parity and latency reports, and the serving bundle.

This package needs torch; the bundle it writes is served by :mod:`llarapp.serving`,
which does not."""
