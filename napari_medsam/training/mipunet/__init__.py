"""Training of the projection 2.5D U-Net and its per-slice baseline on bone-labelled CT."""
