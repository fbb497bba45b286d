//! Integration tests: the real binary on real Parquet lakes.

mod util;

mod azure;
mod bad_input;
mod case_study;
mod delta_output;
mod explain;
mod faults;
mod health;
mod history;
mod incremental;
mod lease;
mod memory;
mod model;
mod pack;
mod personas;
mod query;
mod remote;
mod resolved;
mod s3;
mod sample_data;
mod status;
