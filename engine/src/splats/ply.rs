//! The standard 3DGS PLY layout (INRIA, gsplat, Brush): read and write.
