"""Synthetic demo sites, accounts and data for 'make run' (filled in as the parts land)."""


def load_demo(console=None) -> None:
    pass
