"""Quantization: checkpoint conversion, θ calibration, hierarchical sensitivity, mixed-timestep
allocation, quantization-assisted sparsification, evaluation and (optional, PyTorch) training."""
