//! Integration tests: the real binary on real Parquet lakes.

mod util;

mod bad_input;
mod case_study;
mod model;
mod sample_data;
