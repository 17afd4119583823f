"""Host runtime: backends that run a model (golden, float; later the simulated or real core)
and the generation loop that drives any of them."""
