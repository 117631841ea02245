"""medsam-focus: fine-tune MedSAM-family models per modality with Dice + FocusSDF and measure transfer."""

__version__ = "0.1.0"
