"""Performance: an analytic cycle model of the core, rooflines and projections."""
