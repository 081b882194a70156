//! The queue message from submit to process.
//!
//! Rendering needs no image pixels, so the message carries everything process
//! needs — image size, landmarks, the label map's PNG, the options — and a render
//! costs one S3 PUT (the SVG). Only inputs too large for a message are put in S3
//! and travel as a reference (claim check).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::input::{ImageInfo, Landmarks, RenderParams};

pub const MESSAGE_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInputs {
    pub image: ImageInfo,
    pub landmarks: Landmarks,
    /// The label map's PNG bytes, base64 (PNG is the most compact form we have).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation_png: Option<String>,
    pub params: RenderParams,
}

impl TaskInputs {
    pub fn new(
        image: ImageInfo,
        landmarks: Landmarks,
        segmentation_png: Option<&[u8]>,
        params: RenderParams,
    ) -> Self {
        TaskInputs {
            image,
            landmarks,
            segmentation_png: segmentation_png
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            params,
        }
    }

    pub fn has_segmentation(&self) -> bool {
        self.segmentation_png.is_some()
    }

    pub fn segmentation_bytes(&self) -> Result<Option<Vec<u8>>, base64::DecodeError> {
        self.segmentation_png
            .as_deref()
            .map(|s| base64::engine::general_purpose::STANDARD.decode(s))
            .transpose()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputsRef {
    Inline { inputs: TaskInputs },
    S3 { key: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub v: u8,
    pub task_id: Uuid,
    pub tenant: String,
    pub input_hash: String,
    pub inputs: InputsRef,
}
