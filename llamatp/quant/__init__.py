"""GGML tensor types: `blocks` (support checks, block-aligned slicing; no torch), `dequant`
(dequantization in torch) and `gemv` (Triton kernels over repacked blocks)."""
