//! Unsure / second-look flags on patches (being written).
