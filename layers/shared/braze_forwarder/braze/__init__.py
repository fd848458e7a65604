"""Braze objects: validation against Braze's documented rules, and the reference tables it uses."""
