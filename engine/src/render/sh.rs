//! Real spherical harmonics to degree 3 in the 3DGS convention: evaluation and its backward pass.
