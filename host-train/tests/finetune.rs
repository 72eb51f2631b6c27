//! `finetune`: one head trains on a frozen body; the body and the other heads come out
//! bit-identical, and a new head (age bands) can be added and exported.
mod common;

use std::{
    collections::HashMap,
    path::Path,
    sync::{atomic::AtomicBool, Arc},
};

use candle_core::Device;
use common::tiny_config;
use host_train::{
    export::{export_checkpoint, ExportOptions},
    net::BackboneConfig,
    train::{
        checkpoint,
        finetune::{finetune, FinetuneOptions},
        setup::{build_trainer, contract_for, prepare_data, Need},
    },
};
use models::HeadSpec;

/// Trains the tiny configuration on synthetic faces; returns the best checkpoint.
fn trained(data: &Path, run: &Path) -> std::path::PathBuf {
    let config = tiny_config(data, run);
    let backbone: BackboneConfig = config.backbone.parse().unwrap();
    let contract = contract_for(&config, &backbone);
    let prepared = prepare_data(&config, &contract, Need::AllHeads).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut t = build_trainer(config, contract, &prepared, None, Device::Cpu, stop).unwrap();
    t.verbose = false;
    t.run().unwrap();
    run.join("best.safetensors")
}

/// Every tensor's raw bytes (f32 little-endian), by name.
fn bytes(path: &Path) -> HashMap<String, Vec<u8>> {
    checkpoint::load(path, &Device::Cpu)
        .unwrap()
        .tensors
        .into_iter()
        .filter(|(n, _)| !n.starts_with("optim."))
        .map(|(n, t)| {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (n, v.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect()
}

fn options(data: &Path, head: &str, add: Option<HeadSpec>) -> FinetuneOptions {
    FinetuneOptions {
        head: head.into(),
        add,
        data: models::dataset::DataSource::folder(data),
        epochs: 3,
        batch: 32,
        lr: 3e-3,
        weight_decay: 5e-4,
        seed: 5,
        flip: true,
        reinit: false,
        replace: false,
    }
}

#[test]
fn finetuning_one_head_leaves_everything_else_bit_identical() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 96, 40, 4).unwrap();
    let run = tempfile::tempdir().unwrap();
    let ck = trained(data.path(), run.path());
    let out = run.path().join("ft-gender.safetensors");

    let r = finetune(
        &ck,
        &out,
        &options(data.path(), "gender", None),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(r.history.len(), 3);
    assert!(r.before.is_some());
    // Mirrored copies double the training features.
    let train_images = r.train_features / 2;
    assert_eq!(r.train_features, 2 * train_images);

    let (a, b) = (bytes(&ck), bytes(&out));
    assert_eq!(
        a.keys().collect::<std::collections::BTreeSet<_>>(),
        b.keys().collect(),
        "same tensors"
    );
    let mut changed = 0;
    for (name, va) in &a {
        if name.starts_with("heads.gender.") {
            changed += usize::from(va != &b[name]);
        } else {
            assert!(va == &b[name], "{name} changed");
        }
    }
    assert!(changed > 0, "the gender head did not train");
    let (ca, cb) = (
        checkpoint::load(&ck, &Device::Cpu).unwrap().contract,
        checkpoint::load(&out, &Device::Cpu).unwrap().contract,
    );
    assert_eq!(ca.heads, cb.heads);
    assert!(cb.training.contains_key("finetune.gender"));
}

#[test]
fn an_added_age_band_head_trains_and_exports() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 96, 40, 4).unwrap();
    let run = tempfile::tempdir().unwrap();
    let ck = trained(data.path(), run.path());
    let out = run.path().join("ft-band.safetensors");
    let spec = HeadSpec::age_bands("age_band", &[0, 13, 20, 40, 60]).unwrap();
    let r = finetune(
        &ck,
        &out,
        &options(data.path(), "age_band", Some(spec)),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(r.head_index, 3);
    assert!(r.before.is_none());
    let acc = r.after.0.heads[3].acc.unwrap();
    assert!((0.0..=1.0).contains(&acc));

    let (a, b) = (bytes(&ck), bytes(&out));
    for (name, va) in &a {
        assert!(va == &b[name], "{name} changed");
    }
    assert!(b.keys().any(|n| n.starts_with("heads.age_band.")));

    let onnx = run.path().join("four-heads.onnx");
    export_checkpoint(&out, &onnx, &ExportOptions::default()).unwrap();
    assert!(std::fs::metadata(&onnx).unwrap().len() > 0);

    // Adding it twice, or training a head that is not there, is refused by name.
    let spec = HeadSpec::age_bands("age_band", &[0, 13, 20, 40, 60]).unwrap();
    let err = finetune(
        &out,
        &run.path().join("x.safetensors"),
        &options(data.path(), "age_band", Some(spec)),
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("already has a head `age_band`"), "{err}");
    let err = finetune(
        &ck,
        &run.path().join("y.safetensors"),
        &options(data.path(), "mood", None),
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("no head `mood`") && err.contains("gender"),
        "{err}"
    );
}

/// `finetune --add-head age --heads dex.toml --replace`: the L1 age head becomes a
/// distribution head in the same output position; the body and the other heads stay
/// bit-identical, the old head's tensors are gone, and the result exports and trains on.
#[test]
fn a_head_is_replaced_by_one_of_another_kind_in_place() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 96, 40, 4).unwrap();
    let run = tempfile::tempdir().unwrap();
    let ck = trained(data.path(), run.path());
    let out = run.path().join("ft-dex.safetensors");
    let dex = HeadSpec::distribution("age", "years", 1.0, 116.0, 116);
    let replace = |add: HeadSpec| FinetuneOptions {
        replace: true,
        ..options(data.path(), "age", Some(add))
    };
    let r = finetune(&ck, &out, &replace(dex.clone()), &Device::Cpu).unwrap();
    assert_eq!(r.head_index, 0);
    assert!(r.after.0.heads[0].mae.is_some_and(f64::is_finite));
    let (a, b) = (bytes(&ck), bytes(&out));
    for (name, va) in &a {
        if !name.starts_with("heads.age.") {
            assert!(va == &b[name], "{name} changed");
        }
    }
    let old_age: usize = a.keys().filter(|n| n.starts_with("heads.age.")).count();
    assert!(old_age > 0);
    assert_eq!(a.len(), b.len(), "the same tensors by name");
    let ck_out = checkpoint::load(&out, &Device::Cpu).unwrap();
    assert_eq!(ck_out.contract.heads[0], dex);
    assert_eq!(
        ck_out
            .tensors
            .values()
            .map(|t| t.elem_count())
            .sum::<usize>()
            - ck_out
                .tensors
                .iter()
                .filter(|(n, _)| n.starts_with("heads.age."))
                .map(|(_, t)| t.elem_count())
                .sum::<usize>(),
        checkpoint::load(&ck, &Device::Cpu)
            .unwrap()
            .tensors
            .iter()
            .filter(|(n, _)| !n.starts_with("heads.age.") && !n.starts_with("optim."))
            .map(|(_, t)| t.elem_count())
            .sum::<usize>(),
        "only the age head's tensors differ in size"
    );
    assert!(ck_out.contract.training["finetune.age"].starts_with("replaced"));
    let onnx = run.path().join("dex.onnx");
    export_checkpoint(&out, &onnx, &ExportOptions::default()).unwrap();
    let im = host_train::export::import::load_onnx(&onnx, &Device::Cpu).unwrap();
    assert_eq!(im.contract.heads[0], dex);

    // Without --replace an existing name is refused, and --replace needs an existing name.
    let err = finetune(
        &ck,
        &run.path().join("x.safetensors"),
        &options(data.path(), "age", Some(dex)),
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("--replace"), "{err}");
    let mood = HeadSpec::binary("mood", "calm", "cross");
    let err = finetune(
        &ck,
        &run.path().join("y.safetensors"),
        &replace(mood),
        &Device::Cpu,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("no head `mood` to replace"), "{err}");
}

