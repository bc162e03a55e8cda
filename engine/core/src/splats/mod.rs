//! The Gaussian-splat model: parameters in the form the optimiser works on, plus I/O and
//! initialisation.
//!
//! Parameters are stored structure-of-arrays, in the same activation-free form as the standard
//! 3DGS PLY layout: positions, log-scales, (not necessarily normalised) quaternions `w, x, y, z`,
//! logit opacity, and spherical-harmonic coefficients to degree 3.

pub mod ply;

/// Coefficients per colour channel for SH degree 3: `(3 + 1)²`.
pub const SH_COEFFS: usize = 16;
/// Highest spherical-harmonic degree stored (the 3DGS PLY layout has room for exactly this).
pub const MAX_SH_DEGREE: u32 = 3;
/// `C0 = 1 / (2√π)`: the degree-0 SH basis function. `rgb = C0 * f_dc + 0.5`.
pub const SH_C0: f32 = 0.282_094_8;

/// SH coefficients of one splat, `[coefficient][channel]`. Coefficient 0 is the DC term
/// (`f_dc_*` in PLY); 1..16 are `f_rest_*`, in increasing degree and the usual real-SH order.
pub type ShCoeffs = [[f32; 3]; SH_COEFFS];

/// A set of 3D Gaussians.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Splats {
    /// Centres, world frame.
    pub means: Vec<[f32; 3]>,
    /// Natural log of the standard deviations along the local axes.
    pub log_scales: Vec<[f32; 3]>,
    /// Orientation quaternions `[w, x, y, z]`, normalised on use.
    pub rotations: Vec<[f32; 4]>,
    /// Opacity before the sigmoid.
    pub opacity_logits: Vec<f32>,
    /// Spherical harmonics; always allocated to degree 3, used up to `sh_degree`.
    pub sh: Vec<ShCoeffs>,
    /// Active SH degree (0..=3): grown progressively during training.
    pub sh_degree: u32,
}

/// A [`Splats`] that breaks its own invariants.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplatsError {
    /// A parameter field without exactly one entry per mean.
    #[error("splat field {field} has {got} entries but there are {expected} means")]
    FieldLength { field: &'static str, got: usize, expected: usize },
    #[error("splat SH degree {degree} is above the maximum {MAX_SH_DEGREE}")]
    ShDegree { degree: u32 },
}

impl Splats {
    pub fn len(&self) -> usize {
        self.means.len()
    }

    /// Checks that every field has one entry per mean and that the SH degree is at most
    /// [`MAX_SH_DEGREE`]: what a renderer or writer indexes by without further checks.
    pub fn validate(&self) -> Result<(), SplatsError> {
        let expected = self.len();
        for (field, got) in [
            ("log_scales", self.log_scales.len()),
            ("rotations", self.rotations.len()),
            ("opacity_logits", self.opacity_logits.len()),
            ("sh", self.sh.len()),
        ] {
            if got != expected {
                return Err(SplatsError::FieldLength { field, got, expected });
            }
        }
        if self.sh_degree > MAX_SH_DEGREE {
            return Err(SplatsError::ShDegree { degree: self.sh_degree });
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.means.is_empty()
    }

    /// Appends one splat.
    pub fn push(&mut self, mean: [f32; 3], log_scale: [f32; 3], rotation: [f32; 4], opacity_logit: f32, sh: ShCoeffs) {
        self.means.push(mean);
        self.log_scales.push(log_scale);
        self.rotations.push(rotation);
        self.opacity_logits.push(opacity_logit);
        self.sh.push(sh);
    }

    /// Keeps the splats for which `keep(i)` is true, in order.
    pub fn retain_indices(&mut self, keep: impl Fn(usize) -> bool) {
        fn filter<T: Copy>(v: &mut Vec<T>, keep: &impl Fn(usize) -> bool) {
            let mut i = 0;
            v.retain(|_| {
                let k = keep(i);
                i += 1;
                k
            });
        }
        filter(&mut self.means, &keep);
        filter(&mut self.log_scales, &keep);
        filter(&mut self.rotations, &keep);
        filter(&mut self.opacity_logits, &keep);
        filter(&mut self.sh, &keep);
    }
}

/// Gradients of a scalar loss with respect to every [`Splats`] parameter, same layout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SplatGrads {
    pub means: Vec<[f32; 3]>,
    pub log_scales: Vec<[f32; 3]>,
    pub rotations: Vec<[f32; 4]>,
    pub opacity_logits: Vec<f32>,
    pub sh: Vec<ShCoeffs>,
}

impl SplatGrads {
    pub fn zeros(n: usize) -> Self {
        Self {
            means: vec![[0.0; 3]; n],
            log_scales: vec![[0.0; 3]; n],
            rotations: vec![[0.0; 4]; n],
            opacity_logits: vec![0.0; n],
            sh: vec![[[0.0; 3]; SH_COEFFS]; n],
        }
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_first_field_of_the_wrong_length_and_a_degree_too_high() {
        let mut splats = Splats::default();
        splats.push([0.0; 3], [0.0; 3], [1.0, 0.0, 0.0, 0.0], 0.0, [[0.0; 3]; SH_COEFFS]);
        assert_eq!(splats.validate(), Ok(()));
        splats.opacity_logits.push(0.5);
        assert_eq!(splats.validate(), Err(SplatsError::FieldLength { field: "opacity_logits", got: 2, expected: 1 }));
        splats.opacity_logits.pop();
        splats.sh_degree = MAX_SH_DEGREE + 1;
        assert_eq!(splats.validate(), Err(SplatsError::ShDegree { degree: MAX_SH_DEGREE + 1 }));
    }
}
