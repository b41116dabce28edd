//! The learning curve: per-round scores on held-out and oracle labels (being written).
