//! Azure Blob Storage locations: the URL forms, the store's settings (the standard
//! `AZURE_*` environment, then the `--azure-*` overrides), and [`AzureStore`], the
//! Azure store whose renames make the new object visible whole.
//!
//! Why not object_store's own rename: on Azure it is `Copy Blob` and a delete, and
//! Copy Blob may complete asynchronously ("can complete synchronously if the copy
//! occurs within the same storage account" — can, not will). While a copy is
//! pending the destination blob exists but is not yet the whole source (an aborted
//! copy leaves it empty), and a reader opening the view folder by path could see
//! that. object_store does not expose the copy's status, so a rename here writes
//! the target with `Put Blob` (small files) or `Put Block` + `Put Block List`:
//! uploaded blocks stay invisible until the block list is committed, which replaces
//! the blob whole in one step.

use std::fmt;
use std::sync::Arc;

use futures::TryStreamExt;
use futures::stream::BoxStream;
use object_store::azure::{AzureAccessKey, AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ClientOptions, CopyOptions, GetOptions, GetResult, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, RenameOptions, RenameTargetMode, Result, RetryConfig,
};
use url::Url;

use crate::location::StoreOptions;

/// Azure settings given on the command line; each overrides the environment
/// (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`,
/// `AZURE_STORAGE_ENDPOINT`, `AZURE_ALLOW_HTTP`, and the rest object_store reads).
#[derive(Clone, Default)]
pub struct AzureOptions {
    /// The storage account (when the URL does not name one).
    pub account: Option<String>,
    /// The account's shared key (base64).
    pub access_key: Option<String>,
    /// A shared access signature (the query string, with or without its `?`).
    pub sas: Option<String>,
    /// The account's Blob endpoint instead of `https://<account>.blob.core.windows.net`,
    /// e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite.
    pub endpoint: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: Option<bool>,
}

impl fmt::Debug for AzureOptions {
    // Secrets stay out of debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("AzureOptions")
            .field("account", &self.account)
            .field("access_key", &secret(&self.access_key))
            .field("sas", &secret(&self.sas))
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// What an Azure URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureUrl {
    /// The container (a file system, in Data Lake terms).
    pub container: String,
    /// The storage account, when the URL names it (`abfss://c@account...`, `https://account...`).
    pub account: Option<String>,
    /// The root inside the container, without surrounding slashes.
    pub prefix: String,
}

/// Whether `input` is an Azure URL (by its scheme, or an Azure host for `https://`).
pub fn is_azure_url(input: &str) -> bool {
    let Some((scheme, rest)) = input.split_once("://") else {
        return false;
    };
    match scheme.to_ascii_lowercase().as_str() {
        "az" | "azure" | "abfs" | "abfss" => true,
        "https" => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            account_of_host(&host.to_ascii_lowercase()).is_some()
        }
        _ => false,
    }
}

/// The account of an Azure Storage host name (`<account>.blob.core.windows.net`
/// or `<account>.dfs.core.windows.net`).
fn account_of_host(host: &str) -> Option<&str> {
    let (account, domain) = host.split_once('.')?;
    matches!(domain, "blob.core.windows.net" | "dfs.core.windows.net")
        .then_some(account)
        .filter(|a| !a.is_empty())
}

