//! Initial splats: from a sparse point cloud when one exists, else random inside the region the
//! cameras look at.
