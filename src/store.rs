//! Command-line settings of remote stores, shared by `materialize` and `query`.

use psync_lake_io::{AzureOptions, StoreOptions};

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
    #[command(flatten)]
    azure: AzureArgs,
}

/// Azure settings, for az://, abfss:// and https://<account>.blob.core.windows.net/
/// locations. The AZURE_* environment is read first (AZURE_STORAGE_ACCOUNT_NAME,
/// AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY, AZURE_STORAGE_ENDPOINT,
/// AZURE_ALLOW_HTTP, service principals, managed identity); these flags override it.
#[derive(Clone, clap::Args)]
#[command(next_help_heading = "Azure (read from the AZURE_* environment first)")]
pub struct AzureArgs {
    /// Storage account, when the URL does not name it [env AZURE_STORAGE_ACCOUNT_NAME].
    #[arg(long)]
    azure_account: Option<String>,
    /// The account's shared key [env AZURE_STORAGE_ACCOUNT_KEY].
    #[arg(long)]
    azure_access_key: Option<String>,
    /// A shared access signature (the query string) [env AZURE_STORAGE_SAS_KEY].
    #[arg(long)]
    azure_sas: Option<String>,
    /// Blob endpoint of the account, e.g. http://127.0.0.1:10000/devstoreaccount1 for
    /// Azurite [env AZURE_STORAGE_ENDPOINT].
    #[arg(long)]
    azure_endpoint: Option<String>,
    /// Allow a plain-HTTP endpoint [env AZURE_ALLOW_HTTP].
    #[arg(long)]
    azure_allow_http: bool,
}

impl std::fmt::Debug for AzureArgs {
    // The key and the signature stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("AzureArgs")
            .field("azure_account", &self.azure_account)
            .field("azure_access_key", &secret(&self.azure_access_key))
            .field("azure_sas", &secret(&self.azure_sas))
            .field("azure_endpoint", &self.azure_endpoint)
            .field("azure_allow_http", &self.azure_allow_http)
            .finish()
    }
}

impl StoreArgs {
    /// The store options these flags describe.
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            allow_http: self.s3_allow_http.then_some(true),
            azure: AzureOptions {
                account: self.azure.azure_account.clone(),
                access_key: self.azure.azure_access_key.clone(),
                sas: self.azure.azure_sas.clone(),
                endpoint: self.azure.azure_endpoint.clone(),
                allow_http: self.azure.azure_allow_http.then_some(true),
            },
            ..StoreOptions::default()
        }
        .with_timeouts(self.retries, self.request_timeout, self.connect_timeout)
    }
}
