"""Projection-based 2.5D U-Net (MIP views about z, 2D U-Net, back-projection) and its slice baseline."""
