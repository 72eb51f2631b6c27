//! The shared UTKFace folder's defects, exactly.
mod common;

use models::{dataset::scan_utkface_dir, heads::utkface_heads};

#[test]
fn every_malformed_name_of_the_real_folder_is_rejected_and_nothing_else() {
    let scan = scan_utkface_dir(&common::utkface_dir(), &utkface_heads()).unwrap();
    let mut rejected: Vec<String> = scan
        .rejected
        .iter()
        .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    rejected.sort();
    assert_eq!(
        rejected,
        [
            "24_0_1_20170116220224657 .jpg.chip.jpg",
            "55_0_0_20170116232725357jpg.chip.jpg",
            "61_1_20170109142408075.jpg.chip.jpg",
            "61_1_20170109150557335.jpg.chip.jpg",
        ]
    );
    assert_eq!(scan.samples.len(), 19_011);
    assert!(scan
        .samples
        .iter()
        .all(|s| (1.0..=116.0).contains(&s.targets[0])));
}
