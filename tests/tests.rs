//! Integration tests: the real binary on real Parquet lakes.

mod util;

mod bad_input;
mod case_study;
mod faults;
mod incremental;
mod model;
mod query;
mod s3;
mod sample_data;
