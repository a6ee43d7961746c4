"""The click model: LiteMedSAM's box path untouched, a trained click decoder for clicks."""
