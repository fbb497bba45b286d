//! The local file system as an object store that also does conditional
//! overwrites (`PutMode::Update`), so that a destination's lease works the same
//! on disk as on S3 or Azure.
//!
//! object_store's `LocalFileSystem` refuses `PutMode::Update`. Here an update
//! takes an exclusive `flock` on the file it replaces, compares the file's ETag
//! (object_store's own: inode, mtime, size) with the expected one, and only then
//! writes the new content beside it and renames it over (an atomic replace).
//!
//! Why that is a compare-and-swap among processes: two updaters of the same
//! version both opened that version's inode, so their locks exclude each other,
//! and the second one finds the path holding a new inode with another ETag. An
//! updater that opened a newer inode expects a newer ETag than the one it
//! replaced. Every other operation is `LocalFileSystem`'s.

use std::fmt;
use std::sync::Arc;

use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};

/// `LocalFileSystem` plus conditional overwrites (see the module docs).
#[derive(Debug, Default)]
pub struct LocalStore {
    inner: Arc<LocalFileSystem>,
}

impl LocalStore {
    /// A store over the whole local file system (paths are absolute).
    pub fn new() -> Self {
        Self::default()
    }

    async fn update(
        &self,
        location: &Path,
        payload: PutPayload,
        expected: Option<String>,
    ) -> Result<PutResult> {
        let expected = expected.ok_or_else(|| object_store::Error::Generic {
            store: "LocalStore",
            source: "an ETag is required for a conditional overwrite".into(),
        })?;
        let file = std::path::PathBuf::from(format!("/{location}"));
        let precondition = |why: String| object_store::Error::Precondition {
            path: location.to_string(),
            source: why.into(),
        };
        // Held until this function returns: the lock is released when `guard` drops.
        let guard = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&file)?;
            f.lock()?;
            Ok::<_, std::io::Error>(f)
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "LocalStore",
            source: Box::new(e),
        })?;
        let _guard = match guard {
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(precondition("the object is gone".into()));
            }
            Err(e) => {
                return Err(object_store::Error::Generic {
                    store: "LocalStore",
                    source: Box::new(e),
                });
            }
        };
        let current = match self.inner.head(location).await {
            Ok(meta) => meta.e_tag,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(precondition("the object is gone".into()));
            }
            Err(e) => return Err(e),
        };
        if current.as_deref() != Some(expected.as_str()) {
            return Err(precondition(format!(
                "ETag {} is not the expected {expected}",
                current.unwrap_or_default()
            )));
        }
        self.inner
            .put_opts(location, payload, PutOptions::from(PutMode::Overwrite))
            .await
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        match opts.mode {
            PutMode::Update(v) => self.update(location, payload, v.e_tag).await,
            _ => self.inner.put_opts(location, payload, opts).await,
        }
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
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::UpdateVersion;

    use super::*;

    fn update(e_tag: Option<String>) -> PutOptions {
        PutOptions::from(PutMode::Update(UpdateVersion {
            e_tag,
            version: None,
        }))
    }

    #[tokio::test]
    async fn an_update_replaces_only_the_expected_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new();
        let path = Path::from_absolute_path(dir.path().join("lock")).unwrap();
        let first = store
            .put_opts(&path, "a".into(), PutMode::Create.into())
            .await
            .unwrap();
        // Another version appears (same size, so only inode and mtime tell them apart).
        let second = store
            .put_opts(&path, "b".into(), update(first.e_tag.clone()))
            .await
            .unwrap();
        assert_ne!(first.e_tag, second.e_tag);
        let stale = store
            .put_opts(&path, "c".into(), update(first.e_tag.clone()))
            .await
            .unwrap_err();
        assert!(
            matches!(stale, object_store::Error::Precondition { .. }),
            "{stale}"
        );
        let body = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&body[..], b"b");
        store.delete(&path).await.unwrap();
        let gone = store
            .put_opts(&path, "d".into(), update(second.e_tag))
            .await
            .unwrap_err();
        assert!(
            matches!(gone, object_store::Error::Precondition { .. }),
            "{gone}"
        );
    }

    #[tokio::test]
    async fn of_many_updates_of_one_version_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::new());
        let path = Path::from_absolute_path(dir.path().join("lock")).unwrap();
        let v0 = store
            .put_opts(&path, "v0".into(), PutMode::Create.into())
            .await
            .unwrap();
        let tries = (0..16).map(|i| {
            let store = store.clone();
            let path = path.clone();
            let e_tag = v0.e_tag.clone();
            tokio::spawn(async move {
                store
                    .put_opts(&path, format!("w{i:02}").into(), update(e_tag))
                    .await
                    .is_ok()
            })
        });
        let won = futures::future::join_all(tries)
            .await
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(won, 1);
    }
}
