"""Fine-tuning of Med-SA's parts with SimpleClick / RITM iterative click simulation.

``finetune(config) -> history`` (:mod:`napari_medsam.training.loop`) trains the
Med-SA parts (adapters, HyP-Adpt, click embedding) on labelled NIfTI volumes with
the backbone frozen. Importing this package pulls in nothing heavy; the modules
import torch themselves.
"""
