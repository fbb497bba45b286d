//! Where a lake (or a destination) lives: a local path or `file://` URL, turned
//! into an [`ObjectStore`] plus a prefix inside it, so that every read and write
//! goes through `object_store`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use url::Url;

use crate::azure::{self, AzureOptions, AzureStore};
use crate::error::{LakeError, Result};
use crate::local::LocalStore;

/// A root folder in some object store.
#[derive(Debug, Clone)]
pub struct Location {
    /// The location as the user wrote it, for messages.
    pub display: String,
    /// The store that holds it.
    pub store: Arc<dyn ObjectStore>,
    /// The URL DataFusion knows the store by (e.g. `file://`).
    pub store_url: ObjectStoreUrl,
    /// The root inside the store.
    pub prefix: Path,
    /// The local directory, when the store is the local file system.
    pub local_dir: Option<PathBuf>,
}

/// Settings for remote stores. S3 reads the standard environment first
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`), Azure the `AZURE_*`
/// environment; these override it.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// S3 endpoint, e.g. `http://127.0.0.1:5000` for an S3-compatible server.
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// Allow plain HTTP endpoints.
    pub allow_http: Option<bool>,
    /// Retries of a failed request (transient errors only).
    pub retries: usize,
    /// Give up retrying a request after this long.
    pub retry_timeout: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Azure settings.
    pub azure: AzureOptions,
}

impl StoreOptions {
    /// These options with `retries` and the timeouts given in whole seconds (as
    /// `--request-timeout` / `--connect-timeout`): retrying one request gives up
    /// after half its timeout (plus a second).
    pub fn with_timeouts(self, retries: usize, request_secs: u64, connect_secs: u64) -> Self {
        StoreOptions {
            retries,
            retry_timeout: Duration::from_secs(request_secs.max(1) / 2 + 1),
            timeout: Duration::from_secs(request_secs.max(1)),
            connect_timeout: Duration::from_secs(connect_secs.max(1)),
            ..self
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            endpoint: None,
            region: None,
            allow_http: None,
            retries: 3,
            retry_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            azure: AzureOptions::default(),
        }
    }
}

impl Location {
    /// Parses a local path or `file://` URL, `s3://bucket/prefix` or an Azure URL
    /// (`az://container/prefix` and the other forms of [`azure::parse_url`]) with
    /// the default [`StoreOptions`].
    pub fn parse(input: &str) -> Result<Self> {
        Self::parse_with(input, &StoreOptions::default())
    }

    /// Parses a location, building remote stores with `options`.
    pub fn parse_with(input: &str, options: &StoreOptions) -> Result<Self> {
        let err = |reason: String| LakeError::Location {
            location: input.to_string(),
            reason,
        };
        if input.trim().is_empty() {
            return Err(err("empty location".into()));
        }
        if let Some(scheme_end) = input.find("://") {
            let scheme = &input[..scheme_end];
            if scheme == "s3" || scheme == "s3a" {
                return Self::s3(input, options);
            }
            if azure::is_azure_url(input) {
                return Self::azure(input, options);
            }
            if scheme != "file" {
                return Err(err(format!(
                    "unsupported scheme '{scheme}://' (use a local path, file://, s3:// \
                     or az://, abfss://, https://<account>.blob.core.windows.net/)"
                )));
            }
            let url = Url::parse(input).map_err(|e| err(e.to_string()))?;
            let path = url
                .to_file_path()
                .map_err(|_| err("not a local file URL".into()))?;
            return Self::local(input, &path);
        }
        Self::local(input, FsPath::new(input))
    }

