//! Command-line settings of remote stores, shared by `materialize` and `query`.

use std::time::Duration;

use psync_lake_io::StoreOptions;

/// S3 settings. The standard AWS environment is read first (AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL or
/// AWS_ENDPOINT, AWS_ALLOW_HTTP); these flags override it.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "S3 (read from the AWS_* environment first)")]
pub struct StoreArgs {
    /// S3 endpoint, e.g. http://127.0.0.1:5000 for an S3-compatible server [env AWS_ENDPOINT_URL].
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// S3 region [env AWS_REGION].
    #[arg(long)]
    s3_region: Option<String>,
    /// Allow a plain-HTTP endpoint [env AWS_ALLOW_HTTP].
    #[arg(long)]
    s3_allow_http: bool,
    /// Retries of a failed request (transient errors only).
    #[arg(long, default_value_t = 3)]
    retries: usize,
    /// Seconds before one request times out.
    #[arg(long, default_value_t = 60)]
    request_timeout: u64,
    /// Seconds before connecting to the endpoint times out.
    #[arg(long, default_value_t = 5)]
    connect_timeout: u64,
}

impl StoreArgs {
    /// The store options these flags describe.
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            allow_http: self.s3_allow_http.then_some(true),
            retries: self.retries,
            retry_timeout: Duration::from_secs(self.request_timeout.max(1) / 2 + 1),
            timeout: Duration::from_secs(self.request_timeout.max(1)),
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
        }
    }
}
