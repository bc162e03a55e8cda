//! What the protocol's resolved settings mean for the pipeline's own option types.

use kiln_protocol::Resolved;
use kiln_sfm::pipeline::PosesOptions;

/// The pose-estimation options `resolved` gives.
pub fn poses_options(resolved: &Resolved) -> PosesOptions {
    let mut options = PosesOptions::default();
    options.sift.max_features = resolved.sift_max_features;
    options.sift.max_image_side = resolved.sift_max_image_side;
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_protocol::{JobSettings, Preset};

    #[test]
    fn the_preset_sets_sift() {
        let resolved = JobSettings::for_preset(Preset::Preview).resolved();
        assert_eq!(poses_options(&resolved).sift.max_features, 4_096);
        assert_eq!(poses_options(&resolved).sift.max_image_side, 1_024);
    }
}
