//! `patches`' `grid.json`: the image geometry every later stage reads.

/// The geometry every later stage reads from `grid.json`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Grid {
    pub image_size: u32,
    pub grid: u32,
    pub patch_size: u32,
    pub masked_patches: u32,
    /// "stretch" or "pad".
    pub fit_pad: bool,
}

impl Grid {
    pub fn patches(&self) -> usize {
        (self.grid * self.grid) as usize
    }

    pub fn read(dir: &std::path::Path) -> crate::Result<Grid> {
        let p = dir.join("grid.json");
        let text = std::fs::read_to_string(&p).map_err(|e| crate::Error::io(&p, e))?;
        serde_json::from_str(&text).map_err(|e| crate::Error::input(&p, e.to_string()))
    }

    pub fn fit(&self) -> crate::images::Fit {
        if self.fit_pad {
            crate::images::Fit::Pad
        } else {
            crate::images::Fit::Stretch
        }
    }
}