/// Parses the Azure URL forms: `az://container/path`, `azure://container/path`,
/// `abfs[s]://container/path`, `abfs[s]://container@account.dfs.core.windows.net/path`
/// and `https://account.blob.core.windows.net/container/path`.
pub fn parse_url(input: &str) -> std::result::Result<AzureUrl, String> {
    let url = Url::parse(input).map_err(|e| e.to_string())?;
    // The container is the host of az:// URLs, kept as written (an upper-case
    // name is an error, not another container); account domains match in any case.
    let host = url.host_str().unwrap_or_default().to_string();
    let lower = host.to_ascii_lowercase();
    let path: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    let (container, account, prefix) = match url.scheme() {
        "az" | "azure" | "abfs" | "abfss" if url.username().is_empty() => {
            (host.clone(), None, path.join("/"))
        }
        "abfs" | "abfss" => {
            let account = account_of_host(&lower).ok_or_else(|| {
                format!(
                    "'{host}' is not an Azure Storage host (expected \
                     container@<account>.dfs.core.windows.net)"
                )
            })?;
            (
                url.username().to_string(),
                Some(account.to_string()),
                path.join("/"),
            )
        }
        "https" => {
            let account = account_of_host(&lower)
                .ok_or_else(|| format!("'{host}' is not an Azure Storage host"))?;
            let (container, rest) = path
                .split_first()
                .ok_or("no container (expected https://<account>.blob.core.windows.net/<container>/<path>)")?;
            (
                container.to_string(),
                Some(account.to_string()),
                rest.join("/"),
            )
        }
        other => return Err(format!("'{other}://' is not an Azure URL")),
    };
    if container.is_empty() {
        return Err("no container name".into());
    }
    // Azure's rules for container names: 3-63 of lower-case letters, digits and
    // single dashes. Checked here so that a typo is named before any request.
    let valid = (3..=63).contains(&container.len())
        && container
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !container.starts_with('-')
        && !container.ends_with('-')
        && !container.contains("--");
    if !valid {
        return Err(format!(
            "'{container}' is not a valid container name (3-63 lower-case letters, digits and dashes)"
        ));
    }
    Ok(AzureUrl {
        container,
        account,
        prefix,
    })
}

/// The builder for `url`'s container: the `AZURE_*` environment, then `o`'s settings.
/// Each bad setting gives one message naming it.
pub fn builder(
    url: &AzureUrl,
    o: &StoreOptions,
) -> std::result::Result<MicrosoftAzureBuilder, String> {
    builder_from(MicrosoftAzureBuilder::from_env(), url, o)
}

fn builder_from(
    env: MicrosoftAzureBuilder,
    url: &AzureUrl,
    o: &StoreOptions,
) -> std::result::Result<MicrosoftAzureBuilder, String> {
    let a = &o.azure;
    let value = |b: &MicrosoftAzureBuilder, k: AzureConfigKey| b.get_config_value(&k);
    let emulator = value(&env, AzureConfigKey::UseEmulator).is_some_and(|v| v == "true");
    // The environment's AZURE_ALLOW_HTTP lives in the client options that are
    // replaced below, so it is read first.
    let env_http = value(&env, AzureConfigKey::Client(ClientConfigKey::AllowHttp))
        .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let mut b = env.with_container_name(&url.container);
    match (&url.account, &a.account) {
        (Some(named), Some(flag)) if named != flag => {
            return Err(format!(
                "the URL names account '{named}' but --azure-account is '{flag}'"
            ));
        }
        (Some(account), _) | (None, Some(account)) => b = b.with_account(account),
        (None, None) => {}
    }
    if !emulator && value(&b, AzureConfigKey::AccountName).is_none_or(|v| v.is_empty()) {
        return Err("no storage account: name it in the URL \
                    (abfss://<container>@<account>.dfs.core.windows.net/<path>), \
                    with --azure-account or AZURE_STORAGE_ACCOUNT_NAME"
            .into());
    }
    if let Some(key) = &a.access_key {
        b = b.with_access_key(key);
    }
    if let Some(key) = value(&b, AzureConfigKey::AccessKey) {
        let from = match a.access_key {
            Some(_) => "--azure-access-key",
            None => "AZURE_STORAGE_ACCOUNT_KEY",
        };
        AzureAccessKey::try_new(&key)
            .map_err(|e| format!("{from} is not an account key (base64): {e}"))?;
    }
    if let Some(sas) = &a.sas {
        b = b.with_config(AzureConfigKey::SasKey, sas);
    }
    if let Some(sas) = value(&b, AzureConfigKey::SasKey) {
        let from = match a.sas {
            Some(_) => "--azure-sas",
            None => "AZURE_STORAGE_SAS_KEY",
        };
        check_sas(&sas).map_err(|why| format!("{from} is not a shared access signature: {why}"))?;
    }
    if let Some(endpoint) = &a.endpoint {
        if emulator {
            return Err("--azure-endpoint does not apply with AZURE_STORAGE_USE_EMULATOR \
                        (object_store then reads the emulator's address from AZURITE_BLOB_STORAGE_URL)"
                .into());
        }
        b = b.with_endpoint(endpoint.clone());
    }
    if let Some(endpoint) = value(&b, AzureConfigKey::Endpoint) {
        let from = match a.endpoint {
            Some(_) => "--azure-endpoint",
            None => "AZURE_STORAGE_ENDPOINT",
        };
        let parsed = Url::parse(&endpoint).map_err(|e| format!("{from} '{endpoint}': {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{from} '{endpoint}' is not an http(s) URL"));
        }
    }
    Ok(b.with_retry(RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: o.retries,
        retry_timeout: o.retry_timeout,
    })
    .with_client_options(
        ClientOptions::new()
            .with_timeout(o.timeout)
            .with_connect_timeout(o.connect_timeout)
            .with_allow_http(a.allow_http.unwrap_or(env_http)),
    ))
}

