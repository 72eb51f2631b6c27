//! The bundle as a gzip'd tar: written once, read back and checked before anything is
//! installed from it.
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::{check_version, release_dirs, release_files, top_folder, Manifest, FORMAT, MANIFEST};
use crate::board::{is_safe_path, is_simple_name, KioskDisplay};
use crate::error::{io_err, Error, Result};
use crate::util::sha256_hex;

/// Writes the release folder `top` (its folders, then `contents` in release order) as a
/// gzip'd tar at `tarball`: beside the final name first, then renamed, so a failed run
/// never leaves a tarball that looks complete.
pub(super) fn write_tarball(
    tarball: &Path,
    top: &str,
    service: &str,
    display: Option<KioskDisplay>,
    contents: &BTreeMap<String, Vec<u8>>,
    mtime: u64,
) -> Result<()> {
    let partial = tarball.with_file_name(format!(".{top}.tar.gz.partial"));
    let write = || -> io::Result<()> {
        let file = File::create(&partial)?;
        let gz = GzEncoder::new(BufWriter::new(file), Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut add = |path: String, mode: u32, data: &[u8]| -> io::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(if path.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(mtime);
            h.set_uid(0);
            h.set_gid(0);
            h.set_username("root")?;
            h.set_groupname("root")?;
            tar.append_data(&mut h, path, data)
        };
        add(format!("{top}/"), 0o755, &[])?;
        for dir in release_dirs(display) {
            add(format!("{top}/{dir}/"), 0o755, &[])?;
        }
        for (path, mode) in release_files(service, display, contents.contains_key(super::DETECTOR))
        {
            add(format!("{top}/{path}"), mode, &contents[&path])?;
        }
        let gz = tar.into_inner()?;
        let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&partial);
        return Err(io_err("writing bundle", tarball)(e));
    }
    fs::rename(&partial, tarball).map_err(io_err("renaming into place", tarball))
}

/// A bundle read back and checked: the exact file set, the manifest, the checksums.
#[derive(Debug)]
pub struct Bundle {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// Release-relative path (e.g. `bin/edge-runtime`) to contents.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    pub fn read(path: &Path) -> Result<Bundle> {
        match fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(Error::BadBundle {
                    path: path.into(),
                    reason: "is not a file".into(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::MissingBundle { path: path.into() })
            }
            Err(e) => return Err(io_err("reading bundle", path)(e)),
        }
        let bad = |reason: String| Error::BadBundle {
            path: path.into(),
            reason,
        };
        let file = File::open(path).map_err(io_err("opening bundle", path))?;
        let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
        let mut top: Option<String> = None;
        let mut dirs = Vec::new();
        let mut files = BTreeMap::new();
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("not a gzip'd tar file ({e})")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("not a gzip'd tar file ({e})")))?;
            let name = entry
                .path()
                .map_err(|e| bad(format!("entry with an unreadable name ({e})")))?
                .into_owned();
            let mut parts = Vec::new();
            for c in name.components() {
                match c {
                    Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                    _ => return Err(bad(format!("entry `{}` leaves its folder", name.display()))),
                }
            }
            let Some((first, rest)) = parts.split_first() else {
                continue;
            };
            match &top {
                None => top = Some(first.clone()),
                Some(t) if t == first => {}
                Some(t) => {
                    return Err(bad(format!(
                        "more than one top folder (`{t}` and `{first}`)"
                    )))
                }
            }
            let rel = rest.join("/");
            match entry.header().entry_type() {
                tar::EntryType::Directory => dirs.push(rel),
                tar::EntryType::Regular => {
                    let mut data = Vec::new();
                    entry
                        .read_to_end(&mut data)
                        .map_err(|e| bad(format!("reading `{}` ({e})", name.display())))?;
                    if files.insert(rel.clone(), data).is_some() {
                        return Err(bad(format!("`{rel}` appears twice")));
                    }
                }
                other => {
                    return Err(bad(format!(
                        "`{}` is a {other:?}; a bundle holds only files and folders",
                        name.display()
                    )))
                }
            }
        }
        let top = top.ok_or_else(|| bad("is empty".into()))?;
        let raw = files
            .get(MANIFEST)
            .ok_or_else(|| bad(format!("has no {MANIFEST}")))?;
        let manifest: Manifest = serde_json::from_slice(raw)
            .map_err(|e| bad(format!("{MANIFEST} does not parse ({e})")))?;
        if manifest.format != FORMAT {
            return Err(bad(format!(
                "manifest format {} (this xtask reads format {FORMAT})",
                manifest.format
            )));
        }
        // These end up in paths and symlinks on the board.
        check_version(&manifest.version)
            .map_err(|r| bad(format!("version `{}` {r}", manifest.version)))?;
        if !is_simple_name(&manifest.board)
            || !is_simple_name(&manifest.install.service)
            || !manifest.install.prefix.starts_with('/')
            || !is_safe_path(&manifest.install.prefix)
        {
            return Err(bad(format!(
                "manifest names board `{}`, service `{}`, prefix `{}`: not plain names",
                manifest.board, manifest.install.service, manifest.install.prefix
            )));
        }
        let want_top = top_folder(&manifest.board, &manifest.version);
        if top != want_top {
            return Err(bad(format!(
                "top folder `{top}` does not match the manifest (`{want_top}`)"
            )));
        }
        let display = manifest.kiosk_display();
        let want: Vec<String> = release_files(
            &manifest.install.service,
            display,
            manifest.detector.is_some(),
        )
        .into_iter()
        .map(|(p, _)| p)
        .collect();
        let have: Vec<&String> = files.keys().collect();
        let mut want_sorted: Vec<&String> = want.iter().collect();
        want_sorted.sort();
        if have != want_sorted {
            return Err(bad(format!(
                "holds {have:?}, expected exactly {want_sorted:?}"
            )));
        }
        let allowed = release_dirs(display);
        if let Some(d) = dirs
            .iter()
            .find(|d| !d.is_empty() && !allowed.contains(&d.as_str()))
        {
            return Err(bad(format!("unexpected folder `{d}`")));
        }
        for digest in manifest.digests() {
            let data = files
                .get(&digest.path)
                .ok_or_else(|| bad(format!("manifest names `{}`, not in it", digest.path)))?;
            if sha256_hex(data) != digest.sha256 || data.len() as u64 != digest.bytes {
                return Err(bad(format!(
                    "`{}` does not match its sha256 in {MANIFEST} (corrupt or edited)",
                    digest.path
                )));
            }
        }
        Ok(Bundle {
            path: path.into(),
            manifest,
            files,
        })
    }

    /// The tar's single top folder.
    pub fn top(&self) -> String {
        top_folder(&self.manifest.board, &self.manifest.version)
    }

    pub fn check_board(&self, board: &str) -> Result<()> {
        if self.manifest.board != board {
            return Err(Error::BoardMismatch {
                path: self.path.clone(),
                bundle_board: self.manifest.board.clone(),
                board: board.into(),
            });
        }
        Ok(())
    }
}
