"""Every attack, one contract: the result types, the shared L2 steps and the registry the studies loop over."""