    fn s3(input: &str, o: &StoreOptions) -> Result<Self> {
        let err = |reason: String| LakeError::Location {
            location: input.to_string(),
            reason,
        };
        let url = Url::parse(input).map_err(|e| err(e.to_string()))?;
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| err("no bucket name".into()))?;
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: o.retries,
                retry_timeout: o.retry_timeout,
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(o.timeout)
                    .with_connect_timeout(o.connect_timeout),
            );
        if let Some(e) = &o.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &o.region {
            b = b.with_region(r);
        }
        // Client options replace the ones `from_env` read, so AWS_ALLOW_HTTP is
        // applied again here.
        let env_http = std::env::var("AWS_ALLOW_HTTP")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        b = b.with_allow_http(o.allow_http.unwrap_or(env_http));
        let store = b.build().map_err(|e| err(e.to_string()))?;
        let store_url =
            ObjectStoreUrl::parse(format!("s3://{bucket}")).map_err(|e| err(e.to_string()))?;
        let prefix = Path::parse(url.path().trim_matches('/')).map_err(|e| err(e.to_string()))?;
        Ok(Location {
            display: input.to_string(),
            store: Arc::new(store),
            store_url,
            prefix,
            local_dir: None,
        })
    }

    fn azure(input: &str, o: &StoreOptions) -> Result<Self> {
        let err = |reason: String| LakeError::Location {
            location: input.to_string(),
            reason,
        };
        let url = azure::parse_url(input).map_err(err)?;
        let builder = azure::builder(&url, o).map_err(err)?;
        // DataFusion finds a store by scheme and host. An az:// URL takes its
        // account from the settings, which every location of a run shares, so
        // the container alone is the key (and messages name files as the user
        // wrote them); a URL that names its account keeps it in the key, so that
        // two accounts' containers of one name never meet.
        let host = match &url.account {
            None => url.container.clone(),
            Some(_) => format!("{}.{}", url.container, azure::account(&builder)),
        };
        let store = builder.build().map_err(|e| err(e.to_string()))?;
        let store_url =
            ObjectStoreUrl::parse(format!("az://{host}")).map_err(|e| err(e.to_string()))?;
        let prefix = Path::parse(&url.prefix).map_err(|e| err(e.to_string()))?;
        Ok(Location {
            display: input.to_string(),
            store: Arc::new(AzureStore::new(store)),
            store_url,
            prefix,
            local_dir: None,
        })
    }

    /// Makes the store known to DataFusion under [`Self::store_url`].
    pub fn register(&self, ctx: &datafusion::prelude::SessionContext) {
        ctx.register_object_store(self.store_url.as_ref(), self.store.clone());
    }

    fn local(display: &str, path: &FsPath) -> Result<Self> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| LakeError::Location {
                    location: display.into(),
                    reason: e.to_string(),
                })?
                .join(path)
        };
        let abs = normalize(&abs);
        let prefix = Path::from_absolute_path(&abs).map_err(|e| LakeError::Location {
            location: display.into(),
            reason: e.to_string(),
        })?;
        Ok(Location {
            display: display.to_string(),
            store: Arc::new(LocalStore::new()),
            store_url: ObjectStoreUrl::local_filesystem(),
            prefix,
            local_dir: Some(abs),
        })
    }

    /// The path of `parts` under this location's root.
    pub fn child(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .fold(self.prefix.clone(), |p, part| p.clone().join(*part))
    }

    /// The location of the folder `parts` under this one (same store).
    pub fn join(&self, parts: &[&str]) -> Location {
        let prefix = self.child(parts);
        Location {
            display: self.url_of(&prefix),
            store: self.store.clone(),
            store_url: self.store_url.clone(),
            local_dir: self
                .local_dir
                .as_ref()
                .map(|d| parts.iter().fold(d.clone(), |d, p| d.join(p))),
            prefix,
        }
    }

    /// A human-readable URL for a path in this store.
    pub fn url_of(&self, path: &Path) -> String {
        match self.local_dir {
            Some(_) => format!("{}{}", self.store_url.as_str(), path),
            None => format!("{}/{}", self.store_url.as_str().trim_end_matches('/'), path),
        }
    }
}

/// Removes `.` and `..` components without touching the file system (the
/// destination may not exist yet).
fn normalize(path: &FsPath) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_file_urls_agree() {
        let a = Location::parse("/tmp/x/../lake").unwrap();
        let b = Location::parse("file:///tmp/lake").unwrap();
        assert_eq!(a.prefix, b.prefix);
        assert_eq!(a.prefix.as_ref(), "tmp/lake");
        assert_eq!(
            a.child(&["id_graph_updates"]).as_ref(),
            "tmp/lake/id_graph_updates"
        );
    }

    #[test]
    fn s3_reads_bucket_and_prefix() {
        let o = StoreOptions {
            endpoint: Some("http://127.0.0.1:1".into()),
            allow_http: Some(true),
            ..Default::default()
        };
        let l = Location::parse_with("s3://lake/ps/segment/", &o).unwrap();
        assert_eq!(l.store_url.as_str(), "s3://lake/");
        assert_eq!(l.prefix.as_ref(), "ps/segment");
        assert_eq!(
            l.url_of(&l.child(&["id_graph_updates"])),
            "s3://lake/ps/segment/id_graph_updates"
        );
        assert!(l.local_dir.is_none());
        assert!(Location::parse("s3:///nobucket").is_err());
    }

    #[test]
    fn azure_reads_container_and_prefix() {
        let o = StoreOptions {
            azure: AzureOptions {
                account: Some("acct".into()),
                access_key: Some("a2V5".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let l = Location::parse_with("az://lake/ps/segment/", &o).unwrap();
        assert_eq!(l.store_url.as_str(), "az://lake/");
        assert_eq!(l.prefix.as_ref(), "ps/segment");
        assert_eq!(
            l.url_of(&l.child(&["id_graph_updates"])),
            "az://lake/ps/segment/id_graph_updates"
        );
        assert!(l.local_dir.is_none());
        let named = Location::parse_with("abfss://lake@other.dfs.core.windows.net/ps", &o);
        let e = named.unwrap_err().to_string();
        assert!(e.contains("--azure-account is 'acct'"), "{e}");
        let o = StoreOptions::default();
        let l = Location::parse_with("https://acct.blob.core.windows.net/lake/ps", &o).unwrap();
        assert_eq!(l.store_url.as_str(), "az://lake.acct/");
        assert_eq!(l.prefix.as_ref(), "ps");
    }

    #[test]
    fn unknown_scheme_is_named() {
        let e = Location::parse("gs://bucket/x").unwrap_err().to_string();
        assert!(e.contains("gs://"), "{e}");
    }
}
