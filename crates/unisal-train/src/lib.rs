//! unisal-train: candle models, data pipeline and the UniSAL dual-network trainer.
