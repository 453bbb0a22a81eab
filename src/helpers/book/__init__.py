"""What the chapters call around the studies: parameters and their checks, figures, sliders, the run log."""
