//! `--init-from`: a torchvision ResNet18 state dict (names and shapes from
//! `tests/data/torchvision-resnet18-state-dict.txt`, generated once with torchvision) loads
//! into the resnet18 body, one to one.
use std::{collections::HashMap, path::Path};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use host_train::{
    kernels::Kernels,
    net::{pretrained::load_torchvision_body, BackboneConfig, HydraNet},
};
use models::heads::utkface_heads;

struct Entry {
    name: String,
    dtype: String,
    shape: Vec<usize>,
}

fn torchvision_resnet18() -> Vec<Entry> {
    let text = include_str!("data/torchvision-resnet18-state-dict.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "bad line `{l}`");
            let shape = match f[2] {
                "scalar" => vec![],
                s => s.split('x').map(|d| d.parse().unwrap()).collect(),
            };
            Entry {
                name: f[0].into(),
                dtype: f[1].into(),
                shape,
            }
        })
        .collect()
}

/// A value unique to each tensor, so a swapped name shows.
fn marker(i: usize) -> f32 {
    0.001 * (i + 1) as f32
}

/// Writes a state dict with torchvision's names, shapes and dtypes (float weights as f16 to
/// keep the file small; the loader converts), skipping `skip`.
fn write_state_dict(path: &Path, entries: &[Entry], skip: &str) -> HashMap<String, f32> {
    let mut tensors = HashMap::new();
    let mut markers = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.name == skip {
            continue;
        }
        let t = match e.dtype.as_str() {
            "int64" => Tensor::new(0i64, &Device::Cpu).unwrap(),
            "float32" => {
                markers.insert(e.name.clone(), marker(i));
                Tensor::full(marker(i), e.shape.as_slice(), &Device::Cpu)
                    .unwrap()
                    .to_dtype(DType::F16)
                    .unwrap()
            }
            other => panic!("unexpected dtype {other}"),
        };
        tensors.insert(e.name.clone(), t);
    }
    candle_core::safetensors::save(&tensors, path).unwrap();
    markers
}

fn body(backbone: &str) -> (HydraNet, VarMap) {
    let cfg: BackboneConfig = backbone.parse().unwrap();
    HydraNet::fresh(&cfg, &utkface_heads(), Kernels::Fast, 1, &Device::Cpu).unwrap()
}

fn first_value(vm: &VarMap, name: &str) -> f32 {
    vm.data().lock().unwrap()[name]
        .flatten_all()
        .unwrap()
        .get(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn every_torchvision_resnet18_tensor_maps_onto_the_body() {
    let entries = torchvision_resnet18();
    assert_eq!(
        entries.len(),
        122,
        "torchvision resnet18 has 122 state-dict entries"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resnet18.safetensors");
    let markers = write_state_dict(&file, &entries, "");
    let (_, vm) = body("resnet18");
    let heads_before = first_value(&vm, "heads.age.0.weight");
    let report = load_torchvision_body(&vm, &file).unwrap();

    // Every weight, bias and running statistic is taken; fc and the 20 counters are not.
    assert_eq!(report.loaded, 100);
    assert_eq!(report.ignored.len(), 22);
    assert!(report.ignored.contains(&"fc.weight".to_string()));
    assert!(report.unused.is_empty(), "{:?}", report.unused);
    let data = vm.data().lock().unwrap();
    let body_vars = data.keys().filter(|n| !n.starts_with("heads.")).count();
    assert_eq!(
        body_vars, 100,
        "the body has exactly torchvision's float tensors"
    );
    drop(data);
    for e in &entries {
        if let Some(&m) = markers.get(&e.name) {
            if e.name.starts_with("fc.") {
                continue;
            }
            let got = first_value(&vm, &e.name);
            // f16 rounding of the marker.
            assert!((got - m).abs() <= m * 1e-3, "{}: {got} vs {m}", e.name);
        }
    }
    assert_eq!(
        first_value(&vm, "heads.age.0.weight"),
        heads_before,
        "heads keep their own initialisation"
    );
}

#[test]
fn a_shallower_body_takes_its_part_and_lists_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resnet18.safetensors");
    write_state_dict(&file, &torchvision_resnet18(), "");
    let (_, vm) = body("resnet10");
    let report = load_torchvision_body(&vm, &file).unwrap();
    assert!(report.loaded > 0);
    assert!(!report.unused.is_empty());
    assert!(
        report.unused.iter().all(|n| n.contains(".1.")),
        "{:?}",
        report.unused
    );
}

#[test]
fn mismatches_are_errors_naming_the_tensor_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let entries = torchvision_resnet18();
    let file = dir.path().join("resnet18.safetensors");
    write_state_dict(&file, &entries, "");
    let (_, vm) = body("resnet18-w0.5");
    let err = load_torchvision_body(&vm, &file).unwrap_err().to_string();
    assert!(err.contains("resnet18.safetensors"), "{err}");
    assert!(
        err.contains("`bn1.bias` has shape [64], this body expects [32]"),
        "{err}"
    );

    let partial = dir.path().join("partial.safetensors");
    write_state_dict(&partial, &entries, "layer3.1.bn2.running_var");
    let (_, vm) = body("resnet18");
    let err = load_torchvision_body(&vm, &partial)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer3.1.bn2.running_var"), "{err}");

    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    let err = load_torchvision_body(&vm, &junk).unwrap_err().to_string();
    assert!(err.contains("junk.safetensors"), "{err}");
}

/// A HydraNet checkpoint (body, heads, optimiser state) warm-starts a second training
/// cycle: body and heads are taken, the optimiser state is not.
#[test]
fn a_hydranet_checkpoint_warm_starts_body_and_heads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("best.safetensors");
    let (_, trained) = body("resnet10-w0.5");
    let mut tensors: HashMap<String, Tensor> = trained
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let n_heads = tensors.keys().filter(|k| k.starts_with("heads.")).count();
    let n_body = tensors.len() - n_heads;
    tensors.insert(
        "optim.m.conv1.weight".into(),
        tensors["conv1.weight"].zeros_like().unwrap(),
    );
    candle_core::safetensors::save(&tensors, &file).unwrap();

    let cfg: BackboneConfig = "resnet10-w0.5".parse().unwrap();
    let (_, fresh) =
        HydraNet::fresh(&cfg, &utkface_heads(), Kernels::Fast, 7, &Device::Cpu).unwrap();
    assert_ne!(
        first_value(&fresh, "heads.age.0.weight"),
        first_value(&trained, "heads.age.0.weight")
    );
    let report = load_torchvision_body(&fresh, &file).unwrap();
    assert_eq!(report.loaded, n_body);
    assert_eq!(report.heads_loaded, n_heads);
    assert_eq!(report.ignored, vec!["optim.m.conv1.weight".to_string()]);
    assert!(report.unused.is_empty(), "{:?}", report.unused);
    for name in [
        "heads.age.0.weight",
        "heads.ethnicity.2.bias",
        "layer4.0.conv2.weight",
    ] {
        assert_eq!(
            first_value(&fresh, name),
            first_value(&trained, name),
            "{name}"
        );
    }

    // A head of another shape (here 3 ethnicity classes) is an error naming it.
    let mut heads = utkface_heads();
    heads[2] = models::heads::HeadSpec::multiclass("ethnicity", &["a", "b", "c"]);
    let (_, other) = HydraNet::fresh(&cfg, &heads, Kernels::Fast, 7, &Device::Cpu).unwrap();
    let err = load_torchvision_body(&other, &file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("heads.ethnicity.2"), "{err}");
}
