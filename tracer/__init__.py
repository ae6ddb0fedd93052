"""noisescope: record and replay what a diffusion model does at every step."""