/// `finetune --add-head NAME --heads FILE --manifest CSV`: a binary head declared in a heads
/// file, labelled by a CSV that names only it (and only for some images), trains on the
/// frozen body; everything else stays bit-identical and the export has one output more.
#[test]
fn a_declared_head_trains_from_a_csv_that_labels_only_it() {
    let data = tempfile::tempdir().unwrap();
    host_train::synth::generate(data.path(), 96, 40, 4).unwrap();
    let run = tempfile::tempdir().unwrap();
    let ck = trained(data.path(), run.path());
    let heads = models::heads_file::parse_heads(
        "[[head]]\nname = \"greying\"\nkind = \"binary\"\nlabels = [\"no\", \"yes\"]\ncolumn = \"grey\"\n",
        Path::new("extra.toml"),
    )
    .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Synthetic faces get grey hair with age: the label follows the age field. A third of
    // the rows are left empty (unlabelled).
    let mut csv = String::from("path,grey\n");
    for (i, n) in names.iter().enumerate() {
        let age = models::dataset::parse_utkface_name(n).unwrap().age;
        let cell = match i % 3 {
            0 => "",
            _ if age >= 50 => "yes",
            _ => "no",
        };
        csv.push_str(&format!("{n},{cell}\n"));
    }
    let manifest = data.path().join("grey.csv");
    std::fs::write(&manifest, csv).unwrap();
    let out = run.path().join("ft-grey.safetensors");
    let opts = FinetuneOptions {
        data: models::dataset::DataSource {
            images: None,
            manifests: vec![manifest],
        },
        ..options(data.path(), "greying", Some(heads[0].clone()))
    };
    let r = finetune(&ck, &out, &opts, &Device::Cpu).unwrap();
    assert_eq!(r.head_index, 3);
    let labelled = names.len() - names.len().div_ceil(3);
    // Only labelled images are features (mirrored copies included) or validation samples.
    assert!(
        r.train_features + 2 * r.val_samples <= 2 * labelled,
        "{} {}",
        r.train_features,
        r.val_samples
    );
    let m = &r.after.0.heads[3];
    assert_eq!(m.n as usize, r.val_samples);
    // The old heads have no labels in this CSV: their metrics are empty, not wrong.
    assert_eq!(r.after.0.heads[0].n, 0);
    assert!(r.after.0.heads[0].mae.is_none());
    let (a, b) = (bytes(&ck), bytes(&out));
    for (name, va) in &a {
        assert!(va == &b[name], "{name} changed");
    }
    assert!(b.keys().any(|n| n.starts_with("heads.greying.")));
    let contract = checkpoint::load(&out, &Device::Cpu).unwrap().contract;
    assert_eq!(contract.heads.len(), 4);
    assert_eq!(contract.heads[3].column(), "grey");
    let onnx = run.path().join("four.onnx");
    export_checkpoint(&out, &onnx, &ExportOptions::default()).unwrap();
    let im = host_train::export::import::load_onnx(&onnx, &Device::Cpu).unwrap();
    assert_eq!(im.contract.heads[3].name, "greying");

    // From an exported file (a shipped model, its checkpoint gone): the new file holds the
    // old one's every weight bit for bit, and the new head's.
    let three = run.path().join("three.onnx");
    export_checkpoint(&ck, &three, &ExportOptions::default()).unwrap();
    let from_onnx = run.path().join("ft-from-onnx.safetensors");
    finetune(&three, &from_onnx, &opts, &Device::Cpu).unwrap();
    let four = run.path().join("four-from-onnx.onnx");
    export_checkpoint(&from_onnx, &four, &ExportOptions::default()).unwrap();
    let (old, new) = (initializers(&three), initializers(&four));
    for (name, bytes) in &old {
        assert!(new.get(name) == Some(bytes), "{name} changed");
    }
    assert!(new.keys().any(|n| n.starts_with("heads.greying.")));
    assert_eq!(
        new.len(),
        old.len() + 4,
        "two Linear layers of the new head"
    );
}

/// An ONNX file's initialisers: name → raw bytes.
fn initializers(path: &Path) -> HashMap<String, Vec<u8>> {
    use prost::Message;
    let m = tract_onnx::pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    m.graph
        .unwrap()
        .initializer
        .into_iter()
        .map(|t| (t.name, t.raw_data))
        .collect()
}
