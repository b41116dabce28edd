//! Exports: labels CSV, predictions CSV, model files (being written).