/// The same checks object_store makes when it splits a SAS into query pairs, so
/// that a bad one is named before the store is built.
fn check_sas(sas: &str) -> std::result::Result<(), String> {
    let pairs: Vec<&str> = sas
        .trim()
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.trim().is_empty())
        .collect();
    if pairs.is_empty() {
        return Err("it is empty".into());
    }
    // The part itself is not shown: it may be (a piece of) the signature.
    match pairs.iter().position(|p| !p.contains('=')) {
        Some(i) => Err(format!(
            "part {} of {} is not a key=value pair",
            i + 1,
            pairs.len()
        )),
        None => Ok(()),
    }
}

/// `text` with the signature of any SAS in it (`sig=...` in a URL's query, as
/// object_store's request errors show it) replaced by `REDACTED`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sig=") {
        // Only a query parameter: `?sig=` or `&sig=`.
        let is_param = i > 0 && matches!(rest.as_bytes()[i - 1], b'?' | b'&');
        let (head, tail) = rest.split_at(i + 4);
        out.push_str(head);
        rest = tail;
        if is_param {
            let end = rest
                .find(|c: char| c == '&' || c == '#' || c == '"' || c == '\'' || c.is_whitespace())
                .unwrap_or(rest.len());
            out.push_str("REDACTED");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// The account a built store talks to (for its name in messages and DataFusion's
/// registry): the configured one, or the emulator's.
pub fn account(b: &MicrosoftAzureBuilder) -> String {
    b.get_config_value(&AzureConfigKey::AccountName)
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "devstoreaccount1".into())
}

/// object_store's Azure store, with renames that replace the target whole (see
/// the module docs). Every other operation is object_store's.
#[derive(Debug)]
pub struct AzureStore {
    inner: Arc<MicrosoftAzure>,
}

impl AzureStore {
    /// Wraps a built store.
    pub fn new(inner: MicrosoftAzure) -> Self {
        AzureStore {
            inner: Arc::new(inner),
        }
    }

    /// Writes `from`'s bytes to `to` as one new blob: a single `Put Blob` for a
    /// small object, else blocks committed by one `Put Block List`.
    async fn rewrite(&self, from: &Path, to: &Path) -> Result<()> {
        let got = self.inner.get(from).await?;
        let store: Arc<dyn ObjectStore> = self.inner.clone();
        let mut writer = BufWriter::new(store, to.clone());
        let mut chunks = got.into_stream();
        let written = async {
            while let Some(chunk) = chunks.try_next().await? {
                writer.put(chunk).await?;
            }
            Ok::<_, object_store::Error>(())
        }
        .await;
        match written {
            Ok(()) => {
                use tokio::io::AsyncWriteExt;
                writer.shutdown().await.map_err(|e| from_io(to, e))
            }
            Err(e) => {
                // Uncommitted blocks are invisible and Azure drops them; this
                // only stops the upload.
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }
}

/// object_store's `BufWriter` reports through `std::io`; its object_store error
/// (when that is what failed) is kept.
fn from_io(path: &Path, e: std::io::Error) -> object_store::Error {
    match e.downcast::<object_store::Error>() {
        Ok(inner) => inner,
        Err(e) => object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: format!("writing {path}: {e}").into(),
        },
    }
}

impl fmt::Display for AzureStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AzureStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for AzureStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        match options.target_mode {
            RenameTargetMode::Overwrite => {
                self.rewrite(from, to).await?;
                self.inner.delete(from).await
            }
            // Only an empty target can be created, so no reader sees it change.
            RenameTargetMode::Create => self.inner.rename_opts(from, to, options).await,
        }
    }
}

