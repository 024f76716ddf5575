"""The model layer: MedCLIP loading for every profile, device handling, heads, HeatMapModel."""
