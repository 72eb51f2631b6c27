//! Files the host writes: atomically, so a crash or Ctrl-C never leaves half a checkpoint
//! or half an ONNX file, and named portably where a name ships inside a model.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

use crate::{Error, Result};

/// How a file or folder is named in a contract's `training` facts, which ship inside the
/// ONNX file: a relative path as given, an absolute one as its folder's name and its own
/// (`/root/runs/swa-b/epoch-003.safetensors` → `swa-b/epoch-003.safetensors`), so a shipped
/// file carries no folder of the machine that trained it.
pub fn portable_name(path: &Path) -> String {
    if !path.is_absolute() {
        return path.display().to_string();
    }
    let tail: Vec<String> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .take(2)
        .collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("/")
}

/// Writes `bytes` to `path` atomically: temporary file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_names_drop_the_machine_s_folders() {
        assert_eq!(
            portable_name(Path::new("/root/runs/swa-b/epoch-003.safetensors")),
            "swa-b/epoch-003.safetensors"
        );
        assert_eq!(portable_name(Path::new("/data")), "data");
        assert_eq!(
            portable_name(Path::new("../shared/datasets/utkface/UTKFace")),
            "../shared/datasets/utkface/UTKFace"
        );
        assert_eq!(
            portable_name(Path::new("runs/a/best.safetensors")),
            "runs/a/best.safetensors"
        );
    }

    #[test]
    fn an_atomic_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/folder/x.bin");
        assert!(write_atomic(&missing, b"x").is_err());
    }
}
