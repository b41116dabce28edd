//! Plain data types the pool reads and writes.

use serde::{Deserialize, Serialize};

/// A patch's id in its pool.
pub type PatchId = i64;
/// A class's id in its pool (stable across renames and reordering).
pub type ClassId = i64;

/// A class of the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Class {
    /// Stable id.
    pub id: ClassId,
    /// Unique name.
    pub name: String,
    /// Display colour, `#rrggbb`.
    pub color: String,
    /// Keyboard shortcut (one character or key name), when set.
    pub hotkey: Option<String>,
    /// 0-based position in the class list; also the class index networks are trained with.
    pub position: i64,
}

/// Who gave a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelSource {
    /// The pathologist, in the app or the CLI.
    Human,
    /// A label column or class folder at import time.
    Imported,
    /// The simulation's oracle answering a query.
    Oracle,
}

impl LabelSource {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelSource::Human => "human",
            LabelSource::Imported => "imported",
            LabelSource::Oracle => "oracle",
        }
    }
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "imported" => LabelSource::Imported,
            "oracle" => LabelSource::Oracle,
            _ => LabelSource::Human,
        }
    }
}

/// How a label given at import time is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportLabel {
    /// As the patch's real (training) label, source `imported`.
    Real(ClassId),
    /// As a hidden oracle label, read only by simulation.
    Oracle(ClassId),
}

/// One patch to insert, already decoded, validated and hashed by the importer.
#[derive(Debug, Clone)]
pub struct NewPatch {
    /// SHA-256 of the original file bytes, lowercase hex (64 characters).
    pub sha256: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Where it came from (information only: a pool never reads it back).
    pub source_path: String,
    /// Slide, patient or other group.
    pub group: Option<String>,
    /// Format of `image`: `png` or `jpeg`.
    pub format: String,
    /// Format of the original file: `png`, `jpeg` or `tiff`.
    pub source_format: String,
    /// A note on conversion (16-bit, TIFF re-encoded), if any.
    pub note: Option<String>,
    /// The encoded image bytes stored in the pool.
    pub image: Vec<u8>,
    /// Format of `thumbnail`: `jpeg` or `png`.
    pub thumbnail_format: String,
    /// A small encoded thumbnail (about 96 px on the longer side).
    pub thumbnail: Vec<u8>,
    /// A label to record with the patch.
    pub label: Option<ImportLabel>,
}

/// What happened to one [`NewPatch`] of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InsertOutcome {
    /// Stored under this id.
    Inserted(PatchId),
    /// A patch with the same content hash was already there (this id); nothing was changed.
    Duplicate(PatchId),
}

/// Which patches a page lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchFilter {
    /// Label condition.
    pub label: LabelFilter,
    /// Only this group, when set.
    pub group: Option<String>,
}

/// Label condition of a [`PatchFilter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelFilter {
    /// Every patch.
    #[default]
    Any,
    /// Patches with a current label.
    Labeled,
    /// Patches without one.
    Unlabeled,
    /// Patches currently labeled with this class.
    Class(ClassId),
}

/// One row of [`crate::Pool::page_patches`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchSummary {
    /// Patch id.
    pub id: PatchId,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Original path (information only).
    pub source_path: String,
    /// Group, when known.
    pub group: Option<String>,
    /// Current label, when labeled.
    pub label: Option<ClassId>,
}

/// An encoded image with its format (`png` or `jpeg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedImage {
    /// `png` or `jpeg`.
    pub format: String,
    /// The encoded bytes.
    pub data: Vec<u8>,
}

impl EncodedImage {
    /// The MIME type of the bytes.
    pub fn mime(&self) -> &'static str {
        if self.format == "png" {
            "image/png"
        } else {
            "image/jpeg"
        }
    }
}

/// Counts for the status line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Patches in the pool.
    pub patches: u64,
    /// Patches with a current label.
    pub labeled: u64,
    /// Patches without one.
    pub unlabeled: u64,
    /// Patches with a hidden oracle label.
    pub oracle_labeled: u64,
    /// Every class in position order, with its number of labeled patches.
    pub classes: Vec<(Class, u64)>,
    /// Rounds finished (status `done`).
    pub rounds: u64,
}

/// One entry of a patch's label history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelEvent {
    /// Event id (increasing).
    pub id: i64,
    /// The patch.
    pub patch_id: PatchId,
    /// The label after the event (`None`: cleared).
    pub class_id: Option<ClassId>,
    /// The label before the event.
    pub previous: Option<ClassId>,
    /// Who gave it.
    pub source: LabelSource,
    /// Round during which it was given, when any.
    pub round: Option<i64>,
    /// The event this one undid, for an undo.
    pub undoes: Option<i64>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The effect of a label change: the patch and its label before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelChange {
    /// The patch.
    pub patch_id: PatchId,
    /// Label before.
    pub before: Option<ClassId>,
    /// Label after.
    pub after: Option<ClassId>,
    /// The event recording it.
    pub event_id: i64,
}

/// A patch's current label with where it came from (for exports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentLabel {
    /// The patch.
    pub patch_id: PatchId,
    /// Its original path (information only).
    pub source_path: String,
    /// Its group, when known.
    pub group: Option<String>,
    /// The class.
    pub class_id: ClassId,
    /// Who gave the label.
    pub source: LabelSource,
    /// Round during which it was given, when any.
    pub round: Option<i64>,
    /// Unix milliseconds of the last change.
    pub updated_at: i64,
}
