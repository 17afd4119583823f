"""Host runtime: the Device protocol, model images, the sequencer's NumPy interpreter, the runner
that drives a device (simulated core or NumPy model), and the generation loop shared by every
backend (golden model, float reference, core)."""