/// Standard error with SAS signatures redacted: log lines quote object_store's
/// errors, whose request URLs carry a SAS (the subscriber writes a line at once).
pub struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(container: &str, account: Option<&str>, prefix: &str) -> AzureUrl {
        AzureUrl {
            container: container.into(),
            account: account.map(Into::into),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn the_url_forms() {
        for (input, expected) in [
            ("az://lake/ps/segment/", url("lake", None, "ps/segment")),
            ("azure://lake/ps", url("lake", None, "ps")),
            ("abfs://lake", url("lake", None, "")),
            (
                "abfss://lake@acct.dfs.core.windows.net/ps/segment",
                url("lake", Some("acct"), "ps/segment"),
            ),
            (
                "abfss://lake@acct.blob.core.windows.net/ps",
                url("lake", Some("acct"), "ps"),
            ),
            (
                "https://acct.blob.core.windows.net/lake/ps/segment",
                url("lake", Some("acct"), "ps/segment"),
            ),
            (
                "https://ACCT.dfs.core.windows.net/lake",
                url("lake", Some("acct"), ""),
            ),
        ] {
            assert!(is_azure_url(input), "{input}");
            assert_eq!(parse_url(input).as_ref(), Ok(&expected), "{input}");
        }
        assert!(!is_azure_url("https://example.com/lake/x"));
        assert!(!is_azure_url("s3://lake/x"));
        assert!(!is_azure_url("/tmp/az://x"));
    }

    #[test]
    fn bad_urls_are_named() {
        for (input, needle) in [
            ("az:///ps", "no container"),
            ("az://Lake/ps", "'Lake' is not a valid container name"),
            ("az://my_lake/ps", "not a valid container name"),
            ("az://ab/ps", "not a valid container name"),
            (
                "abfss://lake@acct.example.com/ps",
                "not an Azure Storage host",
            ),
            ("https://acct.blob.core.windows.net/", "no container"),
        ] {
            let e = parse_url(input).unwrap_err();
            assert!(e.contains(needle), "{input}: {e}");
        }
    }

    fn options(a: AzureOptions) -> StoreOptions {
        StoreOptions {
            azure: a,
            ..Default::default()
        }
    }

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[test]
    fn flags_override_the_environment() {
        let env = MicrosoftAzureBuilder::new()
            .with_account("fromenv")
            .with_access_key("ZW52")
            .with_config(AzureConfigKey::Client(ClientConfigKey::AllowHttp), "true");
        let b = builder_from(
            env,
            &url("lake", None, "ps"),
            &options(AzureOptions {
                account: Some("fromflag".into()),
                access_key: Some(KEY.into()),
                endpoint: Some("http://127.0.0.1:10000/fromflag".into()),
                ..Default::default()
            }),
        )
        .unwrap();
        let get = |k| b.get_config_value(&k);
        assert_eq!(
            get(AzureConfigKey::AccountName).as_deref(),
            Some("fromflag")
        );
        assert_eq!(get(AzureConfigKey::AccessKey).as_deref(), Some(KEY));
        assert_eq!(get(AzureConfigKey::ContainerName).as_deref(), Some("lake"));
        assert_eq!(
            get(AzureConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:10000/fromflag")
        );
        // The environment's AZURE_ALLOW_HTTP survives the replaced client options.
        assert_eq!(
            get(AzureConfigKey::Client(ClientConfigKey::AllowHttp)).as_deref(),
            Some("true")
        );
        assert_eq!(
            get(AzureConfigKey::Client(ClientConfigKey::ConnectTimeout)).as_deref(),
            Some("5s")
        );
        assert!(b.build().is_ok());
    }

    #[test]
    fn the_urls_account_wins_over_the_environment() {
        let env = MicrosoftAzureBuilder::new().with_account("fromenv");
        let b = builder_from(
            env,
            &url("lake", Some("named"), ""),
            &options(AzureOptions {
                sas: Some("?sv=2022-11-02&sig=abc%3D".into()),
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(
            b.get_config_value(&AzureConfigKey::AccountName).as_deref(),
            Some("named")
        );
        assert_eq!(
            b.get_config_value(&AzureConfigKey::SasKey).as_deref(),
            Some("?sv=2022-11-02&sig=abc%3D")
        );
        assert_eq!(account(&b), "named");
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let named = url("lake", Some("named"), "");
        let cases: Vec<(MicrosoftAzureBuilder, AzureUrl, AzureOptions, &str)> = vec![
            (
                MicrosoftAzureBuilder::new(),
                url("lake", None, ""),
                AzureOptions::default(),
                "--azure-account or AZURE_STORAGE_ACCOUNT_NAME",
            ),
            (
                MicrosoftAzureBuilder::new(),
                named.clone(),
                AzureOptions {
                    account: Some("other".into()),
                    ..Default::default()
                },
                "--azure-account is 'other'",
            ),
            (
                MicrosoftAzureBuilder::new(),
                named.clone(),
                AzureOptions {
                    access_key: Some("not base64!".into()),
                    ..Default::default()
                },
                "--azure-access-key is not an account key",
            ),
            (
                MicrosoftAzureBuilder::new().with_access_key("not base64!"),
                named.clone(),
                AzureOptions::default(),
                "AZURE_STORAGE_ACCOUNT_KEY is not an account key",
            ),
            (
                MicrosoftAzureBuilder::new(),
                named.clone(),
                AzureOptions {
                    sas: Some("sv=1&broken".into()),
                    ..Default::default()
                },
                "--azure-sas is not a shared access signature: part 2 of 2",
            ),
            (
                MicrosoftAzureBuilder::new(),
                named.clone(),
                AzureOptions {
                    endpoint: Some("127.0.0.1:10000".into()),
                    ..Default::default()
                },
                "--azure-endpoint '127.0.0.1:10000'",
            ),
            (
                MicrosoftAzureBuilder::new().with_use_emulator(true),
                named.clone(),
                AzureOptions {
                    endpoint: Some("http://127.0.0.1:1".into()),
                    ..Default::default()
                },
                "AZURITE_BLOB_STORAGE_URL",
            ),
        ];
        for (env, u, a, needle) in cases {
            let e = builder_from(env, &u, &options(a)).err().unwrap_or_default();
            assert!(e.contains(needle), "expected {needle:?} in {e:?}");
        }
    }

    #[test]
    fn signatures_are_redacted_from_messages() {
        let e = "Error performing POST http://h/acct/c?restype=container&comp=batch&sv=2019-12-12\
                 &sig=JmBK%2FQCM8h4%3D in 5ms - 500; https://h/x?sig=abc&sp=r; design=1";
        let r = redact(e);
        assert!(!r.contains("JmBK") && !r.contains("abc&"), "{r}");
        assert!(
            r.contains("&sig=REDACTED in 5ms") && r.contains("?sig=REDACTED&sp=r"),
            "{r}"
        );
        assert!(r.contains("design=1"), "only query parameters: {r}");
        assert_eq!(redact("no secrets here"), "no secrets here");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let a = AzureOptions {
            access_key: Some("SECRETKEY".into()),
            sas: Some("sig=SECRETSAS".into()),
            ..Default::default()
        };
        let shown = format!("{a:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
