"""Exporting trained models as Keras files, TensorFlow SavedModels and Hugging Face directories."""

from neo_keras.exporting.exporter import DTYPES, FORMATS, ExportError, export_model

__all__ = ["DTYPES", "FORMATS", "ExportError", "export_model"]
