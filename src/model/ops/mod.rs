//! One file per operation; each holds its forward and its backward.
