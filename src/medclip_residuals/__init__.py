"""medclip-residuals: MedCLIP embeddings, phenotype residuals and Grad-CAM for chest X-rays."""

__version__ = "0.1.0"
