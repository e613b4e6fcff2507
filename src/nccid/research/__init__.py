"""Research access: cohorts, exports, datasets, AI validation, modelling and teaching."""
