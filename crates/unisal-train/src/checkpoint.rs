//! Checkpoints: both networks as safetensors files with their SHA-256, plus a JSON model card (architecture,
//! classes, normalisation, input size, round, metrics, the effective config and the files' hashes).
//!
//! Files are written under temporary names and renamed into place, card last, so a crash never leaves a card
//! that points at half-written weights. [`load_pair`] verifies every hash before loading.

use crate::augment::{MEAN, STD};
use crate::error::{Result, TrainError};
use crate::models::{NetConfig, Network};
use crate::trainer::{arch_of, Pair};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use unisal_core::learner::{CheckpointFile, TrainConfig};

/// File name of network A's weights.
pub const FILE_A: &str = "network_a.safetensors";
/// File name of network B's weights.
pub const FILE_B: &str = "network_b.safetensors";
/// File name of the model card.
pub const FILE_CARD: &str = "model_card.json";
/// Format tag of the card.
pub const CARD_FORMAT: &str = "unisal-model-card/1";

/// What the card records besides the networks.
#[derive(Debug, Clone, Copy)]
pub struct CardInputs<'a> {
    pub config: &'a TrainConfig,
    pub class_names: &'a [String],
    pub round: u32,
    pub metrics: &'a [(String, f64)],
}

/// Input preparation a user of the exported model must reproduce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Pixel values are scaled to [0, 1] before the normalisation.
    pub scale: String,
    pub layout: String,
}

/// A weights file listed in the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardFile {
    pub role: String,
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The JSON model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub architecture: String,
    pub num_classes: usize,
    pub class_names: Vec<String>,
    pub normalisation: Normalisation,
    /// Shorter side the images are resized to; the evaluation view is this, uncropped.
    pub input_size: u32,
    /// Side of the training crop.
    pub train_crop: u32,
    pub round: u32,
    pub metrics: Vec<(String, f64)>,
    /// How to predict: the logits of A and B averaged, then argmax.
    pub ensemble: String,
    pub config: TrainConfig,
    pub files: Vec<CardFile>,
    pub created_by: String,
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| TrainError::Io { path: path.to_path_buf(), source })?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

fn tmp_name(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Saves A, B and the card into `dir` (created if needed); returns the three files with their hashes.
pub fn save_pair(pair: &Pair, dir: &Path, card: &CardInputs<'_>) -> Result<Vec<CheckpointFile>> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut files = Vec::new();
    let mut card_files = Vec::new();
    for (role, name, net) in [("a", FILE_A, &pair.a), ("b", FILE_B, &pair.b)] {
        let path = dir.join(name);
        let tmp = tmp_name(&path);
        net.save_safetensors(&tmp)?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        let sha256 = sha256_file(&path)?;
        let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
        card_files.push(CardFile { role: role.into(), file: name.into(), sha256: sha256.clone(), bytes });
        files.push(CheckpointFile { role: role.into(), path, sha256, bytes });
    }
    let model_card = ModelCard {
        format: CARD_FORMAT.into(),
        architecture: card.config.arch.name().into(),
        num_classes: card.class_names.len(),
        class_names: card.class_names.to_vec(),
        normalisation: Normalisation {
            mean: MEAN,
            std: STD,
            scale: "RGB8 / 255".into(),
            layout: "NCHW float32, RGB".into(),
        },
        input_size: card.config.resize,
        train_crop: card.config.crop,
        round: card.round,
        metrics: card.metrics.to_vec(),
        ensemble: "argmax of (logits_a + logits_b) / 2".into(),
        config: card.config.clone(),
        files: card_files,
        created_by: format!("unisal-train {}", env!("CARGO_PKG_VERSION")),
    };
    let path = dir.join(FILE_CARD);
    let text = serde_json::to_string_pretty(&model_card)
        .map_err(|e| TrainError::Card { path: path.clone(), reason: e.to_string() })?;
    let tmp = tmp_name(&path);
    std::fs::write(&tmp, text.as_bytes()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    let sha256 = sha256_file(&path)?;
    files.push(CheckpointFile { role: "card".into(), path, sha256, bytes: text.len() as u64 });
    Ok(files)
}

/// Reads a card.
pub fn read_card(dir: &Path) -> Result<ModelCard> {
    let path = dir.join(FILE_CARD);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let card: ModelCard = serde_json::from_str(&text)
        .map_err(|e| TrainError::Card { path: path.clone(), reason: e.to_string() })?;
    if card.format != CARD_FORMAT {
        return Err(TrainError::Card { path, reason: format!("unknown format '{}'", card.format) });
    }
    Ok(card)
}

/// Loads a saved pair onto `device`, after checking every file's SHA-256 against the card.
pub fn load_pair(dir: &Path, device: &Device) -> Result<(Pair, ModelCard)> {
    let card = read_card(dir)?;
    let arch = arch_of(card.config.arch);
    let mut nets = Vec::new();
    for role in ["a", "b"] {
        let entry = card.files.iter().find(|f| f.role == role).ok_or_else(|| TrainError::Card {
            path: dir.join(FILE_CARD),
            reason: format!("no file for network {role}"),
        })?;
        let path = dir.join(&entry.file);
        let actual = sha256_file(&path)?;
        if actual != entry.sha256 {
            return Err(TrainError::Card {
                path,
                reason: format!("SHA-256 {actual} does not match the card's {}", entry.sha256),
            });
        }
        let base = NetConfig::new(arch, card.num_classes, 0);
        let width = card.config.width.unwrap_or(base.width);
        let net = Network::new(&NetConfig { width, ..base }, device)?;
        net.load_safetensors(&path)?;
        nets.push(net);
    }
    let b = nets.pop().ok_or(TrainError::NotTrained)?;
    let a = nets.pop().ok_or(TrainError::NotTrained)?;
    Ok((Pair { a, b }, card))
}
