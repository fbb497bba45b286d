//! Where a lake (or a destination) lives: a local path or `file://` URL, turned
//! into an [`ObjectStore`] plus a prefix inside it, so that every read and write
//! goes through `object_store`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

use crate::error::{LakeError, Result};

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

impl Location {
    /// Parses a local path, `file://` URL or (later) `s3://bucket/prefix`.
    pub fn parse(input: &str) -> Result<Self> {
        let err = |reason: String| LakeError::Location {
            location: input.to_string(),
            reason,
        };
        if input.trim().is_empty() {
            return Err(err("empty location".into()));
        }
        if let Some(scheme_end) = input.find("://") {
            let scheme = &input[..scheme_end];
            if scheme != "file" {
                return Err(err(format!(
                    "unsupported scheme '{scheme}://' (use a local path or file://)"
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
            store: Arc::new(LocalFileSystem::new()),
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

    /// A human-readable URL for a path in this store.
    pub fn url_of(&self, path: &Path) -> String {
        format!("{}{}", self.store_url.as_str(), path)
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
    fn unknown_scheme_is_named() {
        let e = Location::parse("gs://bucket/x").unwrap_err().to_string();
        assert!(e.contains("gs://"), "{e}");
    }
}
